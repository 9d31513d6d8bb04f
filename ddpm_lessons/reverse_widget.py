"""The instructor's reverse-chain scrubber: step through the denoising of a trained model with a slider.

For the class and guidance weight chosen, it runs DDIM (Song et al. 2021) once and keeps every visited
x_t and the model's guess of x_0 at that step (Eq. 15 of Ho et al. 2020); the t slider then only
redraws (blitting, as the forward explorer). Panels: x_t of a few samples, their x0_hat, and
log10 SNR(t) with a marker at t.
"""

from __future__ import annotations

import numpy as np
import torch

from ddpm_lessons.samplers import ddim_step, ddim_timesteps, guided_eps
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.viz import image_grid
from ddpm_lessons.widgets import BlittedFigure, show_static_or_widget


class ReverseChainScrubber(BlittedFigure):
    """State and drawing of the scrubber; ``build_widget()`` returns the ipywidgets box."""

    def __init__(self, model, schedule: NoiseSchedule, n_images: int = 6, steps: int = 100, seed: int = 0,
                 font_size: int = 10, device: str | torch.device = "cpu"):  # fmt: skip
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.model, self.schedule, self.device = model, schedule, torch.device(device)
        self.ts = ddim_timesteps(schedule.T, steps)  # T-1, ..., 0
        cfg = getattr(model, "config", None)  # a UNet knows its image shape; anything else draws MNIST-sized
        shape = (cfg.in_channels, cfg.image_size, cfg.image_size) if cfg is not None else (1, 28, 28)
        self.x_T = torch.randn(n_images, *shape, generator=torch.Generator().manual_seed(seed))
        self.num_classes = getattr(cfg, "num_classes", None)
        self.label, self.guidance, self.t = (0 if self.num_classes else None), 1.0, schedule.T - 1
        self.font_size = font_size

        self.fig = Figure(figsize=(11, 5.2), dpi=80)
        self.fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.92, wspace=0.25, hspace=0.35)
        self.canvas = FigureCanvasAgg(self.fig)
        grid = self.fig.add_gridspec(2, 3)
        self.ax_xt = self.fig.add_subplot(grid[0, :2])
        self.ax_x0 = self.fig.add_subplot(grid[1, :2])
        self.ax_snr = self.fig.add_subplot(grid[:, 2])
        self.run_chain()
        self._build_artists()
        self.animated = [self.im_xt, self.im_x0, self.snr_dot, self.title]
        for artist in self.animated:
            artist.set_animated(True)
        self.widget = None

    @torch.no_grad()
    def run_chain(self) -> None:
        """DDIM from x_T for the current class and guidance; keep x_t and x0_hat at every visited step."""
        x = self.x_T.to(self.device)
        n = len(x)
        y = None if self.label is None else torch.full((n,), self.label, dtype=torch.long, device=self.device)
        self.frames: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, t in enumerate(self.ts):
            t_batch = torch.full((n,), t, dtype=torch.long, device=self.device)
            eps = guided_eps(self.model, x, t_batch, y, self.guidance if y is not None else 0.0)
            t_prev = self.ts[i + 1] if i + 1 < len(self.ts) else -1
            x_next, x0_hat = ddim_step(self.schedule, x, eps, t, t_prev, return_x0=True)  # x0_hat: Eq. (15), clipped
            self.frames[t] = (x.cpu(), x0_hat.cpu())
            x = x_next
        self.final = x.cpu()

    def nearest_step(self, t: int) -> int:
        return min(self.ts, key=lambda s: abs(s - t))

    def _build_artists(self) -> None:
        fs = self.font_size
        blank = image_grid(torch.zeros_like(self.x_T), nrow=len(self.x_T), pad=2)
        self.im_xt = self.ax_xt.imshow(blank, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        self.im_x0 = self.ax_x0.imshow(blank, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        for ax, label in ((self.ax_xt, "x_t"), (self.ax_x0, "x0_hat")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, fontsize=fs + 2, rotation=0, ha="right", va="center")
        self.ax_x0.set_title("the model's guess of the final image (Eq. 15)", fontsize=fs)
        self.title = self.ax_xt.set_title("", fontsize=fs + 2)
        steps = np.arange(self.schedule.T)
        self.ax_snr.plot(steps, np.log10(self.schedule.snr.numpy()))
        (self.snr_dot,) = self.ax_snr.plot([self.t], [np.log10(self.schedule.snr[self.t].item())], "o", color="C3",
                                           markersize=10)  # fmt: skip
        self.ax_snr.set(xlim=(self.schedule.T - 1, 0), ylim=(-6, 5))  # time runs right to left: T-1 -> 0
        self.ax_snr.set_xlabel("t (denoising runs left to right)", fontsize=fs)
        self.ax_snr.set_ylabel("log10 SNR(t)", fontsize=fs)
        self.ax_snr.tick_params(labelsize=fs)
        self.ax_snr.grid(alpha=0.3)
        self.update()

    def update(self, t: int | None = None, label: int | None | str = "keep", guidance: float | None = None) -> None:
        """Move to step t; a new class or guidance weight first reruns the chain."""
        rerun = False
        if label != "keep" and label != self.label:
            self.label, rerun = label, True
        if guidance is not None and guidance != self.guidance:
            self.guidance, rerun = guidance, True
        if rerun:
            self.run_chain()
        if t is not None:
            self.t = int(t)
        step = self.nearest_step(self.t)
        xt, x0_hat = self.frames[step]
        n = len(xt)
        self.im_xt.set_data(image_grid(xt.clamp(-1, 1), nrow=n, pad=2))
        self.im_x0.set_data(image_grid(x0_hat, nrow=n, pad=2))
        self.snr_dot.set_data([step], [np.log10(self.schedule.snr[step].item())])
        what = "any digit" if self.label is None else f"digit {self.label}, guidance w = {self.guidance:g}"
        self.title.set_text(f"t = {step} ({what})")

    def build_widget(self):
        import ipywidgets as w

        style, layout = {"description_width": "90px"}, w.Layout(width="420px")
        self.t_slider = w.IntSlider(self.t, 0, self.schedule.T - 1, description="t", style=style, layout=layout)
        options = [("any", None)] + [(str(k), k) for k in range(self.num_classes or 0)]
        self.class_box = w.Dropdown(options=options, value=self.label, description="class", style=style)
        self.w_slider = w.FloatSlider(self.guidance, min=0.0, max=4.0, step=0.5, description="guidance w",
                                      style=style, layout=layout, disabled=self.label is None)  # fmt: skip
        self.image = w.Image(value=self.png(), format="png")

        def on_change(change) -> None:
            self.update(t=self.t_slider.value, label=self.class_box.value, guidance=self.w_slider.value)
            self.w_slider.disabled = self.class_box.value is None  # no label: nothing to guide towards
            self.image.value = self.png()

        for control in (self.t_slider, self.class_box, self.w_slider):
            control.observe(on_change, names="value")
        self.widget = w.VBox([w.HBox([self.t_slider, self.class_box]), self.w_slider, self.image])
        return self.widget


def reverse_chain_scrubber(model, schedule: NoiseSchedule, n_images: int = 6, steps: int = 100,
                           static: bool | None = None, font_size: int = 10, device="cpu"):  # fmt: skip
    """Display sliders for t, the class and the guidance weight over the denoising chain of ``model``.

    Returns the :class:`ReverseChainScrubber` (its ``update`` works without a browser).
    """
    scrubber = ReverseChainScrubber(model, schedule, n_images, steps, font_size=font_size, device=device)
    show_static_or_widget(scrubber, static)
    return scrubber
