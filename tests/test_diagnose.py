"""diagnose() names each usual reason for noisy samples, and stays quiet about a correct set-up."""

import math

import torch

from ddpm_lessons.diagnose import check_data_scaling, check_samples, check_sampling_loop, check_training, diagnose
from ddpm_lessons.samplers import p_sample, sample_ddim
from ddpm_lessons.schedules import NoiseSchedule

S = NoiseSchedule.make("linear", 1000)


def _loop(model, s, shape, generator, *, first=None, last=0, noise_at_end=False, grad=False):
    """A learner-style Algorithm 2 loop, written out with Eq. (11), with switchable mistakes."""
    first = s.T - 1 if first is None else first
    with torch.set_grad_enabled(grad):
        x = torch.randn(shape, generator=generator)
        for t in range(first, last - 1, -1):
            beta, alpha, ab = (float(v[t]) for v in (s.betas, s.alphas, s.alpha_bar))
            eps = model(x, torch.full((shape[0],), t))
            x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
            if t > 0 or noise_at_end:
                x = x + math.sqrt(beta) * torch.randn(shape, generator=generator)
    return x


def _by_name(findings):
    return {f.name: f for f in findings}


def test_a_correct_loop_passes_every_check():
    found = check_sampling_loop(_loop, S)
    assert all(f.ok for f in found), [str(f) for f in found]
    ddim = check_sampling_loop(lambda m, s, shape, g: sample_ddim(m, s, shape, steps=20, generator=g), S)
    assert all(f.ok for f in ddim), [str(f) for f in ddim]

    def with_package_p_sample(m, s, shape, g):
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            for t in reversed(range(s.T)):
                x = p_sample(m, s, x, t, generator=g)
        return x

    assert all(f.ok for f in check_sampling_loop(with_package_p_sample, S))


def test_each_sampling_mistake_is_named():
    assert (
        "z = 0 at t = 0"
        in _by_name(check_sampling_loop(lambda *a: _loop(*a, noise_at_end=True), S))["noise at the last step"].message
    )
    assert (
        "never takes the last step"
        in _by_name(check_sampling_loop(lambda *a: _loop(*a, last=1), S))["t off by one"].message
    )

    def calls_t_equal_T(model, s, shape, generator):  # the paper's t = T..1 used as code indices
        model(torch.zeros(shape), torch.full((shape[0],), s.T))
        return _loop(model, s, shape, generator)

    too_high = _by_name(check_sampling_loop(calls_t_equal_T, S))
    assert "t up to 1000" in too_high["t off by one"].message
    assert not _by_name(check_sampling_loop(lambda *a: _loop(*a, grad=True), S))["no_grad"].ok


def test_a_wrong_update_is_named():
    def variance_as_std(model, s, shape, generator):
        x = torch.randn(shape, generator=generator)
        for t in reversed(range(s.T)):
            beta, alpha, ab = (float(v[t]) for v in (s.betas, s.alphas, s.alpha_bar))
            x = (x - beta / (1 - ab) * model(x, torch.full((shape[0],), t))) / math.sqrt(alpha)
        return x

    with torch.no_grad():
        assert "update itself is wrong" in _by_name(check_sampling_loop(variance_as_std, S))["reverse step"].message


def test_data_scaling():
    pixels = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8)
    pixels[0, 0, 0, 0], pixels[0, 0, 0, 1] = 0, 255
    assert not check_data_scaling(pixels).ok
    assert "0..255" in check_data_scaling(pixels.float()).message
    assert "[0, 1]" in check_data_scaling(pixels.float() / 255).message
    assert not check_data_scaling((pixels.float() - 100) / 50).ok
    assert check_data_scaling(pixels.float() / 127.5 - 1).ok


def test_training_is_judged_by_l_simple_against_predicting_zero():
    x0 = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert not check_training(lambda xt, t: torch.zeros_like(xt), S, x0).ok  # loss 1.0

    def exact(xt, t):  # the exact eps-predictor for data that is exactly x0 (batch-aligned)
        ab = S.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()

    assert check_training(exact, S, x0).ok


def test_samples_and_the_whole_report(capsys):
    digits = torch.where(torch.rand(16, 1, 8, 8) > 0.8, 1.0, -1.0)
    noise = torch.randn(16, 1, 8, 8)
    assert check_samples(digits, digits).ok and not check_samples(noise, digits).ok
    findings = diagnose(data=digits / 2 + 0.5, sample_fn=lambda *a: _loop(*a, noise_at_end=True), samples=noise)
    out = capsys.readouterr().out
    assert [f.name for f in findings if not f.ok] == ["data scaling", "noise at the last step", "samples"]
    assert "3 problem(s) found" in out


def test_badly_scaled_data_still_gets_a_training_verdict_and_a_measured_reference(capsys):
    digits = torch.where(torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.7, 1.0, -1.0)
    findings = _by_name(diagnose(lambda xt, t: torch.zeros_like(xt), S, data=digits / 2 + 0.5, samples=digits))
    assert not findings["data scaling"].ok
    assert not findings["training"].ok and "1.0" in findings["training"].message  # predicting zero noise
    # the reference is the data's own share of saturated pixels, measured after mapping it to [-1, 1]: 100%
    assert findings["samples"].ok and "real digits: 100%" in findings["samples"].message
    half = digits.clone()
    half[:32] = 0.0  # a set of "real digits" with only half its pixels saturated
    assert "(real digits: 50%)" in check_samples(digits, half).message
    assert "(real digits: 37%)" in check_samples(digits, reference=0.37).message
    uint8 = ((digits + 1) * 127.5).round().to(torch.uint8)
    assert "real digits: 100%" in _by_name(diagnose(data=uint8, samples=digits, verbose=False))["samples"].message


def test_samples_without_a_reference_are_judged_by_their_range_only():
    assert "no real digits to compare" in check_samples(torch.rand(4, 1, 8, 8) * 2 - 1).message
    assert not check_samples(torch.randn(4, 1, 8, 8) * 5).ok
