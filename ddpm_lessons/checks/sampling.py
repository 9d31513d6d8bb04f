"""Checks for lessons 04-06: the training loss (Algorithm 1), one reverse step (Algorithm 2), the DDIM
update, and classifier-free guidance. The models here are small stand-ins with known outputs, so a
check runs in milliseconds and needs no trained network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ddpm_lessons.checks.core import CheckFailed, call, check_loss_tensor, judge, report_pass
from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.samplers import ddim_step, guided_eps, p_sample
from ddpm_lessons.schedules import NoiseSchedule


class _Probe(nn.Module):
    """eps_theta(x_t, t) = scale * x_t, recording what it was called with."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, xt, t, y=None):
        self.calls.append((xt.detach().clone(), torch.as_tensor(t).detach().clone()))
        return self.scale * xt


def _toy_eps(xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """A deterministic stand-in for eps_theta that depends on x_t, t and the label."""
    t = torch.as_tensor(t).view(-1, 1, 1, 1).to(xt.dtype)
    out = 0.6 * torch.tanh(xt) + 0.2 * torch.cos(t / 100.0)
    if y is not None:
        y = torch.as_tensor(y).view(-1, 1, 1, 1).to(xt.dtype)
        out = out + torch.where(y == NO_LABEL, -0.3, 0.1 * (y + 1))
    return out


def _standard(eps: torch.Tensor, x0: torch.Tensor) -> bool:
    """Does eps look like N(0, I) noise drawn independently of x0? (16k values: 5-sigma margins.)"""
    corr = torch.corrcoef(torch.stack([eps.flatten(), x0.flatten()]))[0, 1]
    return abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1) < 0.05 and abs(corr.item()) < 0.05


# ---- lesson 04 ---------------------------------------------------------------------------------
def check_training_loss(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, schedule, x0, generator) -> the L_simple loss of Algorithm 1 on one batch (a scalar tensor)."""
    s = NoiseSchedule.make("linear", 1000)
    x0 = torch.rand(4096, 1, 2, 2, generator=torch.Generator().manual_seed(4)) * 2 - 1
    model = _Probe()
    loss = call("training loss", fn, model, s, x0.clone(), torch.Generator().manual_seed(5))
    check_loss_tensor("training loss", loss, len(model.calls))
    xt, t = model.calls[0]
    if xt.shape != x0.shape:
        raise CheckFailed(f"training loss: the model got x_t of shape {tuple(xt.shape)}, expected {tuple(x0.shape)}.")
    if xt.dtype != x0.dtype:
        raise CheckFailed(
            f"training loss: the model got x_t as {xt.dtype} while x0 is {x0.dtype}. schedule.alpha_bar is float64: "
            "take .float() (or .to(x0.dtype)) of alpha_bar[t] before mixing it with images, or the U-Net (float32 "
            "weights) refuses x_t in the next cell."
        )
    if t.shape != (len(x0),) or t.is_floating_point():
        raise CheckFailed(
            f"training loss: t must be integers of shape (B,) = ({len(x0)},), one timestep per image; "
            f"got {t.dtype} of shape {tuple(t.shape)}."
        )
    if int(t.min()) < 0 or int(t.max()) >= s.T:
        raise CheckFailed(
            f"training loss: t ran from {int(t.min())} to {int(t.max())}. Off by one: the paper's "
            f"t = 1..T is 0..T-1 in code, so draw torch.randint(0, T, (B,), generator=generator)."
        )
    if len(t.unique()) < 500 or int(t.min()) > 20 or int(t.max()) < s.T - 20:
        raise CheckFailed(
            "training loss: t does not look uniform over 0..T-1 (Algorithm 1, line 3). Draw one t per "
            "image with torch.randint(0, T, (B,), generator=generator)."
        )
    ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
    a = s.alphas[t].float().view(-1, 1, 1, 1)
    eps = (xt - ab.sqrt() * x0) / (1 - ab).sqrt()  # the noise Eq. (4) must have used
    if not _standard(eps, x0):
        hypotheses = {
            "Variance where the standard deviation belongs: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps.": (
                (xt - ab * x0) / (1 - ab)
            ),
            "Use alpha_bar_t (the product up to t), not alpha_t, in Eq. (4).": (xt - a.sqrt() * x0) / (1 - a).sqrt(),
            "x_t is not just x0 + eps: scale them by sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) (Eq. 4).": xt - x0,
        }
        for hint, implied in hypotheses.items():
            if _standard(implied, x0):
                raise CheckFailed(f"training loss: not yet. {hint}")
        raise CheckFailed(
            "training loss: x_t is not sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps with "
            "eps = torch.randn(x0.shape, generator=generator) (Algorithm 1, lines 4-5)."
        )
    pred = 0.5 * xt
    expected = ((pred - eps) ** 2).mean()
    got = loss.detach().reshape(())
    if torch.allclose(got, expected, rtol=1e-3):
        report_pass("training loss: t uniform over 0..T-1, x_t from Eq. (4), loss = mean ||eps - eps_theta||^2")
        return
    if torch.allclose(got, ((pred - x0) ** 2).mean(), rtol=1e-3):
        raise CheckFailed("training loss: not yet. The target is the noise eps you drew, not x0 (Eq. 14).")
    if torch.allclose(got, ((pred - eps) ** 2).sum(), rtol=1e-3):
        raise CheckFailed("training loss: not yet. Take the mean of the squared error, not the sum.")
    raise CheckFailed(
        f"training loss: got {got.item():.4f}, expected {expected.item():.4f}. The loss is "
        "F.mse_loss(model(x_t, t), eps) (Algorithm 1, line 5)."
    )


def check_p_sample(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, schedule, xt, t, generator) -> x_{t-1}: one step of Algorithm 2 with sigma_t^2 = beta_t."""
    s = NoiseSchedule.make("linear", 1000)
    xt = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    for t in (500, 1, 0):
        expected = p_sample(_toy_eps, s, xt, t, clip_x0=False, generator=torch.Generator().manual_seed(7))
        got = call("p_sample", fn, _toy_eps, s, xt.clone(), t, torch.Generator().manual_seed(7))
        z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(7))
        eps = _toy_eps(xt, torch.full((3,), t))
        beta, alpha, ab = (float(v[t]) for v in (s.betas, s.alphas, s.alpha_bar))
        mean = (xt - beta / (1 - ab) ** 0.5 * eps) / alpha**0.5
        noise = beta**0.5 * z if t > 0 else 0.0  # what a correct step adds
        mistakes = {
            "The eps coefficient is beta_t / sqrt(1 - alpha_bar_t): a square root, not 1 - alpha_bar_t.": (
                (xt - beta / (1 - ab) * eps) / alpha**0.5 + noise
            ),
            "Divide by sqrt(alpha_t), one step's alpha, not by sqrt(alpha_bar_t).": (
                (xt - beta / (1 - ab) ** 0.5 * eps) / ab**0.5 + noise
            ),
            "The bracket is divided by sqrt(alpha_t): x_{t-1} = (x_t - coef eps) / sqrt(alpha_t) + sigma_t z.": (
                xt - beta / (1 - ab) ** 0.5 * eps + noise
            ),
        }
        if t == 0:
            mistakes[
                "Noise was added at the last step. Algorithm 2, line 3: z = 0 when t = 1 (t = 0 here), so the "
                "last step returns the mean."
            ] = mean + beta**0.5 * z
        else:
            mistakes[
                "Variance where the standard deviation belongs: the noise is sigma_t z, sigma_t = sqrt(beta_t)."
            ] = mean + beta * z
            mistakes[
                "That is sigma_t^2 = beta_tilde_t. Both are in the paper (section 3.2); this exercise uses "
                "sigma_t^2 = beta_t."
            ] = mean + float(s.beta_tilde[t]) ** 0.5 * z
            b1, a1, ab1 = (float(v[t - 1]) for v in (s.betas, s.alphas, s.alpha_bar))
            mistakes["Off by one in t: index the schedule with t itself (timesteps are 0-indexed here)."] = (
                xt - b1 / (1 - ab1) ** 0.5 * eps
            ) / a1**0.5 + b1**0.5 * z
        judge(f"p_sample (t={t})", got, expected, mistakes, "Algorithm 2, line 4.")
    report_pass("p_sample: matches Algorithm 2 at t = 500, 1 and 0 (no noise at the last step)")


# ---- lesson 05 ---------------------------------------------------------------------------------
LAST_ENTRY = (
    "t_prev = -1 means 'after the last step', where alpha_bar is 1; in Python alpha_bar[-1] is the LAST entry "
    "(t = T-1). Use 1.0 when t_prev < 0."
)


def check_ddim_step(fn: Callable[..., torch.Tensor]) -> None:
    """fn(schedule, xt, eps, t, t_prev, eta, generator) -> x_{t_prev}: the DDIM update of Song et al., Eq. (12),
    with sigma_t(eta) of their Eq. (16) and z = torch.randn(xt.shape, generator=generator)."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(8)
    xt, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(10))  # what a generator seeded 10 draws first

    def step(ab, ab_prev, eta, *, x0_div=True, var_coefs=False, keep_sigma=True, noise="std", eta_on="sigma"):
        x0_hat = (xt - (1 - ab) ** 0.5 * eps) / (ab**0.5 if x0_div else 1.0)
        base = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)  # sigma^2 at eta = 1, Eq. (16) squared
        sigma = eta * base**0.5 if eta_on == "sigma" else (eta * base) ** 0.5
        rest = max(1 - ab_prev - (sigma**2 if keep_sigma else 0.0), 0.0)
        if var_coefs:
            x = ab_prev * x0_hat + rest * eps
        else:
            x = ab_prev**0.5 * x0_hat + rest**0.5 * eps
        return x + {"std": sigma, "variance": sigma**2, "none": 0.0}[noise] * z

    cases = ((999, 979, 0.0), (500, 250, 1.0), (300, 100, 0.5), (20, -1, 1.0))
    for t, t_prev, eta in cases:
        expected = ddim_step(s, xt, eps, t, t_prev, eta=eta, clip_x0=False, generator=torch.Generator().manual_seed(10))
        ab = float(s.alpha_bar[t])
        ab_prev = float(s.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        mistakes = {
            "Variance where the standard deviation belongs: sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev "
            "- sigma^2) eps.": step(ab, ab_prev, eta, var_coefs=True),
            "x0_hat is (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): divide by sqrt(alpha_bar_t).": step(
                ab, ab_prev, eta, x0_div=False
            ),
        }
        if eta > 0 and t_prev >= 0:
            mistakes["The eps coefficient is sqrt(1 - alpha_bar_prev - sigma^2): the fresh noise takes its share."] = (
                step(ab, ab_prev, eta, keep_sigma=False)
            )
            mistakes["With eta > 0 the step adds fresh noise sigma_t z, z = torch.randn(xt.shape, generator=...)."] = (
                step(ab, ab_prev, eta, noise="none")
            )
            mistakes["Variance where the standard deviation belongs: the noise is sigma_t z, not sigma_t^2 z."] = step(
                ab, ab_prev, eta, noise="variance"
            )
        if 0 < eta < 1:
            mistakes["eta multiplies sigma_t (Eq. 16), not sigma_t^2."] = step(ab, ab_prev, eta, eta_on="variance")
        if t_prev >= 0:
            ab_m1 = float(s.alpha_bar[t - 1])
            mistakes["DDIM jumps from t to t_prev: use alpha_bar[t_prev], not alpha_bar[t - 1]."] = step(ab, ab_m1, eta)
        else:
            last = float(s.alpha_bar[-1])
            if 1 - ab / last >= 0 or eta == 0:
                mistakes[LAST_ENTRY] = step(ab, last, eta)
        try:
            got = call("ddim step", fn, s, xt.clone(), eps.clone(), t, t_prev, eta, torch.Generator().manual_seed(10))
        except (TypeError, ValueError) as error:  # sigma^2 < 0 from alpha_bar[-1]: math.sqrt fails, ** 0.5 is complex
            if t_prev < 0 and ("complex" in str(error) or "math domain" in str(error)):
                raise CheckFailed(f"ddim step (t={t} -> {t_prev}, eta={eta}): {LAST_ENTRY}") from None
            raise
        judge(
            f"ddim step (t={t} -> {t_prev}, eta={eta})",
            got,
            expected,
            mistakes,
            "Song et al. Eq. (12) with sigma_t(eta) of Eq. (16).",
        )
    report_pass(
        "ddim step: matches Eq. (12) of Song et al. with sigma_t(eta) of Eq. (16) for eta = 0, 0.5 and 1, "
        "and at the end (t_prev = -1)"
    )


# ---- lesson 06 ---------------------------------------------------------------------------------
def check_guided_eps(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, xt, t, y, w) -> (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, no label), with ONE call of
    the model on a batch of 2B (the conditional and the unconditional halves together)."""
    g = torch.Generator().manual_seed(9)
    xt, t, y = torch.randn(4, 1, 3, 3, generator=g), torch.tensor([999, 500, 10, 0]), torch.tensor([0, 3, 7, 9])
    cond, uncond = _toy_eps(xt, t, y), _toy_eps(xt, t, torch.full_like(y, NO_LABEL))
    for w in (1.5, 4.0, 0.0):  # w = 0 last: there several mistakes give the same value
        expected = guided_eps(_toy_eps, xt, t, y, w)
        mistakes = {
            "Both passes used the labels: the unconditional pass gives every image the 'no label' id NO_LABEL (-1).": (
                cond
            ),
            "That is the other convention, w eps_cond + (1 - w) eps_uncond; this course follows Ho & Salimans 2022: "
            "(1 + w) eps_cond - w eps_uncond.": w * cond + (1 - w) * uncond,
            "The weights are on the wrong predictions: (1 + w) multiplies the conditional one. After .chunk(2), "
            "the halves come back in the order you concatenated them.": ((1 + w) * uncond - w * cond),
            "Guidance pushes away from the unconditional prediction: eps_cond + w (eps_cond - eps_uncond).": (
                (1 - w) * cond + w * uncond
            ),
        }
        calls: list[tuple[int, ...]] = []

        def model(xt_in, t_in, y_in, _calls=calls):
            _calls.append(tuple(xt_in.shape))
            return _toy_eps(xt_in, t_in, y_in)

        got = call("guided eps", fn, model, xt.clone(), t.clone(), y.clone(), w)
        if len(calls) != 1:
            raise CheckFailed(
                f"guided eps (w={w}): the model was called {len(calls)} times; call it once, on a batch of 2B: "
                "torch.cat the inputs of the two passes (x_t twice, t twice, the labels and then NO_LABEL), and "
                "split its answer with .chunk(2)."
            )
        judge(f"guided eps (w={w})", got, expected, mistakes, "eps = (1 + w) eps_cond - w eps_uncond.")
    report_pass(
        "guided eps: one network call on 2B images, and Ho & Salimans' (1 + w) eps_cond - w eps_uncond "
        "for w = 0, 1.5 and 4"
    )
