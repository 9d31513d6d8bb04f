"""Checks for lesson 11 (flow matching): the conditional flow-matching loss and one Euler step of the flow ODE,
each against ``ddpm_lessons.flow``. The model is a small stand-in with known outputs that records its calls, so a
check runs in milliseconds and can say which input the learner got wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ddpm_lessons.checks.core import CheckFailed, call, check_loss_tensor, judge, report_pass
from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.flow import FLOW_TIME_SCALE, euler_step, flow_matching_loss


class _VelocityProbe(nn.Module):
    """v_theta(x, t, y) = scale * tanh(x) + 0.2 cos(t / 300) + a term per label, recording each call's inputs. It
    depends on x, t and y, so feeding the wrong one of them changes the loss."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.7))
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []

    def forward(self, x, t=None, y=None):
        self.calls.append(
            (x.detach().clone(), None if t is None else torch.as_tensor(t).detach().clone(),
             None if y is None else torch.as_tensor(y).detach().clone())
        )  # fmt: skip
        return self.velocity(x, t, y)

    def velocity(self, x, t, y):
        out = self.scale * torch.tanh(x)
        if t is not None:
            out = out + 0.2 * torch.cos(torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1) / 300.0)
        if y is not None:
            y = torch.as_tensor(y).reshape(-1, 1, 1, 1).to(x.dtype)
            out = out + torch.where(y == NO_LABEL, -0.1, 0.05 * (y + 1))
        return out


# ---- lesson 11 ---------------------------------------------------------------------------------
def check_flow_matching_loss(fn: Callable[..., torch.Tensor]) -> None:
    """fn(model, x0, s, eps, y) -> the conditional flow-matching loss of one batch (Lipman et al. 2023, Eq. 23 with
    sigma_min = 0): the mean over batch and pixels of ((eps - x0) - model(x_s, FLOW_TIME_SCALE * s, y))^2 with
    x_s = (1 - s) x0 + s eps, a scalar tensor attached to the graph."""
    g = torch.Generator().manual_seed(11)
    B = 6
    x0 = torch.rand(B, 1, 5, 5, generator=g) * 2 - 1  # (B, C, H, W) float32 in [-1, 1]; 5 != B: no broadcast by luck
    eps = torch.randn(B, 1, 5, 5, generator=g)
    s = torch.tensor([0.0, 0.1, 0.35, 0.5, 0.8, 1.0])  # (B,), the ends included
    y = torch.tensor([3, 0, NO_LABEL, 7, 9, 1])
    model = _VelocityProbe()
    loss = call("flow matching loss", fn, model, x0.clone(), s.clone(), eps.clone(), y.clone())
    check_loss_tensor("flow matching loss", loss, len(model.calls))
    x_in, t_in, y_in = model.calls[0]
    if t_in is None or y_in is None:
        raise CheckFailed(
            "flow matching loss: call the model with all three inputs: model(x_s, FLOW_TIME_SCALE * s, y)."
        )
    if not torch.equal(y_in.reshape(-1), y):
        raise CheckFailed("flow matching loss: pass the labels y to the model unchanged, as its third argument.")
    if t_in.numel() == B and torch.allclose(t_in.reshape(-1).double(), s.double()):
        raise CheckFailed(
            "flow matching loss: not yet. The model got s itself; the U-Net's time input is on the DDPM's scale "
            "0..1000, so pass FLOW_TIME_SCALE * s (the network sees t = 1000 s)."
        )
    if t_in.numel() != B or not torch.allclose(t_in.reshape(-1).double(), FLOW_TIME_SCALE * s.double()):
        raise CheckFailed(
            f"flow matching loss: the model's time input should be FLOW_TIME_SCALE * s, shape ({B},): one time per "
            f"image; got shape {tuple(t_in.shape)}."
        )
    sv = s.view(-1, 1, 1, 1)
    if x_in.shape == x0.shape and torch.allclose(x_in, sv * x0 + (1 - sv) * eps, atol=1e-6):
        raise CheckFailed(
            "flow matching loss: not yet. The ends of the path are swapped: x_s = (1 - s) x0 + s eps, so that s = 0 "
            "is the data and s = 1 pure noise."
        )
    if x_in.shape != x0.shape or not torch.allclose(x_in, (1 - sv) * x0 + sv * eps, atol=1e-6):
        raise CheckFailed(
            "flow matching loss: the model did not get x_s = (1 - s) x0 + s eps, shape (B, C, H, W); s has shape (B,) "
            "and needs .view(-1, 1, 1, 1) to multiply the images."
        )
    expected = flow_matching_loss(model, x0, s, eps, y).detach()
    v = model.velocity(x_in, t_in, y).detach()
    mistakes = {
        "The sign of the target: the velocity of x_s = (1 - s) x0 + s eps is d x_s / d s = eps - x0, not x0 - eps.": (
            ((x0 - eps) - v) ** 2
        ).mean(),
        "Take the mean of the squared error over the batch and the pixels, not the sum.": (((eps - x0) - v) ** 2).sum(),
        "The target is the velocity eps - x0, not the noise eps (that is the DDPM's target, Eq. 14 of Ho et al.).": (
            (eps - v) ** 2
        ).mean(),
    }
    judge("flow matching loss", loss.detach(), expected, mistakes, "The loss is ((eps - x0) - v) ** 2, averaged.")
    report_pass(
        "flow matching loss: x_s = (1 - s) x0 + s eps, the model at (x_s, 1000 s, y), target eps - x0, mean of the "
        "squared error"
    )


def check_euler_step(fn: Callable[..., torch.Tensor]) -> None:
    """fn(x, v, s, s_next) -> x + (s_next - s) v: one Euler step of d x / d s = v from flow time s to s_next < s."""
    g = torch.Generator().manual_seed(12)
    x, v = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    for s, s_next in ((1.0, 0.9), (0.6, 0.25), (0.2, 0.0)):
        expected = euler_step(x, v, s, s_next)
        mistakes = {
            "The sign: s falls from 1 (noise) to 0 (data), so the step is x + (s_next - s) v, with s_next - s < 0.": (
                x + (s - s_next) * v
            ),
            "Step with the step size s_next - s, not with s itself: x_next = x + (s_next - s) v.": x - s * v,
            "Step with the step size s_next - s, not with s itself (and mind its sign): x_next = x + (s_next - s) v.": (
                x + s * v
            ),
            "Step with the step size s_next - s, not with s_next itself: x_next = x + (s_next - s) v.": x + s_next * v,
        }
        got = call(f"euler step (s={s} -> {s_next})", fn, x.clone(), v.clone(), s, s_next)
        judge(f"euler step (s={s} -> {s_next})", got, expected, mistakes, "One Euler step: x + (s_next - s) v.")
    report_pass("euler step: x + (s_next - s) v from s = 1, 0.6 and 0.2 (to the data at s = 0)")
