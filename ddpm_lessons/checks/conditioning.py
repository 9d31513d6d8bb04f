"""Checks for lessons 07-09: RePaint's merge of known and generated pixels, the SR3 training loss, the loss
in an autoencoder's latent space with a prompt, and gradient accumulation.
The models are small stand-ins with known outputs, so a check needs no trained network."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.checks.core import CheckFailed, call, judge, report_pass
from ddpm_lessons.forward import q_sample
from ddpm_lessons.inpainting import repaint_merge
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.superres import sr_condition


# ---- lesson 07: inpainting -------------------------------------------------------------------------
def check_repaint_merge(fn: Callable[..., torch.Tensor]) -> None:
    """fn(schedule, x0, mask, unknown, t, noise) -> x_{t-1}: known pixels noised to step t-1, the rest generated."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(11)
    x0, unknown, noise = (torch.randn(2, 1, 4, 4, generator=g).clamp(-1, 1) for _ in range(3))
    mask = (torch.rand(2, 1, 4, 4, generator=g) > 0.5).float()
    for t in (500, 1, 0):
        expected = repaint_merge(s, x0, mask, unknown, t, noise)
        alpha_bar_prev, alpha_bar_t = float(s.alpha_bar_prev[t]), float(s.alpha_bar[t])
        mistakes = {
            "The known pixels must be at the noise level of x_{t-1}, the step being produced: use alpha_bar_prev[t] "
            "(alpha_bar of step t-1), not alpha_bar[t].": mask
            * (alpha_bar_t**0.5 * x0 + (1 - alpha_bar_t) ** 0.5 * noise)
            + (1 - mask) * unknown,
            "Variance where the standard deviation belongs: the known pixels are sqrt(alpha_bar_prev) x0 + "
            "sqrt(1 - alpha_bar_prev) noise (Eq. 4).": mask * (alpha_bar_prev * x0 + (1 - alpha_bar_prev) * noise)
            + (1 - mask) * unknown,
            "The mask is the wrong way round: mask = 1 marks the KNOWN pixels, which come from x0.": (1 - mask)
            * (alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * noise)
            + mask * unknown,
            "The known pixels were not noised: at step t-1 the chain is noisy everywhere, so x0 must be noised to "
            "match (only after the last step is it x0 itself).": mask * x0 + (1 - mask) * unknown,
        }
        if t == 0:
            last = float(s.alpha_bar[-1])
            mistakes[
                "At t = 0, alpha_bar[t - 1] is alpha_bar[-1], the LAST entry in Python. Use "
                "schedule.alpha_bar_prev[t], "
                "which is 1 at t = 0."
            ] = mask * (last**0.5 * x0 + (1 - last) ** 0.5 * noise) + (1 - mask) * unknown
        got = call("repaint merge", fn, s, x0.clone(), mask.clone(), unknown.clone(), t, noise.clone())
        judge(f"repaint merge (t={t})", got, expected, mistakes, "x_{t-1} = m * known + (1 - m) * unknown.")
    report_pass("repaint merge: matches RePaint's Eq. (8) at t = 500, 1 and 0 (the original itself at the end)")


# ---- lesson 07: super-resolution -------------------------------------------------------------------
class _CondProbe:
    """eps_theta(x_t, t, cond) = 0.5 x_t + 0.3 cond: a stand-in that needs a full-size condition."""

    def __call__(self, xt, t, y=None, cond=None):
        if cond is None:
            raise CheckFailed("sr loss: the model was called without cond=. Pass the condition: model(xt, t, cond=c).")
        for name, value in (("x_t", xt), ("the condition", cond)):
            if value.dtype != torch.float32:
                raise CheckFailed(
                    f"sr loss: the model got {name} as {value.dtype}; the U-Net's weights are float32 and refuse it. "
                    "schedule.alpha_bar is float64: take .float() of alpha_bar[t] before mixing it with images."
                )
        if cond.shape != xt.shape:
            raise CheckFailed(
                f"sr loss: the condition has shape {tuple(cond.shape)} but x_t has {tuple(xt.shape)}. SR3 concatenates "
                "the low-resolution image UPSAMPLED to full size: bicubic_upsample(low_resolution(x0, low_size), 28)."
            )
        return 0.5 * xt + 0.3 * cond


def check_sr_loss(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, schedule, x0, t, eps, low_size) -> the SR3 loss || eps - eps_theta(x_t, t, cond) ||^2 (a mean)."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(12)
    x0 = torch.rand(3, 1, 28, 28, generator=g) * 2 - 1
    eps, t = torch.randn(3, 1, 28, 28, generator=g), torch.tensor([900, 300, 0])
    model = _CondProbe()
    xt = q_sample(s, x0, t, noise=eps)
    cond = sr_condition(7)(x0)
    expected = ((eps - model(xt, t, cond=cond)) ** 2).mean()
    mistakes = {
        "The condition is made from the clean x0 (what a low-resolution photo shows), not from the noisy x_t.": (
            (eps - model(xt, t, cond=sr_condition(7)(xt))) ** 2
        ).mean(),
        "The model was given the full-resolution x0 itself as its condition: at sampling time it does not have "
        "it. Downsample to low_size, then upsample.": ((eps - model(xt, t, cond=x0)) ** 2).mean(),
        "The loss is a mean over all pixels and images (Eq. 14 up to a constant), not a sum.": (
            (eps - model(xt, t, cond=cond)) ** 2
        ).sum(),
        "Compare eps_theta with the noise eps that made x_t, not with x0.": (
            (x0 - model(xt, t, cond=cond)) ** 2
        ).mean(),
    }
    got = call("sr loss", fn, model, s, x0.clone(), t.clone(), eps.clone(), 7)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.reshape(())
    judge("sr loss", got, expected, mistakes, "Algorithm 1 with cond = bicubic_upsample(low_resolution(x0, 7), 28).")
    report_pass("sr loss: matches Algorithm 1 with the upsampled 7x7 image as the condition")


# ---- lesson 08: diffusion in latent space -------------------------------------------------------------
class _PoolAutoencoder:
    """A stand-in autoencoder: encode = tanh of 4 x 4 average pooling repeated to 4 channels (B, 4, 7, 7)."""

    def encode(self, x):
        return torch.tanh(F.avg_pool2d(x, 4)).repeat(1, 4, 1, 1) * torch.tensor([1.0, 0.5, -0.5, -1.0]).view(1, 4, 1, 1)

    def decode(self, z):
        return F.interpolate(z[:, :1], scale_factor=4)


def _prompt_probe(zt, t, y=None):
    """A stand-in eps-model over latents that reads the prompt's tokens."""
    if zt.shape[1:] != (4, 7, 7):
        raise CheckFailed(
            f"latent loss: the model got x_t of shape {tuple(zt.shape)}; it works on latents (B, 4, 7, 7). Encode "
            "x0 with autoencoder.encode(x0) first, then noise the latent."
        )
    if zt.dtype != torch.float32:
        raise CheckFailed(
            f"latent loss: the model got z_t as {zt.dtype}; the U-Net's weights are float32 and refuse it. "
            "schedule.alpha_bar is float64: take .float() of alpha_bar[t] before mixing it with the latent."
        )
    if y is not None and (y.dtype != torch.int64 or y.shape != (len(zt), 6)):
        raise CheckFailed(
            f"latent loss: the prompt must reach the model as the token ids, int64 of shape ({len(zt)}, 6); got "
            f"{y.dtype} of shape {tuple(y.shape)}. Pass `tokens` unchanged."
        )
    prompt = 0.0 if y is None else 0.01 * y.float().sum(1).view(-1, 1, 1, 1)
    return 0.5 * zt + prompt


def check_latent_loss(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, autoencoder, schedule, x0, tokens, t, eps) -> || eps - eps_theta(z_t, t, tokens) ||^2 (a mean),
    where z_t is the noised latent of x0."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(13)
    x0 = torch.rand(3, 1, 28, 28, generator=g) * 2 - 1
    eps, t = torch.randn(3, 4, 7, 7, generator=g), torch.tensor([900, 300, 0])
    tokens = torch.tensor([[1, 3, 14, 0, 0, 0], [1, 11, 0, 0, 0, 0], [-1] * 6])
    ae = _PoolAutoencoder()
    z0 = ae.encode(x0)
    zt = q_sample(s, z0, t, noise=eps)
    expected = ((eps - _prompt_probe(zt, t, tokens)) ** 2).mean()
    mistakes = {
        "The model was called without the prompt: pass the tokens as y, model(z_t, t, tokens).": (
            (eps - _prompt_probe(zt, t)) ** 2
        ).mean(),
        "The loss is a mean (Eq. 14 up to a constant), not a sum.": ((eps - _prompt_probe(zt, t, tokens)) ** 2).sum(),
        "Compare eps_theta with the noise eps that made z_t, not with the clean latent z0.": (
            (z0 - _prompt_probe(zt, t, tokens)) ** 2
        ).mean(),
    }
    got = call("latent loss", fn, _prompt_probe, ae, s, x0.clone(), tokens.clone(), t.clone(), eps.clone())
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.reshape(())
    judge("latent loss", got, expected, mistakes, "z0 = encode(x0); z_t by Eq. (4); || eps - model(z_t, t, y) ||^2.")
    report_pass("latent loss: matches Algorithm 1 on the autoencoder's latents, with the prompt")


# ---- lesson 09: gradient accumulation -----------------------------------------------------------------
def check_grad_accumulation(fn: Callable[..., None]) -> None:
    """fn(model, x, target, micro_batches) leaves in model's .grad the gradient of the mean squared error over
    the whole batch, computed micro-batch by micro-batch (without an optimiser step)."""
    g = torch.Generator().manual_seed(14)
    x, target = torch.randn(12, 4, generator=g), torch.randn(12, 1, generator=g)
    model = nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 4, generator=g))
        model.bias.zero_()

    def grads_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        F.mse_loss(model(inputs), targets).backward()
        return torch.cat([model.weight.grad.flatten(), model.bias.grad.flatten()]).clone()

    expected = grads_of(x, target)  # the whole batch at once
    for k in (3, 4):
        last = len(x) - len(x) // k  # where the last of k equal micro-batches starts
        only_last = grads_of(x[last:], target[last:])
        zeroed = (
            "Only the last micro-batch's gradient is left: gradients add up in .grad, so do not zero them between "
            "micro-batches (only before the first)."
        )
        mistakes = {
            zeroed: only_last / k,
            f"The gradient is {k} times too big: divide each micro-batch's loss by the number of micro-batches ({k}), "
            "so that the sum of their gradients is the gradient of the mean.": k * expected,
            zeroed + " Also divide each micro-batch's loss by their number.": only_last,
        }
        model.zero_grad()
        call("grad accumulation", fn, model, x.clone(), target.clone(), k)
        if model.weight.grad is None:
            raise CheckFailed(
                "grad accumulation: no gradient was computed. Call .backward() on each micro-batch's loss."
            )
        got = torch.cat([model.weight.grad.flatten(), model.bias.grad.flatten()])
        judge(f"grad accumulation ({k} micro-batches)", got, expected, mistakes, "sum over chunks of loss_i / k.")
    report_pass("grad accumulation: 3 and 4 micro-batches give the gradient of the whole batch")
