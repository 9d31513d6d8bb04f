"""The forward process: Eq. 4 against Eq. 2, Eqs. 6-7 against Bayes' rule, Eq. 15 as an inverse."""

import pytest
import torch

from ddpm_lessons.forward import (
    p_mean_from_eps,
    predict_eps_from_x0,
    predict_x0_from_eps,
    q_mean_variance,
    q_posterior,
    q_sample,
    q_step,
)
from ddpm_lessons.schedules import NoiseSchedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t", [0, 5, 40, 99])
def test_closed_form_eq4_matches_iterated_chain_eq2(kind, t):
    s = NoiseSchedule.make(kind, T=100)
    g = torch.Generator().manual_seed(t)
    x0 = torch.tensor([-0.9, 0.0, 0.3, 1.0], dtype=torch.float64)
    n = 100_000
    x = x0.expand(n, 4).clone()  # (n, 4): n Monte Carlo chains per pixel
    for step in range(t + 1):
        x = q_step(s, x, step, generator=g)  # Eq. 2, t + 1 times
    mean, var, _ = q_mean_variance(s, x0.expand(1, 4), t)  # Eq. 4
    se = (var.sqrt() / n**0.5).squeeze()
    assert torch.all((x.mean(0) - mean.squeeze()).abs() < 5 * se)
    assert torch.allclose(x.var(0), var.squeeze().expand(4), rtol=0.03)


def test_q_sample_uses_the_given_noise_and_generator():
    s = NoiseSchedule.make("linear", 1000)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    eps = torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 500, 999])
    ab = s.alpha_bar[t].float().view(3, 1, 1, 1)
    assert torch.allclose(q_sample(s, x0, t, noise=eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    a = q_sample(s, x0, t, generator=torch.Generator().manual_seed(1))
    b = q_sample(s, x0, t, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_posterior_eqs6_7_match_bayes_rule_on_a_grid(t):
    """q(x_{t-1} | x_t, x0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x0): integrate on a grid."""
    s = NoiseSchedule.make("linear", 1000)
    x0, xt = 0.6, -0.2
    grid = torch.linspace(-6, 6, 400_001, dtype=torch.float64)
    ab_prev, beta = s.alpha_bar_prev[t], s.betas[t]
    log_prior = -0.5 * (grid - ab_prev.sqrt() * x0) ** 2 / (1 - ab_prev)  # q(x_{t-1} | x0), Eq. 4
    log_lik = -0.5 * (xt - (1 - beta).sqrt() * grid) ** 2 / beta  # q(x_t | x_{t-1}), Eq. 2
    w = torch.exp(log_prior + log_lik - (log_prior + log_lik).max())
    w = w / w.sum()
    bayes_mean = (w * grid).sum()
    bayes_var = (w * (grid - bayes_mean) ** 2).sum()
    mean, var, log_var = q_posterior(
        s, torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), t
    )
    assert mean.item() == pytest.approx(bayes_mean.item(), abs=1e-6)
    assert var.item() == pytest.approx(bayes_var.item(), rel=1e-4)
    assert log_var.item() == pytest.approx(bayes_var.log().item(), rel=1e-4)


def test_posterior_at_t0_is_x0():
    s = NoiseSchedule.make("linear", 1000)
    x0, xt = torch.rand(2, 3) * 2 - 1, torch.randn(2, 3)
    mean, var, log_var = q_posterior(s, x0, xt, 0)
    assert torch.allclose(mean, x0) and float(var.max()) == 0.0 and torch.isfinite(log_var).all()


def test_predict_x0_from_eps_inverts_q_sample():
    s = NoiseSchedule.make("cosine", 1000)
    x0 = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 998])
    xt = q_sample(s, x0, t, noise=eps)
    assert torch.allclose(predict_x0_from_eps(s, xt, t, eps), x0, atol=1e-10)
    assert torch.allclose(predict_eps_from_x0(s, xt, t, x0), eps, atol=1e-10)


def test_eq11_mean_equals_posterior_mean_at_predicted_x0():
    """Eq. 11 is Eq. 7 with x0 replaced by its Eq. 15 estimate: two routes, one answer."""
    s = NoiseSchedule.make("linear", 1000)
    xt = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    eps = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([1, 2, 100, 600, 999])
    via_posterior, _, _ = q_posterior(s, predict_x0_from_eps(s, xt, t, eps), xt, t)
    assert torch.allclose(p_mean_from_eps(s, xt, t, eps), via_posterior, atol=1e-9)


def test_bad_inputs_name_the_problem():
    s = NoiseSchedule.make("linear", 1000)
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"valid t: 0\.\.999"):
        q_sample(s, x0, torch.tensor([0, 1000]))
    with pytest.raises(TypeError, match="from_uint8"):
        q_sample(s, torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 3)
    with pytest.raises(ValueError, match=r"\[0, 255\].*must lie in \[-1, 1\].*uint8"):
        q_sample(s, torch.full((2, 1, 4, 4), 255.0).index_fill_(0, torch.tensor([0]), 0.0), 3)
    with pytest.raises(ValueError, match="t has 3 entries but the batch has 2"):
        q_sample(s, x0, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="x0 and noise must have the same shape"):
        q_sample(s, x0, 1, noise=torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        q_sample(s, torch.full((1, 1, 2, 2), float("nan")), 1)
