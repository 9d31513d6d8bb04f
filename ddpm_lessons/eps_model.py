"""The eps-model interface: what every loss, sampler and check calls, whatever the network behind it.

An eps-model is any callable ``eps_theta(xt, t)`` or ``eps_theta(xt, t, y)`` that returns the predicted
noise, a tensor of the shape of ``xt``:

- ``xt``: (B, C, H, W) float, the noised images (or latents);
- ``t``: (B,) int64 code timesteps 0..T-1 (code step t is the paper's step t + 1);
- ``y`` (optional), the condition: class ids (B,) int64 in 0..K-1, or a prompt's token ids (B, L) int64;
  ``NO_LABEL`` (-1) in place of a class id, or in every position of a prompt, means "no condition", the
  unconditional model that classifier-free guidance needs (Ho & Salimans 2022). An image condition (SR3) is
  bound into the callable beforehand (``superres.conditioned(model, cond)``), so it is still ``(xt, t[, y])``.

It need not be a network: an exact ("oracle") predictor lets every formula be checked before any training.
This module sits low in the package, so that samplers and losses work over any eps-model without importing
the U-Net.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

NO_LABEL = -1  # the label id (or token id) that means "no condition"
EpsModel = Callable[..., torch.Tensor]


def call_eps_model(eps_model: EpsModel, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Call eps_model with or without a condition and check the shape of what comes back."""
    eps = eps_model(xt, t) if y is None else eps_model(xt, t, y)
    if not isinstance(eps, torch.Tensor) or eps.shape != xt.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(
            f"eps_model returned {got} for xt of shape {tuple(xt.shape)}; it must return eps of the same shape"
        )
    return eps


def model_device(model) -> torch.device | None:
    """Where a network's weights are (its first parameter's device), also through the package's wrappers of a
    network (``__wrapped__``: guidance-free conditioning, respacing, another objective, bfloat16); None for a
    function without parameters."""
    model = inspect.unwrap(model)
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            return p.device
    return None
