"""Every exercise check passes the reference answer and catches known-wrong ones with the right hint."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from ddpm_lessons import checks
from ddpm_lessons.checks import CheckFailed
from ddpm_lessons.forward import q_posterior, q_sample
from ddpm_lessons.losses import normal_kl
from ddpm_lessons.solvers import dpmpp_2m_step
from ddpm_lessons.unet import NO_LABEL, ResBlock, timestep_embedding


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


# ---- lessons 04-06 ------------------------------------------------------------------------------
def _training_loss(model, s, x0, generator, *, t_low=0, t_high=None, forward="eps4", target="eps"):
    t_high = s.T if t_high is None else t_high
    t = torch.randint(t_low, t_high, (x0.shape[0],), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    ab = s.alpha_bar[t.clamp(max=s.T - 1)].float().view(-1, 1, 1, 1)
    xt = {
        "eps4": ab.sqrt() * x0 + (1 - ab).sqrt() * eps,
        "variance": ab * x0 + (1 - ab) * eps,
        "plain": x0 + eps,
    }[forward]
    pred = model(xt, t)
    return torch.nn.functional.mse_loss(pred, {"eps": eps, "x0": x0}[target])


def test_training_loss(capsys):
    _passes(checks.check_training_loss, _training_loss, capsys)
    with pytest.raises(CheckFailed, match="Off by one"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g, t_low=1, t_high=s.T + 1))
    with pytest.raises(CheckFailed, match="Variance where"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g, forward="variance"))
    with pytest.raises(CheckFailed, match="not just x0 \\+ eps"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g, forward="plain"))
    with pytest.raises(CheckFailed, match="target is the noise"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g, target="x0"))
    with pytest.raises(CheckFailed, match="no gradient"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g).detach())
    with pytest.raises(CheckFailed, match="uniform"):
        checks.check_training_loss(lambda m, s, x0, g: _training_loss(m, s, x0, g, t_low=500, t_high=501))


def _p_sample(model, s, xt, t, generator, *, noise_at_end=False, std="beta", off=0):
    i = t - off
    beta, alpha, ab = (float(v[i]) for v in (s.betas, s.alphas, s.alpha_bar))
    eps = model(xt, torch.full((xt.shape[0],), t))
    mean = (xt - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)  # Eq. (11)
    if t == 0 and not noise_at_end:
        return mean
    z = torch.randn(xt.shape, generator=generator)
    sigma = {"beta": math.sqrt(beta), "variance": beta, "beta_tilde": math.sqrt(float(s.beta_tilde[i]))}[std]
    return mean + sigma * z


def test_p_sample(capsys):
    _passes(checks.check_p_sample, _p_sample, capsys)
    with pytest.raises(CheckFailed, match="Noise was added at the last step"):
        checks.check_p_sample(lambda *a: _p_sample(*a, noise_at_end=True))
    with pytest.raises(CheckFailed, match="Variance where"):
        checks.check_p_sample(lambda *a: _p_sample(*a, std="variance"))
    with pytest.raises(CheckFailed, match="beta_tilde"):
        checks.check_p_sample(lambda *a: _p_sample(*a, std="beta_tilde"))
    with pytest.raises(CheckFailed, match="Off by one"):
        checks.check_p_sample(lambda m, s, xt, t, g: _p_sample(m, s, xt, t, g, off=1 if t > 0 else 0))


def _ddim_step(
    s, xt, eps, t, t_prev, eta, generator, *, python_index=False, ddpm_habit=False, sigma_in_coef=True, noise=True
):
    ab = float(s.alpha_bar[t])
    prev = t - 1 if ddpm_habit else t_prev
    ab_prev = float(s.alpha_bar[prev]) if (prev >= 0 or python_index) else 1.0
    x0_pred = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)  # Eq. (15)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))  # Song et al. Eq. (16)
    coef = math.sqrt(max(1 - ab_prev - (sigma**2 if sigma_in_coef else 0.0), 0.0))
    x = math.sqrt(ab_prev) * x0_pred + coef * eps  # Song et al. Eq. (12)
    return x + sigma * torch.randn(xt.shape, generator=generator) if noise and sigma > 0 else x


def test_ddim_step(capsys):
    _passes(checks.check_ddim_step, _ddim_step, capsys)
    with pytest.raises(CheckFailed, match="alpha_bar\\[-1\\] is the LAST entry"):
        checks.check_ddim_step(lambda *a: _ddim_step(*a, python_index=True))
    with pytest.raises(CheckFailed, match="not alpha_bar\\[t - 1\\]"):
        checks.check_ddim_step(lambda *a: _ddim_step(*a, ddpm_habit=True))
    with pytest.raises(CheckFailed, match="fresh noise takes its share"):
        checks.check_ddim_step(lambda *a: _ddim_step(*a, sigma_in_coef=False))
    with pytest.raises(CheckFailed, match="adds fresh noise sigma_t z"):
        checks.check_ddim_step(lambda *a: _ddim_step(*a, noise=False))
    with pytest.raises(CheckFailed, match="eta=0.5"):  # eta ignored: the eta = 0.5 case is the first to differ
        checks.check_ddim_step(
            lambda s, xt, eps, t, tp, eta, g: _ddim_step(s, xt, eps, t, tp, 0.0 if eta < 1 else 1.0, g)
        )


def _guided(model, xt, t, y, w, *, uncond_label=NO_LABEL, convention="ho", two_calls=False, swap=False):
    none = torch.full_like(y, uncond_label) if uncond_label is not None else y
    if two_calls:
        cond, uncond = model(xt, t, y), model(xt, t, none)
    else:  # one call on a batch of 2B, as samplers.guided_eps
        cond, uncond = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, none])).chunk(2)
    if swap:
        cond, uncond = uncond, cond
    if convention == "gamma":
        return w * cond + (1 - w) * uncond
    return (1 + w) * cond - w * uncond


def test_guided_eps(capsys):
    _passes(checks.check_guided_eps, _guided, capsys)
    with pytest.raises(CheckFailed, match="Both passes used the labels"):
        checks.check_guided_eps(lambda *a: _guided(*a, uncond_label=None))
    with pytest.raises(CheckFailed, match="other convention"):
        checks.check_guided_eps(lambda *a: _guided(*a, convention="gamma"))
    with pytest.raises(CheckFailed, match="called 2 times; call it once, on a batch of 2B"):
        checks.check_guided_eps(lambda *a: _guided(*a, two_calls=True))
    with pytest.raises(CheckFailed, match="in the order you concatenated them"):
        checks.check_guided_eps(lambda *a: _guided(*a, swap=True))


def _merge(s, x0, mask, unknown, t, noise, *, level="prev", python_index=False, flip=False):
    """RePaint's merge written independently: the learner's likely versions, right and wrong."""
    if level == "prev":
        ab = 1.0 if t == 0 and not python_index else float(s.alpha_bar[t - 1])
    else:
        ab = float(s.alpha_bar[t])
    known = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise
    m = 1 - mask if flip else mask
    return m * known + (1 - m) * unknown


def test_repaint_merge(capsys):
    _passes(checks.check_repaint_merge, _merge, capsys)
    with pytest.raises(CheckFailed, match="not alpha_bar\\[t\\]"):
        checks.check_repaint_merge(lambda *a: _merge(*a, level="t"))
    with pytest.raises(CheckFailed, match="LAST entry"):
        checks.check_repaint_merge(lambda *a: _merge(*a, python_index=True))
    with pytest.raises(CheckFailed, match="wrong way round"):
        checks.check_repaint_merge(lambda *a: _merge(*a, flip=True))


def _sr_loss(model, s, x0, t, eps, low_size, *, source="x0", upsample=True, reduce="mean"):
    import torch.nn.functional as F

    ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # Eq. (4)
    low = F.avg_pool2d(x0 if source == "x0" else xt, 28 // low_size)  # area downsampling, by hand
    cond = F.interpolate(low, size=28, mode="bicubic").clamp(-1, 1) if upsample else low
    err = (eps - model(xt, t, cond=cond)) ** 2
    return err.mean() if reduce == "mean" else err.sum()


def test_sr_loss(capsys):
    _passes(checks.check_sr_loss, _sr_loss, capsys)
    with pytest.raises(CheckFailed, match="from the clean x0"):
        checks.check_sr_loss(lambda *a: _sr_loss(*a, source="xt"))
    with pytest.raises(CheckFailed, match="UPSAMPLED to full size"):
        checks.check_sr_loss(lambda *a: _sr_loss(*a, upsample=False))
    with pytest.raises(CheckFailed, match="not a sum"):
        checks.check_sr_loss(lambda *a: _sr_loss(*a, reduce="sum"))
    with pytest.raises(CheckFailed, match="without cond="):
        checks.check_sr_loss(lambda model, s, x0, t, eps, low: model(x0, t).mean())

    def float64_x_t(model, s, x0, t, eps, low_size):  # alpha_bar[t] without .float(): x_t becomes float64
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        cond = F.interpolate(F.avg_pool2d(x0, 28 // low_size), size=28, mode="bicubic").clamp(-1, 1)
        return ((eps - model(xt, t, cond=cond)) ** 2).mean().float()  # .float() at the end hides it from the value

    with pytest.raises(CheckFailed, match="got x_t as torch.float64.*take .float"):
        checks.check_sr_loss(float64_x_t)


def _latent_loss(model, ae, s, x0, tokens, t, eps, *, space="latent", prompt=True, target="eps"):
    if space == "pixels":  # noise the image, then encode: a different (wrong) z_t
        ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
        zt = ae.encode(ab.sqrt() * x0 + (1 - ab).sqrt() * F.interpolate(eps[:, :1], scale_factor=4))
    else:
        z0 = ae.encode(x0)
        ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
        zt = ab.sqrt() * z0 + (1 - ab).sqrt() * eps  # Eq. (4) on the latent
    pred = model(zt, t, tokens) if prompt else model(zt, t)
    return ((eps if target == "eps" else ae.encode(x0)) - pred).pow(2).mean()


def test_latent_loss(capsys):
    _passes(checks.check_latent_loss, _latent_loss, capsys)
    with pytest.raises(CheckFailed, match="without the prompt"):
        checks.check_latent_loss(lambda *a: _latent_loss(*a, prompt=False))
    with pytest.raises(CheckFailed, match="not with the clean latent"):
        checks.check_latent_loss(lambda *a: _latent_loss(*a, target="z0"))
    with pytest.raises(CheckFailed, match="not yet"):
        checks.check_latent_loss(lambda *a: _latent_loss(*a, space="pixels"))
    with pytest.raises(CheckFailed, match="it works on latents"):
        checks.check_latent_loss(lambda model, ae, s, x0, tok, t, eps: model(x0, t, tok).mean())

    def float64_z_t(model, ae, s, x0, tokens, t, eps):  # alpha_bar[t] without .float(): z_t becomes float64
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        zt = ab.sqrt() * ae.encode(x0) + (1 - ab).sqrt() * eps
        return ((eps - model(zt, t, tokens)) ** 2).mean().float()

    with pytest.raises(CheckFailed, match="got z_t as torch.float64.*take .float"):
        checks.check_latent_loss(float64_z_t)
    with pytest.raises(CheckFailed, match="token ids, int64"):
        checks.check_latent_loss(lambda m, ae, s, x0, tok, t, eps: _latent_loss(m, ae, s, x0, tok.float(), t, eps))


def _accumulate(model, x, target, k, *, divide=True, zero_each=False):
    for xc, tc in zip(x.chunk(k), target.chunk(k), strict=True):
        if zero_each:
            model.zero_grad()
        loss = F.mse_loss(model(xc), tc)
        (loss / k if divide else loss).backward()


def test_grad_accumulation(capsys):
    _passes(checks.check_grad_accumulation, _accumulate, capsys)
    with pytest.raises(CheckFailed, match="times too big"):
        checks.check_grad_accumulation(lambda *a: _accumulate(*a, divide=False))
    with pytest.raises(CheckFailed, match="Only the last micro-batch"):
        checks.check_grad_accumulation(lambda *a: _accumulate(*a, zero_each=True))
    with pytest.raises(CheckFailed, match="no gradient"):
        checks.check_grad_accumulation(lambda *a: None)


# ---- answers that match the numbers but break the next cell --------------------------------------
# (check, a right answer): each known-wrong variant below is built from the right answer.
def _score_from_eps(s, eps, t):
    return -eps / (1 - s.alpha_bar[t].float()).sqrt().view(-1, 1, 1, 1)


def _dpmpp_2m_step(s, xt, x0, x0_last, t, t_prev, t_last):
    return dpmpp_2m_step(s, xt, x0, t, t_prev, x0_last, t_last)


def _flow_matching_loss(model, x0, s, eps, y):
    s4 = s.view(-1, 1, 1, 1)
    return ((eps - x0) - model((1 - s4) * x0 + s4 * eps, 1000 * s, y)).pow(2).mean()


RIGHT_ANSWERS = {
    "scaling": (checks.check_scaling, lambda p: p.float() / 127.5 - 1),
    "alpha_bar": (checks.check_alpha_bar, lambda b: torch.cumprod(1 - b, 0)),
    "q_sample": (checks.check_q_sample, lambda s, x0, t, eps: q_sample(s, x0, t, noise=eps)),
    "posterior": (checks.check_posterior, lambda s, x0, xt, t: q_posterior(s, x0, xt, t)[:2]),
    "normal_kl": (checks.check_normal_kl, normal_kl),
    "timestep_embedding": (checks.check_timestep_embedding, timestep_embedding),
    "training_loss": (checks.check_training_loss, _training_loss),
    "p_sample": (checks.check_p_sample, _p_sample),
    "ddim_step": (checks.check_ddim_step, _ddim_step),
    "guided_eps": (checks.check_guided_eps, _guided),
    "repaint_merge": (checks.check_repaint_merge, _merge),
    "sr_loss": (checks.check_sr_loss, _sr_loss),
    "latent_loss": (checks.check_latent_loss, _latent_loss),
    "grad_accumulation": (checks.check_grad_accumulation, _accumulate),
    "flow_matching_loss": (checks.check_flow_matching_loss, _flow_matching_loss),
    "euler_step": (checks.check_euler_step, lambda x, v, s, s_next: x + (s_next - s) * v),
    "score_from_eps": (checks.check_score_from_eps, _score_from_eps),
    "dpmpp_2m_step": (checks.check_dpmpp_2m_step, _dpmpp_2m_step),
}
RETURNS_A_VALUE = [name for name in RIGHT_ANSWERS if name not in ("training_loss", "grad_accumulation")]


def _map(out, fn):
    return tuple(fn(o) for o in out) if isinstance(out, tuple) else fn(out)


@pytest.mark.parametrize("name", RETURNS_A_VALUE)
def test_a_right_value_in_the_wrong_dtype_fails(name):
    check, right = RIGHT_ANSWERS[name]
    flip = lambda v: v.float() if v.dtype == torch.float64 else v.double()  # noqa: E731
    with pytest.raises(CheckFailed, match="the values are right but the dtype is torch.float"):
        check(lambda *a: _map(right(*a), flip))


def test_a_loss_whose_x_t_is_float64_fails_before_the_unet_refuses_it():
    def without_float(model, s, x0, generator):  # schedule.alpha_bar[t] is float64: x_t silently becomes float64
        t = torch.randint(0, s.T, (x0.shape[0],), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        return F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)

    with pytest.raises(CheckFailed, match="got x_t as torch.float64 while x0 is torch.float32.*take .float"):
        checks.check_training_loss(without_float)


@pytest.mark.parametrize("name", RETURNS_A_VALUE)
def test_a_result_on_another_device_fails(name):
    check, right = RIGHT_ANSWERS[name]
    with pytest.raises(CheckFailed, match="the result is on meta, expected cpu"):
        check(lambda *a: _map(right(*a), lambda v: v.to("meta")))


@pytest.mark.parametrize("name", list(RIGHT_ANSWERS))
def test_an_answer_that_changes_its_input_in_place_fails(name):
    check, right = RIGHT_ANSWERS[name]

    def in_place(*args):
        out = right(*args)
        next(a for a in args if isinstance(a, torch.Tensor)).add_(1)  # e.g. `x0 += ...` after using it
        return out

    with pytest.raises(CheckFailed, match="changed its input `.+` in place"):
        check(in_place)


def test_a_per_image_value_that_is_not_reshaped_gets_the_broadcast_hint():
    def q_sample_without_view(s, x0, t, eps):  # (B,) against (B, C, H, W)
        ab = s.alpha_bar[t].float()
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def loss_without_view(model, s, x0, generator):
        t = torch.randint(0, s.T, (x0.shape[0],), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        ab = s.alpha_bar[t].float()
        return F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)

    for check, answer in (
        (checks.check_q_sample, q_sample_without_view),
        (checks.check_training_loss, loss_without_view),
    ):
        with pytest.raises(CheckFailed, match="shapes do not fit together.*view\\(-1, 1, 1, 1\\)"):
            check(answer)


@pytest.mark.parametrize(
    "loss,calls,message",
    [
        (0.5, 1, "return the loss as a tensor, got float"),
        (torch.ones(3, requires_grad=True), 1, "return one number (a 0-dimensional tensor), got shape (3,)"),
        (torch.tensor(0.5), 1, "the loss has no gradient"),
        (torch.tensor(0.5, requires_grad=True), 2, "call the model once on the whole batch (it was called 2 times)"),
    ],
)
def test_check_loss_tensor_names_the_first_problem(loss, calls, message):
    from ddpm_lessons.checks.core import check_loss_tensor

    with pytest.raises(CheckFailed, match=re.escape(f"my loss: {message}")):
        check_loss_tensor("my loss", loss, calls)
    check_loss_tensor("my loss", torch.tensor(0.5, requires_grad=True), 1)  # a right answer passes
