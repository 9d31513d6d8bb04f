"""Fast solvers of the probability-flow ODE over any eps-model, and every sampler by name.

Two second-order solvers whose first-order step is DDIM with eta = 0: DPM-Solver++(2M) (Lu et al. 2022)
and Heun's method (Karras et al. 2022); and UniPC (Zhao et al. 2023), a multistep predictor of the same form
with a corrector that adds one order at no extra model evaluation. Their ``steps`` counts model evaluations (a
guided evaluation of a doubled batch counts once). The two multistep solvers also run on a flow model's straight
path (:func:`sample_flow_multistep`). :func:`sample_in_batches` draws many samples with any of the package's
samplers, by name (``SAMPLERS``), as the command line's ``sample`` does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ddpm_lessons.flow import check_flow_shift, check_flow_steps, flow_timesteps, sample_flow, velocity
from ddpm_lessons.forward import predict_eps_from_x0, predict_x0_from_eps
from ddpm_lessons.objectives import as_eps_model
from ddpm_lessons.samplers import ddim_timesteps, draw_x_T, guided_eps, sample_ddim, sample_ddpm, sampling_device
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.utils import TimeEstimate
from ddpm_lessons.utils import progress as progress_bar

# The probability-flow ODE (Song et al. 2021, Eq. 13) of the forward process, in two coordinates.
# With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t) and the
# data prediction x0_hat(x_t, t) of Eq. (15), it is linear in x_t but for x0_hat (Lu et al. 2022, Sec. 3):
#     x_t' = sigma_t' / sigma_t x_t + sigma_t' int_{lambda_t}^{lambda_t'} e^lambda x0_hat d lambda,
# and in x_hat = x_t / alpha_t, sigma_hat = sigma_t / alpha_t (Karras et al. 2022, the VP case of Table 1):
#     d x_hat / d sigma_hat = eps_theta.
# Holding x0_hat constant over a step is DDIM with eta = 0, and so is one Euler step in sigma_hat: all three
# first-order steps are the same update (checked in tests/test_solvers.py).


def _check_steps(T: int, steps: int, caller: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(
            f"{caller}: steps={steps!r} counts model evaluations and must be an int in 1..T={T}; "
            f"pass steps between 1 and {T} (20 is a good start)"
        )


def _denoise(model, schedule, x, t, y, guidance, clip_x0):
    """One model evaluation at int t: (x0_hat, eps), with eps recomputed from x0_hat where it is clipped."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    eps = guided_eps(model, x, t_batch, y, guidance)  # one call, a doubled batch where guided
    x0_hat = predict_x0_from_eps(schedule, x, t_batch, eps)  # Eq. (15) of Ho et al.
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps = predict_eps_from_x0(schedule, x, t_batch, x0_hat)
    return x0_hat, eps


SPACINGS = ("time", "logsnr", "karras")  # how a solver spreads its model evaluations over the timesteps


def check_grid(timesteps: Sequence[int], steps: int, T: int) -> list[int]:
    """A grid given as its timesteps: ``steps`` ints, strictly decreasing, in 0..T-1; returned as a list, or a
    ValueError that says what is wrong with it."""
    grid = list(timesteps)
    if len(grid) != steps or not all(isinstance(t, int) and not isinstance(t, bool) for t in grid):
        raise ValueError(f"the solver visits {steps} timesteps here: give {steps} ints, largest first, got {grid!r}")
    if any(a <= b for a, b in zip(grid, grid[1:], strict=False)) or not 0 <= grid[-1] <= grid[0] <= T - 1:
        raise ValueError(f"the timesteps {grid} must fall strictly from at most T-1 = {T - 1} to at least 0; "
                         f"give them largest first, as {T - 1}, ..., 0")  # fmt: skip
    return grid


def parse_grid(text: str) -> str | tuple[int, ...]:
    """A grid as a command line gives it: a name of ``SPACINGS``, or timesteps as "999,701,441,229,100" (checked by
    :func:`check_grid` once the sampler and schedule are known); a ValueError that names both forms otherwise."""
    if text in SPACINGS:
        return text
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"must be one of {', '.join(SPACINGS)} or timesteps separated by commas, as "
                         f"999,701,441,229,100; got {text!r}") from None  # fmt: skip


def solver_timesteps(schedule: NoiseSchedule, steps: int, spacing: str | Sequence[int] = "time") -> list[int]:
    """The ``steps`` timesteps a solver evaluates the model at, largest first; the step after the last one goes
    to alpha_bar = 1 (t = -1) with that evaluation's x0_hat. ``spacing`` names a grid, below, or is the timesteps
    themselves (:func:`check_grid`).

    Each grid is steps + 1 points from t = T-1 down to t = 0, spread evenly in its own variable, of which the
    first ``steps`` are evaluated:

    - ``"time"``: evenly in t. Unlike DDIM's grid
      (:func:`~ddpm_lessons.samplers.ddim_timesteps`, which spends its last evaluation at t = 0, where x_0 is
      nearly clean), the last evaluation is at about T / steps and its x0_hat is the sample.
    - ``"logsnr"``: evenly in the half log-SNR lambda_t = log(alpha_t / sigma_t), the variable in which
      DPM-Solver's steps have their order ("uniform logSNR" of the DPM-Solver paper, Lu et al. 2022,
      arXiv:2206.00927, Sec. 3.3).
    - ``"karras"``: sigma_hat = sigma_t / alpha_t spaced as sigma_i^(1/rho) evenly with rho = 7 (Karras et al.
      2022, Eq. 5).

    Each point is rounded to the nearest timestep (in t, or in lambda); should two round to one, the earlier
    (noisier) one moves up by one, so the list is strictly decreasing. With as many evaluations as timesteps, or
    nearly, there is no room to move up: the grid is then DDIM's, evenly over T-1..0 with t = 0 evaluated.
    """
    T = schedule.T
    _check_steps(T, steps, "solver_timesteps")
    if not isinstance(spacing, str):
        return check_grid(spacing, steps, T)
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}, or give the timesteps")
    lam = 0.5 * (schedule.alpha_bar.log() - (1 - schedule.alpha_bar).log())  # lambda_t, increasing as t falls
    if spacing == "time":
        ts = torch.linspace(T - 1, 0, steps + 1, dtype=torch.float64)[:-1].round().long().tolist()
    else:
        if spacing == "logsnr":
            targets = torch.linspace(lam[-1].item(), lam[0].item(), steps + 1, dtype=torch.float64)[:-1]
        else:
            rho, s_max, s_min = 7.0, (-lam[-1]).exp().item(), (-lam[0]).exp().item()  # sigma_hat = e^{-lambda}
            ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)[:-1]
            targets = -((s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho).log()
        ts = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()  # nearest timestep in lambda
    for i in range(len(ts) - 2, -1, -1):  # two on one timestep (at the low-noise end, where lambda moves fast
        ts[i] = max(ts[i], ts[i + 1] + 1)  # per step): the earlier, noisier one moves up, where t is fine-grained
    if ts[0] > T - 1:  # as many points as timesteps, or nearly: there is no room to move up
        return ddim_timesteps(T, steps)
    return ts


def _alpha_sigma(schedule: NoiseSchedule, t: int) -> tuple[float, float]:
    """alpha_t = sqrt(alpha_bar_t) and sigma_t = sqrt(1 - alpha_bar_t); t = -1 is the end, alpha 1 and sigma 0."""
    alpha_bar = schedule.alpha_bar[t].item() if t >= 0 else 1.0
    return alpha_bar**0.5, (1.0 - alpha_bar) ** 0.5


def _lambda(schedule: NoiseSchedule, t: int) -> float:
    """lambda_t = log(alpha_t / sigma_t), half the log-SNR (Lu et al. 2022, Sec. 2); t >= 0."""
    return _lam(_alpha_sigma(schedule, t))


# The steps below hold for any Gaussian path x = alpha x0 + sigma eps, not only the schedule's (where alpha^2 +
# sigma^2 = 1): scaling x, alpha and sigma by one factor c at each point scales the update by that point's c (its
# terms are sigma' / sigma x and alpha' times data predictions). So the same steps solve the flow path x_s = (1 - s) x0
# + s eps (alpha = 1 - s, sigma = s; flow.py) with x0_hat = x_s - s v. A point is its (alpha, sigma).


def _lam(point: tuple[float, float]) -> float:
    """lambda = log(alpha / sigma) of a point (alpha, sigma) with sigma > 0 (Lu et al. 2022, Sec. 2); -inf at pure
    noise (alpha = 0)."""
    alpha, sigma = point
    return math.log(alpha / sigma) if alpha > 0 else -math.inf


def _exp_step(xt, x0_hat, now, to, last=None):
    """DPM-Solver++(2M)'s step (Lu et al. 2022, Alg. 2) from the point ``now`` to ``to`` (alpha, sigma each), with
    ``last`` = (x0_hat_last, its point) for the second order, or None; see :func:`dpmpp_2m_step`. From pure noise
    (alpha = 0) h is infinite, e^{-h} = 0 and the step is x' = sigma' / sigma x + alpha' x0_hat; after it, r is
    infinite and the step first order: the limits of Alg. 2's formulas."""
    alpha_to, sigma_to = to
    if sigma_to == 0:
        return x0_hat  # lambda -> infinity: e^{-h} = 0, sigma' = 0 (alpha' = 1 at the end of both paths here)
    h = _lam(to) - _lam(now)  # lambda' - lambda > 0
    D = x0_hat
    if last is not None:
        x0_hat_last, at_last = last
        r = (_lam(now) - _lam(at_last)) / h  # Alg. 2: r_i = h_{i-1} / h_i
        D = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_hat_last  # Alg. 2: D_i
    return sigma_to / now[1] * xt - alpha_to * math.expm1(-h) * D  # Alg. 2: x_{t_i}


def _unip(xt, x0_hat, now, to, last=None, b="h"):
    """The UniP-2 step between two points (alpha, sigma); see :func:`unip_step`."""
    if last is None or to[1] == 0:
        return _exp_step(xt, x0_hat, now, to)  # first order: the DDIM step, or x0_hat at the end
    alpha_to, sigma_to = to
    h = _lam(to) - _lam(now)
    x0_hat_last, at_last = last
    r = (_lam(at_last) - _lam(now)) / h  # < 0 (-inf after pure noise: the step is first order)
    B = -h if b == "h" else math.expm1(-h)
    D = (x0_hat_last - x0_hat) / r
    return sigma_to / now[1] * xt - alpha_to * math.expm1(-h) * x0_hat - alpha_to * B * D / 2  # UniP-2, Sec. 3.2


def _unic(x_s, x0_hat_s, at_s, at_t, x0_hat_t, last=None, b="h"):
    """The UniC corrector between two points (alpha, sigma); see :func:`unic_step`. None from pure noise, where h
    is infinite: B(h) = -h is too (B = e^{-h} - 1 would have a limit; neither corrects there), and the point the first
    step reached stays as it is."""
    if at_s[0] == 0:
        return None
    alpha_t, sigma_t = at_t
    h = _lam(at_t) - _lam(at_s)
    z = -h
    B = z if b == "h" else math.expm1(z)
    D_t = x0_hat_t - x0_hat_s  # r = 1
    if last is None:
        correction = 0.5 * D_t
    else:
        x0_hat_last, at_last = last
        r = (_lam(at_last) - _lam(at_s)) / h  # < 0: the last evaluation lies before s
        g1, g2 = z * phi(2, z) / B, 2 * z * phi(3, z) / B  # the order conditions' right-hand sides, Sec. 3.1
        a_last = (g1 - g2) / (1 - r)  # a_last + a_t = g1 and r a_last + a_t = g2
        correction = a_last * (x0_hat_last - x0_hat_s) / r + (g1 - a_last) * D_t
    return sigma_t / at_s[1] * x_s - alpha_t * math.expm1(-h) * x0_hat_s - alpha_t * B * correction  # UniC, Sec. 3.1


def _check_multistep(schedule, t, t_prev, x0_hat_last, t_last, caller) -> None:
    if not -1 <= t_prev < t:
        raise ValueError(f"{caller} goes backwards: need -1 <= t_prev < t, got t={t}, t_prev={t_prev}")
    if (x0_hat_last is None) != (t_last is None):
        raise ValueError(f"{caller}: pass both x0_hat_last and t_last (second order) or neither (first order)")
    if t_last is not None and not t < t_last < schedule.T:
        raise ValueError(f"{caller}: the last evaluation comes before this one: need t < t_last < T, got "
                         f"t={t}, t_last={t_last}")  # fmt: skip


def dpmpp_2m_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    x0_hat: torch.Tensor,
    t: int,
    t_prev: int,
    x0_hat_last: torch.Tensor | None = None,
    t_last: int | None = None,
) -> torch.Tensor:
    """One step of DPM-Solver++(2M) from step t to an earlier step t_prev, Alg. 2 of Lu et al. 2022.

        x_{t'} = sigma_{t'} / sigma_t x_t - alpha_{t'} (e^{-h} - 1) D,    h = lambda_{t'} - lambda_t

    with D = x0_hat for the first-order step (which is DDIM's step with eta = 0), or, given the previous
    evaluation's x0_hat_last at t_last > t, the multistep estimate D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_last,
    r = (lambda_t - lambda_{t_last}) / h. ``t_prev = -1`` is "after the last step" (alpha 1, sigma 0, h
    infinite): the step is first order there and returns x0_hat. xt, x0_hat, x0_hat_last: (B, C, H, W);
    x0_hat is the (possibly clipped) data prediction at (xt, t). Returns x_{t'} (B, C, H, W).
    """
    _check_multistep(schedule, t, t_prev, x0_hat_last, t_last, "dpmpp_2m_step")
    last = None if x0_hat_last is None else (x0_hat_last, _alpha_sigma(schedule, t_last))
    return _exp_step(xt, x0_hat, _alpha_sigma(schedule, t), _alpha_sigma(schedule, t_prev), last)


def phi(k: int, z: float) -> float:
    """phi_k(z) = int_0^1 e^{(1 - u) z} u^{k-1} / (k-1)! du, the weights of exponential integrators, in the order
    conditions of UniC (Zhao et al. 2023, Sec. 3.1; :func:`unic_step`): phi_0(z) = e^z and
    phi_{k+1}(z) = (phi_k(z) - 1/k!) / z, or the series sum_j z^j / (j + k)! where that recursion cancels (small z)."""
    if abs(z) < 0.5:
        return sum(z**j / math.factorial(j + k) for j in range(20))
    value = math.exp(z)
    for i in range(k):
        value = (value - 1 / math.factorial(i)) / z
    return value


B_FUNCTIONS = ("h", "expm1")  # UniC's B(h) with z = -h: "h" is B = z (bh1), "expm1" is B = e^z - 1 (bh2)


def _check_b(b: str, caller: str) -> None:
    if b not in B_FUNCTIONS:
        raise ValueError(f"{caller}: unknown B(h) {b!r}; choose one of {', '.join(B_FUNCTIONS)}")


def unic_step(
    schedule: NoiseSchedule,
    x_s: torch.Tensor,
    x0_hat_s: torch.Tensor,
    t_s: int,
    t: int,
    x0_hat_t: torch.Tensor,
    x0_hat_last: torch.Tensor | None = None,
    t_last: int | None = None,
    b: str = "h",
) -> torch.Tensor:
    """The UniC corrector (Zhao et al. 2023, "UniPC", arXiv:2302.04867, Sec. 3.1) in data-prediction form: a
    better x_t from the previous point x_s (at step t_s > t) once the model has been evaluated at the
    predictor's x_t, with no further evaluation (the next step reuses that evaluation).

        x_t^c = sigma_t / sigma_s x_s - alpha_t (e^{-h} - 1) x0_hat_s - alpha_t B(h) sum_m a_m D_m,

    h = lambda_t - lambda_s, with the differences D_m = (x0_hat_m - x0_hat_s) / r_m of the data predictions at
    r_m = (lambda_m - lambda_s) / h: the one at t (r = 1) and, given x0_hat_last at t_last > t_s, the one before.
    With both, the weights a solve the order conditions sum_m a_m r_m^(i-1) = i! z phi_{i+1}(z) / B(h), i = 1, 2,
    z = -h (Zhao et al., Sec. 3.1, with the phi of :func:`phi`), and the corrected step is third order where the
    predictor's is second; with the one at t alone, a = 1/2 (the trapezoidal rule; the UniPC authors' choice for the
    first step). ``b``: B(h) = z ("h", their bh1) or e^z - 1 ("expm1", bh2). All tensors (B, C, H, W).
    """
    _check_b(b, "unic_step")
    if not 0 <= t < t_s or (t_last is not None and not t_s < t_last < schedule.T):
        raise ValueError(f"unic_step goes backwards: need 0 <= t < t_s < t_last < T, got t={t}, t_s={t_s}, "
                         f"t_last={t_last}")  # fmt: skip
    if (x0_hat_last is None) != (t_last is None):
        raise ValueError("unic_step: pass both x0_hat_last and t_last (second order) or neither (first order)")
    last = None if x0_hat_last is None else (x0_hat_last, _alpha_sigma(schedule, t_last))
    return _unic(x_s, x0_hat_s, _alpha_sigma(schedule, t_s), _alpha_sigma(schedule, t), x0_hat_t, last, b)


def _run_multistep(x, points, denoise, predict, correct, name, progress, return_trajectory):
    """The loop of the multistep solvers over any Gaussian path: ``points`` are the (alpha, sigma) of the grid, the
    last one the end (sigma = 0); ``denoise(x, i)`` evaluates the model at x and point i and returns x0_hat. One
    evaluation per point but the last, then ``predict`` (:func:`_exp_step` or :func:`_unip`) to the next point;
    with ``correct`` (:func:`_unic`), the point each evaluation was made at is first corrected with it. Returns
    what :func:`sample_dpmpp_2m` returns."""
    trajectory = [x.cpu()] if return_trajectory else None
    clock = TimeEstimate(f"{name} sampling", len(points) - 1, unit="network call")
    last, before_last = None, None  # (x0_hat, point) of the previous two evaluations
    x_before = None  # the point the previous step started from
    for i in progress_bar(range(len(points) - 1), desc=name, disable=not progress, transient=True):
        now, to = points[i], points[i + 1]
        x0_hat = denoise(x, i)
        clock.tick()
        if correct is not None and i > 0:  # the predicted x, corrected with the evaluation just made there
            corrected = correct(x_before, last[0], last[1], now, x0_hat, before_last)
            if corrected is not None:
                x = corrected
                if trajectory is not None:
                    trajectory[-1] = x.cpu()
        x_before, before_last = x, last
        x = predict(x, x0_hat, now, to, last)
        last = (x0_hat, now)
        if trajectory is not None:
            trajectory.append(x.cpu())
    return (x, trajectory) if return_trajectory else x


def _multistep(model, schedule, shape, steps, y, guidance, clip_x0, generator, device, dtype, x_T, return_trajectory,
               progress, spacing, caller, name, predict, correct=None):  # fmt: skip
    """The multistep solvers on the schedule: one evaluation per timestep of :func:`solver_timesteps`, then the end
    (t = -1: alpha_bar = 1)."""
    _check_steps(schedule.T, steps, caller)
    ts = solver_timesteps(schedule, steps, spacing)
    x = draw_x_T(shape, generator, device, dtype, x_T, model)
    points = [_alpha_sigma(schedule, t) for t in [*ts, -1]]
    return _run_multistep(x, points, lambda x, i: _denoise(model, schedule, x, ts[i], y, guidance, clip_x0)[0],
                          predict, correct, name, progress, return_trajectory)  # fmt: skip


@torch.no_grad()
def sample_dpmpp_2m(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    steps: int = 20,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    spacing: str | Sequence[int] = "time",
):
    """DPM-Solver++(2M), Alg. 2 of Lu et al. 2022: a second-order multistep solver of the probability-flow ODE.

        x_{t'} = sigma_{t'} / sigma_t x_t - alpha_{t'} (e^{-h} - 1) D   (see :func:`dpmpp_2m_step`)

    It visits the timesteps of :func:`solver_timesteps`, one model evaluation each (a guided evaluation is one
    call on a doubled batch), and reuses the previous evaluation's x0_hat for the second order. ``spacing``:
    even in t by default, the grid with the lowest Frechet distance on the shipped digits model at 5 and 10
    evaluations of the named ones (benchmarks/README.md, "Few model evaluations"); on Gaussian data, where the
    ODE's solution is known, "logsnr" is far more accurate at few evaluations (tests/test_solvers.py); or the
    timesteps themselves, ``steps`` of them, largest first (a grid chosen for one model). The first step has no
    previous evaluation and the last one goes to alpha_bar = 1, so both are first order, the DDIM step with
    eta = 0. Deterministic given x_T; ``generator`` draws x_T only. ``clip_x0``
    clips each x0_hat to [-1, 1] (the "thresholding" the paper pairs with the data prediction).
    Arguments and return value as :func:`sample_ddim`; the trajectory has steps + 1 entries.
    """
    return _multistep(model, schedule, shape, steps, y, guidance, clip_x0, generator, device, dtype, x_T,
                      return_trajectory, progress, spacing, "sample_dpmpp_2m", "DPM-Solver++(2M)",
                      _exp_step)  # fmt: skip


def unip_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    x0_hat: torch.Tensor,
    t: int,
    t_prev: int,
    x0_hat_last: torch.Tensor | None = None,
    t_last: int | None = None,
    b: str = "h",
) -> torch.Tensor:
    """One step of the UniP-2 predictor (Zhao et al. 2023, Sec. 3.2) in data-prediction form, from t to t_prev < t:

        x_{t'} = sigma_{t'} / sigma_t x_t - alpha_{t'} (e^{-h} - 1) x0_hat - alpha_{t'} B(h) D / 2,

    h = lambda_{t'} - lambda_t, D = (x0_hat_last - x0_hat) / r, r = (lambda_{t_last} - lambda_t) / h < 0; without
    a last evaluation, and to t_prev = -1, the DDIM step with eta = 0 (as :func:`dpmpp_2m_step`). With B(h) = e^{-h}
    - 1 (``b="expm1"``) this is the step of DPM-Solver++(2M) (checked in tests/test_solvers.py); the UniPC authors'
    code defaults to B(h) = -h (``b="h"``). Arguments as :func:`dpmpp_2m_step`."""
    _check_b(b, "unip_step")
    _check_multistep(schedule, t, t_prev, x0_hat_last, t_last, "unip_step")
    last = None if x0_hat_last is None else (x0_hat_last, _alpha_sigma(schedule, t_last))
    return _unip(xt, x0_hat, _alpha_sigma(schedule, t), _alpha_sigma(schedule, t_prev), last, b)


@torch.no_grad()
def sample_unipc(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    steps: int = 20,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    spacing: str | Sequence[int] = "time",
    b: str = "h",
):
    """UniPC (Zhao et al. 2023) of order 2: the UniP-2 predictor (:func:`unip_step`), and after each step but the
    last, the UniC corrector (:func:`unic_step`), which corrects the point reached with the evaluation made there;
    the next step then uses that evaluation as it is, so the corrector costs no evaluation and adds one order (3
    instead of 2 on Gaussian data, tests/test_solvers.py). With ``b="expm1"`` the predictor is DPM-Solver++(2M);
    the default, B(h) = -h, is "bh1", the default of the UniPC authors' code. The last evaluation's x0_hat is the
    sample, as in :func:`sample_dpmpp_2m`, whose arguments and return value these are (the trajectory holds each
    visited point as corrected).
    """
    _check_b(b, "sample_unipc")  # before any evaluation
    return _multistep(model, schedule, shape, steps, y, guidance, clip_x0, generator, device, dtype, x_T,
                      return_trajectory, progress, spacing, "sample_unipc", "UniPC", functools.partial(_unip, b=b),
                      functools.partial(_unic, b=b))  # fmt: skip


FLOW_MULTISTEP = ("dpmpp-2m", "unipc")  # the multistep solvers of sample_flow_multistep


@torch.no_grad()
def sample_flow_multistep(
    model: Callable[..., torch.Tensor],
    shape: tuple[int, ...],
    steps: int = 10,
    method: str = "unipc",
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    shift: float = 1.0,
    b: str = "h",
):
    """DPM-Solver++(2M) or UniPC (``method`` "dpmpp-2m" or "unipc") on a flow model's ODE, from x_1 ~ N(0, I) at
    s = 1 to s = 0 with ``steps`` model evaluations.

    The flow path x_s = (1 - s) x0 + s eps (flow.py) is a Gaussian path with alpha = 1 - s and sigma = s, and the
    velocity gives the data prediction x0_hat = x_s - s v_theta(x_s, s); the steps of :func:`sample_dpmpp_2m` and
    :func:`sample_unipc` hold on any such path (see :func:`_lam`), with lambda = log((1 - s) / s). The grid is
    :func:`flow.flow_timesteps` (steps + 1 flow times, ``shift`` moving them towards the noise): the model is
    evaluated at the first ``steps`` of them and the step into s = 0 returns the last x0_hat, as on the schedule.
    At s = 1, lambda = -inf: the first step, x' = s' x + (1 - s') x0_hat, is the Euler step; the step after it
    is first order too (its ratio r is infinite) and, for UniPC, the point the first step reaches is not corrected
    (h is infinite there) and the next one is corrected with the newest difference alone (the order conditions'
    limit as r -> -inf). Nothing is clipped. ``b``: UniPC's B(h), as in :func:`sample_unipc`. Deterministic given
    x_T; ``generator`` draws x_T only; arguments and return value as :func:`flow.sample_flow` (the trajectory
    holds steps + 1 points, each as corrected).
    """
    if method not in FLOW_MULTISTEP:
        raise ValueError(f"sample_flow_multistep: method must be one of {', '.join(FLOW_MULTISTEP)}, got {method!r}")
    check_flow_steps(steps, "sample_flow_multistep")
    _check_b(b, "sample_flow_multistep")
    grid = flow_timesteps(steps, shift)  # checks the shift
    x = draw_x_T(shape, generator, device, dtype, x_T, model)

    def denoise(x, i):
        return x - grid[i] * velocity(model, x, grid[i], y, guidance)  # x0_hat = x_s - s v (Liu et al. 2023, Eq. 1)

    points = [(1.0 - s, s) for s in grid]  # (alpha, sigma) of x_s = (1 - s) x0 + s eps (Liu et al. 2023, Eq. 1)
    predict, correct = (_exp_step, None) if method == "dpmpp-2m" else (functools.partial(_unip, b=b),
                                                                       functools.partial(_unic, b=b))  # fmt: skip
    name = {"dpmpp-2m": "flow DPM-Solver++(2M)", "unipc": "flow UniPC"}[method]
    return _run_multistep(x, points, denoise, predict, correct, name, progress, return_trajectory)


def heun_timesteps(
    schedule: NoiseSchedule, steps: int, spacing: str | Sequence[int] = "karras"
) -> tuple[list[int], int]:
    """The grid of :func:`sample_heun` for ``steps`` model evaluations, and how many of its steps are Heun steps.

    N steps of Karras et al.'s Alg. 1 over sigma_0 > ... > sigma_{N-1} > sigma_N = 0 cost 2N - 1 evaluations:
    two per Heun step and one for the last step, which is Euler because sigma_N = 0. So ``steps`` = 2N - 1
    evaluations visit N = (steps + 1) / 2 timesteps of :func:`solver_timesteps` (Karras et al.'s rho = 7 spacing
    by default, or the N timesteps given as ``spacing``); an even ``steps`` visits steps / 2 + 1 of them and makes
    the first step Euler too (at high noise the path is nearly straight).
    Returns (the visited timesteps, largest first, then -1 for sigma = 0; the number of Heun steps).
    """
    _check_steps(schedule.T, steps, "heun_timesteps")
    n = steps // 2 + 1
    return solver_timesteps(schedule, n, spacing) + [-1], (steps - 1) // 2


@torch.no_grad()
def sample_heun(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    steps: int = 19,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    spacing: str | Sequence[int] = "karras",
):
    """Heun's second-order method on the probability-flow ODE, Alg. 1 of Karras et al. 2022 (S_churn = 0).

        d x_hat / d sigma = eps_theta(x_t, t),   x_hat = x_t / sqrt(alpha_bar_t),
        sigma = sqrt((1 - alpha_bar_t) / alpha_bar_t)

    over the sigmas of the timesteps of :func:`heun_timesteps`, ending at sigma = 0 (alpha_bar = 1), with the
    model evaluated at the timestep whose sigma is used. ``steps`` counts model evaluations: N steps of the
    method cost 2N - 1 of them (the last step is Euler), so an odd ``steps`` is N = (steps + 1) / 2 steps, and
    an even one adds an Euler first step. An Euler step is DDIM's step with eta = 0. ``clip_x0`` clips the
    denoised D = x0_hat to [-1, 1] before d = (x_hat - D) / sigma. Deterministic given x_T; ``generator``
    draws x_T only. Arguments and return value as :func:`sample_ddim`; the trajectory holds x_t (not x_hat)
    at each visited timestep and the result: steps // 2 + 2 entries.
    """
    _check_steps(schedule.T, steps, "sample_heun")
    ts, n_heun = heun_timesteps(schedule, steps, spacing)
    euler_first = n_heun < len(ts) - 2  # an even number of evaluations
    x = draw_x_T(shape, generator, device, dtype, x_T, model)
    trajectory = [x.cpu()] if return_trajectory else None
    clock = TimeEstimate("Heun sampling", steps, unit="network call")
    alpha, sigma = _alpha_sigma(schedule, ts[0])
    x_hat, sigma = x / alpha, sigma / alpha  # Karras Alg. 1, line 2 in x_hat = x / s(t), s = sqrt(alpha_bar)
    for i in progress_bar(range(len(ts) - 1), desc="Heun", disable=not progress, transient=True):
        t, t_next = ts[i], ts[i + 1]
        alpha_next, sigma_next = _alpha_sigma(schedule, t_next)
        sigma_next = sigma_next / alpha_next
        _, d = _denoise(model, schedule, x_hat * alpha, t, y, guidance, clip_x0)  # line 4: d = (x_hat - D) / sigma
        clock.tick()
        x_next = x_hat + (sigma_next - sigma) * d  # line 5: Euler step
        if t_next >= 0 and not (i == 0 and euler_first):  # line 6: sigma_next != 0
            _, d_next = _denoise(model, schedule, x_next * alpha_next, t_next, y, guidance, clip_x0)  # line 7
            clock.tick()
            x_next = x_hat + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)  # line 8: the trapezoidal rule
        x_hat, alpha, sigma = x_next, alpha_next, sigma_next
        if trajectory is not None:
            trajectory.append((x_hat * alpha).cpu())
    return (x_hat, trajectory) if return_trajectory else x_hat  # alpha = 1 at sigma = 0: x_hat is x_0


SAMPLERS = ("ddpm", "ddim", "dpmpp-2m", "unipc", "heun", "euler")  # what sample_in_batches (`sample --sampler`) takes
# Which samplers fit a model trained with each objective. An eps, x0 or v network is turned into an eps-model
# (objectives.as_eps_model) and solves the schedule's reverse process; a flow network's ODE runs over s in [0, 1]
# (flow.sample_flow, where "heun" is Heun's method on that ODE; sample_flow_multistep for "dpmpp-2m" and "unipc").
SAMPLERS_FOR = {"eps": SAMPLERS[:5], "x0": SAMPLERS[:5], "v": SAMPLERS[:5], "flow": ("euler", "heun", *FLOW_MULTISTEP)}
GRIDDED = ("dpmpp-2m", "unipc", "heun")  # the samplers whose grid of timesteps ``spacing`` chooses


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample a model: one of ``SAMPLERS``, its number of model evaluations (``steps``), the guidance
    weight w and, for a flow model, the shift of its grid of flow times (``flow.shift_flow_time``; 1: even). A
    checkpoint record carries the setting its recipe was measured with (``train --sampler --sampling-steps
    --guidance --sampling-shift``), and ``sample`` uses it for whatever it is not told; a record without a shift
    has an even grid."""

    sampler: str = "ddim"
    steps: int = 50
    guidance: float = 0.0
    shift: float = 1.0


def default_sampling(objective: str) -> SamplingConfig:
    """The setting a record carries when training is not told one: DPM-Solver++(2M) with 10 evaluations for an
    eps, x0 or v model, Heun with 10 for a flow model; no guidance (an unconditional model has none)."""
    return SamplingConfig("heun" if objective == "flow" else "dpmpp-2m", 10, 0.0)


def check_sampler(sampler: str, objective: str) -> None:
    """Refuse a sampler that does not fit a model's objective, naming the ones that do."""
    if objective not in SAMPLERS_FOR:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(SAMPLERS_FOR)}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler not in SAMPLERS_FOR[objective]:
        raise ValueError(f"sampler {sampler!r} does not fit a model trained with objective {objective!r}; "
                         f"use one of {', '.join(SAMPLERS_FOR[objective])}")  # fmt: skip


def check_shift(shift: float, objective: str) -> None:
    """Refuse a shift of the flow-time grid that is not a positive number, or one given to a model without flow
    times (an eps, x0 or v model's grids are chosen by ``spacing``)."""
    check_flow_shift(shift)
    if shift != 1.0 and objective != "flow":
        raise ValueError(f"a shift of {shift:g} moves a flow model's grid of flow times; a model trained with "
                         f"objective {objective!r} has none: leave the shift at 1")  # fmt: skip


PRECISIONS = ("fp32", "bf16")  # what sample_in_batches (and `sample --precision`) accepts


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` is a CPU that computes in bfloat16 natively (AVX512-BF16 or AMX), where bf16 sampling is
    up to three times as fast as float32; elsewhere (older CPUs, GPUs here) `sample --precision auto` keeps float32."""
    if torch.device(device).type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch.cpu; absent: not native
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def in_bfloat16(model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The model run under ``torch.autocast`` in bfloat16 on its input's device, its output back in float32."""

    def run(x: torch.Tensor, t: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return model(x, t, *condition).float()

    run.__wrapped__ = model  # eps_model.model_device finds the network's weights through it
    return run


def sample_in_batches(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    n: int,
    image_shape: tuple[int, int, int],
    labels: torch.Tensor | None = None,
    batch_size: int = 50,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    objective: str = "eps",
    spacing: str | None = None,
    precision: str = "fp32",
    shift: float = 1.0,
) -> torch.Tensor:
    """``n`` samples drawn ``batch_size`` at a time with one of ``SAMPLERS``, in order, from one generator
    (the same seed gives the same n samples), from a network trained with ``objective`` (its record says
    which: ``objectives.objective_of``); a sampler that does not fit it is refused (``SAMPLERS_FOR``).

    Args:
        image_shape: (C, H, W) of one sample. labels: (n,) condition per sample, or None.
        sampler: "ddpm" (T network calls), "ddim" (``steps`` calls, ``eta`` as in ``samplers.sample_ddim``),
            "dpmpp-2m", "unipc" (``sample_unipc``: a second-order predictor, third order with its corrector) or
            "heun" (``steps`` model evaluations; deterministic given x_T, ``eta`` unused); for a flow model "euler"
            or "heun" over the flow time (``flow.sample_flow``), or "dpmpp-2m" or "unipc" on the flow path
            (``sample_flow_multistep``), ``steps`` model evaluations each.
        spacing: the grid of "dpmpp-2m", "unipc" and "heun": one of ``SPACINGS`` or the timesteps themselves
            (``steps`` of them for "dpmpp-2m" and "unipc", largest first); None: each solver's default.
        shift: a flow model's grid of flow times moved towards the noise (``flow.shift_flow_time``; 1: even).
        device: where to sample; None: where the model's weights are (``samplers.sampling_device``).
        precision: "fp32", or "bf16" to run the network (not the sampler's arithmetic) in bfloat16 under
            ``torch.autocast``: on a CPU with AVX512-BF16 up to three times as fast, with the same accuracy and Frechet
            distance to the second decimal (benchmarks/README.md, "Few model evaluations"); on other CPUs it can
            be slower.

    Returns:
        (n, C, H, W) float samples in [-1, 1] on the CPU.
    """
    check_sampler(sampler, objective)
    if spacing is not None and (sampler not in GRIDDED or objective == "flow"):
        raise ValueError(f"spacing={spacing!r} applies to the {', '.join(GRIDDED)} samplers of an eps, x0 or v "
                         f"model only; drop it for {sampler!r}")  # fmt: skip
    grid = {} if spacing is None else {"spacing": spacing}
    check_shift(shift, objective)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = sampling_device(model, device)  # before the wrappers below hide the network's weights
    if precision == "bf16":
        model = in_bfloat16(model)
    if objective in ("x0", "v"):
        model = as_eps_model(model, schedule, objective)
    if labels is not None and len(labels) != n:
        raise ValueError(f"sample_in_batches: {len(labels)} labels for n={n} samples; give one label per sample")
    chunks = []
    for start in progress_bar(range(0, n, batch_size), desc=f"sample ({batch_size} per batch)", disable=not progress):
        b = min(batch_size, n - start)
        y = None if labels is None else labels[start : start + b].to(device)
        common = dict(y=y, guidance=guidance, generator=generator, device=device, progress=progress)
        shape = (b, *image_shape)
        if objective == "flow":
            flow_sampler = sample_flow_multistep if sampler in FLOW_MULTISTEP else sample_flow
            x = flow_sampler(model, shape, steps=steps, method=sampler, shift=shift, **common)
            x = x.clamp(-1.0, 1.0)  # the ODE itself is not clipped
        elif sampler == "ddpm":
            x = sample_ddpm(model, schedule, shape, **common)
        elif sampler == "ddim":
            x = sample_ddim(model, schedule, shape, steps=steps, eta=eta, **common)
        elif sampler == "dpmpp-2m":
            x = sample_dpmpp_2m(model, schedule, shape, steps=steps, **common, **grid)
        elif sampler == "unipc":
            x = sample_unipc(model, schedule, shape, steps=steps, **common, **grid)
        else:
            x = sample_heun(model, schedule, shape, steps=steps, **common, **grid)
        chunks.append(x.cpu())
    return torch.cat(chunks)
