"""Beta schedules against their defining formulas."""

import math

import pytest
import torch

from ddpm_lessons.schedules import SCHEDULE_KINDS, NoiseSchedule, make_beta_schedule


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_betas_in_unit_interval_and_alpha_bar_decreasing(kind):
    s = NoiseSchedule.make(kind, T=1000)
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    assert bool(((s.betas > 0) & (s.betas < 1)).all())
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all())
    assert bool(((s.alpha_bar > 0) & (s.alpha_bar < 1)).all())
    if kind != "cosine":  # cosine betas grow too, but are clipped at 0.999 at the very end
        assert bool((s.betas[1:] >= s.betas[:-1]).all())


def test_linear_matches_the_paper():
    betas = make_beta_schedule("linear", 1000)
    assert betas[0].item() == 1e-4 and betas[-1].item() == 0.02
    # alpha_bar_T = prod (1 - beta_t); computed independently in plain Python floats
    prod = 1.0
    for i in range(1000):
        prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999)
    s = NoiseSchedule.make("linear", 1000)
    assert s.alpha_bar[-1].item() == pytest.approx(prod, rel=1e-9)
    assert s.alpha_bar[-1].item() == pytest.approx(4.0e-5, rel=0.05)  # "about 4.0e-5"


def test_cosine_alpha_bar_follows_its_formula():
    T, s_ = 1000, 0.008
    s = NoiseSchedule.make("cosine", T)

    def f(t):
        return math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2

    for t in [0, 1, 10, 250, 500, 900, 990]:  # the clip at 0.999 only touches the last steps
        assert s.alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert s.betas.max().item() <= 0.999


def test_quadratic_and_sigmoid_endpoints():
    q = make_beta_schedule("quadratic", 100, beta_start=1e-4, beta_end=0.02)
    assert q[0].item() == pytest.approx(1e-4) and q[-1].item() == pytest.approx(0.02)
    assert torch.allclose(q.sqrt()[1:] - q.sqrt()[:-1], (q.sqrt()[1] - q.sqrt()[0]).expand(99))
    sg = make_beta_schedule("sigmoid", 100)
    assert 1e-4 < sg[0].item() < 2e-4 and 0.0199 < sg[-1].item() < 0.02


def test_posterior_constants():
    s = NoiseSchedule.make("linear", 50)
    assert s.alpha_bar_prev[0].item() == 1.0 and s.beta_tilde[0].item() == 0.0
    assert torch.allclose(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
    assert bool((s.beta_tilde[1:] < s.betas[1:]).all())  # beta_tilde_t <= beta_t
    assert torch.isfinite(s.beta_tilde_log_clipped).all()


def test_unknown_kind_and_bad_t_name_the_fix():
    with pytest.raises(ValueError, match="unknown schedule kind 'cosin'.*linear, cosine"):
        make_beta_schedule("cosin")
    s = NoiseSchedule.make("linear", 1000)
    with pytest.raises(ValueError, match=r"t has value 1000 .*T=1000.*valid t: 0\.\.999"):
        s.check_t(torch.tensor([3, 1000]), "q_sample")
    with pytest.raises(ValueError, match=r"t has value -1"):
        s.check_t(-1, "q_sample")
    with pytest.raises(TypeError, match="integer timesteps"):
        s.check_t(torch.tensor([0.5]), "q_sample")
    with pytest.raises(ValueError, match="beta_start"):
        make_beta_schedule("linear", 10, beta_start=0.5, beta_end=0.1)


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_from_alpha_bar_gives_back_the_betas_of_each_kind(kind):
    s = NoiseSchedule.make(kind, 1000)
    again = NoiseSchedule.from_alpha_bar(s.alpha_bar, kind="again")
    assert torch.allclose(again.betas, s.betas, rtol=1e-9, atol=1e-12)
    assert torch.allclose(again.alpha_bar, s.alpha_bar, rtol=1e-12)
    short = NoiseSchedule.from_alpha_bar(s.alpha_bar[::100])  # every 100th: the betas that reach those alpha_bar
    assert torch.allclose(short.alpha_bar, s.alpha_bar[::100], rtol=1e-12)


def test_from_alpha_bar_refuses_what_no_betas_give():
    for bad in ([0.9, 0.95], [1.0, 0.5], [0.5, 0.0], [], [0.9, 0.9]):
        with pytest.raises(ValueError, match="alpha_bar must fall strictly from below 1 to above 0"):
            NoiseSchedule.from_alpha_bar(torch.tensor(bad, dtype=torch.float64))
