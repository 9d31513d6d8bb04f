"""Inpainting with an unconditional (or class-conditional) model and no retraining: RePaint
(Lugmayr et al. 2022, Algorithm 1).

At every reverse step the known pixels are replaced by the original, noised to the same level with
Eq. (4) of Ho et al. 2020, and the unknown pixels take one step of Algorithm 2. Replacement alone
does not let the two parts agree (the model never sees the known pixels' future noise), so RePaint
*resamples*: it diffuses the merged x_{t-1} one step forward again (Eq. 2) and repeats the step,
``resample`` times in all, giving the unknown region time to harmonise with the known one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpm_lessons.forward import check_x0, q_step
from ddpm_lessons.samplers import p_sample
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.utils import progress as progress_bar


def _randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)


def repaint_merge(
    schedule: NoiseSchedule, x0: torch.Tensor, mask: torch.Tensor, unknown: torch.Tensor, t: int, noise: torch.Tensor
) -> torch.Tensor:
    """RePaint's step: x_{t-1} = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown (Lugmayr et al. 2022, Eq. 8).

    The known pixels are the original noised to the level of step t-1 with Eq. (4) of Ho et al. 2020,
    sqrt(alpha_bar_{t-1}) x0 + sqrt(1 - alpha_bar_{t-1}) noise; after the last step (t = 0) the original itself.
    x0, unknown, noise: (B, C, H, W); mask: 1 = known, 0 = to fill, broadcast to x0.
    """
    alpha_bar_prev = float(schedule.alpha_bar_prev[t])  # alpha_bar_{t-1}; 1 at t = 0, so the last step gives x0 itself
    known = alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * noise  # Eq. (4) at step t-1
    return mask * known + (1 - mask) * unknown  # Lugmayr et al. Eq. (8)


@torch.no_grad()
def repaint(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    mask: torch.Tensor,
    resample: int = 1,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    variance: str = "beta",
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Fill the pixels where ``mask`` is 0 so that they fit the pixels of ``x0`` where it is 1.

    Args:
        x0: (B, C, H, W) images in [-1, 1]; only the known pixels are read.
        mask: 1 = known, 0 = to fill; any shape that broadcasts to x0 (e.g. (1, 1, H, W)).
        resample: RePaint's U, the number of tries per step (1: plain replacement, T network calls;
            U: about U * T calls).
        y, guidance, clip_x0, variance: class labels, classifier-free guidance weight, clipping and sigma_t^2
            ("beta" or "beta_tilde"), as in :func:`~ddpm_lessons.samplers.p_sample`. On a respaced chain of a
            few dozen steps use "beta_tilde": "beta" leaves visible noise after the last, large steps.
        generator: a CPU torch.Generator; the same seed gives the same result.

    Returns:
        (B, C, H, W): x0 where mask = 1 (exactly), the model's completion elsewhere.
    """
    check_x0(x0, "repaint")
    mask = torch.as_tensor(mask, dtype=x0.dtype, device=x0.device)
    try:
        mask = mask.expand_as(x0)
    except RuntimeError as err:
        raise ValueError(f"repaint: mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x0.shape)}") from err
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("repaint: mask must hold only 0 (fill) and 1 (known)")
    if resample < 1:
        raise ValueError(f"repaint: resample must be >= 1, got {resample}")
    x = _randn(x0.shape, generator, x0)  # x_T ~ N(0, I)
    for t in progress_bar(range(schedule.T - 1, -1, -1), desc="RePaint", disable=not progress, transient=True):
        tries = resample if t > 0 else 1  # nothing to harmonise after the last step
        for u in range(tries):
            noise = _randn(x0.shape, generator, x0)
            unknown = p_sample(model, schedule, x, t, y, guidance, clip_x0, variance, generator)  # Algorithm 2
            x_prev = repaint_merge(schedule, x0, mask, unknown, t, noise)
            if u + 1 < tries:
                x = q_step(schedule, x_prev, t, generator)  # back up one step: q(x_t | x_{t-1}), Eq. (2)
            else:
                x = x_prev
    return x


MASK_KINDS = ("box", "half", "pixels")


def make_mask(kind: str, n: int, size: int = 28, hidden: float = 0.8, generator: torch.Generator | None = None):
    """Masks of shape (n, 1, size, size), 1 = known, 0 = to fill.

    "box": the central square of side size // 2 is hidden (for digits: most of the stroke);
    "half": the bottom half is hidden; "pixels": each pixel is hidden with probability ``hidden``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    mask = torch.ones(n, 1, size, size)
    if kind == "box":
        lo = size // 4
        mask[..., lo : lo + size // 2, lo : lo + size // 2] = 0
    elif kind == "half":
        mask[..., size // 2 :, :] = 0
    else:
        mask = (torch.rand(n, 1, size, size, generator=generator) >= hidden).float()
    return mask


def hidden_rmse(completed: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> float:
    """Root mean squared error over the hidden pixels only (mask = 0), in [0, 1] intensity units."""
    hidden = (1 - mask).expand_as(original).bool()
    if not bool(hidden.any()):
        raise ValueError("hidden_rmse: the mask hides no pixel")
    diff = (completed - original)[hidden] / 2  # images in [-1, 1]: half the difference is in [0, 1] units
    return float(diff.double().pow(2).mean().sqrt())
