"""Our schedules and one reverse step against diffusers.DDPMScheduler, another implementation."""

import pytest
import torch

from ddpm_lessons.forward import p_mean_from_eps, q_posterior, q_sample
from ddpm_lessons.schedules import NoiseSchedule

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")

KINDS = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "quadratic": "scaled_linear",
    "sigmoid": "sigmoid",
}


@pytest.mark.parametrize("ours,theirs", KINDS.items())
def test_schedule_arrays_match(ours, theirs):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs)
    s = NoiseSchedule.make(ours, 1000)
    assert torch.allclose(s.betas.float(), ref.betas, rtol=1e-5, atol=1e-7)
    assert torch.allclose(s.alpha_bar.float(), ref.alphas_cumprod, rtol=1e-4, atol=1e-7)


def test_add_noise_matches_q_sample():
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000)
    s = NoiseSchedule.make("linear", 1000)
    x0, eps = torch.rand(4, 1, 8, 8) * 2 - 1, torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 1, 500, 999])
    assert torch.allclose(q_sample(s, x0, t, noise=eps), ref.add_noise(x0, eps, t), atol=1e-5)


@pytest.mark.parametrize("t", [0, 1, 37, 999])
def test_one_reverse_step_matches(t):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_small", clip_sample=False)
    ref.set_timesteps(1000)
    s = NoiseSchedule.make("linear", 1000)
    xt, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    out = ref.step(eps, t, xt, generator=torch.Generator().manual_seed(7))
    tt = torch.full((2,), t)
    mean = p_mean_from_eps(s, xt, tt, eps)  # Eq. 11
    _, var, _ = q_posterior(s, out.pred_original_sample, xt, tt)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    ours = mean + (var.sqrt() * noise if t > 0 else 0)  # Algorithm 2, line 4
    # diffusers keeps alpha_bar in float32, so 1 - alpha_bar near t = 0 carries a relative error
    # of about 3e-4 there; ours is computed in float64. Hence the tolerance.
    assert torch.allclose(ours, out.prev_sample, atol=1e-3)
