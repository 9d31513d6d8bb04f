"""Samplers checked without a trained network: the exact eps-predictor of a known data distribution."""

import pytest
import torch

from ddpm_lessons.forward import predict_eps_from_x0
from ddpm_lessons.samplers import (
    ddim_timesteps,
    guided_eps,
    p_mean_variance,
    p_sample,
    sample_ddim,
    sample_ddpm,
)
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.solvers import sample_dpmpp_2m, sample_heun, sample_in_batches, sample_unipc

MU, STD = 0.3, 0.5  # data: every pixel ~ N(MU, STD^2), independent


def gaussian_eps(schedule):
    """E[eps | x_t] for Gaussian data: x_t ~ N(sqrt(ab) MU, ab STD^2 + 1 - ab), eps = its noise part."""

    def model(xt, t):
        ab = schedule.alpha_bar[t].to(xt).view(-1, *[1] * (xt.ndim - 1))
        return (1 - ab).sqrt() * (xt - ab.sqrt() * MU) / (ab * STD**2 + 1 - ab)

    return model


def points_eps(schedule, points):
    """E[eps | x_t] when x0 is one of ``points`` (K, D) with equal probability."""

    def model(xt, t):
        ab = schedule.alpha_bar[t].to(xt).view(-1, 1, 1)
        flat = xt.flatten(1)[:, None, :]  # (B, 1, D)
        logits = -((flat - ab.sqrt() * points[None]) ** 2).sum(-1) / (2 * (1 - ab.view(-1, 1)))  # (B, K)
        x0 = (logits.softmax(-1) @ points).view_as(xt)  # E[x0 | x_t]
        return predict_eps_from_x0(schedule, xt, t, x0)

    return model


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_reproduces_a_gaussian(variance):
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x = sample_ddpm(gaussian_eps(s), s, (4000, 1, 2, 2), clip_x0=False, variance=variance, generator=g)
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    # sigma_t^2 = beta_t slightly over-disperses, beta_tilde slightly under (Ho et al. Sec. 3.2)
    assert x.std().item() == pytest.approx(STD, rel=0.03)


def test_ddim_eta0_reproduces_a_gaussian_and_is_deterministic():
    s = NoiseSchedule.make("linear", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    a = sample_ddim(model, s, x_T.shape, steps=100, eta=0.0, clip_x0=False, x_T=x_T)
    b = sample_ddim(model, s, x_T.shape, steps=100, eta=0.0, clip_x0=False, x_T=x_T,
                    generator=torch.Generator().manual_seed(99))  # fmt: skip
    assert torch.equal(a, b)
    assert a.mean().item() == pytest.approx(MU, abs=0.02)
    assert a.std().item() == pytest.approx(STD, rel=0.04)


def test_ddim_eta1_all_steps_is_ddpm_with_beta_tilde():
    """Song et al.: eta = 1 over every step is the DDPM chain with sigma^2 = beta_tilde. Same noise, same path."""
    s = NoiseSchedule.make("linear", 200)
    model = gaussian_eps(s)
    kw = dict(clip_x0=False, generator=None)
    a = sample_ddim(
        model, s, (64, 1, 2, 2), steps=200, eta=1.0, **{**kw, "generator": torch.Generator().manual_seed(5)}
    )
    b = sample_ddpm(
        model,
        s,
        (64, 1, 2, 2),
        variance="beta_tilde",
        **{**kw, "generator": torch.Generator().manual_seed(5)},
    )
    assert torch.allclose(a, b, atol=1e-4)


def test_samplers_find_the_points_of_a_discrete_distribution():
    s = NoiseSchedule.make("cosine", 1000)
    points = torch.tensor([[-0.8, 0.6], [0.7, -0.5], [0.2, 0.9]])
    model = points_eps(s, points)
    for x in (
        sample_ddpm(model, s, (3000, 1, 1, 2), generator=torch.Generator().manual_seed(2)),
        sample_ddim(model, s, (3000, 1, 1, 2), steps=50, generator=torch.Generator().manual_seed(2)),
    ):
        flat = x.flatten(1)
        dist = torch.cdist(flat, points)  # (N, K)
        assert dist.min(1).values.max().item() < 0.05  # every sample sits on one of the points
        share = torch.bincount(dist.argmin(1), minlength=3) / len(flat)
        assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.04)


def test_same_seed_same_samples_and_trajectory_shape():
    s = NoiseSchedule.make("linear", 50)
    model = gaussian_eps(s)
    a, traj = sample_ddpm(model, s, (3, 1, 4, 4), generator=torch.Generator().manual_seed(3), return_trajectory=True)
    b = sample_ddpm(model, s, (3, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and len(traj) == 51 and torch.equal(traj[-1], a)
    _, traj = sample_ddim(model, s, (3, 1, 4, 4), steps=10, return_trajectory=True)
    assert len(traj) == 11


def test_last_step_adds_no_noise():
    """Algorithm 2: z = 0 at the final step, so p_sample at t = 0 returns the mean, whatever the seed."""
    s = NoiseSchedule.make("linear", 1000)
    xt = torch.randn(4, 1, 3, 3)
    model = gaussian_eps(s)
    mean = p_mean_variance(model, s, xt, torch.zeros(4, dtype=torch.long), clip_x0=False).mean
    for seed in (0, 1):
        out = p_sample(model, s, xt, 0, clip_x0=False, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out, mean)
    a = p_sample(model, s, xt, 1, generator=torch.Generator().manual_seed(0))
    b = p_sample(model, s, xt, 1, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


def test_guidance_combines_conditional_and_unconditional():
    calls = []

    def model(xt, t, y):
        calls.append(y.tolist())
        return torch.where(y.view(-1, 1, 1, 1) >= 0, torch.ones_like(xt), torch.zeros_like(xt)) * 2.0

    xt, t = torch.zeros(2, 1, 2, 2), torch.tensor([5, 5])
    eps = guided_eps(model, xt, t, torch.tensor([3, 7]), guidance=1.5)
    assert calls == [[3, 7, -1, -1]]
    assert torch.allclose(eps, torch.full_like(xt, (1 + 1.5) * 2.0 - 1.5 * 0.0))
    assert torch.equal(guided_eps(model, xt, t, torch.tensor([3, 7]), guidance=0.0), torch.full_like(xt, 2.0))


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = ddim_timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(100, 0)


def test_ddim_step_to_the_end_returns_the_predicted_x0_and_refuses_to_go_forwards():
    from ddpm_lessons.forward import predict_x0_from_eps
    from ddpm_lessons.samplers import ddim_step

    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    xt, eps = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    expected = predict_x0_from_eps(s, xt, torch.tensor([40, 40]), eps)  # alpha_bar after the last step is 1
    assert torch.allclose(ddim_step(s, xt, eps, 40, -1, clip_x0=False), expected)
    with pytest.raises(ValueError, match="t_prev < t"):
        ddim_step(s, xt, eps, 40, 40)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp-2m", "unipc", "heun"])
def test_sampling_in_batches_is_the_same_draw_as_batch_by_batch_by_hand(sampler):
    s = NoiseSchedule.make("linear", 20)
    model = gaussian_eps(s)
    got = sample_in_batches(model, s, 5, (1, 2, 2), batch_size=2, sampler=sampler, steps=4,
                            generator=torch.Generator().manual_seed(1))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    one_batch = {
        "ddpm": lambda b: sample_ddpm(model, s, (b, 1, 2, 2), generator=g),
        "ddim": lambda b: sample_ddim(model, s, (b, 1, 2, 2), steps=4, generator=g),
        "dpmpp-2m": lambda b: sample_dpmpp_2m(model, s, (b, 1, 2, 2), steps=4, generator=g),
        "unipc": lambda b: sample_unipc(model, s, (b, 1, 2, 2), steps=4, generator=g),
        "heun": lambda b: sample_heun(model, s, (b, 1, 2, 2), steps=4, generator=g),
    }[sampler]
    by_hand = [one_batch(b) for b in (2, 2, 1)]
    assert got.shape == (5, 1, 2, 2) and torch.equal(got, torch.cat(by_hand))
    with pytest.raises(ValueError, match="3 labels for n=5 samples"):
        sample_in_batches(model, s, 5, (1, 2, 2), labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(
        ValueError, match="unknown sampler 'rk4'; choose one of ddpm, ddim, dpmpp-2m, unipc, heun, euler"
    ):
        sample_in_batches(model, s, 5, (1, 2, 2), sampler="rk4")
    with pytest.raises(ValueError, match="sampler 'euler' does not fit a model trained with objective 'eps'"):
        sample_in_batches(model, s, 5, (1, 2, 2), sampler="euler")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp-2m", "unipc", "heun", "flow", "in_batches", "in_batches_bf16"])
def test_a_sampler_works_where_the_model_is_unless_told(name, monkeypatch):
    """With no ``device``, every sampler draws x_T where the model's weights are (a model moved to a GPU samples
    there; here the 'meta' device stands in for it, on a CPU-only machine), an explicit ``device`` wins, and a
    plain function falls back to where x_T is, else the CPU."""
    from ddpm_lessons import flow, samplers, solvers

    seen = []

    def spy(shape, generator, device, dtype, x_T, model=None):
        seen.append(samplers.sampling_device(model, device, x_T))
        raise _Stop

    for module in (samplers, solvers, flow):
        monkeypatch.setattr(module, "draw_x_T", spy)
    net = torch.nn.Conv2d(1, 1, 1).to("meta")
    schedule = NoiseSchedule.make("linear", 1000)
    calls = {
        "ddpm": lambda **kw: samplers.sample_ddpm(net, schedule, (2, 1, 4, 4), **kw),
        "ddim": lambda **kw: samplers.sample_ddim(net, schedule, (2, 1, 4, 4), steps=3, **kw),
        "dpmpp-2m": lambda **kw: solvers.sample_dpmpp_2m(net, schedule, (2, 1, 4, 4), steps=3, **kw),
        "unipc": lambda **kw: solvers.sample_unipc(net, schedule, (2, 1, 4, 4), steps=3, **kw),
        "heun": lambda **kw: solvers.sample_heun(net, schedule, (2, 1, 4, 4), steps=3, **kw),
        "flow": lambda **kw: flow.sample_flow(net, (2, 1, 4, 4), steps=3, **kw),
        "in_batches": lambda **kw: solvers.sample_in_batches(net, schedule, 2, (1, 4, 4), **kw),
        "in_batches_bf16": lambda **kw: solvers.sample_in_batches(net, schedule, 2, (1, 4, 4), precision="bf16", **kw),
    }
    for kwargs in ({}, {"device": "cpu"}):
        with pytest.raises(_Stop):
            calls[name](**kwargs)
    assert [d.type for d in seen] == ["meta", "cpu"]

    assert samplers.sampling_device(lambda x, t: x) == torch.device("cpu")
    from ddpm_lessons.objectives import as_eps_model
    from ddpm_lessons.superres import conditioned

    wrapped = [conditioned(net, torch.zeros(2, 1, 4, 4)), as_eps_model(net, schedule, "v"), solvers.in_bfloat16(net),
               samplers.respace(net, schedule, 10)[0], solvers.in_bfloat16(as_eps_model(net, schedule, "x0"))]  # fmt: skip
    assert [samplers.sampling_device(m).type for m in wrapped] == ["meta"] * len(wrapped)
    assert samplers.sampling_device(lambda x, t: x, x_T=torch.zeros(1, device="meta")).type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_seed_gives_the_cpus_samples_and_q_sample_takes_a_cpu_generator(monkeypatch):
    """Where a GPU is at hand: a model moved there samples there without ``device``, from the same x_T as on the
    CPU (drawn by a CPU generator), and q_sample draws a CPU generator's noise for x0 on the GPU."""
    from ddpm_lessons.forward import q_sample
    from ddpm_lessons.unet import UNet, UNetConfig

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions (Ampere on) round otherwise
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)).eval()
    schedule = NoiseSchedule.make("linear", 1000)
    on_cpu = sample_ddim(net, schedule, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(3))
    on_gpu = sample_ddim(net.cuda(), schedule, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(3))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=1e-3)
    x0 = torch.rand(2, 1, 28, 28) * 2 - 1
    cpu = q_sample(schedule, x0, 500, generator=torch.Generator().manual_seed(1))
    gpu = q_sample(schedule, x0.cuda(), 500, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gpu.cpu(), cpu)
