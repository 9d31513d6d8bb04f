"""The probability-flow ODE solvers checked where the exact answer is known: Gaussian data (``ddpm_lessons.gaussian``:
the exact eps-predictor E[eps | x_t] and the ODE's closed-form solution, both checked here independently, by Monte
Carlo and by differentiating the solution).

The solution depends on alpha_bar only, not on how a schedule reaches it, and the exact predictor is exact at every
timestep, so a solver's error against it is its discretisation error alone: no discrete-time effect of the schedule
enters. The orders are measured at the last visited timestep: the step after it, to alpha_bar = 1, is the same
first-order step (x0_hat of Eq. 15) for every solver, and its error depends on where it starts; once a grid ends at
t = 0 it no longer shrinks with more evaluations. Where samplers are compared with one another, the error is read at
alpha_bar = 1, the one point they all end at.
"""

import functools
import math

import pytest
import torch

from ddpm_lessons import gaussian
from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.forward import predict_x0_from_eps
from ddpm_lessons.samplers import ddim_step, ddim_timesteps, sample_ddim
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import (
    B_FUNCTIONS,
    SPACINGS,
    check_grid,
    dpmpp_2m_step,
    heun_timesteps,
    parse_grid,
    phi,
    sample_dpmpp_2m,
    sample_heun,
    sample_unipc,
    solver_timesteps,
    unic_step,
    unip_step,
)

MU, STD = 0.3, 0.5  # data: every pixel ~ N(MU, STD^2), independent
SOLVERS = {
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "unipc": sample_unipc,
    "heun": sample_heun,
}


def eps_at(xt, alpha_bar):
    return gaussian.gaussian_eps(xt, alpha_bar, MU, STD)


def gaussian_eps(schedule):
    return gaussian.gaussian_eps_model(schedule, MU, STD)


def exact_flow(x, ab_from, ab_to):
    return gaussian.exact_flow(x, ab_from, ab_to, MU, STD)


def test_convergence_order_reads_a_power_law():
    counts = [10, 20, 40, 80]
    for p in (1.0, 2.0, 1.5):
        assert gaussian.convergence_order(counts, [3.0 * k**-p for k in counts]) == pytest.approx(p, abs=1e-12)
    with pytest.raises(ValueError, match="at least two"):
        gaussian.convergence_order([10], [0.1])


def test_the_exact_eps_is_the_regression_of_eps_on_x_t():
    """Monte Carlo: draw (x0, eps), form x_t, and fit eps = a x_t + b by least squares; E[eps | x_t] is linear."""
    g = torch.Generator().manual_seed(0)
    for ab in (0.9, 0.5, 0.05):
        x0 = MU + STD * torch.randn(400_000, generator=g, dtype=torch.float64)
        eps = torch.randn(400_000, generator=g, dtype=torch.float64)
        xt = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
        design = torch.stack([xt, torch.ones_like(xt)], dim=1)
        fit = torch.linalg.lstsq(design, eps[:, None]).solution.flatten()
        probe = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
        assert torch.allclose(fit[0] * probe + fit[1], eps_at(probe, ab), atol=0.01)


def lambda_uniform_schedule(T=1000, lam=4.0):
    """A schedule whose log-SNR 2 lambda falls linearly in t, so DDIM's evenly spaced timesteps are even steps in
    lambda = log(alpha / sigma), from lam to -lam (alpha_bar from 0.99966 to 3.4e-4 for lam = 4)."""
    alpha_bar = torch.sigmoid(2 * torch.linspace(lam, -lam, T, dtype=torch.float64))
    return NoiseSchedule.from_alpha_bar(alpha_bar)


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


def last_visited(name, schedule, n, spacing):
    """The last timestep a sampler visits before its final step to alpha_bar = 1."""
    if name == "ddim":
        return ddim_timesteps(schedule.T, n)[-1]
    if name in ("dpmpp_2m", "unipc"):
        return solver_timesteps(schedule, n, spacing)[-1]
    return heun_timesteps(schedule, n, spacing)[0][-2]


@pytest.mark.parametrize(
    "schedule_name, spacing, counts",
    [
        # Evenly spaced in lambda: the asymptotic order shows from 20 evaluations (from 10 to 20 DPM-Solver++(2M)'s
        # error only halves: its last visited timestep, where the error is read, moves from t = 100 to t = 50).
        ("lambda-uniform", "time", [20, 40, 80, 160]),
        # Ho et al.'s linear schedule puts most of the change of lambda into its last timesteps (lambda goes from
        # 1.0 to 4.6 over t = 111..0), so on timesteps even in t the last visited timestep, where the error is read,
        # moves through the steepest lambda as K grows, and DPM-Solver++(2M)'s slope over 40..320 is only 1.4. With
        # DPM-Solver++(2M) and Heun on Karras et al.'s grid (DDIM on its own) the three orders show from 20.
        ("linear", "karras", [20, 40, 80, 160]),
    ],
)
def test_convergence_order_on_gaussian_data(schedule_name, spacing, counts):
    s = lambda_uniform_schedule() if schedule_name == "lambda-uniform" else NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = {"ddim": 1.0, "dpmpp_2m": 2.0, "unipc": 3.0, "heun": 2.0}
    orders = {}
    for name, sampler in SOLVERS.items():
        errors = []
        grid = {} if name == "ddim" or spacing is None else {"spacing": spacing}
        for n in counts:
            _, traj = sampler(model, s, x_T.shape, steps=n, clip_x0=False, x_T=x_T, dtype=torch.float64,
                              return_trajectory=True, **grid)  # fmt: skip
            t_last = last_visited(name, s, n, spacing)
            want = exact_flow(x_T, s.alpha_bar[-1].item(), s.alpha_bar[t_last].item())  # the last visited step
            errors.append((traj[-2] - want).abs().max().item())
        orders[name] = gaussian.convergence_order(counts, errors)
        print(f"{schedule_name} ({spacing or 'default'} spacing): {name} errors {[f'{e:.2e}' for e in errors]} at "
              f"{counts} evaluations, order {orders[name]:.2f}")  # fmt: skip
        assert errors == sorted(errors, reverse=True)
    for name, order in orders.items():
        assert order == pytest.approx(expected[name], abs=0.25), f"{name}: measured order {order:.2f}"


def test_on_gaussian_data_the_log_snr_grid_ends_nearer_the_ode_solution():
    """The output at alpha_bar = 1, where every grid ends, against the exact flow's end point: on Ho et al.'s
    schedule DPM-Solver++(2M) with 10 and 20 evaluations lands several times nearer it on timesteps even in lambda
    than even in t. (Even in t is nonetheless the default: on the shipped digits model it gives the lower Frechet
    distance, benchmarks/README.md, "Few model evaluations".) And Heun shows its second order on Karras et al.'s
    grid from 10 evaluations."""
    s = NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end = exact_flow(x_T, s.alpha_bar[-1].item(), 1.0)

    def output_error(n, spacing):
        out = sample_dpmpp_2m(model, s, x_T.shape, steps=n, clip_x0=False, x_T=x_T, dtype=torch.float64,
                              spacing=spacing)  # fmt: skip
        return (out - end).abs().max().item()

    for n in (10, 20):
        even_t, even_lambda = output_error(n, "time"), output_error(n, "logsnr")
        print(f"DPM-Solver++(2M), {n} evaluations: output error {even_t:.2e} even in t, {even_lambda:.2e} even in "
              "lambda")  # fmt: skip
        assert even_lambda < even_t / 3

    def error(name, n, spacing):
        _, traj = SOLVERS[name](model, s, x_T.shape, steps=n, clip_x0=False, x_T=x_T, dtype=torch.float64,
                                return_trajectory=True, spacing=spacing)  # fmt: skip
        want = exact_flow(x_T, s.alpha_bar[-1].item(), s.alpha_bar[last_visited(name, s, n, spacing)].item())
        return (traj[-2] - want).abs().max().item()

    counts = [10, 20, 40, 80]
    errors = [error("heun", n, "karras") for n in counts]
    print(
        f"Heun, Karras spacing: errors {[f'{e:.2e}' for e in errors]} at {counts}, order {gaussian.convergence_order(counts, errors):.2f}"
    )
    assert gaussian.convergence_order(counts, errors) == pytest.approx(2.0, abs=0.25)


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
        ts = solver_timesteps(s, n, "time") + [-1]  # both samplers' grid for 1 and 2 evaluations
        ddim = x_T
        for t, t_prev in zip(ts[:-1], ts[1:], strict=True):  # DDIM's steps, eta = 0, over the same timesteps
            ddim = ddim_step(s, ddim, model(ddim, torch.full((8,), t)), t, t_prev, eta=0.0, clip_x0=clip_x0)
        for sampler in (sample_dpmpp_2m, sample_heun):
            got = sampler(model, s, x_T.shape, steps=n, clip_x0=clip_x0, x_T=x_T, spacing="time")
            assert torch.allclose(got, ddim, atol=1e-12)


class Probe:
    """An eps-model that records each call's batch size and condition, and returns a harmless eps."""

    def __init__(self):
        self.calls = []

    def __call__(self, xt, t, y=None):
        self.calls.append((xt.shape[0], None if y is None else y.tolist()))
        return 0.1 * xt


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc", "heun"])
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
    s = NoiseSchedule.make("linear", 1000)
    assert heun_timesteps(s, 1, "time") == ([999, -1], 0)
    assert heun_timesteps(s, 2, "time") == ([999, 500, -1], 0)  # Euler, then Euler to sigma = 0
    assert heun_timesteps(s, 5, "time") == ([999, 666, 333, -1], 2)  # 2 Heun steps (4 evaluations) + 1 Euler
    assert heun_timesteps(s, 6, "time") == ([999, 749, 500, 250, -1], 2)  # + an Euler first step
    for spacing in ("time", "logsnr", "karras"):
        for n in range(1, 40):
            ts, n_heun = heun_timesteps(s, n, spacing)
            assert 2 * n_heun + (len(ts) - 1 - n_heun) == n  # Heun steps cost 2 evaluations, Euler steps 1


@pytest.mark.parametrize("T", [50, 1000])
def test_solver_timesteps_are_even_in_their_variable(T):
    """Each spacing, recomputed here from alpha_bar: even steps in t for "time", in lambda = log(alpha / sigma) for
    "logsnr", in sigma_hat^(1/7) with sigma_hat = sigma / alpha for "karras", each over steps + 1 points from t = T-1
    to t = 0 (not visited)."""
    s = NoiseSchedule.make("linear", T)
    ab = s.alpha_bar
    lam = [0.5 * math.log(a / (1 - a)) for a in ab.tolist()]
    for n in (3, 5, 10, 20):
        ts = solver_timesteps(s, n, "logsnr")
        want = [lam[-1] + k * (lam[0] - lam[-1]) / n for k in range(n)]
        nearest = [min(range(T), key=lambda t, w=w: abs(lam[t] - w)) for w in want]
        assert ts[0] == T - 1 and ts == sorted(set(ts), reverse=True) and len(ts) == n
        if nearest == sorted(set(nearest), reverse=True):
            assert ts == nearest  # each point on the timestep whose lambda is nearest
        else:  # two points on one timestep: the noisier one moved up, never down
            assert all(t >= t_near for t, t_near in zip(ts, nearest, strict=True)) and ts[-1] == nearest[-1]
        ts = solver_timesteps(s, n, "karras")
        sig = [math.exp(-v) ** (1 / 7) for v in lam]
        want = [sig[-1] + k * (sig[0] - sig[-1]) / n for k in range(n)]
        got = [sig[t] for t in ts]
        step = max(abs(a - b) for a, b in zip(sig[:-1], sig[1:], strict=True))  # the coarsest rounding possible
        assert all(abs(g - w) <= step for g, w in zip(got, want, strict=True))
        ts = solver_timesteps(s, n, "time")
        assert all(abs(t - (T - 1) * (1 - k / n)) <= 0.5 for k, t in enumerate(ts))  # even in t, t = 0 not visited
    for spacing in SPACINGS:  # every timestep once, when as many evaluations as timesteps
        assert solver_timesteps(s, T, spacing) == list(range(T - 1, -1, -1))
    with pytest.raises(ValueError, match="unknown spacing 'even'"):
        solver_timesteps(s, 5, "even")


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc", "heun"])
def test_same_seed_same_samples_and_trajectory(name):
    s = NoiseSchedule.make("linear", 100)
    model = gaussian_eps(s)
    sampler = SOLVERS[name]
    a, traj = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(3),
                      return_trajectory=True)  # fmt: skip
    b = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(3))
    c = sampler(model, s, (3, 1, 4, 4), steps=9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(traj) == (9 // 2 + 2 if name == "heun" else 10) and torch.equal(traj[-1], a)
    x_T = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = sampler(model, s, x_T.shape, steps=4, x_T=x_T, dtype=torch.float64)
    assert out.dtype == torch.float64 and out.shape == x_T.shape


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc", "heun"])
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
    """On the lambda-uniform schedule at 20 evaluations, each on its default grid: what the orders mean in practice,
    read at the output (alpha_bar = 1), the one point every sampler ends at (errors 0.16, 0.012 and 0.14)."""
    s = lambda_uniform_schedule()
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = exact_flow(x_T, s.alpha_bar[-1].item(), 1.0)
    err = {}
    for name, sampler in SOLVERS.items():
        out = sampler(model, s, x_T.shape, steps=20, clip_x0=False, x_T=x_T, dtype=torch.float64)
        err[name] = (out - want).abs().max().item()
    assert err["dpmpp_2m"] < err["ddim"] / 5 and err["heun"] < err["ddim"]
    assert math.isfinite(sum(err.values()))


def test_bfloat16_runs_the_network_in_bfloat16_and_stays_close():
    from ddpm_lessons.solvers import sample_in_batches
    from ddpm_lessons.unet import UNet, UNetConfig

    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, groups=4, channel_mults=(1, 2), attention_resolutions=(14,), num_classes=10))
    with torch.no_grad():  # a fresh U-Net's last convolution is zero: give every weight something to round
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seen = []
    net.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    s = NoiseSchedule.make("linear", 1000)
    common = dict(labels=torch.arange(4), sampler="dpmpp-2m", steps=3, guidance=1.0, objective="v")

    def v_model(x, t, y):  # small v: x0_hat = sqrt(alpha_bar) x_t - ..., inside [-1, 1], so no clipping hides a change
        return 0.1 * net(x, t, y)

    net.eval()
    with torch.no_grad():
        full = sample_in_batches(v_model, s, 4, (1, 28, 28), generator=torch.Generator().manual_seed(1), **common)
        half = sample_in_batches(v_model, s, 4, (1, 28, 28), generator=torch.Generator().manual_seed(1),
                                 precision="bf16", **common)  # fmt: skip
    assert seen == [torch.float32] * 3 + [torch.bfloat16] * 3  # one batched network call per evaluation
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    assert (full.abs() < 1).float().mean() > 0.5 and (half - full).abs().max() < 0.05
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        sample_in_batches(net, s, 1, (1, 28, 28), precision="fp16")


def simpson(values, a, b):
    """Simpson's rule for samples of a function at an odd number of even points from a to b (along the last dim)."""
    weights = torch.ones(values.shape[-1], dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return (values * weights).sum(-1) * (b - a) / (3 * (values.shape[-1] - 1))


def test_phi_is_its_integral():
    """phi_k(z) = int_0^1 e^{(1 - u) z} u^(k-1) / (k-1)! du, by Simpson's rule, on both sides of the series' range."""
    u = torch.linspace(0, 1, 20_001, dtype=torch.float64)
    for k in (1, 2, 3, 4):
        for z in (-6.0, -2.3, -0.6, -0.4, -1e-3, 0.0, 0.3, 1.7):
            integral = simpson(torch.exp((1 - u) * z) * u ** (k - 1) / math.factorial(k - 1), 0.0, 1.0).item()
            assert phi(k, z) == pytest.approx(integral, rel=1e-10, abs=1e-14), (k, z)
    assert phi(0, 0.7) == pytest.approx(math.exp(0.7))


@pytest.mark.parametrize("b", B_FUNCTIONS)
def test_unic_step_is_exact_where_x0_hat_is_quadratic_in_lambda(b):
    """With two earlier evaluations the corrector integrates the ODE exactly when x0_hat is a polynomial of degree
    2 in lambda, whatever B(h): x_t = sigma_t / sigma_s x_s + sigma_t int e^lambda x0_hat(lambda) d lambda
    (Lu et al. 2022, Sec. 3), here by Simpson's rule. With one, it is exact for a constant x0_hat only (its
    weight 1/2 is not the order condition's)."""
    s = NoiseSchedule.make("linear", 1000)
    ab = s.alpha_bar.double()
    lam = 0.5 * (ab.log() - (1 - ab).log())
    g = torch.Generator().manual_seed(0)
    c0, c1, c2 = (torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    x_s = torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64)
    for t_last, t_s, t in ((700, 500, 300), (999, 742, 503), (287, 120, 40), (31, 30, 29)):
        l_s = lam[t_s].item()

        def x0_at(tt, l_s=l_s):
            d = lam[tt].item() - l_s
            return c0 + c1 * d + c2 * d * d

        grid = torch.linspace(l_s, lam[t].item(), 4001, dtype=torch.float64)
        d = grid - l_s

        def integral_of(power, grid=grid, d=d):  # int e^lambda (lambda - lambda_s)^power over the step
            return simpson(grid.exp() * d**power, grid[0].item(), grid[-1].item()).item()

        integral = sum(integral_of(k) * c for k, c in enumerate((c0, c1, c2)))
        sigma_t = (1 - ab[t]).sqrt().item()
        sigma_s = (1 - ab[t_s]).sqrt().item()
        want = sigma_t / sigma_s * x_s + sigma_t * integral
        got = unic_step(s, x_s, x0_at(t_s), t_s, t, x0_at(t), x0_at(t_last), t_last, b=b)
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-9), (t_last, t_s, t)
        const = unic_step(s, x_s, c0, t_s, t, c0, b=b)  # x0_hat constant: the first-order form is exact too
        want_const = sigma_t / sigma_s * x_s + sigma_t * integral_of(0) * c0
        assert torch.allclose(const, want_const, rtol=1e-8, atol=1e-9)
        first = unic_step(s, x_s, x0_at(t_s), t_s, t, x0_at(t), b=b)
        assert not torch.allclose(first, want, rtol=1e-6, atol=1e-6)


def test_unic_step_refuses_bad_steps():
    s = NoiseSchedule.make("linear", 100)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="goes backwards"):
        unic_step(s, x, x, 30, 40, x)
    with pytest.raises(ValueError, match="both x0_hat_last and t_last"):
        unic_step(s, x, x, 40, 30, x, x0_hat_last=x)
    with pytest.raises(ValueError, match="unknown B"):
        unic_step(s, x, x, 40, 30, x, b="h2")


def test_a_grid_given_as_timesteps():
    """The grid may be the timesteps themselves: the same samples as the named grid that has them, and a
    grid that does not fit the steps or the schedule is refused with what is wrong."""
    s = NoiseSchedule.make("linear", 100)
    model = gaussian_eps(s)
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    named = solver_timesteps(s, 5, "logsnr")
    assert solver_timesteps(s, 5, named) == named and solver_timesteps(s, 5, tuple(named)) == named
    for sampler in (sample_dpmpp_2m, sample_unipc):
        run = functools.partial(sampler, model, s, x_T.shape, steps=5, x_T=x_T, dtype=torch.float64)
        assert torch.equal(run(spacing="logsnr"), run(spacing=named))
    assert check_grid([99, 70, 41, 12], 4, 100) == [99, 70, 41, 12]
    assert parse_grid("logsnr") == "logsnr" and parse_grid("99,70,41") == (99, 70, 41)
    with pytest.raises(ValueError, match="must be one of time, logsnr, karras or timesteps"):
        parse_grid("99;70")
    visited = solver_timesteps(s, 3, "karras")  # Heun with 5 evaluations visits 3 timesteps
    assert heun_timesteps(s, 5, visited) == heun_timesteps(s, 5, "karras")
    heun = functools.partial(sample_heun, model, s, x_T.shape, steps=5, x_T=x_T, dtype=torch.float64)
    assert torch.equal(heun(spacing=visited), heun())
    with pytest.raises(ValueError, match="visits 5 timesteps here: give 5 ints"):
        solver_timesteps(s, 5, [99, 50, 10])
    with pytest.raises(ValueError, match="give 3 ints"):
        check_grid([99, 50.0, 10], 3, 100)
    for bad in ([99, 99, 10], [50, 70, 10], [120, 50, 10], [99, 50, -1]):
        with pytest.raises(ValueError, match="must fall strictly from at most T-1 = 99 to at least 0"):
            check_grid(bad, 3, 100)


def test_unip_step_with_b_expm1_is_dpmpp_2m_step():
    """UniP-2 with B(h) = e^{-h} - 1 is DPM-Solver++(2M) (Zhao et al. 2023); with UniPC's B(h) = -h it is another
    second-order step, equal to it to first order in h."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x, x0, x0_last = (torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    for t_last, t, t_prev in ((999, 742, 503), (300, 200, 100), (120, 119, 118), (50, 20, -1)):
        want = dpmpp_2m_step(s, x, x0, t, t_prev, x0_last, t_last)
        assert torch.allclose(unip_step(s, x, x0, t, t_prev, x0_last, t_last, b="expm1"), want, rtol=1e-12)
        other = unip_step(s, x, x0, t, t_prev, x0_last, t_last, b="h")
        assert torch.equal(other, want) if t_prev == -1 else not torch.allclose(other, want)
        assert torch.equal(unip_step(s, x, x0, t, t_prev), dpmpp_2m_step(s, x, x0, t, t_prev))  # first order
    close = unip_step(s, x, x0, 120, 119, x0_last, 121, b="h") - dpmpp_2m_step(s, x, x0, 120, 119, x0_last, 121)
    assert close.abs().max() < 1e-3 * (x0_last - x0).abs().max()
    with pytest.raises(ValueError, match="unip_step goes backwards"):
        unip_step(s, x, x0, 100, 100)
    with pytest.raises(ValueError, match="unknown B"):
        sample_unipc(gaussian_eps(s), s, (1, 1, 2, 2), steps=3, b="bh1")


def test_the_corrector_brings_the_output_nearer_the_ode_solution():
    """On Ho et al.'s schedule on the even-in-t grid, as the digits models are sampled: the output (alpha_bar = 1)
    of UniPC, and of DPM-Solver++(2M) as its predictor with the UniC corrector, against the exact flow's end point,
    beside DPM-Solver++(2M) alone. At 5 evaluations the last step, x0_hat from t = 200 for all three, sets most of
    the error."""
    s = NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    end = exact_flow(x_T, s.alpha_bar[-1].item(), 1.0)
    for n in (5, 10, 20):
        common = dict(steps=n, clip_x0=False, x_T=x_T, dtype=torch.float64)
        outs = {
            "DPM-Solver++(2M)": sample_dpmpp_2m(model, s, x_T.shape, **common),
            "with UniC": sample_unipc(model, s, x_T.shape, b="expm1", **common),
            "UniPC": sample_unipc(model, s, x_T.shape, **common),
        }
        err = {k: (v - end).abs().max().item() for k, v in outs.items()}
        print(f"{n} evaluations, output error: " + ", ".join(f"{k} {e:.2e}" for k, e in err.items()))
        assert err["with UniC"] < err["DPM-Solver++(2M)"] and err["UniPC"] < err["DPM-Solver++(2M)"]
