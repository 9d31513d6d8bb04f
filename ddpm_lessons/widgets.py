"""The instructor's slider explorer of forward diffusion (ipywidgets 8).

One figure, four panels, redrawn together: x_t for a few digits, alpha_bar_t and SNR with a
marker at t, and the histogram of x_t's pixels against N(0, 1). The figure is a matplotlib Agg
canvas sent to the browser as a PNG inside an Image widget, so it works in JupyterLab, Notebook 7,
VS Code and Colab with no matplotlib backend set-up. A slider move redraws only what changes
(blitting: axes, ticks and curves are drawn once and kept as a background bitmap).
With DDPM_WIDGETS=static (what `make test` sets) it draws one static figure instead, for runs
without a front end (nbval, nbconvert).
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
import torch

from ddpm_lessons.forward import q_sample
from ddpm_lessons.schedules import SCHEDULE_KINDS, NoiseSchedule
from ddpm_lessons.viz import image_grid

STATIC_ENV = "DDPM_WIDGETS"


class BlittedFigure:
    """A matplotlib Agg figure whose ``animated`` artists are redrawn over a cached background (blitting)
    and sent to the browser as PNG bytes. Subclasses build ``fig``, ``canvas`` and ``animated``."""

    fig = canvas = background = None
    animated: list = []

    def render(self) -> np.ndarray:
        """Draw the figure and return its pixels, (H, W, 4) uint8."""
        if self.background is None:
            self.canvas.draw()  # everything but the animated artists
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.canvas.restore_region(self.background)
        for artist in self.animated:
            self.fig.draw_artist(artist)
        return np.asarray(self.canvas.buffer_rgba())

    def png(self, compress_level: int = 1) -> bytes:
        """The figure as PNG bytes; level 1 favours speed (slider moves), 9 size (a stored figure)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.render()[:, :, :3]).save(buf, format="png", compress_level=compress_level)
        return buf.getvalue()


def show_static_or_widget(figure: BlittedFigure, static: bool | None) -> None:
    """Display the live widget, or one PNG where DDPM_WIDGETS=static (nbval, nbconvert, the static site)."""
    from IPython.display import Image, display

    if static is None:
        static = os.environ.get(STATIC_ENV, "").lower() == "static"
    display(Image(figure.png(compress_level=9)) if static else figure.build_widget())


class ForwardDiffusionExplorer(BlittedFigure):
    """State and drawing of the explorer; ``widget`` is the ipywidgets box to display."""

    def __init__(self, images: torch.Tensor, n_images: int = 6, T: int = 1000, seed: int = 0, font_size: int = 10):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        self.x0 = images[:n_images].float()
        self.T = T
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(self.x0.shape, generator=g)  # the same eps at every t: smooth to scrub
        self.kind, self.beta_end, self.t = "linear", 0.02, T // 4
        self.schedule = NoiseSchedule.make(self.kind, T, beta_end=self.beta_end)

        self.fig = Figure(figsize=(11, 5.2), dpi=80)
        self.fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.93, wspace=0.3, hspace=0.3)
        self.canvas = FigureCanvasAgg(self.fig)
        grid = self.fig.add_gridspec(2, 3)
        self.ax_img = self.fig.add_subplot(grid[0, :])
        self.ax_ab = self.fig.add_subplot(grid[1, 0])
        self.ax_snr = self.fig.add_subplot(grid[1, 1])
        self.ax_hist = self.fig.add_subplot(grid[1, 2])
        for ax in (self.ax_img, self.ax_ab, self.ax_snr, self.ax_hist):
            ax.tick_params(labelsize=font_size)
        self.font_size = font_size
        self._build_artists()
        self.animated = [self.im, self.ab_dot, self.snr_dot, self.hist, self.title]
        for artist in self.animated:
            artist.set_animated(True)  # left out of the background, drawn on top at every move
        self.background = None
        self.widget = None

    # ---- drawing ----------------------------------------------------------------------------
    def xt(self) -> torch.Tensor:
        t = torch.full((len(self.x0),), self.t, dtype=torch.long)
        return q_sample(self.schedule, self.x0, t, noise=self.noise)  # Eq. (4)

    def _build_artists(self) -> None:
        fs = self.font_size
        steps = np.arange(self.T)
        grid = image_grid(self.xt().clamp(-1, 1), nrow=len(self.x0), pad=2)
        self.im = self.ax_img.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        self.ax_img.set_axis_off()
        self.title = self.ax_img.set_title("", fontsize=fs + 2)
        (self.ab_line,) = self.ax_ab.plot(steps, self.schedule.alpha_bar.numpy())
        (self.ab_dot,) = self.ax_ab.plot([self.t], [self.schedule.alpha_bar[self.t].item()], "o", color="C3")
        self.ax_ab.set(xlim=(0, self.T - 1), ylim=(0, 1.02))
        self.ax_ab.set_xlabel("t", fontsize=fs)
        self.ax_ab.set_ylabel("alpha_bar_t", fontsize=fs)
        (self.snr_line,) = self.ax_snr.plot(steps, np.log10(self.schedule.snr.numpy()))
        (self.snr_dot,) = self.ax_snr.plot([self.t], [np.log10(self.schedule.snr[self.t].item())], "o", color="C3")
        self.ax_snr.set(xlim=(0, self.T - 1), ylim=(-6, 5))
        self.ax_snr.set_xlabel("t", fontsize=fs)
        self.ax_snr.set_ylabel("log10 SNR(t)", fontsize=fs)
        self.bins = np.linspace(-4, 4, 61)
        centres = (self.bins[:-1] + self.bins[1:]) / 2
        self.hist = self.ax_hist.stairs(np.zeros(60), self.bins, fill=True, alpha=0.7, label="pixels of x_t")
        self.ax_hist.plot(centres, np.exp(-(centres**2) / 2) / np.sqrt(2 * np.pi), color="C3", label="N(0, 1)")
        self.ax_hist.set(xlim=(-4, 4), ylim=(0, 1.0))  # the t = 0 spikes (background, ink) run off the top
        self.ax_hist.set_xlabel("pixel value of x_t", fontsize=fs)
        self.ax_hist.set_ylabel("density", fontsize=fs)
        self.ax_hist.legend(fontsize=fs)
        self.update()

    def update(self, t: int | None = None, kind: str | None = None, beta_end: float | None = None) -> None:
        """Move to a new t / schedule / final beta and update every panel."""
        if kind is not None or beta_end is not None:
            self.kind = kind or self.kind
            self.beta_end = beta_end or self.beta_end
            self.schedule = NoiseSchedule.make(self.kind, self.T, beta_end=self.beta_end)
            self.ab_line.set_ydata(self.schedule.alpha_bar.numpy())
            self.snr_line.set_ydata(np.log10(self.schedule.snr.numpy()))
            self.background = None  # the curves changed: redraw the background once
        if t is not None:
            self.t = int(t)
        xt = self.xt()
        self.im.set_data(image_grid(xt.clamp(-1, 1), nrow=len(self.x0), pad=2))
        alpha_bar_t = self.schedule.alpha_bar[self.t].item()
        self.ab_dot.set_data([self.t], [alpha_bar_t])
        self.snr_dot.set_data([self.t], [np.log10(self.schedule.snr[self.t].item())])
        density, _ = np.histogram(xt.numpy().ravel(), bins=self.bins, density=True)
        self.hist.set_data(density)
        detail = "" if self.kind == "cosine" else f", beta_T = {self.beta_end:.3f}"
        self.title.set_text(f"x_t at t = {self.t} ({self.kind}{detail}): alpha_bar_t = {alpha_bar_t:.4f}")

    def redraw_ms(self, moves: int = 20) -> float:
        """Median milliseconds for one slider move (update + PNG), measured here."""
        times = []
        for i in range(moves):
            start = time.perf_counter()
            self.update(t=(self.t + 37 * (i + 1)) % self.T)
            self.png()
            times.append((time.perf_counter() - start) * 1000)
        return float(np.median(times))

    # ---- widgets ----------------------------------------------------------------------------
    def build_widget(self):
        import ipywidgets as w

        style, layout = {"description_width": "90px"}, w.Layout(width="420px")
        self.t_slider = w.IntSlider(self.t, 0, self.T - 1, description="t", style=style, layout=layout)
        self.kind_box = w.Dropdown(options=SCHEDULE_KINDS, value=self.kind, description="schedule", style=style)
        self.beta_slider = w.FloatSlider(
            self.beta_end,
            min=0.005,
            max=0.05,
            step=0.001,
            readout_format=".3f",
            description="final beta",
            style=style,
            layout=layout,
        )
        self.image = w.Image(value=self.png(), format="png")

        def on_change(change) -> None:
            self.update(t=self.t_slider.value, kind=self.kind_box.value, beta_end=self.beta_slider.value)
            self.beta_slider.disabled = self.kind_box.value == "cosine"  # the cosine schedule has no beta range
            self.image.value = self.png()

        for control in (self.t_slider, self.kind_box, self.beta_slider):
            control.observe(on_change, names="value")
        self.widget = w.VBox([w.HBox([self.t_slider, self.kind_box]), self.beta_slider, self.image])
        return self.widget


def forward_diffusion_explorer(
    images: torch.Tensor, n_images: int = 6, T: int = 1000, static: bool | None = None, font_size: int = 10
):
    """Display sliders for t, the schedule and the final beta over x_t of a few digits.

    Args:
        images: (N, C, H, W) in [-1, 1]; the first ``n_images`` are shown.
        static: draw one figure instead of widgets; default: DDPM_WIDGETS=static in the environment.
        font_size: of the figure's labels (the instructor demo uses larger ones).
    Returns:
        the :class:`ForwardDiffusionExplorer` (its ``update`` and ``redraw_ms`` work without a browser).
    """
    explorer = ForwardDiffusionExplorer(images, n_images=n_images, T=T, font_size=font_size)
    show_static_or_widget(explorer, static)
    return explorer
