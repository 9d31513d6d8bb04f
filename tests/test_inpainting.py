"""RePaint against the closed form: for Gaussian data, the right completion of a hidden pixel is the
Gaussian conditional. With the exact eps-predictor of 2-pixel Gaussian data (correlation 0.9), known
pixel a = 0.5, the hidden pixel b must follow N(0.45, 0.218^2). Measured with 2,000 chains (seed 0, _completions
below): plain replacement (resample=1) gives mean 0.3048, RePaint with resample=10 gives 0.4329 (std 0.2203)."""

import pytest
import torch

from ddpm_lessons.inpainting import repaint
from ddpm_lessons.schedules import NoiseSchedule

S = NoiseSchedule.make("linear", 1000)
SIGMA = 0.25 * torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)  # std 0.5 per pixel, rho 0.9


def exact_eps(xt, t, y=None):
    """E[eps | x_t] for x_0 ~ N(0, SIGMA): x_t ~ N(0, C) with C = ab SIGMA + (1 - ab) I, so E[eps | x_t] = sqrt(1 - ab) C^-1 x_t."""
    ab = S.alpha_bar[t].view(-1, 1, 1)  # (B, 1, 1)
    C = ab * SIGMA + (1 - ab) * torch.eye(2, dtype=torch.float64)  # (B, 2, 2)
    return ((1 - ab).sqrt() * torch.linalg.solve(C, xt.reshape(-1, 2, 1).double())).reshape(xt.shape).float()


def _completions(resample: int) -> torch.Tensor:
    x0 = torch.zeros(2000, 1, 1, 2)
    x0[..., 0] = 0.5  # the known pixel; the value at the hidden one must not matter
    x0[..., 1] = 0.9
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    out = repaint(exact_eps, S, x0, mask, resample=resample, clip_x0=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[..., 0], x0[..., 0])  # known pixels come back exactly
    return out[..., 1].flatten()


def test_repaint_samples_the_gaussian_conditional_and_replacement_alone_does_not():
    mean = 0.9 * 0.5  # E[b | a] = rho (s_b / s_a) a
    std = (0.25 * (1 - 0.9**2)) ** 0.5  # sqrt(Var[b | a]) = s_b sqrt(1 - rho^2) = 0.218
    b = _completions(resample=10)
    assert b.mean().item() == pytest.approx(mean, abs=0.025)  # Monte Carlo error of the mean: 0.005
    assert b.std().item() == pytest.approx(std, abs=0.02)
    plain = _completions(resample=1)
    assert abs(plain.mean().item() - mean) > 0.1  # replacement alone does not harmonise: why RePaint resamples


def test_bad_masks_are_refused():
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="only 0"):
        repaint(exact_eps, S, x0, torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="does not broadcast"):
        repaint(exact_eps, S, x0, torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="resample"):
        repaint(exact_eps, S, x0, torch.ones(1, 1, 4, 4), resample=0)


def test_masks_hide_what_they_say():
    from ddpm_lessons.inpainting import make_mask

    box, half = make_mask("box", 2), make_mask("half", 2)
    assert box.shape == (2, 1, 28, 28) and (box == 0).sum().item() == 2 * 14 * 14 and box[0, 0, 14, 14] == 0
    assert (half[..., :14, :] == 1).all() and (half[..., 14:, :] == 0).all()
    pixels = make_mask("pixels", 200, hidden=0.8, generator=torch.Generator().manual_seed(0))
    assert (1 - pixels).mean().item() == pytest.approx(0.8, abs=0.01)  # 156,800 coin flips: std 0.001
    assert not torch.equal(pixels[0], pixels[1])  # each image its own pattern
    with pytest.raises(ValueError, match="choose one of box, half, pixels"):
        make_mask("circle", 1)


def test_hidden_rmse_counts_only_hidden_pixels():
    from ddpm_lessons.inpainting import hidden_rmse

    original = -torch.ones(1, 1, 2, 2)
    completed = torch.tensor([[[[1.0, -1.0], [0.0, 5.0]]]])  # errors in [0, 1] units: 1, 0, 0.5, 3
    mask = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # the 5.0 sits on a known pixel and must not count
    assert hidden_rmse(completed, original, mask) == pytest.approx(((1 + 0 + 0.25) / 3) ** 0.5)
    with pytest.raises(ValueError, match="hides no pixel"):
        hidden_rmse(completed, original, torch.ones(1, 1, 2, 2))
