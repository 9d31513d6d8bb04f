"""The conversions between eps, x0, v and the flow velocity, checked by round trips and against exact predictors
of Gaussian data computed independently, by Gaussian conditioning."""

import itertools

import pytest
import torch

from ddpm_lessons.forward import q_sample
from ddpm_lessons.objectives import (
    PREDICTIONS,
    as_eps_model,
    convert,
    flow_to_vp,
    prediction_target,
    vp_to_flow,
    x0_eps_from_prediction,
)
from ddpm_lessons.schedules import NoiseSchedule

MU, STD = 0.3, 0.5  # data: every pixel ~ N(MU, STD^2), independent


def _batch(schedule, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = (MU + STD * torch.randn(6, 1, 3, 3, generator=g, dtype=torch.float64)).clamp(-1, 1)
    eps = torch.randn(6, 1, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 500, 900, schedule.T - 1])
    return x0, eps, t, q_sample(schedule, x0, t, noise=eps)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_every_target_gives_back_x0_and_eps(kind):
    s = NoiseSchedule.make(kind, 1000)
    x0, eps, t, xt = _batch(s)
    for k in PREDICTIONS:
        got_x0, got_eps = x0_eps_from_prediction(s, xt, t, prediction_target(s, x0, eps, t, k), k)
        # float64; the tolerance covers x0 = (x_t - b eps) / a at alpha_bar = 4e-5 (cosine: 0) where a is tiny
        assert torch.allclose(got_x0, x0, atol=1e-6 if kind == "linear" else 1e-3), k
        assert torch.allclose(got_eps, eps, atol=1e-9), k


def test_round_trips_between_every_pair():
    s = NoiseSchedule.make("linear", 1000)
    x0, eps, t, xt = _batch(s, seed=1)
    for source, target in itertools.permutations(PREDICTIONS, 2):
        p = prediction_target(s, x0, eps, t, source)
        there = convert(s, xt, t, p, source, target)
        assert torch.allclose(there, prediction_target(s, x0, eps, t, target), atol=1e-6), (source, target)
        assert torch.allclose(convert(s, xt, t, there, target, source), p, atol=1e-6), (source, target)


def test_the_targets_are_the_papers_definitions():
    s = NoiseSchedule.make("linear", 1000)
    x0, eps, t, _ = _batch(s, seed=2)
    ab = s.alpha_bar[t].view(-1, 1, 1, 1)
    assert torch.equal(prediction_target(s, x0, eps, t, "eps"), eps)
    assert torch.allclose(prediction_target(s, x0, eps, t, "v"), ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    assert torch.allclose(prediction_target(s, x0, eps, t, "velocity"), eps - x0)


def exact_predictors(xt, alpha_bar):
    """E[target | x_t] for Gaussian data, each by Gaussian conditioning, E[z | x] = E[z] + Cov(z, x) / Var(x) (x - E[x]),
    with x_t = a x0 + b eps, x0 ~ N(MU, STD^2), eps ~ N(0, 1) independent."""
    a, b = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    centred = (xt - a * MU) / (a**2 * STD**2 + b**2)  # (x_t - E[x_t]) / Var(x_t)
    return {
        "eps": b * centred,  # Cov(eps, x_t) = b
        "x0": MU + a * STD**2 * centred,  # Cov(x0, x_t) = a STD^2
        "v": -b * MU + a * b * (1 - STD**2) * centred,  # Cov(a eps - b x0, x_t) = a b - b a STD^2
        "velocity": -MU + (b - a * STD**2) * centred,  # Cov(eps - x0, x_t) = b - a STD^2
    }


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_exact_predictors_of_gaussian_data_agree_through_the_conversion(t):
    s = NoiseSchedule.make("linear", 1000)
    xt = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    exact = exact_predictors(xt, s.alpha_bar[t].item())
    for target in ("x0", "v", "velocity"):
        got = convert(s, xt, t, exact["eps"], "eps", target)
        assert torch.allclose(got, exact[target], atol=1e-9), target
        back = convert(s, xt, t, exact[target], target, "eps")
        assert torch.allclose(back, exact["eps"], atol=1e-6 if target == "x0" else 1e-9), target


def test_an_exact_v_network_samples_like_the_exact_eps_network():
    from ddpm_lessons.samplers import sample_ddim

    s = NoiseSchedule.make("linear", 1000)

    def v_net(xt, t):
        return exact_predictors(xt, s.alpha_bar[t].to(xt).view(-1, 1, 1, 1))["v"]

    def eps_net(xt, t):
        return exact_predictors(xt, s.alpha_bar[t].to(xt).view(-1, 1, 1, 1))["eps"]

    x_T = torch.randn(16, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sample_ddim(as_eps_model(v_net, s, "v"), s, x_T.shape, steps=10, x_T=x_T)
    b = sample_ddim(eps_net, s, x_T.shape, steps=10, x_T=x_T)
    assert torch.allclose(a, b, atol=1e-9)
    labels = []
    as_eps_model(lambda xt, t, y: labels.append(y) or xt, s, "x0")(x_T, torch.zeros(16, dtype=torch.long), x_T)
    assert len(labels) == 1  # the condition is passed through


def test_vp_x_t_sits_on_the_flow_path():
    s = NoiseSchedule.make("cosine", 1000)
    x0, eps, t, xt = _batch(s, seed=3)
    x_s, flow_s = vp_to_flow(s, xt, t)
    assert torch.allclose(x_s, (1 - flow_s) * x0 + flow_s * eps)  # Lipman et al.'s straight path
    assert flow_s.shape == (6, 1, 1, 1) and bool(((flow_s > 0) & (flow_s < 1)).all())
    assert bool((flow_s.flatten().diff() > 0).all())  # more noise, later on the path
    back, alpha_bar = flow_to_vp(x_s, flow_s)
    assert torch.allclose(back, xt) and torch.allclose(alpha_bar.flatten(), s.alpha_bar[t])
    # and the flow velocity is d x_s / d s along the path, checked by a central difference
    ds = 1e-6
    slope = (((1 - (flow_s + ds)) * x0 + (flow_s + ds) * eps) - ((1 - (flow_s - ds)) * x0 + (flow_s - ds) * eps)) / (
        2 * ds
    )
    assert torch.allclose(slope, prediction_target(s, x0, eps, t, "velocity"), atol=1e-6)


def test_bad_input_names_the_fix():
    s = NoiseSchedule.make("linear", 100)
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown prediction 'score'; choose one of eps, x0, v, velocity"):
        convert(s, x, 5, x, "eps", "score")
    with pytest.raises(ValueError, match="valid t: 0..99"):
        convert(s, x, 100, x, "eps", "v")
    with pytest.raises(ValueError, match="same shape"):
        x0_eps_from_prediction(s, x, 5, torch.zeros(2, 1, 2, 3), "v")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        flow_to_vp(x, 1.5)


def test_min_snr_weight_in_closed_form_on_both_sides_of_gamma():
    """Below gamma the weights are those of the x0 error itself: 1 for eps, SNR for x0, alpha_bar for v
    (SNR / (SNR + 1)); above it the x0 weight is gamma, and the others follow by the same factors."""
    from ddpm_lessons.objectives import min_snr_weight

    schedule = NoiseSchedule.make("linear", 1000)
    t = torch.arange(1000)
    snr, ab = schedule.snr, schedule.alpha_bar
    low = snr < 5.0
    assert low.any() and (~low).any()
    torch.testing.assert_close(min_snr_weight(schedule, t, "eps")[low], torch.ones(int(low.sum()), dtype=snr.dtype))
    torch.testing.assert_close(min_snr_weight(schedule, t, "x0")[low], snr[low])
    torch.testing.assert_close(min_snr_weight(schedule, t, "v")[low], ab[low])
    torch.testing.assert_close(min_snr_weight(schedule, t, "x0")[~low], torch.full((int((~low).sum()),), 5.0,
                                                                                      dtype=snr.dtype))  # fmt: skip
    torch.testing.assert_close(min_snr_weight(schedule, t, "eps")[~low], 5.0 / snr[~low])
    torch.testing.assert_close(min_snr_weight(schedule, t, "v")[~low], 5.0 * (1 - ab[~low]))
    with pytest.raises(ValueError, match="eps, x0 and v objectives, not 'flow'"):
        min_snr_weight(schedule, t, "flow")
    with pytest.raises(ValueError, match="gamma must be positive"):
        min_snr_weight(schedule, t, "eps", gamma=0.0)
