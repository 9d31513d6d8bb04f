"""Super-resolution pieces against closed forms, and a conditioned training run end to end."""

import math

import pytest
import torch

from ddpm_lessons.samplers import sample_ddim
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.superres import bicubic_upsample, conditioned, low_resolution, psnr, sr_condition
from ddpm_lessons.training import TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig


def test_area_downsampling_is_the_block_mean_and_bicubic_keeps_constants():
    x = torch.arange(16.0).view(1, 1, 4, 4) / 16
    low = low_resolution(x, 2)
    expected = torch.tensor(
        [[x[0, 0, :2, :2].mean(), x[0, 0, :2, 2:].mean()], [x[0, 0, 2:, :2].mean(), x[0, 0, 2:, 2:].mean()]]
    )
    assert torch.allclose(low[0, 0], expected)
    flat = torch.full((2, 1, 7, 7), 0.3)
    assert torch.allclose(bicubic_upsample(flat, 28), torch.full((2, 1, 28, 28), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 5"):
        low_resolution(torch.zeros(1, 1, 28, 28), 5)


def test_psnr_closed_form():
    a = torch.zeros(3, 1, 4, 4)
    b = a + torch.tensor([0.1, 0.2, 0.0]).view(3, 1, 1, 1)
    got = psnr(a, b)
    assert got[0].item() == pytest.approx(10 * math.log10(4 / 0.01))  # range 2: 10 log10(2^2 / MSE)
    assert got[1].item() == pytest.approx(10 * math.log10(4 / 0.04))
    assert math.isinf(got[2].item())  # identical images


def test_a_conditioned_model_trains_and_samples(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    small = dict(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)
    with pytest.raises(ValueError, match="condition="):
        Trainer(UNetConfig(cond_channels=1, **small), TrainConfig(steps=1, batch_size=4), x, tmp_path / "a")
    trainer = Trainer(UNetConfig(cond_channels=1, **small), TrainConfig(steps=2, batch_size=4, checkpoint_every=2),
                      x, tmp_path / "b", condition=sr_condition(7), progress=False).train()  # fmt: skip
    assert trainer.step == 2 and trainer.sample_grid(n=4).shape == (4, 1, 28, 28)
    cond = sr_condition(14)(x[:2])
    s = NoiseSchedule.make("linear", 1000)
    out = sample_ddim(conditioned(trainer.ema.model, cond), s, (2, 1, 28, 28), steps=3)
    assert out.shape == (2, 1, 28, 28)
