"""The reverse-chain scrubber, with a model whose answers are known exactly: for data that is one image
per class, the exact eps-predictor makes every x0_hat that class's image, so the chain must end on it."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddpm_lessons.reverse_widget import ReverseChainScrubber, reverse_chain_scrubber
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.unet import NO_LABEL

S = NoiseSchedule.make("linear", 1000)


class PointMasses:
    """The exact eps-predictor when class k is the single image c_k. For "no label" it aims at the mean image
    (a stand-in: the exact unconditional predictor of a mixture is not linear), which keeps guidance checkable."""

    def __init__(self, k: int = 3):
        g = torch.Generator().manual_seed(0)
        self.c = torch.rand(k, 1, 28, 28, generator=g) * 1.6 - 0.8  # (K, 1, 28, 28) inside [-1, 1]
        self.config = SimpleNamespace(in_channels=1, image_size=28, num_classes=k)
        self.calls = 0

    def __call__(self, xt, t, y=None):
        self.calls += 1
        target = (
            self.c.mean(0, keepdim=True).expand_as(xt)
            if y is None
            else torch.where((y == NO_LABEL).view(-1, 1, 1, 1), self.c.mean(0, keepdim=True), self.c[y.clamp(min=0)])
        )
        ab = S.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (xt - ab.sqrt() * target) / (1 - ab).sqrt()  # Eq. (4) solved for eps


def test_the_chain_ends_on_the_class_image_and_t_scrubs_through_it():
    model = PointMasses()
    scrubber = ReverseChainScrubber(model, S, n_images=4, steps=50)
    scrubber.update(guidance=0.0, label=2)
    assert torch.allclose(scrubber.final, model.c[2].expand(4, -1, -1, -1), atol=1e-4)
    start = scrubber.render().copy()
    scrubber.update(t=0)
    assert not np.array_equal(start, scrubber.render())
    assert scrubber.snr_dot.get_xdata()[0] == 0 and "t = 0" in scrubber.title.get_text()
    scrubber.update(t=503)  # between visited steps: the nearest one is shown
    assert (
        scrubber.nearest_step(503) in scrubber.ts and f"t = {scrubber.nearest_step(503)}" in scrubber.title.get_text()
    )


def test_guidance_and_class_rerun_the_chain_only_when_they_change():
    model = PointMasses()
    scrubber = ReverseChainScrubber(model, S, n_images=2, steps=20)
    calls = model.calls
    scrubber.update(t=500)
    assert model.calls == calls  # moving t only redraws
    scrubber.update(guidance=2.0)
    assert model.calls > calls
    x0_hat = scrubber.frames[scrubber.ts[0]][1]
    expected = (3 * model.c[0] - 2 * model.c.mean(0)).clamp(-1, 1)  # (1 + w) c_y - w c_none, Ho & Salimans
    assert torch.allclose(x0_hat, expected.expand_as(x0_hat), atol=1e-3)  # t=999: float32 over sqrt(alpha_bar)


def test_widget_controls(capsys):
    pytest.importorskip("ipywidgets")
    scrubber = ReverseChainScrubber(PointMasses(), S, n_images=2, steps=20)
    scrubber.build_widget()
    first = scrubber.image.value
    scrubber.t_slider.value = 0
    assert scrubber.image.value != first
    scrubber.class_box.value = None
    assert scrubber.label is None and scrubber.w_slider.disabled
    assert reverse_chain_scrubber(PointMasses(), S, steps=10, static=True).widget is None
