"""Super-resolution by conditioning on a low-resolution image (SR3, Saharia et al. 2021).

The model is an ordinary eps-predictor whose input is x_t concatenated with the low-resolution image
upsampled to full size (``UNetConfig(cond_channels=C)``); training pairs are made on the fly from the
full-size digits. The baseline every result is compared with is plain bicubic upsampling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def low_resolution(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) by averaging pixel blocks (area downsampling)."""
    if x.shape[-1] % size or x.shape[-2] % size:
        raise ValueError(f"low_resolution: {tuple(x.shape[-2:])} is not a multiple of {size}; use 7 or 14 for 28x28")
    return F.interpolate(x, size=(size, size), mode="area")


def bicubic_upsample(x_low: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size), bicubic, clipped to [-1, 1]: the baseline and the SR3 condition."""
    return F.interpolate(x_low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def sr_condition(low_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training condition: full-size x0 -> its bicubic upsampling from low_size x low_size."""

    def condition(x0: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(low_resolution(x0, low_size), x0.shape[-1])

    return condition


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, 10 log10(range^2 / MSE); images in [-1, 1] have range 2."""
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(data_range**2 / mse)


def conditioned(model: Callable[..., torch.Tensor], cond: torch.Tensor) -> Callable[..., torch.Tensor]:
    """An eps-model with the condition fixed, for any sampler: ``sample_ddim(conditioned(model, c), ...)``."""

    def eps_model(xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = cond.to(xt.device)
        if len(c) != len(xt):  # guidance doubles the batch: the same conditions for both halves
            c = c.repeat(len(xt) // len(c), 1, 1, 1)
        return model(xt, t, y, cond=c)

    eps_model.__wrapped__ = model  # eps_model.model_device finds the network's weights through it
    return eps_model
