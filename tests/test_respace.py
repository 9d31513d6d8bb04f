"""Respacing (Nichol & Dhariwal 2021, Sec. 4): a K-step chain that keeps alpha_bar at K of the T timesteps.
Checked by its defining property and by sampling with exact eps-predictors, whose answers are known."""

import pytest
import torch
from test_inpainting import exact_eps as two_pixel_gaussian_eps
from test_samplers import MU, STD, gaussian_eps

from ddpm_lessons.inpainting import repaint
from ddpm_lessons.samplers import ddim_timesteps, respace, sample_ddim, sample_ddpm
from ddpm_lessons.schedules import NoiseSchedule

S = NoiseSchedule.make("linear", 1000)


def test_all_steps_give_the_original_schedule_and_fewer_keep_alpha_bar_where_they_stop():
    model, same = respace(lambda xt, t: xt, S, 1000)
    assert torch.allclose(same.betas, S.betas, rtol=1e-12, atol=0)
    _, short = respace(lambda xt, t: xt, S, 50)
    kept = sorted(ddim_timesteps(1000, 50))
    assert short.T == 50 and kept[0] == 0 and kept[-1] == 999
    # the short chain's own product of (1 - beta') lands on the long chain's alpha_bar at every kept step
    assert torch.allclose(torch.cumprod(1 - short.betas, 0), S.alpha_bar[kept], rtol=1e-12, atol=0)


def test_the_respaced_model_sees_the_original_timesteps():
    seen = []
    model, _ = respace(lambda xt, t, y=None: seen.append((t.clone(), y)) or xt, S, 10)
    model(torch.zeros(2, 1, 2, 2), torch.tensor([0, 9]))
    model(torch.zeros(1, 1, 2, 2), torch.tensor([5]), torch.tensor([3]))
    assert seen[0][0].tolist() == [0, 999] and seen[0][1] is None
    assert seen[1][0].item() == sorted(ddim_timesteps(1000, 10))[5] and seen[1][1].item() == 3


def test_ddim_over_every_respaced_step_is_ddim_with_50_steps_on_the_original():
    """Two routes to the same chain: DDIM visits alpha_bar at the same 50 timesteps either way."""
    model, short = respace(gaussian_eps(S), S, 50)
    x_T = torch.randn(100, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    a = sample_ddim(model, short, x_T.shape, steps=50, clip_x0=False, x_T=x_T)
    b = sample_ddim(gaussian_eps(S), S, x_T.shape, steps=50, clip_x0=False, x_T=x_T)
    assert torch.allclose(a, b, atol=1e-6)


def test_ddpm_on_50_respaced_steps_reproduces_a_gaussian():
    """Measured (seed 0, 4,000 x 4 values): mean 0.301, std 0.516 with sigma^2 = beta', 0.442 with beta_tilde'.
    With big steps the two variance choices bracket the truth (0.5) more widely than with 1,000 (Ho et al. 3.2)."""
    model, short = respace(gaussian_eps(S), S, 50)  # the exact predictor is written for the 1000-step schedule
    std = {}
    for variance in ("beta", "beta_tilde"):
        x = sample_ddpm(model, short, (4000, 1, 2, 2), clip_x0=False, variance=variance,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert x.mean().item() == pytest.approx(MU, abs=0.02)
        std[variance] = x.std().item()
    assert std["beta"] == pytest.approx(STD, rel=0.05)
    assert std["beta_tilde"] < STD < std["beta"]


def test_repaint_on_50_respaced_steps_samples_the_gaussian_conditional():
    """As tests/test_inpainting.py with 20x fewer steps. Exact: mean 0.450, std 0.218. Measured (seed 0):
    mean 0.429, std 0.235 at 50 steps (the big steps' sigma^2 = beta' spreads a little, as for DDPM above);
    0.445, 0.225 at 250 steps; plain replacement at 1,000 steps is off by 0.13, which a wrong t would resemble."""
    model, short = respace(two_pixel_gaussian_eps, S, 50)
    x0 = torch.zeros(2000, 1, 1, 2)
    x0[..., 0] = 0.5
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    b = repaint(model, short, x0, mask, resample=10, clip_x0=False, generator=torch.Generator().manual_seed(0))
    b = b[..., 1].flatten()
    assert b.mean().item() == pytest.approx(0.45, abs=0.03)
    assert b.std().item() == pytest.approx(0.218, abs=0.03)
