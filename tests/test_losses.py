"""The VLB's pieces: Gaussian KL by Monte Carlo, the decoder's bins, the oracle model, L_simple."""

import math

import pytest
import torch

from ddpm_lessons.forward import predict_eps_from_x0, q_sample
from ddpm_lessons.losses import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    l_simple,
    normal_kl,
    vlb_terms,
)
from ddpm_lessons.schedules import NoiseSchedule


def test_normal_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.4, math.log(2.0)
    x = m1 + math.exp(0.5 * lv1) * torch.randn(2_000_000, generator=g, dtype=torch.float64)

    def log_pdf(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))

    mc = (log_pdf(x, m1, lv1) - log_pdf(x, m2, lv2)).mean().item()
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    assert normal_kl(t(m1), t(lv1), t(m2), t(lv2)).item() == pytest.approx(mc, abs=3e-3)
    assert normal_kl(t(m1), t(lv1), t(m1), t(lv1)).item() == 0.0


@pytest.mark.parametrize("mean,log_var", [(0.0, math.log(0.1)), (0.97, math.log(1e-4)), (-1.3, 0.0)])
def test_discretized_likelihood_sums_to_one_over_256_bins(mean, log_var):
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 256 values of from_uint8
    logp = discretized_gaussian_log_likelihood(levels, torch.full_like(levels, mean), torch.full_like(levels, log_var))
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_discretized_likelihood_interior_bin_is_a_cdf_difference():
    x, m, s = torch.tensor([0.2], dtype=torch.float64), 0.1, 0.3
    normal = torch.distributions.Normal(m, s)
    expected = (normal.cdf(x + 1 / 255) - normal.cdf(x - 1 / 255)).log()
    got = discretized_gaussian_log_likelihood(x, torch.tensor([m]), torch.tensor([2 * math.log(s)]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)


def _oracle(schedule, x0):
    """The exact noise predictor for a single known x0: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""
    return lambda xt, t: predict_eps_from_x0(schedule, xt, t, x0)


def _digits(n=2):
    levels = torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(3))
    return levels.double() / 127.5 - 1.0


def test_vlb_with_oracle_model_has_zero_kl_terms():
    s = NoiseSchedule.make("linear", 200)
    x0 = _digits()
    terms = vlb_terms(_oracle(s, x0), s, x0, generator=torch.Generator().manual_seed(0))
    assert terms.L_t_minus_1.shape == (2, 199)
    assert terms.L_t_minus_1.abs().max().item() < 1e-8  # L_{t-1} = 0 for t > 1
    # L_0 with the exact mean: each pixel's bin of half-width 1/255 under N(x0, beta_tilde_1),
    # the outer bins reaching to infinity, computed here with torch.distributions.
    sigma = s.beta_tilde[1].sqrt().item()
    normal = torch.distributions.Normal(0.0, sigma)
    inner = -(normal.cdf(torch.tensor(1 / 255)) - normal.cdf(torch.tensor(-1 / 255))).log()
    outer = -normal.cdf(torch.tensor(1 / 255)).log()
    edge = (x0.abs() == 1).flatten(1).sum(1)
    expected_L0 = edge * outer + (36 - edge) * inner
    assert torch.allclose(terms.L_0, expected_L0.double(), rtol=1e-5)
    bpd = bits_per_dim(_oracle(s, x0), s, x0)
    assert torch.isfinite(bpd).all() and bool((bpd > 0).all())
    # Only the prior term and the decoder are left.
    assert torch.allclose(bpd, (terms.L_T + terms.L_0) / (36 * math.log(2)), rtol=1e-6)


def test_vlb_of_a_zero_model_is_worse_than_the_oracle():
    s = NoiseSchedule.make("linear", 100)
    x0 = _digits()
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    bad = bits_per_dim(zero, s, x0, generator=torch.Generator().manual_seed(0))
    good = bits_per_dim(_oracle(s, x0), s, x0, generator=torch.Generator().manual_seed(0))
    assert bool((bad > good + 1).all())


def test_l_simple_is_zero_for_the_oracle_and_matches_a_hand_computation():
    s = NoiseSchedule.make("linear", 1000)
    x0 = _digits(4)
    assert l_simple(_oracle(s, x0), s, x0, generator=torch.Generator().manual_seed(0)).item() < 1e-12
    t, eps = torch.tensor([0, 3, 500, 999]), torch.randn(x0.shape, dtype=torch.float64)
    model = lambda xt, t: 0.5 * xt  # noqa: E731
    expected = ((eps - 0.5 * q_sample(s, x0, t, noise=eps)) ** 2).mean()
    assert l_simple(model, s, x0, t=t, noise=eps).item() == pytest.approx(expected.item(), rel=1e-12)


def test_l_simple_passes_labels_and_checks_model_output():
    s = NoiseSchedule.make("linear", 10)
    x0 = _digits(2)
    seen = {}

    def model(xt, t, y):
        seen["y"] = y
        return torch.zeros_like(xt)

    l_simple(model, s, x0, y=torch.tensor([3, 4]))
    assert seen["y"].tolist() == [3, 4]
    with pytest.raises(ValueError, match="eps_model returned .*same shape"):
        l_simple(lambda xt, t: xt[:, :, :2], s, x0)


def test_the_bound_runs_where_the_model_is(monkeypatch):
    """A network on another device than the images (on a GPU in lesson 02's FULL profile; here the 'meta' device
    stands in for it, where no value can be checked, so q_sample's finiteness check is bypassed) gets x0 and y moved
    to it; a function without weights gets them where they are."""
    from ddpm_lessons import losses

    net = torch.nn.Conv2d(1, 1, 1).to("meta")
    seen = []

    class Seen(Exception):
        pass

    def model(xt, t, y):
        seen.append((xt.device.type, t.device.type, y.device.type))
        raise Seen

    model.__wrapped__ = net  # as the package's wrappers mark the network behind them
    schedule = NoiseSchedule.make("linear", 3)
    x0, y = torch.zeros(2, 1, 4, 4), torch.tensor([1, 2])
    with monkeypatch.context() as patch, pytest.raises(Seen):
        patch.setattr(losses, "q_sample", lambda schedule, x0, t, generator=None: x0 + 0 * t[:, None, None, None])
        vlb_terms(model, schedule, x0, y=y, generator=torch.Generator().manual_seed(0))
    assert seen == [("meta", "meta", "meta")]
    seen.clear()
    vlb_terms(lambda xt, t, y: seen.append(xt.device.type) or torch.zeros_like(xt), schedule, x0, y=y)
    assert seen == ["cpu"] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_bound_of_a_gpu_model_on_cpu_digits_is_the_cpus(monkeypatch):
    """Where a GPU is at hand (scripts/gpu_checks.sh runs this): bits_per_dim of a network moved there, given images
    and a generator on the CPU, equals the bound computed on the CPU, and comes back on the CPU."""
    from ddpm_lessons.unet import UNet, UNetConfig

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions (Ampere on) round otherwise
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # zero-initialised: make the output depend on input
    schedule = NoiseSchedule.make("linear", 50)
    x0 = torch.rand(2, 1, 28, 28) * 2 - 1
    on_cpu = bits_per_dim(net, schedule, x0, generator=torch.Generator().manual_seed(1))
    on_gpu = bits_per_dim(net.cuda(), schedule, x0, generator=torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cpu"
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-4)
