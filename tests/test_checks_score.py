"""Lesson 10's checks: the score from eps and one DPM-Solver++(2M) step. A right answer passes; each usual mistake,
written the way a learner would write it, fails with its own hint."""

import math

import pytest
import torch

from ddpm_lessons import checks
from ddpm_lessons.checks import CheckFailed
from ddpm_lessons.checks.score import _step_variants
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import dpmpp_2m_step


def _passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("PASS ") and out.count("\n") == 1


# ---- the score from eps -----------------------------------------------------------------------------
def score(s, eps, t, *, table="alpha_bar", power=0.5, sign=-1.0, multiply=False, view=True):
    values = getattr(s, table)[t].float()
    values = values.view(-1, 1, 1, 1) if view else values
    scale = (1 - values) ** power
    return sign * (eps * scale if multiply else eps / scale)


def test_score_from_eps_passes_the_right_answer_and_an_autograd_one(capsys):
    _passes(checks.check_score_from_eps, score, capsys)

    def by_autograd(s, eps, t):  # -eps / sqrt(1 - alpha_bar) is the score of N(mean, 1 - alpha_bar) at mean + ...
        std = (1 - s.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
        x = (std * eps).double().requires_grad_()
        log_q = torch.distributions.Normal(0.0, std).log_prob(x).sum()
        return torch.autograd.grad(log_q, x)[0].float()

    _passes(checks.check_score_from_eps, by_autograd, capsys)


@pytest.mark.parametrize(
    "kwargs, hint",
    [
        (dict(power=1.0), "not by its variance"),
        (dict(sign=1.0), "The sign"),
        (dict(multiply=True), "multiplying gives eps_theta's scale back"),
        (dict(table="alpha_bar_prev"), "not alpha_bar_\\{t-1\\}"),
        (dict(table="alphas"), "not one step's alpha_t"),
        (dict(view=False), "reshape alpha_bar\\[t\\] from \\(B,\\) to \\(B, 1, 1, 1\\)"),
    ],
)
def test_score_from_eps_names_each_mistake(kwargs, hint):
    with pytest.raises(CheckFailed, match=hint):
        checks.check_score_from_eps(lambda s, eps, t: score(s, eps, t, **kwargs))


def test_score_from_eps_without_the_reshape_gets_the_broadcast_hint_where_shapes_do_not_fit():
    def reshaped_only_where_b_equals_w(s, eps, t):  # right on the first batch, (3,) against a width of 5 on the second
        return score(s, eps, t, view=eps.shape[0] == eps.shape[-1])

    with pytest.raises(CheckFailed, match="shapes do not fit together.*view\\(-1, 1, 1, 1\\)"):
        checks.check_score_from_eps(reshaped_only_where_b_equals_w)


def test_score_from_eps_in_float64_gets_the_dtype_hint():
    def float64(s, eps, t):
        return -eps / (1 - s.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)  # alpha_bar is float64

    with pytest.raises(CheckFailed, match="values are right but the dtype is torch.float64"):
        checks.check_score_from_eps(float64)


# ---- one DPM-Solver++(2M) step ------------------------------------------------------------------------
def step(s, xt, x0_hat, x0_hat_last, t, t_prev, t_last, *, mistake=None):
    """One DPM-Solver++(2M) step written from the lesson's description, with one deliberate mistake."""
    ab = {k: s.alpha_bar[k].item() for k in (t, t_prev, t_last)}
    if mistake == "variance":
        alpha, sigma = dict(ab), {k: 1 - v for k, v in ab.items()}
    else:
        alpha, sigma = {k: v**0.5 for k, v in ab.items()}, {k: (1 - v) ** 0.5 for k, v in ab.items()}
    lam = {k: math.log(alpha[k] / sigma[k]) for k in ab}
    if mistake in ("full_logsnr", "variance"):
        lam = {k: math.log(ab[k] / (1 - ab[k])) for k in ab} if mistake == "full_logsnr" else lam
    h, h_last = lam[t_prev] - lam[t], lam[t] - lam[t_last]
    if mistake == "h_sign":
        h = -h
    if mistake == "h_sign_both":
        h, h_last = -h, -h_last
    slope = (x0_hat - x0_hat_last) / h_last  # d x0_hat / d lambda, from the last two evaluations
    if mistake == "r_inverted":
        slope = (x0_hat - x0_hat_last) * h_last / h**2  # r = h / h_last where h_last / h belongs
    D = x0_hat + (h if mistake == "to_the_end" else h / 2) * slope
    if mistake == "first_order":
        D = x0_hat
    ratio = sigma[t] / sigma[t_prev] if mistake == "sigma_inverted" else sigma[t_prev] / sigma[t]
    a = alpha[t] if mistake == "alpha_t" else alpha[t_prev]
    return ratio * xt - a * math.expm1(-h) * D


def test_dpmpp_2m_step_passes_the_package_and_the_midpoint_form(capsys):
    _passes(checks.check_dpmpp_2m_step, step, capsys)
    package = lambda s, xt, x0, x0_last, t, t_prev, t_last: dpmpp_2m_step(s, xt, x0, t, t_prev, x0_last, t_last)  # noqa: E731
    _passes(checks.check_dpmpp_2m_step, package, capsys)


@pytest.mark.parametrize(
    "mistake, hint",
    [
        ("r_inverted", "yours is the other way round"),
        ("h_sign", "Yours has the wrong sign"),
        ("h_sign_both", "Yours has the wrong sign in the step"),
        ("sigma_inverted", "yours is\\s+inverted"),
        ("first_order", "That is the first-order step"),
        ("to_the_end", "to the MIDDLE of the step"),
        ("full_logsnr", "HALF log-SNR"),
        ("variance", "alpha and sigma are standard deviations"),
        ("alpha_t", "scaled by alpha_\\{t_prev\\}"),
    ],
)
def test_dpmpp_2m_step_names_each_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        checks.check_dpmpp_2m_step(lambda *a: step(*a, mistake=mistake))


def test_the_known_mistakes_differ_from_the_answer_and_from_each_other():
    """Otherwise a hint could name the wrong mistake, or a wrong answer could pass."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    xt, x0 = torch.randn(2, 1, 3, 3, generator=g), torch.rand(2, 1, 3, 3, generator=g) * 2 - 1
    x0_last = x0 + 0.3 * torch.randn(2, 1, 3, 3, generator=g)
    for t_last, t, t_prev in ((999, 700, 400), (300, 200, 120), (60, 20, 0)):
        right = dpmpp_2m_step(s, xt, x0, t, t_prev, x0_last, t_last)
        values = [right, *_step_variants(s, xt, x0, x0_last, t, t_prev, t_last).values()]
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                assert not torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-4)
