"""GroupNorm, SiLU and dropout as one autograd step, for training the U-Net with less memory and time.

Nothing here is new mathematics: ``norm_silu(norm, x, p)`` is ``F.dropout(F.silu(norm(x)), p)``, and
with the same dropout mask it agrees value for value and gradient for gradient (tested). It keeps
fewer tensors for the backward pass and draws the dropout mask with fewer calls to the random number
generator; ``unet.ResBlock`` uses it, and lesson 03 explains why the learner's plain block and the
package's agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _sizes(x: torch.Tensor) -> tuple[int, int, int]:
    """(N, C, H * W): the sizes ATen's group-norm kernels take."""
    return x.shape[0], x.shape[1], x.shape[2:].numel()


def dropout_keep_mask(shape: torch.Size | tuple[int, ...], p: float, device=None) -> torch.Tensor:
    """A bool mask, True with probability 1 - p, for dropout; four draws per 64-bit random number.

    ``nn.Dropout`` on a CPU asks the generator for one random number per element, and that is most of its
    cost (a fifth of a training step of the course U-Net on 2 cores). Here each 64-bit draw of
    ``random_()`` (63 random bits) is cut into four 16-bit integers whose top bit is cleared, leaving four
    uniform integers u in 0..32767; an element is kept where u >= round(p * 32768). So p is rounded to a
    multiple of 1/32768 (0.1 becomes 0.100006). Draws from the default generator, like ``nn.Dropout``.
    On a GPU, whose generator is fast, it draws one uniform number per element.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if torch.device(device or "cpu").type != "cpu":
        return torch.rand(shape, device=device) >= p
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # uniform in 0..2**63 - 1
    u = words.view(torch.int16)[:n].bitwise_and_(0x7FFF)  # (n,) uniform in 0..32767 (byte order does not matter)
    return (u >= round(p * 32768)).reshape(shape)


def inverted_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (Srivastava et al. 2014) with the mask of :func:`dropout_keep_mask`: each element kept with
    probability 1 - p and scaled by 1 / (1 - p), so E[out] = x; x itself for p = 0."""
    return x * dropout_keep_mask(x.shape, p, x.device) / (1.0 - p) if p else x


class _GroupNormSiLU(torch.autograd.Function):
    """dropout(silu(group_norm(x))) that keeps only x (and a bool mask) for the backward pass.

    GroupNorm: Wu & He 2018, Sec. 3.1 (mean and variance over each group of channels); SiLU(a) = a sigmoid(a):
    Elfwing et al. 2018; dropout: Srivastava et al. 2014 (Ho et al. 2020's networks use all three, Appendix B).

    The plain composition keeps three tensors of the block's size for the backward pass: GroupNorm's
    input, its output (SiLU's input) and SiLU's output (the next conv's input). This one drops the
    middle one and recomputes it from x in the backward pass, one more GroupNorm pass per block,
    which cuts what the course U-Net keeps for training by a quarter (722 -> 539 MiB at batch 128).
    Dropout (p > 0) is applied in place with ``dropout_keep_mask``, so it allocates no tensor of its own
    beyond the bool mask (539 -> 492 MiB). Same values and gradients as
    ``F.dropout(F.silu(F.group_norm(x, groups, weight, bias, eps)), p)`` with the same mask (tested).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # autocast runs GroupNorm in fp32
    def forward(ctx, x, weight, bias, groups: int, eps: float, p: float):
        x = x.contiguous()
        normed, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, *_sizes(x), groups, eps)
        out = F.silu(normed)
        keep = None
        if p > 0:
            keep = dropout_keep_mask(out.shape, p, out.device)
            out.mul_(keep).mul_(1.0 / (1.0 - p))  # inverted dropout: E[out] is unchanged
        ctx.save_for_backward(x, weight, bias, mean, rstd, keep)
        ctx.groups, ctx.eps, ctx.p = groups, eps, p
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        x, weight, bias, mean, rstd, keep = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        if keep is not None:
            grad_out = grad_out * keep * (1.0 / (1.0 - ctx.p))
        normed = torch.ops.aten.native_group_norm(x, weight, bias, *_sizes(x), ctx.groups, ctx.eps)[0]
        grad_normed = torch.ops.aten.silu_backward(grad_out, normed)
        del normed  # free it before GroupNorm's backward allocates its gradients
        grad_x, grad_w, grad_b = torch.ops.aten.native_group_norm_backward(
            grad_normed, x, mean, rstd, weight, *_sizes(x), ctx.groups, list(ctx.needs_input_grad[:3])
        )
        return grad_x, grad_w, grad_b, None, None, None


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
    """``F.dropout(F.silu(norm(x)), dropout)``, with less memory and time when gradients are needed.

    dropout: the probability of zeroing an element; 0 (the default) means none, as in evaluation.
    """
    if torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad):
        return _GroupNormSiLU.apply(x, norm.weight, norm.bias, norm.num_groups, norm.eps, dropout)
    return inverted_dropout(F.silu(norm(x)), dropout)
