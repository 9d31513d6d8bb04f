"""The probability-flow ODE solvers checked where the exact answer is known: Gaussian data.

For data with every pixel ~ N(MU, STD^2), independent, the exact eps-predictor is E[eps | x_t] (``gaussian_eps``)
and the probability-flow ODE has a closed-form solution. In x_hat = x_t / sqrt(alpha_bar), sigma =
sqrt((1 - alpha_bar) / alpha_bar) the ODE is d x_hat / d sigma = E[eps | x_t] = sigma (x_hat - MU) / (STD^2 + sigma^2),
so d log(x_hat - MU) / d sigma = sigma / (STD^2 + sigma^2) and x_hat - MU grows like sqrt(STD^2 + sigma^2). Back in
x_t, between alpha_bar values ab_t and ab_s:

    x_s = sqrt(ab_s) MU + (x_t - sqrt(ab_t) MU) sqrt((ab_s STD^2 + 1 - ab_s) / (ab_t STD^2 + 1 - ab_t))

The solution depends on alpha_bar only, not on how a schedule reaches it, and the exact predictor is exact at every
timestep, so a solver's error against it is its discretisation error alone: no discrete-time effect of the schedule
enters. The error is measured at the last visited timestep (t = 0); the step after it, to alpha_bar = 1, is the
same first-order step (x0_hat of Eq. 15) for every solver and does not shrink with more evaluations.
"""

import math

import pytest
import torch

from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.forward import predict_x0_from_eps
from ddpm_lessons.samplers import ddim_step, sample_ddim
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import dpmpp_2m_step, heun_timesteps, sample_dpmpp_2m, sample_heun

MU, STD = 0.3, 0.5  # data: every pixel ~ N(MU, STD^2), independent
SOLVERS = {"ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m, "heun": sample_heun}


def eps_at(xt, alpha_bar):
    """E[eps | x_t] for Gaussian data at any alpha_bar: x_t ~ N(sqrt(ab) MU, ab STD^2 + 1 - ab)."""
    return (1 - alpha_bar) ** 0.5 * (xt - alpha_bar**0.5 * MU) / (alpha_bar * STD**2 + 1 - alpha_bar)


def gaussian_eps(schedule):
    def model(xt, t):
        return eps_at(xt, schedule.alpha_bar[t].to(xt).view(-1, *[1] * (xt.ndim - 1)))

    return model


def exact_flow(x, ab_from, ab_to):
    """The probability-flow ODE's solution for Gaussian data, from alpha_bar ab_from to ab_to (module docstring)."""
    ratio = (ab_to * STD**2 + 1 - ab_to) / (ab_from * STD**2 + 1 - ab_from)
    return ab_to**0.5 * MU + (x - ab_from**0.5 * MU) * ratio**0.5


def lambda_uniform_schedule(T=1000, lam=4.0):
    """A schedule whose log-SNR 2 lambda falls linearly in t, so DDIM's evenly spaced timesteps are even steps in
    lambda = log(alpha / sigma), from lam to -lam (alpha_bar from 0.99966 to 3.4e-4 for lam = 4)."""
    alpha_bar = torch.sigmoid(2 * torch.linspace(lam, -lam, T, dtype=torch.float64))
    return NoiseSchedule.from_betas(1 - alpha_bar / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]]))


def test_the_closed_form_solves_the_ode():
    """Independent of the derivation: a central difference of the closed form in sigma is E[eps | x_t]."""
    x_T = torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ab_T = 1e-3
    for sigma in (0.1, 0.5, 2.0, 10.0):
        delta = 1e-5 * sigma

        def x_hat(s):  # x_t / sqrt(alpha_bar) on the exact path, at sigma = s
            ab = 1 / (1 + s**2)
            return exact_flow(x_T, ab_T, ab) / ab**0.5

        derivative = (x_hat(sigma + delta) - x_hat(sigma - delta)) / (2 * delta)
        ab = 1 / (1 + sigma**2)
        assert torch.allclose(derivative, eps_at(x_hat(sigma) * ab**0.5, ab), rtol=1e-6, atol=1e-8)
    # and it composes: T -> s -> 0 equals T -> 0
    assert torch.allclose(exact_flow(exact_flow(x_T, ab_T, 0.4), 0.4, 0.99), exact_flow(x_T, ab_T, 0.99))


def _order(counts, errors):
    """Least-squares slope of -log(error) against log(model evaluations)."""
    x = torch.tensor(counts, dtype=torch.float64).log()
    y = torch.tensor(errors, dtype=torch.float64).log()
    x = x - x.mean()
    return -float((x * (y - y.mean())).sum() / (x * x).sum())


@pytest.mark.parametrize(
    "schedule_name, counts",
    [
        # Evenly spaced in lambda: the asymptotic order shows from 10 evaluations.
        ("lambda-uniform", [10, 20, 40, 80]),
        # Ho et al.'s linear schedule puts most of the change of lambda into its last timesteps (lambda goes from
        # 1.0 to 4.6 over t = 111..0), so DPM-Solver++(2M) extrapolates over very uneven steps and is far from its
        # asymptotic regime below about 40 evaluations (measured errors: 0.61, 0.38, 0.13 at 10, 20, 40).
        ("linear", [40, 80, 160, 320]),
    ],
)
def test_convergence_order_on_gaussian_data(schedule_name, counts):
    s = lambda_uniform_schedule() if schedule_name == "lambda-uniform" else NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = exact_flow(x_T, s.alpha_bar[-1].item(), s.alpha_bar[0].item())  # at t = 0, the last visited step
    expected = {"ddim": 1.0, "dpmpp_2m": 2.0, "heun": 2.0}
    orders = {}
    for name, sampler in SOLVERS.items():
        errors = []
        for n in counts:
            _, traj = sampler(model, s, x_T.shape, steps=n, clip_x0=False, x_T=x_T, dtype=torch.float64,
                              return_trajectory=True)  # fmt: skip
            errors.append((traj[-2] - want).abs().max().item())
        orders[name] = _order(counts, errors)
        print(f"{schedule_name}: {name} errors {[f'{e:.2e}' for e in errors]} at {counts} evaluations, "
              f"order {orders[name]:.2f}")  # fmt: skip
        assert errors == sorted(errors, reverse=True)
    for name, order in orders.items():
        assert order == pytest.approx(expected[name], abs=0.25), f"{name}: measured order {order:.2f}"


def test_dpmpp_2m_step_has_third_order_local_error():
    """One step from the exact path, with the exact x0 at t and at t + k: halving k divides the error by 8 for the
    second-order step and by 4 for the first-order one (local errors O(h^3) and O(h^2))."""
    s = NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(32, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ab = s.alpha_bar

    def on_path(t):
        x = exact_flow(x_T, ab[-1].item(), ab[t].item())
        return x, predict_x0_from_eps(s, x, t, model(x, torch.tensor([t])))

    for t in (600, 300):
        errors = []
        for k in (40, 20, 10, 5):
            (x, x0), (_, x0_last) = on_path(t), on_path(t + k)
            want = exact_flow(x_T, ab[-1].item(), ab[t - k].item())
            second = dpmpp_2m_step(s, x, x0, t, t - k, x0_last, t + k)
            first = dpmpp_2m_step(s, x, x0, t, t - k)
            errors.append(((second - want).abs().max().item(), (first - want).abs().max().item()))
        for (e2, e1), (f2, f1) in zip(errors[:-1], errors[1:], strict=True):
            assert e2 / f2 == pytest.approx(8, rel=0.15) and e1 / f1 == pytest.approx(4, rel=0.15)


@pytest.mark.parametrize("clip_x0", [False, True])
def test_the_first_order_step_is_ddim(clip_x0):
    """DDIM with eta = 0 is the first-order step of the probability-flow ODE: DPM-Solver++'s first-order step, and
    one Euler step in sigma (Heun's last step), are the same update."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    xt, eps = 1.5 * torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    for t, t_prev in ((999, 700), (400, 399), (250, 0), (30, -1)):
        t_batch = torch.full((4,), t)
        x0 = predict_x0_from_eps(s, xt, t_batch, eps)
        x0 = x0.clamp(-1, 1) if clip_x0 else x0
        got = dpmpp_2m_step(s, xt, x0, t, t_prev)
        assert torch.allclose(got, ddim_step(s, xt, eps, t, t_prev, eta=0.0, clip_x0=clip_x0), atol=1e-5)
    # whole samplers: with 1 or 2 evaluations every step is first order (float64: Heun works in x / sqrt(alpha_bar),
    # up to 157 x at t = 999, where float32 rounding alone differs from DDIM by about 2e-5)
    model = gaussian_eps(s)
    x_T = torch.randn(8, 1, 2, 2, generator=g, dtype=torch.float64)
    for n in (1, 2):
        ddim = sample_ddim(model, s, x_T.shape, steps=n, clip_x0=clip_x0, x_T=x_T)
        for sampler in (sample_dpmpp_2m, sample_heun):
            assert torch.allclose(sampler(model, s, x_T.shape, steps=n, clip_x0=clip_x0, x_T=x_T), ddim, atol=1e-12)


class Probe:
    """An eps-model that records each call's batch size and condition, and returns a harmless eps."""

    def __init__(self):
        self.calls = []

    def __call__(self, xt, t, y=None):
        self.calls.append((xt.shape[0], None if y is None else y.tolist()))
        return 0.1 * xt


@pytest.mark.parametrize("name", ["dpmpp_2m", "heun"])
def test_steps_counts_model_evaluations_and_guidance_is_one_batched_call(name):
    s = NoiseSchedule.make("linear", 50)
    for n in range(1, 12):
        probe = Probe()
        SOLVERS[name](probe, s, (3, 1, 2, 2), steps=n)
        assert len(probe.calls) == n
    for y in (torch.tensor([4, 1, 7]), torch.tensor([[2, 5], [3, 0], [1, 1]])):  # class ids, or prompts' tokens
        probe = Probe()
        SOLVERS[name](probe, s, (3, 1, 2, 2), steps=7, y=y, guidance=2.0)
        assert len(probe.calls) == 7  # one batched call per evaluation
        cond = y.tolist()
        uncond = torch.full_like(y, NO_LABEL).tolist()
        assert all(b == 6 and labels == cond + uncond for b, labels in probe.calls)


def test_heun_grid():
    assert heun_timesteps(1000, 1) == ([999, -1], 0)
    assert heun_timesteps(1000, 2) == ([999, 0, -1], 0)  # Euler, then Euler to sigma = 0
    assert heun_timesteps(1000, 5) == ([999, 500, 0, -1], 2)  # 2 Heun steps (4 evaluations) + 1 Euler
    assert heun_timesteps(1000, 6) == ([999, 666, 333, 0, -1], 2)  # + an Euler first step
    for n in range(1, 40):
        ts, n_heun = heun_timesteps(1000, n)
        assert 2 * n_heun + (len(ts) - 1 - n_heun) == n  # Heun steps cost 2 evaluations, Euler steps 1


@pytest.mark.parametrize("name", ["dpmpp_2m", "heun"])
def test_same_seed_same_samples_and_trajectory(name):
    s = NoiseSchedule.make("linear", 100)
    model = gaussian_eps(s)
    sampler = SOLVERS[name]
    a, traj = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(3),
                      return_trajectory=True)  # fmt: skip
    b = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(3))
    c = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(traj) == (10 if name == "dpmpp_2m" else 9 // 2 + 2) and torch.equal(traj[-1], a)
    x_T = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = sampler(model, s, x_T.shape, steps=4, x_T=x_T, dtype=torch.float64)
    assert out.dtype == torch.float64 and out.shape == x_T.shape


@pytest.mark.parametrize("name", ["dpmpp_2m", "heun"])
def test_bad_steps_name_the_fix(name):
    s = NoiseSchedule.make("linear", 50)
    for steps in (0, -3, 51, 2.5):
        with pytest.raises(ValueError, match=r"steps=.* counts model evaluations .* pass steps between 1 and 50"):
            SOLVERS[name](gaussian_eps(s), s, (1, 1, 2, 2), steps=steps)


def test_dpmpp_2m_step_refuses_bad_steps():
    s = NoiseSchedule.make("linear", 100)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="t_prev < t"):
        dpmpp_2m_step(s, x, x, 40, 40)
    with pytest.raises(ValueError, match="both x0_hat_last and t_last"):
        dpmpp_2m_step(s, x, x, 40, 30, x0_hat_last=x)
    with pytest.raises(ValueError, match="t < t_last < T"):
        dpmpp_2m_step(s, x, x, 40, 30, x, 20)


def test_second_order_solvers_beat_ddim_at_the_same_cost():
    """On the lambda-uniform schedule at 20 evaluations: what the orders mean in practice."""
    s = lambda_uniform_schedule()
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = exact_flow(x_T, s.alpha_bar[-1].item(), s.alpha_bar[0].item())
    err = {}
    for name, sampler in SOLVERS.items():
        _, traj = sampler(model, s, x_T.shape, steps=20, clip_x0=False, x_T=x_T, dtype=torch.float64,
                          return_trajectory=True)  # fmt: skip
        err[name] = (traj[-2] - want).abs().max().item()
    assert err["dpmpp_2m"] < err["ddim"] / 5 and err["heun"] < err["ddim"]
    assert math.isfinite(sum(err.values()))
