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


class LossPlot:
    """A loss curve that redraws in place in a notebook while training runs: ``plot.update(step, loss)``."""

    def __init__(self, title: str = "training loss", every: int = 10, smooth: int = 20):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.steps: list[int] = []
        self.losses: list[float] = []
        self.every, self.smooth = every, smooth
        self.fig, self.ax = plt.subplots(figsize=(6, 3))
        self.ax.set(xlabel="training step", ylabel="L_simple (Eq. 14)", title=title, yscale="log")
        self.ax.grid(alpha=0.3)
        plt.close(self.fig)  # shown through the display handle only, not again at the cell's end
        self.handle = display(self.fig, display_id=True)

    def update(self, step: int, loss: float, force: bool = False) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        if force or len(self.steps) % self.every == 0:
            self.draw()

    def draw(self) -> None:
        for line in list(self.ax.lines):
            line.remove()
        self.ax.plot(self.steps, self.losses, color="0.7", lw=0.8, label="per step")
        k = min(self.smooth, len(self.losses))
        if k > 1:
            smoothed = np.convolve(self.losses, np.ones(k) / k, mode="valid")
            self.ax.plot(self.steps[k - 1 :], smoothed, color="C0", lw=2, label=f"mean of {k}")
        self.ax.legend(loc="upper right")
        self.handle.update(self.fig)
