"""Flow matching (``ddpm_lessons.flow``) checked against independent computations: the path and the loss by hand, and
the Euler and Heun samplers, and DPM-Solver++(2M) and UniPC on the flow path, on Gaussian data, where the exact
velocity and the exact transport are known.

For data with every pixel ~ N(MU, STD^2), independent, the straight path x_s = (1 - s) x0 + s eps is Gaussian with
mean (1 - s) MU and variance V(s) = (1 - s)^2 STD^2 + s^2. Gaussian conditioning, E[u | x] = E[u] + Cov(u, x) / Var(x)
(x - E[x]), with u = eps - x0 and Cov(eps - x0, x_s) = s - (1 - s) STD^2, gives the velocity that the flow-matching
loss is minimised by:

    v(x, s) = E[eps - x0 | x_s = x] = -MU + (s - (1 - s) STD^2) (x - (1 - s) MU) / V(s)

Since V'(s) / 2 = s - (1 - s) STD^2, the ODE d x / d s = v(x, s) is solved by x(s) = (1 - s) MU + sqrt(V(s)) z, z
fixed: x - (1 - s) MU grows like sqrt(V). At s = 1, V = 1 and x(1) = z; at s = 0, V = STD^2, so the flow carries
noise x_1 to x_0 = MU + STD x_1, the data's distribution. Both facts are checked below (Monte Carlo regression, and
a central difference of the solution), so the convergence tests rest on nothing but this file.
"""

import math

import pytest
import torch

from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.flow import (
    FLOW_TIME_SCALE,
    euler_step,
    flow_matching_loss,
    flow_path,
    flow_timesteps,
    sample_flow,
    shift_flow_time,
    velocity,
)
from ddpm_lessons.gaussian import convergence_order
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import (
    FLOW_MULTISTEP,
    _exp_step,
    _unic,
    _unip,
    dpmpp_2m_step,
    sample_flow_multistep,
    unic_step,
    unip_step,
)

MU, STD = 0.3, 0.5  # data: every pixel ~ N(MU, STD^2), independent


def exact_velocity(x, s):
    """E[eps - x0 | x_s = x] for the Gaussian data (module docstring); s a float or shaped to broadcast with x."""
    var = (1 - s) ** 2 * STD**2 + s**2
    return -MU + (s - (1 - s) * STD**2) * (x - (1 - s) * MU) / var


def exact_transport(x, s_from, s_to):
    """The exact flow from s_from to s_to: x - (1 - s) MU scales with sqrt(V(s))."""
    var = lambda s: (1 - s) ** 2 * STD**2 + s**2  # noqa: E731
    return (1 - s_to) * MU + (x - (1 - s_from) * MU) * math.sqrt(var(s_to) / var(s_from))


def gaussian_velocity_model(x, t):
    """The exact velocity as a network is called: t = FLOW_TIME_SCALE * s, shape (B,)."""
    s = (torch.as_tensor(t) / FLOW_TIME_SCALE).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
    return exact_velocity(x, s)


# ---- the path and the loss -------------------------------------------------------------------------
def test_flow_path_by_hand():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    s = torch.tensor([0.0, 0.25, 0.9, 1.0], dtype=torch.float64)
    got = flow_path(x0, eps, s)
    for i in range(4):  # one image at a time, with a Python float
        si = float(s[i])
        assert torch.allclose(got[i], (1 - si) * x0[i] + si * eps[i], atol=1e-15)
    assert torch.equal(flow_path(x0, eps, 0.0), x0) and torch.equal(flow_path(x0, eps, 1.0), eps)  # data, noise
    assert torch.allclose(flow_path(x0, eps, 0.4), 0.6 * x0 + 0.4 * eps)


class RecordingVelocity:
    """v(x, t, y) = tanh(x) + t / 1000 + y / 10 (-0.5 for no label), recording each call's (x, t, y)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y=None):
        self.calls.append((x.clone(), t.clone(), None if y is None else y.clone()))
        out = torch.tanh(x) + t.view(-1, 1, 1, 1) / 1000
        if y is not None:
            out = out + torch.where(y == NO_LABEL, -0.5, y / 10).view(-1, 1, 1, 1)
        return out


def test_flow_matching_loss_by_hand():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(5, 1, 2, 3, generator=g) * 2 - 1, torch.randn(5, 1, 2, 3, generator=g)
    s = torch.tensor([0.0, 0.1, 0.5, 0.7, 1.0])
    y = torch.tensor([1, 4, NO_LABEL, 9, 0])
    model = RecordingVelocity()
    loss = flow_matching_loss(model, x0, s, eps, y)
    (x_in, t_in, y_in), = model.calls  # fmt: skip
    assert torch.allclose(t_in, 1000 * s) and torch.equal(y_in, y)
    total, count = 0.0, 0
    for i in range(5):  # Lipman et al. 2023, Eq. 23 with sigma_min = 0, one pixel at a time
        si = float(s[i])
        for pixel in range(6):
            a, e = float(x0[i].flatten()[pixel]), float(eps[i].flatten()[pixel])
            x_s = (1 - si) * a + si * e
            assert float(x_in[i].flatten()[pixel]) == pytest.approx(x_s, abs=1e-6)
            label = -0.5 if int(y[i]) == NO_LABEL else int(y[i]) / 10
            v = math.tanh(x_s) + si + label
            total += ((e - a) - v) ** 2
            count += 1
    assert loss.shape == () and float(loss) == pytest.approx(total / count, rel=1e-5)
    model.calls.clear()
    assert float(flow_matching_loss(model, x0, s, eps)) != pytest.approx(total / count)  # no label: another value
    assert model.calls[0][2] is None


# ---- Gaussian data: the exact velocity and the exact transport --------------------------------------
def test_the_exact_velocity_is_the_regression_of_eps_minus_x0_on_x_s():
    """Monte Carlo: draw (x0, eps), form x_s, and fit eps - x0 = a x_s + b by least squares; the regression is
    linear for Gaussian data, so the fit is E[eps - x0 | x_s]."""
    g = torch.Generator().manual_seed(2)
    for s in (0.1, 0.5, 0.9):
        x0 = MU + STD * torch.randn(400_000, generator=g, dtype=torch.float64)
        eps = torch.randn(400_000, generator=g, dtype=torch.float64)
        x_s = (1 - s) * x0 + s * eps
        design = torch.stack([x_s, torch.ones_like(x_s)], dim=1)
        fit = torch.linalg.lstsq(design, (eps - x0)[:, None]).solution.flatten()
        probe = torch.tensor([-1.0, 0.0, 1.5], dtype=torch.float64)
        assert torch.allclose(fit[0] * probe + fit[1], exact_velocity(probe, s), atol=0.01)


def test_the_exact_transport_solves_the_ode_and_maps_noise_to_data():
    x1 = torch.randn(16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for s in (0.05, 0.3, 0.5, 0.8, 0.95):
        h = 1e-6
        derivative = (exact_transport(x1, 1.0, s + h) - exact_transport(x1, 1.0, s - h)) / (2 * h)
        assert torch.allclose(derivative, exact_velocity(exact_transport(x1, 1.0, s), s), rtol=1e-7, atol=1e-9)
    assert torch.allclose(exact_transport(x1, 1.0, 0.0), MU + STD * x1, atol=1e-15)  # x_0 = MU + STD x_1
    # and it composes: 1 -> 0.4 -> 0 equals 1 -> 0
    assert torch.allclose(exact_transport(exact_transport(x1, 1.0, 0.4), 0.4, 0.0), exact_transport(x1, 1.0, 0.0))


@pytest.mark.parametrize(
    "method, counts, order",
    [
        ("euler", [10, 20, 40, 80], 1.0),
        # Heun's error coefficient changes sign near 6 evaluations for this data (errors 2.0e-2, 4.8e-3, 2.4e-3 at
        # 4, 8, 16 for x_1 = 1), so its asymptotic order shows from about 32 on: measured 1.92 over these counts.
        ("heun", [32, 64, 128, 256], 2.0),
    ],
)
def test_convergence_order_to_the_exact_transport(method, counts, order):
    x1 = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = MU + STD * x1
    errors = []
    for n in counts:
        x0 = sample_flow(gaussian_velocity_model, x1.shape, steps=n, method=method, x_T=x1, dtype=torch.float64)
        errors.append((x0 - want).abs().max().item())
    assert errors == sorted(errors, reverse=True)
    assert convergence_order(counts, errors) == pytest.approx(order, abs=0.25), f"{method}: errors {errors}"


def test_heun_beats_euler_at_the_same_cost():
    x1 = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    err = {}
    for method in ("euler", "heun"):
        x0 = sample_flow(gaussian_velocity_model, x1.shape, steps=20, method=method, x_T=x1, dtype=torch.float64)
        err[method] = (x0 - (MU + STD * x1)).abs().max().item()
    assert err["heun"] < err["euler"] / 3  # measured: 4.4x smaller (the last step, into s = 0, is Euler in both)


@pytest.mark.parametrize("shift", [1.0, 2.5])
def test_the_trajectory_follows_the_grid(shift):
    """Euler visits flow_timesteps(steps, shift); each step is x + (s_next - s) v at the visited point."""
    x1 = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x0, traj = sample_flow(gaussian_velocity_model, x1.shape, steps=4, x_T=x1, dtype=torch.float64,
                           return_trajectory=True, shift=shift)  # fmt: skip
    grid = flow_timesteps(4, shift)
    assert len(traj) == 5 and torch.equal(traj[-1], x0)
    if shift == 1.0:
        assert grid == [1.0, 0.75, 0.5, 0.25, 0.0]
    for k in range(4):
        v = exact_velocity(traj[k], grid[k])
        assert torch.allclose(traj[k + 1], traj[k] - (grid[k] - grid[k + 1]) * v, atol=1e-14)


def test_the_shift_multiplies_the_noise_to_signal_ratio():
    """shift_flow_time against the same map written in the log-SNR: on x_s = (1 - s) x0 + s eps the log-SNR is
    2 log((1 - s) / s) = -2 logit(s), so lowering it by 2 log(shift) is s' = sigmoid(logit(s) + log(shift))."""
    for shift in (0.4, 1.0, 2.5, 7.0):
        for s in [i / 16 for i in range(17)]:
            expected = torch.sigmoid(torch.logit(torch.tensor(s, dtype=torch.float64)) + math.log(shift)).item()
            assert shift_flow_time(s, shift) == pytest.approx(expected, rel=1e-12, abs=1e-15), (shift, s)
    even, shifted = flow_timesteps(8), flow_timesteps(8, 2.5)
    # Heun-15's grid at the digits recipe's shift, as lessons 04 and 11 quote it: 2.5 (1 - i/8) / (1 + 1.5 (1 - i/8))
    quoted = [1.0, 0.9459, 0.8824, 0.8065, 0.7143, 0.6, 0.4545, 0.2632, 0.0]
    assert shifted == pytest.approx(quoted, abs=5e-5)
    for shift in (0.1, 0.2, 0.3, 0.45, 2.5, 7.0):  # the ends stay exactly where they are
        assert shift_flow_time(1.0, shift) == 1.0 and shift_flow_time(0.0, shift) == 0.0, shift
    assert all(a > b for a, b in zip(shifted, shifted[1:], strict=False))  # still from noise to data
    inner = zip(even[1:-1], shifted[1:-1], strict=True)
    assert all(b > a for a, b in inner)  # every inner time moved towards the noise
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="must be a positive number"):
            flow_timesteps(4, bad)


# ---- guidance, evaluations, seeds, bad input -----------------------------------------------------
class Probe:
    """A velocity-model that records each call's batch size, time input and labels."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y=None):
        self.calls.append((x.shape[0], t.tolist(), None if y is None else y.tolist()))
        return 0.1 * x


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_steps_counts_model_evaluations_and_guidance_is_one_batched_call(method):
    for n in range(1 if method == "euler" else 2, 12):
        probe = Probe()
        sample_flow(probe, (3, 1, 2, 2), steps=n, method=method)
        assert len(probe.calls) == n
        times = [t[0] / FLOW_TIME_SCALE for _, t, _ in probe.calls]
        assert times[0] == 1.0 and all(0.0 <= s <= 1.0 for s in times)
    probe = Probe()  # a shifted grid: Heun's 7 evaluations are 4 steps on flow_timesteps(4, shift), the last Euler
    sample_flow(probe, (3, 1, 2, 2), steps=7, method=method, shift=2.5)
    grid = flow_timesteps(4 if method == "heun" else 7, 2.5)
    visited = [grid[0], grid[1], grid[1], grid[2], grid[2], grid[3], grid[3]] if method == "heun" else grid[:-1]
    assert [t[0] / FLOW_TIME_SCALE for _, t, _ in probe.calls] == pytest.approx(visited, rel=1e-6)
    y = torch.tensor([4, 1, 7])
    probe = Probe()
    sample_flow(probe, (3, 1, 2, 2), steps=7, method=method, y=y, guidance=2.0)
    assert len(probe.calls) == 7  # one batched call per evaluation
    assert all(b == 6 and labels == [4, 1, 7, NO_LABEL, NO_LABEL, NO_LABEL] for b, _, labels in probe.calls)


def test_guided_velocity_is_the_weighted_difference_of_two_calls():
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([2, 5, 8])
    model = RecordingVelocity()
    t = torch.full((3,), 300.0)
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, NO_LABEL))
    for w in (0.0, 0.5, 3.0):
        model.calls.clear()
        got = velocity(model, x, 0.3, y, guidance=w)
        assert torch.allclose(got, (1 + w) * cond - w * uncond, atol=1e-6)
        assert len(model.calls) == 1 and torch.allclose(model.calls[0][1], torch.full_like(model.calls[0][1], 300.0))
    model.calls.clear()
    assert torch.allclose(velocity(model, x, 0.3), model(x, t))  # no labels: the unconditional field


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_same_seed_same_samples(method):
    kw = dict(steps=6, method=method)
    a, traj = sample_flow(gaussian_velocity_model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(3),
                          return_trajectory=True, **kw)  # fmt: skip
    b = sample_flow(gaussian_velocity_model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(3), **kw)
    c = sample_flow(gaussian_velocity_model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(traj) == (7 if method == "euler" else 5) and torch.equal(traj[-1], a)  # heun: Euler, 2 Heun, Euler
    assert a.dtype == torch.float32 and a.shape == (3, 1, 4, 4)


def test_bad_input_names_the_fix():
    model, shape = gaussian_velocity_model, (1, 1, 2, 2)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"steps=.* counts model evaluations and must be a positive int"):
            sample_flow(model, shape, steps=steps)
    with pytest.raises(ValueError, match="method must be 'euler' or 'heun', got 'rk4'"):
        sample_flow(model, shape, method="rk4")
    x1 = torch.randn(shape, dtype=torch.float64)  # one evaluation: Heun's count makes it one Euler step
    assert torch.equal(sample_flow(model, shape, steps=1, method="heun", x_T=x1), sample_flow(model, shape, 1, x_T=x1))
    x = torch.zeros(2, 1, 2, 2)
    for s in (-0.1, 1.5, torch.tensor([0.5, 2.0])):
        with pytest.raises(ValueError, match=r"s is the flow time and must lie in \[0, 1\]"):
            flow_path(x, x, s)
    with pytest.raises(ValueError, match="s has 3 entries but the batch has 2; give one per image"):
        flow_path(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="x0 and eps must have the same shape"):
        flow_path(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 3, 3), 0.5)
    for s, s_next in ((0.5, 0.6), (0.5, 0.5), (1.2, 0.5), (0.5, -0.1)):
        with pytest.raises(ValueError, match="need 0 <= s_next < s <= 1"):
            euler_step(x, x, s, s_next)


def test_draw_flow_times_uniform_and_logit_normal_by_monte_carlo():
    from ddpm_lessons.flow import draw_flow_times

    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(draw_flow_times(5, torch.Generator().manual_seed(3)),
                               torch.rand(5, generator=torch.Generator().manual_seed(3)))  # fmt: skip
    s = draw_flow_times(200_000, g, "logit-normal")
    assert 0 < s.min() and s.max() < 1
    u = torch.log(s / (1 - s))  # logit: back to the normal
    assert abs(u.mean().item()) < 0.01 and abs(u.std().item() - 1) < 0.01
    assert abs((s < 0.1).float().mean().item() - 0.0140) < 0.002  # P(u < logit 0.1 = -2.197) = 0.0140
    with pytest.raises(ValueError, match="unknown flow time sampling 'beta'"):
        draw_flow_times(3, g, "beta")
    # a location moves the normal under the logit: median sigmoid(0.5) = 0.6225, P(s > 0.9) = P(u > 2.197 - 0.5)
    s = draw_flow_times(200_000, g, "logit-normal", loc=0.5)
    u = torch.log(s / (1 - s))
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.std().item() - 1) < 0.01
    assert abs(s.median().item() - 0.6225) < 0.003
    assert abs((s > 0.9).float().mean().item() - 0.0448) < 0.002  # 1 - Phi(1.697) = 0.0448
    for bad, kind in ((0.5, "uniform"), (math.nan, "logit-normal"), (math.inf, "logit-normal")):
        with pytest.raises(ValueError, match="the logit-normal's location, a finite number"):
            draw_flow_times(3, g, kind, loc=bad)


# ---- DPM-Solver++(2M) and UniPC on the flow path ---------------------------------------------------
# The flow path is a Gaussian path with alpha = 1 - s and sigma = s; solvers.sample_flow_multistep runs the
# schedule's multistep steps on it with x0_hat = x_s - s v. These tests check it against the Euler step, against the
# schedule's own steps on the same points rescaled to variance one, and against the exact transport.
def flow_point(s):
    return (1.0 - s, s)  # (alpha, sigma) on the flow path


def vp_schedule(flow_times):
    """A schedule whose alpha_bar at t = 0, 1, ... is the flow path's at the given times (data end first), rescaled
    to variance one: x_s / c(s) with c(s) = sqrt((1 - s)^2 + s^2) has alpha = (1 - s) / c(s), sigma = s / c(s)."""
    ab = torch.tensor([(1 - s) ** 2 / ((1 - s) ** 2 + s**2) for s in flow_times], dtype=torch.float64)
    return NoiseSchedule.from_alpha_bar(ab)


def test_on_the_straight_path_the_first_order_step_is_the_euler_step():
    """DDIM's step with eta = 0, x' = (1 - s') x0_hat + s' eps_hat, is x + (s' - s) v on the flow path: the path is
    straight, so the step that holds x0_hat fixed moves along the velocity. From pure noise too (alpha = 0)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 1, 2, 2, generator=g, dtype=torch.float64)
    for s, s_next in ((1.0, 0.8), (0.7, 0.4), (0.3, 0.05)):
        v = exact_velocity(x, s)
        got = _exp_step(x, x - s * v, flow_point(s), flow_point(s_next))
        assert torch.allclose(got, euler_step(x, v, s, s_next), atol=1e-14)


@pytest.mark.parametrize("b", ["h", "expm1"])
def test_the_steps_on_the_flow_path_are_the_schedules_steps_rescaled(b):
    """The multistep steps scale with the path: on the flow points 0.8 > 0.5 > 0.2 each equals the schedule's public
    step on x / c(s) with the same data predictions, times c at the point reached."""
    times = [0.2, 0.5, 0.8]  # t = 0, 1, 2
    schedule = vp_schedule(times)
    c = [((1 - s) ** 2 + s**2) ** 0.5 for s in times]
    g = torch.Generator().manual_seed(12)
    x, x0, x0_last, x0_t = (torch.randn(3, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(4))
    now, to, last = flow_point(0.5), flow_point(0.2), (x0_last, flow_point(0.8))
    want = dpmpp_2m_step(schedule, x / c[1], x0, 1, 0, x0_last, 2) * c[0]
    assert torch.allclose(_exp_step(x, x0, now, to, last), want, atol=1e-12)
    want = unip_step(schedule, x / c[1], x0, 1, 0, x0_last, 2, b=b) * c[0]
    assert torch.allclose(_unip(x, x0, now, to, last, b=b), want, atol=1e-12)
    want = unic_step(schedule, x / c[1], x0, 1, 0, x0_t, x0_last, 2, b=b) * c[0]  # from s = 0.5 to 0.2
    assert torch.allclose(_unic(x, x0, now, to, x0_t, last, b=b), want, atol=1e-12)
    assert _unic(x, x0, flow_point(1.0), to, x0_t, b=b) is None  # from pure noise h is infinite: no correction


@pytest.mark.parametrize("method", FLOW_MULTISTEP)
def test_the_multistep_solvers_reach_the_exact_transport_at_second_order(method):
    """Against the exact transport at the last visited flow time (as the schedule's solvers are read,
    tests/test_solvers.py). On the even grid of flow times, the steps in lambda = log((1 - s) / s) next to both ends
    do not shrink as the evaluations grow (from 2/K to 1/K, h -> log 2); the weights alpha and sigma there do. So the
    asymptotic order shows from about 40 evaluations, and it is 2 for both: UniPC's third order, which shows on the
    schedule's grids, does not show here (measured: DPM-Solver++(2M) 1.75, UniPC 2.06 over 40..320)."""
    x1 = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    counts, errors = [40, 80, 160, 320], []
    for n in counts:
        x0, traj = sample_flow_multistep(gaussian_velocity_model, x1.shape, steps=n, method=method, x_T=x1,
                                         dtype=torch.float64, return_trajectory=True)  # fmt: skip
        s_last = flow_timesteps(n)[-2]
        errors.append((traj[-2] - exact_transport(x1, 1.0, s_last)).abs().max().item())
        assert (x0 - (MU + STD * x1)).abs().max().item() < 0.02  # x0_hat at s = 1/n, the sample
    assert errors == sorted(errors, reverse=True)
    assert convergence_order(counts, errors) == pytest.approx(2.0, abs=0.3), f"{method}: errors {errors}"


def test_unipcs_corrector_is_what_brings_it_nearer_than_dpm_solver():
    """With B(h) = e^{-h} - 1 UniPC's predictor is DPM-Solver++(2M)'s step, so the two differ by the corrector alone;
    on Gaussian data it brings the last visited point 2.9 to 5.2 times nearer the exact transport over 40..320
    evaluations (measured)."""
    x1 = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def error(n, **kw):
        _, traj = sample_flow_multistep(gaussian_velocity_model, x1.shape, steps=n, x_T=x1, dtype=torch.float64,
                                        return_trajectory=True, **kw)  # fmt: skip
        return (traj[-2] - exact_transport(x1, 1.0, flow_timesteps(n)[-2])).abs().max().item()

    for n in (40, 80, 160, 320):
        corrected, plain = error(n, method="unipc", b="expm1"), error(n, method="dpmpp-2m")
        assert corrected < plain / 2, f"{n} evaluations: {corrected:.2e} against {plain:.2e}"
        assert error(n, method="unipc") != corrected  # b reaches the solver


@pytest.mark.parametrize("method", FLOW_MULTISTEP)
def test_the_multistep_solvers_count_evaluations_guide_in_one_call_and_repeat_with_a_seed(method):
    for n in range(1, 9):
        probe = Probe()
        sample_flow_multistep(probe, (3, 1, 2, 2), steps=n, method=method, shift=2.5)
        assert [t[0] / FLOW_TIME_SCALE for _, t, _ in probe.calls] == pytest.approx(flow_timesteps(n, 2.5)[:-1])
    probe = Probe()
    sample_flow_multistep(probe, (3, 1, 2, 2), steps=5, method=method, y=torch.tensor([4, 1, 7]), guidance=2.0)
    assert len(probe.calls) == 5 and all(labels == [4, 1, 7, *[NO_LABEL] * 3] for _, _, labels in probe.calls)

    def draw(seed):
        return sample_flow_multistep(gaussian_velocity_model, (3, 1, 4, 4), steps=6, method=method,
                                     generator=torch.Generator().manual_seed(seed), return_trajectory=True)  # fmt: skip

    (a, traj), (b, _), (c, _) = draw(3), draw(3), draw(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(traj) == 7 and torch.equal(traj[-1], a) and a.dtype == torch.float32


def test_the_multistep_solvers_refuse_bad_input():
    model, shape = gaussian_velocity_model, (1, 1, 2, 2)
    with pytest.raises(ValueError, match="method must be one of dpmpp-2m, unipc, got 'heun'"):
        sample_flow_multistep(model, shape, method="heun")
    for steps in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"steps=.* counts model evaluations and must be a positive int"):
            sample_flow_multistep(model, shape, steps=steps)
    with pytest.raises(ValueError, match="unknown B\\(h\\) 'x'"):
        sample_flow_multistep(model, shape, b="x")
    with pytest.raises(ValueError, match="must be a positive number"):
        sample_flow_multistep(model, shape, shift=0.0)
