"""Checks for lesson 10: the score from a noise prediction (Tweedie), and one step of DPM-Solver++(2M).

Both compare with the package (``solvers.dpmpp_2m_step``) or with a one-line closed form on fixed inputs, so a
check runs in milliseconds and needs no trained network.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lessons.checks.core import call, judge, report_pass
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import dpmpp_2m_step


# ---- lesson 10: the score -----------------------------------------------------------------------
def check_score_from_eps(fn: Callable[..., torch.Tensor]) -> None:
    """fn(schedule, eps, t) -> the score grad log q(x_t) = -eps / sqrt(1 - alpha_bar_t), per sample.

    eps: (B, C, H, W) float32; t: (B,) int64, one timestep per sample. The first batch has B equal to the
    width, so a (B,) tensor that was not reshaped broadcasts silently against the width and is named by value;
    in the second it cannot broadcast and ``call`` names it.
    """
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(12)
    cases = (
        (torch.randn(4, 1, 3, 4, generator=g), torch.tensor([999, 500, 37, 20])),  # B = W = 4
        (torch.randn(3, 1, 4, 5, generator=g), torch.tensor([120, 250, 750])),
    )
    for eps, t in cases:
        ab, ab_prev, a = (v[t].float().view(-1, 1, 1, 1) for v in (s.alpha_bar, s.alpha_bar_prev, s.alphas))
        # grad log q(x_t) = -E[eps | x_t] / sqrt(1 - alpha_bar_t), in float64: near t = 0, 1 - alpha_bar in float32
        # loses digits (the cases keep t >= 20, where both orders of rounding agree within the tolerance)
        expected = (-eps.double() / (1 - s.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)).float()
        mistakes = {
            "Divide by sqrt(1 - alpha_bar_t), the standard deviation of the noise in x_t, not by its variance "
            "1 - alpha_bar_t.": -eps / (1 - ab),
            "The sign: the score points towards the data, against the noise, so score = -eps / sqrt(1 - alpha_bar_t)"
            ".": eps / (1 - ab).sqrt(),
            "Divide by sqrt(1 - alpha_bar_t); multiplying gives eps_theta's scale back, not the score's.": (
                -eps * (1 - ab).sqrt()
            ),
            "Use alpha_bar_t of the sample's own step t (schedule.alpha_bar[t]), not alpha_bar_{t-1}.": (
                -eps / (1 - ab_prev).sqrt()
            ),
            "Use alpha_bar_t, the product up to t, not one step's alpha_t.": -eps / (1 - a).sqrt(),
        }
        if eps.shape[0] == eps.shape[-1]:
            flat = s.alpha_bar[t].float()  # (B,), not reshaped: it lines up with the width, not the batch
            mistakes[
                "Each sample has its own t: reshape alpha_bar[t] from (B,) to (B, 1, 1, 1) with .view(-1, 1, 1, 1). "
                "As (B,) it lined up with the last axis (the width) instead of the batch."
            ] = -eps / (1 - flat).sqrt()
        got = call("score from eps", fn, s, eps.clone(), t.clone())
        judge(
            f"score from eps (t={t.tolist()})",
            got,
            expected,
            mistakes,
            "score = -eps / sqrt(1 - alpha_bar_t), with alpha_bar_t of each sample's own t.",
        )
    report_pass("score from eps: -eps / sqrt(1 - alpha_bar_t) per sample, at t from 20 to 999")


# ---- lesson 10: one DPM-Solver++(2M) step ---------------------------------------------------------
def _step_variants(s: NoiseSchedule, xt, x0_hat, x0_hat_last, t, t_prev, t_last) -> dict[str, torch.Tensor]:
    """The known-wrong steps, hint -> value, computed from the same inputs."""
    alpha = {k: s.alpha_bar[k].item() ** 0.5 for k in (t, t_prev, t_last)}
    sigma = {k: (1 - s.alpha_bar[k].item()) ** 0.5 for k in (t, t_prev, t_last)}
    lam = {k: math.log(alpha[k] / sigma[k]) for k in (t, t_prev, t_last)}
    h, h_last = lam[t_prev] - lam[t], lam[t] - lam[t_last]  # both > 0
    r = h_last / h

    def step(D, h_step=h, ratio=sigma[t_prev] / sigma[t], a_prev=alpha[t_prev]):
        return ratio * xt - a_prev * math.expm1(-h_step) * D

    def mid(r_used):  # x0_hat extrapolated linearly in lambda by h / 2, written with r = h_last / h
        return (1 + 1 / (2 * r_used)) * x0_hat - 1 / (2 * r_used) * x0_hat_last

    ab = {k: s.alpha_bar[k].item() for k in (t, t_prev)}
    h_full = math.log(ab[t_prev] / (1 - ab[t_prev])) - math.log(ab[t] / (1 - ab[t]))  # the full log-SNR, 2 h
    return {
        "r is h_last / h, the previous step's length in lambda over this one's (Alg. 2: r_i = h_{i-1} / h_i); "
        "yours is the other way round.": step(mid(1 / r)),
        "h = lambda_{t_prev} - lambda_t is positive: lambda grows as the noise falls. Yours has the wrong sign.": (
            step(mid(-r), h_step=-h)
        ),
        "h = lambda_{t_prev} - lambda_t is positive: lambda grows as the noise falls. Yours has the wrong sign "
        "in the step.": step(mid(r), h_step=-h),
        "The factor on x_t is sigma_{t_prev} / sigma_t (the noise left over the noise now, below 1); yours is "
        "inverted.": step(mid(r), ratio=sigma[t] / sigma[t_prev]),
        "That is the first-order step (DDIM, eta = 0): it uses x0_hat alone. The second-order step uses "
        "x0_hat_last too, to extrapolate x0_hat to the middle of the step.": step(x0_hat),
        "D is x0_hat extrapolated to the MIDDLE of the step, lambda_t + h / 2, not to its end.": step(
            (1 + 1 / r) * x0_hat - 1 / r * x0_hat_last
        ),
        "lambda is the HALF log-SNR, log(alpha / sigma) = log(alpha_bar / (1 - alpha_bar)) / 2.": step(
            mid(r), h_step=h_full
        ),
        "alpha and sigma are standard deviations: alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar).": (
            (1 - ab[t_prev]) / (1 - ab[t]) * xt - ab[t_prev] * math.expm1(-h_full) * mid(r)
        ),
        "The x0 term is scaled by alpha_{t_prev}, where the step lands, not alpha_t.": step(mid(r), a_prev=alpha[t]),
    }


def check_dpmpp_2m_step(fn: Callable[..., torch.Tensor]) -> None:
    """fn(schedule, xt, x0_hat, x0_hat_last, t, t_prev, t_last) -> x_{t_prev}: one second-order step of
    DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) from t to t_prev, with the previous evaluation's x0_hat_last at
    t_last; xt, x0_hat, x0_hat_last: (B, C, H, W) float32, 0 <= t_prev < t < t_last < T."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(13)
    xt = torch.randn(3, 1, 4, 4, generator=g)
    x0_hat = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    x0_hat_last = (x0_hat + 0.5 * torch.randn(3, 1, 4, 4, generator=g)).clamp(-1, 1)
    for t_last, t, t_prev in ((999, 700, 400), (300, 200, 120), (60, 20, 0)):
        expected = dpmpp_2m_step(s, xt, x0_hat, t, t_prev, x0_hat_last, t_last)
        mistakes = _step_variants(s, xt, x0_hat, x0_hat_last, t, t_prev, t_last)
        got = call("dpm-solver++(2m) step", fn, s, xt.clone(), x0_hat.clone(), x0_hat_last.clone(), t, t_prev, t_last)
        judge(
            f"dpm-solver++(2m) step (t_last={t_last}, t={t} -> t_prev={t_prev})",
            got,
            expected,
            mistakes,
            "x_{t_prev} = sigma_{t_prev} / sigma_t x_t - alpha_{t_prev} (e^{-h} - 1) D, with D x0_hat extrapolated "
            "linearly in lambda to lambda_t + h / 2 (Lu et al. 2022, Alg. 2).",
        )
    report_pass("dpm-solver++(2m) step: matches Alg. 2 of Lu et al. 2022 (solvers.dpmpp_2m_step) on three steps")
