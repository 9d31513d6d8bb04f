"""Every exercise check passes the reference answer and catches known-wrong ones with the right hint."""

import math

import pytest
import torch

from ddpm_lessons import checks
from ddpm_lessons.checks import CheckFailed
from ddpm_lessons.forward import q_posterior, q_sample
from ddpm_lessons.losses import normal_kl
from ddpm_lessons.unet import ResBlock, timestep_embedding


def _passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("PASS ") and out.count("\n") == 1


def test_scaling(capsys):
    _passes(checks.check_scaling, lambda p: p.float() / 127.5 - 1, capsys)
    with pytest.raises(CheckFailed, match="That is \\[0, 1\\]"):
        checks.check_scaling(lambda p: p.float() / 255)
    with pytest.raises(CheckFailed, match="integer tensor"):
        checks.check_scaling(lambda p: p * 2 - 1)
    with pytest.raises(CheckFailed, match="Subtract 1"):
        checks.check_scaling(lambda p: p.float() / 127.5)


def test_alpha_bar(capsys):
    _passes(checks.check_alpha_bar, lambda b: torch.cumprod(1 - b, 0), capsys)
    with pytest.raises(CheckFailed, match="multiplied the betas"):
        checks.check_alpha_bar(lambda b: torch.cumprod(b, 0))
    with pytest.raises(CheckFailed, match="Off by one"):
        checks.check_alpha_bar(lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]))
    with pytest.raises(CheckFailed, match="wrong shape"):
        checks.check_alpha_bar(lambda b: torch.prod(1 - b))
    with pytest.raises(CheckFailed, match="forget `return`"):
        checks.check_alpha_bar(lambda b: None)


def test_q_sample(capsys):
    _passes(checks.check_q_sample, lambda s, x0, t, eps: q_sample(s, x0, t, noise=eps), capsys)

    def variance_instead_of_std(s, x0, t, eps):
        ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
        return ab * x0 + (1 - ab) * eps

    def off_by_one(s, x0, t, eps):
        ab = s.alpha_bar_prev[t].float().view(-1, 1, 1, 1)  # alpha_bar_{t-1}
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def no_broadcast(s, x0, t, eps):
        ab = s.alpha_bar[t].float()
        return ab.sqrt() * x0.flatten(1).T

    with pytest.raises(CheckFailed, match="Variance where the standard deviation belongs"):
        checks.check_q_sample(variance_instead_of_std)
    with pytest.raises(CheckFailed, match="Off by one in t"):
        checks.check_q_sample(off_by_one)
    with pytest.raises(CheckFailed, match="wrong shape.*broadcast"):
        checks.check_q_sample(no_broadcast)


def test_posterior(capsys):
    def right(s, x0, xt, t):
        mean, var, _ = q_posterior(s, x0, xt, t)
        return mean, var

    _passes(checks.check_posterior, right, capsys)
    with pytest.raises(CheckFailed, match="beta_t, the forward step's variance"):
        checks.check_posterior(lambda s, x0, xt, t: (right(s, x0, xt, t)[0], s.betas[t].view(-1, 1, 1, 1)))
    with pytest.raises(CheckFailed, match="standard deviation"):
        checks.check_posterior(lambda s, x0, xt, t: (right(s, x0, xt, t)[0], right(s, x0, xt, t)[1].sqrt()))

    def swapped(s, x0, xt, t):
        c0 = s.posterior_mean_coef_x0[t].view(-1, 1, 1, 1)
        ct = s.posterior_mean_coef_xt[t].view(-1, 1, 1, 1)
        return ct * x0 + c0 * xt, right(s, x0, xt, t)[1]

    with pytest.raises(CheckFailed, match="coefficients are swapped"):
        checks.check_posterior(swapped)
    with pytest.raises(CheckFailed, match="pair"):
        checks.check_posterior(lambda s, x0, xt, t: right(s, x0, xt, t)[0])


def test_normal_kl(capsys):
    _passes(checks.check_normal_kl, normal_kl, capsys)
    with pytest.raises(CheckFailed, match="wrong way round"):
        checks.check_normal_kl(lambda m1, l1, m2, l2: normal_kl(m2, l2, m1, l1))
    with pytest.raises(CheckFailed, match="factor 1/2"):
        checks.check_normal_kl(lambda m1, l1, m2, l2: 2 * normal_kl(m1, l1, m2, l2))


def test_timestep_embedding(capsys):
    _passes(checks.check_timestep_embedding, timestep_embedding, capsys)
    with pytest.raises(CheckFailed, match="halves are swapped"):
        checks.check_timestep_embedding(lambda t, d: timestep_embedding(t, d).roll(d // 2, dims=1))

    def interleaved(t, d):
        half = d // 2
        w = torch.exp(-math.log(10_000) * torch.arange(half) / (half - 1))
        a = t.float()[:, None] * w
        return torch.stack([a.sin(), a.cos()], 2).reshape(len(t), d)

    with pytest.raises(CheckFailed, match="Interleaved"):
        checks.check_timestep_embedding(interleaved)


def test_res_block(capsys):
    _passes(checks.check_res_block, ResBlock, capsys)

    class NoSkip(ResBlock):
        def forward(self, x, emb):
            return super().forward(x, emb) - self.skip(x)

    class NoEmb(ResBlock):
        def forward(self, x, emb):
            F = torch.nn.functional
            return self.skip(x) + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))

    class Renamed(torch.nn.Module):
        def __init__(self, *args):
            super().__init__()
            self.first = torch.nn.Conv2d(8, 16, 3)

    with pytest.raises(CheckFailed, match="skip connection is missing"):
        checks.check_res_block(NoSkip)
    with pytest.raises(CheckFailed, match="time embedding is not used"):
        checks.check_res_block(NoEmb)
    with pytest.raises(CheckFailed, match="same layer names"):
        checks.check_res_block(Renamed)
