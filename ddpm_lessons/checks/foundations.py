"""Checks for lessons 00-03: scaling, the forward process, the posterior and KL, the U-Net's parts."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lessons.checks.core import CheckFailed, call, judge, report_pass
from ddpm_lessons.forward import q_posterior, q_sample
from ddpm_lessons.losses import normal_kl
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.unet import ResBlock, timestep_embedding


# ---- lesson 00 ---------------------------------------------------------------------------------
def check_scaling(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """fn(uint8 pixels) -> float pixels in [-1, 1]: 0 -> -1 and 255 -> 1."""
    pixels = torch.arange(256, dtype=torch.uint8).view(16, 16)
    got = call("scaling", fn, pixels.clone())
    expected = pixels.float() / 127.5 - 1
    if isinstance(got, torch.Tensor) and not got.is_floating_point():
        raise CheckFailed("scaling: the result is still an integer tensor; convert with .float() first.")
    mistakes = {
        "That is [0, 1]: the model wants [-1, 1], so also map x -> 2 x - 1.": pixels.float() / 255,
        "Subtract 1 after dividing by 127.5, so that 0 maps to -1.": pixels.float() / 127.5,
        "That maps to [-0.5, 0.5]: divide by 127.5, not 255, before subtracting 1 (or use 2 p / 255 - 1).": (
            pixels.float() / 255 - 0.5
        ),
    }
    judge("scaling", got, expected, mistakes, "x = 2 p / 255 - 1 maps 0 -> -1 and 255 -> 1.")
    report_pass("scaling: 0 -> -1, 255 -> 1, and everything in between on a straight line")


# ---- lesson 01 ---------------------------------------------------------------------------------
def check_alpha_bar(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """fn(betas (T,)) -> alpha_bar (T,), Eq. (4)'s alpha_bar_t = prod_{s<=t} (1 - beta_s)."""
    for kind in ("linear", "cosine"):
        s = NoiseSchedule.make(kind, 1000)
        got = call("alpha_bar", fn, s.betas.clone())
        mistakes = {
            "You multiplied the betas; alpha_t = 1 - beta_t, so multiply the alphas.": torch.cumprod(s.betas, 0),
            "That is alpha_t itself; alpha_bar_t is the cumulative product (torch.cumprod).": s.alphas,
            "Off by one in t: alpha_bar[0] must already include the first step, alpha_bar[0] = 1 - beta[0].": (
                s.alpha_bar_prev
            ),
            "You summed instead of multiplying: 1 - sum(beta) is only a first-order approximation.": (
                1 - torch.cumsum(s.betas, 0)
            ),
        }
        judge(f"alpha_bar ({kind} schedule)", got, s.alpha_bar, mistakes, "alpha_bar_t = prod_{s<=t} (1 - beta_s).")
    report_pass("alpha_bar: matches the package for the linear and cosine schedules")


def check_q_sample(fn: Callable[..., torch.Tensor]) -> None:
    """fn(schedule, x0, t, noise) -> x_t, Eq. (4)."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 5, 5, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 5, 5, generator=g)
    t = torch.tensor([0, 10, 500, 998])
    ab = s.alpha_bar[t].float().view(-1, 1, 1, 1)
    a = s.alphas[t].float().view(-1, 1, 1, 1)
    mistakes = {
        "Variance where the standard deviation belongs: use sqrt(alpha_bar) and sqrt(1 - alpha_bar).": (
            ab * x0 + (1 - ab) * noise
        ),
        "The noise needs sqrt(1 - alpha_bar_t), the standard deviation, not the variance.": (
            ab.sqrt() * x0 + (1 - ab) * noise
        ),
        "Use alpha_bar_t (the product over all steps up to t), not alpha_t (one step).": (
            a.sqrt() * x0 + (1 - a).sqrt() * noise
        ),
        "Off by one in t: index the schedule with t itself (timesteps are 0-indexed here).": (
            s.alpha_bar_prev[t].float().view(-1, 1, 1, 1).sqrt() * x0
            + (1 - s.alpha_bar_prev[t].float().view(-1, 1, 1, 1)).sqrt() * noise
        ),
    }
    expected = q_sample(s, x0, t, noise=noise)
    judge(
        "q_sample",
        call("q_sample", fn, s, x0.clone(), t.clone(), noise.clone()),
        expected,
        mistakes,
        "x_t = sqrt(ab) x0 + sqrt(1-ab) eps.",
    )
    report_pass("q_sample: matches Eq. (4) for t = 0, 10, 500 and 998")


# ---- lesson 02 ---------------------------------------------------------------------------------
def check_posterior(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """fn(schedule, x0, xt, t) -> (mean, variance) of q(x_{t-1} | x_t, x_0), Eqs. (6)-(7)."""
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    xt = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 200, 999])
    mean, var, _ = q_posterior(s, x0, xt, t)
    out = call("posterior", fn, s, x0.clone(), xt.clone(), t.clone())
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("posterior: return a pair (mean, variance)")
    got_mean, got_var = out
    c0 = s.posterior_mean_coef_x0[t].view(-1, 1, 1, 1)
    ct = s.posterior_mean_coef_xt[t].view(-1, 1, 1, 1)
    alpha_bar_t, alpha_bar_prev = s.alpha_bar[t].view(-1, 1, 1, 1), s.alpha_bar_prev[t].view(-1, 1, 1, 1)
    beta = s.betas[t].view(-1, 1, 1, 1)
    judge(
        "posterior mean",
        got_mean,
        mean,
        {
            "The two coefficients are swapped: sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) multiplies x_0.": (
                ct * x0 + c0 * xt
            ),
            "Off by one: the x_0 coefficient uses alpha_bar_{t-1} (alpha_bar_prev), not alpha_bar_t.": (
                alpha_bar_t.sqrt() * beta / (1 - alpha_bar_t) * x0 + ct * xt
            ),
            "The x_t coefficient needs sqrt(alpha_t), not alpha_t.": (
                c0 * x0 + (1 - beta) * (1 - alpha_bar_prev) / (1 - alpha_bar_t) * xt
            ),
        },
        "Eq. (7): mu = sqrt(alpha_bar_prev) beta / (1 - alpha_bar) x0 "
        "+ sqrt(alpha) (1 - alpha_bar_prev) / (1 - alpha_bar) xt.",
    )
    if not isinstance(got_var, torch.Tensor):
        raise CheckFailed(f"posterior variance: expected a torch.Tensor, got {type(got_var).__name__}")
    try:
        got_var = got_var.expand_as(mean)  # (B, 1, 1, 1) and (B, C, H, W) are both fine
    except RuntimeError as err:
        raise CheckFailed(
            f"posterior variance: shape {tuple(got_var.shape)} does not broadcast to {tuple(mean.shape)}; "
            "index the schedule with t and reshape with .view(-1, 1, 1, 1)"
        ) from err
    full = var.expand_as(mean)
    beta_tilde_off = (1 - s.alpha_bar_prev[t - 1]) / (1 - s.alpha_bar_prev[t]) * s.betas[t]
    judge(
        "posterior variance",
        got_var,
        full,
        {
            "That is beta_t, the forward step's variance; the posterior's is beta_tilde_t, which is smaller.": (
                beta.expand_as(mean)
            ),
            "That is the standard deviation; the check asks for the variance beta_tilde_t.": full.sqrt(),
            "Off by one: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.": (
                beta_tilde_off.view(-1, 1, 1, 1).expand_as(mean)
            ),
        },
        "Eq. (7): beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.",
    )
    report_pass("posterior: mean and variance match Eq. (7) for t = 1, 200 and 999")


def check_normal_kl(fn: Callable[..., torch.Tensor]) -> None:
    """fn(mean1, logvar1, mean2, logvar2) -> KL(N1 || N2), elementwise, in nats."""
    g = torch.Generator().manual_seed(2)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    expected = normal_kl(m1, lv1, m2, lv2)
    mistakes = {
        "The arguments are the wrong way round: that is KL(N2 || N1); KL is not symmetric.": normal_kl(
            m2, lv2, m1, lv1
        ),
        "Missing the factor 1/2 in front.": 2 * expected,
        "The inputs are log-variances: the variance ratio is exp(logvar1 - logvar2), not logvar1 / logvar2.": (
            0.5 * (lv2 - lv1 + lv1 / lv2 + (m1 - m2) ** 2 * torch.exp(-lv2) - 1)
        ),
        "Divide the squared mean difference by the variance exp(logvar2), not the standard deviation.": (
            0.5 * (lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-0.5 * lv2) - 1)
        ),
    }
    judge(
        "normal_kl",
        call("normal_kl", fn, m1, lv1, m2, lv2),
        expected,
        mistakes,
        "Start from KL = E_p[log p - log q] with both Gaussian log-densities; E_p[(x - m2)^2] = "
        "e^lv1 + (m1 - m2)^2, and each log-variance enters as lv = log sigma^2.",
    )
    report_pass("normal_kl: matches the closed form on 50 random pairs of Gaussians")


# ---- lesson 03 ---------------------------------------------------------------------------------
def check_timestep_embedding(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """fn(t (B,), dim) -> (B, dim): sines in the first half, cosines in the second."""
    t, dim = torch.tensor([0, 1, 25, 999]), 32
    expected = timestep_embedding(t, dim)
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half) / (half - 1))
    angles = t.float()[:, None] * freqs
    interleaved = torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).reshape(len(t), dim)
    freqs_half = torch.exp(-math.log(10_000) * torch.arange(half) / half)
    mistakes = {
        "The halves are swapped: sines go in the first half, cosines in the second.": expected.roll(half, dims=1),
        "Interleaved sin, cos, sin, cos...: this course (like Ho et al.) concatenates [sin | cos].": interleaved,
        "The frequencies should run from 1 down to 1/10000 exactly: divide the exponent by (half - 1).": torch.cat(
            [torch.sin(t.float()[:, None] * freqs_half), torch.cos(t.float()[:, None] * freqs_half)], dim=1
        ),
    }
    judge(
        "timestep_embedding",
        call("timestep_embedding", fn, t.clone(), dim),
        expected,
        mistakes,
        "emb = [sin(t w_i) | cos(t w_i)].",
    )
    report_pass("timestep_embedding: matches the package for t = 0, 1, 25, 999 (dim 32)")


def _load_package_weights(block_cls: type, in_ch: int, out_ch: int, p: float):
    """The package's ResBlock with random weights, and the learner's block with those weights loaded."""
    torch.manual_seed(0)
    ref = ResBlock(in_ch, out_ch, 32, p, 4)
    for param in ref.parameters():  # random weights everywhere, so every path shows in the output
        torch.nn.init.normal_(param, std=0.2)
    mine = block_cls(in_ch, out_ch, 32, p, 4)
    where = f"res block ({in_ch} -> {out_ch} channels)"
    if not isinstance(mine, torch.nn.Module):
        raise CheckFailed(f"{where}: the block must be an nn.Module (class MyResBlock(nn.Module), super().__init__()).")
    try:
        missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
    except RuntimeError as err:
        sizes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise CheckFailed(
            f"{where}: a layer has the wrong size ({sizes[0] if sizes else err}). Follow the channels: x has in_ch, "
            "conv1 turns them into out_ch, the embedding has emb_dim entries; each GroupNorm normalises what "
            "comes into it."
        ) from None
    # missing: the learner's keys the package's block lacks; unexpected: the package's keys the learner's lacks
    other = [k for k in [*missing, *unexpected] if not k.startswith("skip.")]
    if other:
        raise CheckFailed(
            f"{where}: cannot load the package's weights into yours (missing {list(missing)}, unexpected "
            f"{list(unexpected)}). Use the same layer names: norm1, conv1, emb_proj, norm2, dropout, conv2, skip."
        )
    if unexpected:
        raise CheckFailed(
            f"{where}: x has {in_ch} channels and the branch {out_ch}, so they cannot be added as they are: "
            "when in_ch != out_ch the skip is a 1x1 convolution from in_ch to out_ch channels."
        )
    if missing:
        raise CheckFailed(f"{where}: when in_ch == out_ch the skip is nn.Identity() (no weights): x is added as it is.")
    return ref, mine


def _run_block(where: str, block, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    def forward(x, emb):  # the names the in-place message uses
        try:
            return block(x, emb)
        except RuntimeError as error:
            if "must match the size" in str(error) or "not broadcastable" in str(error):
                raise CheckFailed(
                    f"{where}: two shapes do not fit together ({error}). emb_proj gives one value per channel, "
                    "shape (B, out_ch); to add it at every pixel of a (B, out_ch, H, W) tensor it needs two "
                    "trailing axes of size 1."
                ) from None
            raise

    return call(where, forward, x, emb)


def check_res_block(block_cls: type) -> None:
    """block_cls(in_ch, out_ch, emb_dim, dropout, groups) with the package's layer names, compared with the
    package's ResBlock on the same weights: in eval mode for 8 -> 16 and 16 -> 16 channels, and in training
    mode, where the second convolution must receive dropout(silu(norm2(h))) (whatever the dropout mask)."""
    F = torch.nn.functional
    p = 0.5
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(2, 32, generator=g)
    for in_ch, out_ch, training in ((8, 16, False), (16, 16, False), (8, 16, True)):
        where = f"res block ({in_ch} -> {out_ch} channels{', training mode' if training else ''})"
        ref, mine = _load_package_weights(block_cls, in_ch, out_ch, p)
        ref.eval()
        mine.train(training)
        x = torch.randn(2, in_ch, 6, 6, generator=g)
        seen = {}

        def grab(module, args, store=seen):  # what the learner's conv2 receives
            store.setdefault("conv2_in", args[0].detach().clone())

        hook = mine.conv2.register_forward_pre_hook(grab)
        try:
            got = _run_block(where, mine, x, emb)
        finally:
            hook.remove()
        with torch.no_grad():
            skip = ref.skip(x)
            h = ref.conv1(F.silu(ref.norm1(x)))
            shift = ref.emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch) -> (B, out_ch, 1, 1)
            a = F.silu(ref.norm2(h + shift))  # what dropout acts on, right before conv2
            conv2_in = seen.get("conv2_in")
            if conv2_in is None:
                raise CheckFailed(
                    f"{where}: call the second convolution as self.conv2(...), so the check sees its input."
                )
            dropped = (conv2_in == 0) & (a != 0)
            kept_right = conv2_in.shape == a.shape and bool(
                torch.allclose(conv2_in[~dropped], a[~dropped] / (1 - p), rtol=1e-4, atol=1e-5)
            )
            looks_like_dropout = kept_right and 0.3 < dropped.float().mean().item() < 0.7
            if not training:
                if looks_like_dropout:
                    raise CheckFailed(
                        f"{where}: dropout acts in eval mode too, so sampling would be noisy. Use self.dropout "
                        "(an nn.Dropout follows .train() and .eval()), or F.dropout(..., training=self.training)."
                    )
                mistakes = {
                    "The skip connection is missing: return skip(x) + h.": ref.conv2(a),
                    "The embedding is added at the end; add it after the first convolution, before norm2.": (
                        skip + ref.conv2(F.silu(ref.norm2(h))) + shift
                    ),
                    "The time embedding is not used: add emb_proj(silu(emb)) to h, broadcast over H and W.": (
                        skip + ref.conv2(F.silu(ref.norm2(h)))
                    ),
                    "The embedding goes through SiLU before its linear layer: emb_proj(silu(emb)).": (
                        skip + ref.conv2(F.silu(ref.norm2(h + ref.emb_proj(emb)[:, :, None, None])))
                    ),
                    "The embedding is added after norm2; add it to the first convolution's output, before norm2.": (
                        skip + ref.conv2(F.silu(ref.norm2(h)) + shift)
                    ),
                    "SiLU comes after GroupNorm, not before: silu(norm(h)).": skip
                    + ref.conv2(ref.norm2(F.silu(ref.conv1(ref.norm1(F.silu(x))) + shift))),
                    "A SiLU is missing: each convolution gets silu(norm(...)).": skip
                    + ref.conv2(ref.norm2(ref.conv1(ref.norm1(x)) + shift)),
                }
                judge(
                    where, got, ref(x, emb), mistakes, "norm1-silu-conv1, + emb, norm2-silu-dropout-conv2, + skip(x)."
                )
            else:
                if not looks_like_dropout:
                    hint = (
                        "conv2 gets silu(norm2(h)) with nothing dropped: in training mode dropout acts right "
                        "before the second convolution, conv2(dropout(silu(norm2(h))))."
                        if torch.allclose(conv2_in, a, rtol=1e-4, atol=1e-5)
                        else "conv2 should get dropout(silu(norm2(h))): dropout acts after norm2 and SiLU, "
                        "right before the second convolution."
                    )
                    raise CheckFailed(f"{where}: not yet. {hint}")
                judge(where, got, skip + ref.conv2(conv2_in), {}, "return skip(x) + conv2(dropout(silu(norm2(h)))).")
    report_pass("res block: same output as the package's ResBlock on its weights (8 -> 16, 16 -> 16, training mode)")
