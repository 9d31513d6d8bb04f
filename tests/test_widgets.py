"""The forward-diffusion explorer: every panel follows the controls, in widgets and without them."""

import numpy as np
import pytest
import torch

from ddpm_lessons.data import load_mnist
from ddpm_lessons.forward import q_sample
from ddpm_lessons.widgets import ForwardDiffusionExplorer, forward_diffusion_explorer


@pytest.fixture(scope="module")
def digits():
    x, _ = load_mnist("test", source="bundled")
    return x[:6]


def test_moving_t_updates_image_marker_histogram_and_title(digits):
    e = ForwardDiffusionExplorer(digits)
    before = e.render().copy()
    e.update(t=900)
    after = e.render()
    assert not np.array_equal(before, after)
    assert e.ab_dot.get_xdata()[0] == 900
    assert e.ab_dot.get_ydata()[0] == pytest.approx(e.schedule.alpha_bar[900].item())
    assert "t = 900" in e.title.get_text()
    shown = e.xt()
    expected = q_sample(e.schedule, digits, torch.full((6,), 900), noise=e.noise)
    assert torch.equal(shown, expected)  # the panel shows Eq. (4) with the explorer's fixed noise
    density = e.hist.get_data().values
    assert np.sum(density * np.diff(e.bins)) == pytest.approx(1.0, abs=0.02)  # a density over the visible range


def test_schedule_and_final_beta_change_the_curves(digits):
    e = ForwardDiffusionExplorer(digits)
    linear = e.ab_line.get_ydata().copy()
    e.update(beta_end=0.04)
    assert e.ab_line.get_ydata()[-1] < linear[-1]
    e.update(kind="cosine")
    assert e.schedule.kind == "cosine" and not np.allclose(e.ab_line.get_ydata(), linear)


def test_widget_controls_redraw_the_picture(digits):
    pytest.importorskip("ipywidgets")
    e = ForwardDiffusionExplorer(digits)
    e.build_widget()
    first = e.image.value
    e.t_slider.value = 700
    assert e.image.value != first and e.t == 700
    e.kind_box.value = "cosine"
    assert e.beta_slider.disabled and e.schedule.kind == "cosine"


def test_static_mode_and_bad_input(digits, capsys):
    explorer = forward_diffusion_explorer(digits, static=True)
    assert explorer.widget is None  # no widgets were built: one static figure was displayed
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ForwardDiffusionExplorer(digits[:, 0])
