"""Plotting helpers the lessons share: image grids and schedule curves, with labelled axes."""

from __future__ import annotations

import numpy as np
import torch

from ddpm_lessons.data import to_uint8
from ddpm_lessons.schedules import NoiseSchedule


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) floats in [-1, 1] -> one uint8 array (rows*H, nrow*W[, 3]) with ``pad`` pixel gaps."""
    x = to_uint8(images)  # (N, C, H, W)
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    grid = np.full((c, rows * (h + pad) - pad, min(n, nrow) * (w + pad) - pad), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.6):
    """Draw a grid of images in [-1, 1] on ``ax`` (a new figure if None); returns the axes."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * grid.shape[1] / 29 + 0.5, scale * grid.shape[0] / 29 + 0.5))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_schedules(schedules: dict[str, NoiseSchedule], axes=None):
    """alpha_bar_t and log10 SNR(t) of several schedules, side by side; returns the two axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, s in schedules.items():
        t = np.arange(s.T)
        axes[0].plot(t, s.alpha_bar.numpy(), label=name)
        axes[1].plot(t, np.log10(s.snr.numpy()), label=name)
    axes[0].set(xlabel="t", ylabel="alpha_bar_t", title="signal kept: alpha_bar_t")
    axes[1].set(xlabel="t", ylabel="log10 SNR(t)", title="SNR = alpha_bar / (1 - alpha_bar)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    return axes


def notebook_style(dpi: int = 72) -> None:
    """Small, readable inline figures: keeps each lesson under 1 MB with its outputs."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": dpi, "figure.figsize": (6, 3.2), "axes.grid": False, "font.size": 10})
