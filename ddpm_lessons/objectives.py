"""The four things a network can predict from x_t, and the conversions between them, written once.

With a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) and x_t = a x0 + b eps (Eq. 4 of Ho et al. 2020), a
network trained on this schedule can predict any of

- ``"eps"``: the noise, as Ho et al. do (Eq. 14);
- ``"x0"``: the data itself (Eq. 15 turns one into the other);
- ``"v"``: v = a eps - b x0 (Salimans & Ho 2022, Sec. 4 and App. D);
- ``"velocity"``: eps - x0, the velocity of the straight path x_s = (1 - s) x0 + s eps, s in [0, 1], of flow
  matching (Lipman et al. 2023) and rectified flow (Liu et al. 2023).

Each is a linear function of (x0, eps) and, given x_t, determines both: every conversion goes through the pair.
A VP x_t is a point of the flow path after rescaling: x_s = x_t / (a + b) at s = b / (a + b) (:func:`vp_to_flow`).

Functions take a :class:`~ddpm_lessons.schedules.NoiseSchedule`, tensors of shape (B, C, H, W) (any shape with the
batch first) and 0-indexed timesteps t (an int or (B,)), as ``forward`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpm_lessons.forward import predict_eps_from_x0, predict_x0_from_eps
from ddpm_lessons.schedules import NoiseSchedule

PREDICTIONS = ("eps", "x0", "v", "velocity")
# What a network can be trained on (TrainConfig.objective, `train --objective`): eps, x0 or v on the schedule's
# x_t, or "flow": the velocity on the straight path x_s = (1 - s) x0 + s eps over continuous s (see ``flow``).
OBJECTIVES = ("eps", "x0", "v", "flow")
# How the per-example losses of eps, x0 and v are weighted over t (TrainConfig.loss_weighting): "none" is Ho et al.'s
# L_simple (Eq. 14 for eps); "min-snr" is min-SNR-gamma (Hang et al. 2023), see :func:`min_snr_weight`.
LOSS_WEIGHTINGS = ("none", "min-snr")


def objective_of(record: dict) -> str:
    """The objective a model's config record says it was trained with; "eps" for a record older than the field."""
    objective = record.get("train", {}).get("objective", "eps")
    if objective not in OBJECTIVES:
        raise ValueError(f"the model's record names objective {objective!r}, which this version does not know "
                         f"({', '.join(OBJECTIVES)}); update ddpm_lessons")  # fmt: skip
    return objective


def _check_kind(kind: str, caller: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(f"{caller}: unknown prediction {kind!r}; choose one of {', '.join(PREDICTIONS)}")


def _a_b(schedule: NoiseSchedule, t: torch.Tensor | int, like: torch.Tensor, caller: str):
    """a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t), each (B, 1, 1, 1) to broadcast against ``like``."""
    t = schedule.check_t(t, caller, batch=like.shape[0])
    alpha_bar = schedule.gather(schedule.alpha_bar, t, like)
    return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()


def prediction_target(
    schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int, kind: str
) -> torch.Tensor:
    """What a network that predicts ``kind`` should output for x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

        v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0      (Salimans & Ho 2022)

    and eps itself (Ho et al. Eq. 14), x0, or the flow velocity eps - x0. x0, eps: (B, C, H, W); returns the same.
    """
    _check_kind(kind, "prediction_target")
    if x0.shape != eps.shape:
        raise ValueError(f"prediction_target: x0 and eps must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(eps.shape)}")  # fmt: skip
    a, b = _a_b(schedule, t, x0, "prediction_target")
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - b * x0  # Salimans & Ho 2022, Sec. 4
    return eps - x0  # d x_s / d s of x_s = (1 - s) x0 + s eps (Lipman et al. 2023; Liu et al. 2023)


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, kind: str, gamma: float = 5.0) -> torch.Tensor:
    """The min-SNR-gamma loss weight (Hang et al. 2023) of each example, for a network that predicts ``kind``.

    Hang et al. weight the error in x0 by min(SNR_t, gamma), SNR_t = alpha_bar_t / (1 - alpha_bar_t): the easy,
    nearly clean steps stop dominating the gradient. A network trained on another target sees its own error,
    which is the x0 error times a known factor (from :func:`x0_eps_from_prediction`, with a^2 + b^2 = 1):

        eps: x0 - x0_hat = -(b / a) (eps - eps_hat),  |eps err|^2 = SNR |x0 err|^2,  weight min(SNR, gamma) / SNR
        x0:                                                                          weight min(SNR, gamma)
        v:   x0 - x0_hat = -b (v - v_hat),  |v err|^2 = (SNR + 1) |x0 err|^2,  weight min(SNR, gamma) / (SNR + 1)

    so that weight * |own error|^2 = min(SNR, gamma) |x0 err|^2 whatever the target. t: (B,) 0-indexed steps.
    Returns (B,).
    """
    if kind not in ("eps", "x0", "v"):
        raise ValueError(f"min_snr_weight: min-SNR weighting is defined for the eps, x0 and v objectives, not {kind!r}")
    if not gamma > 0:
        raise ValueError(f"min_snr_weight: gamma must be positive, got {gamma!r} (Hang et al. use 5)")
    t = schedule.check_t(t, "min_snr_weight")
    snr = schedule.snr.to(t.device)[t]
    clipped = snr.clamp(max=gamma)  # min(SNR, gamma)
    if kind == "eps":
        return clipped / snr
    if kind == "x0":
        return clipped
    return clipped / (snr + 1.0)


def x0_eps_from_prediction(
    schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, prediction: torch.Tensor, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x0, eps) that x_t and a prediction of ``kind`` at step t imply, with a = sqrt(alpha_bar_t),
    b = sqrt(1 - alpha_bar_t) and a^2 + b^2 = 1:

        eps:      x0 = (x_t - b eps) / a                        (Eq. 15 of Ho et al.)
        x0:       eps = (x_t - a x0) / b                        (Eq. 4 solved for eps)
        v:        x0 = a x_t - b v,  eps = b x_t + a v          (Salimans & Ho 2022, App. D)
        velocity: x0 = (x_t - b u) / (a + b),  eps = (x_t + a u) / (a + b)

    (the last from x_t / (a + b) = (1 - s) x0 + s eps with s = b / (a + b) and u = eps - x0). xt, prediction:
    (B, C, H, W). Returns (x0, eps), each (B, C, H, W).
    """
    _check_kind(kind, "x0_eps_from_prediction")
    if xt.shape != prediction.shape:
        raise ValueError(f"x0_eps_from_prediction: xt and the prediction must have the same shape, got "
                         f"{tuple(xt.shape)} and {tuple(prediction.shape)}")  # fmt: skip
    a, b = _a_b(schedule, t, xt, "x0_eps_from_prediction")
    if kind == "eps":
        return predict_x0_from_eps(schedule, xt, t, prediction), prediction  # Eq. (15)
    if kind == "x0":
        return prediction, predict_eps_from_x0(schedule, xt, t, prediction)  # Eq. (4)
    if kind == "v":
        return a * xt - b * prediction, b * xt + a * prediction  # Salimans & Ho 2022, App. D
    return (xt - b * prediction) / (a + b), (xt + a * prediction) / (a + b)  # the flow path, see above


def convert(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    t: torch.Tensor | int,
    prediction: torch.Tensor,
    source: str,
    target: str,
) -> torch.Tensor:
    """Turn a prediction of kind ``source`` at (x_t, t) into the equivalent prediction of kind ``target``
    (one of "eps", "x0", "v", "velocity"), through the (x0, eps) it implies. Returns (B, C, H, W)."""
    _check_kind(target, "convert")
    x0, eps = x0_eps_from_prediction(schedule, xt, t, prediction, source)
    return prediction_target(schedule, x0, eps, t, target)


def vp_to_flow(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where x_t of the VP process sits on the flow-matching path x_s = (1 - s) x0 + s eps.

        x_s = x_t / (sqrt(alpha_bar_t) + sqrt(1 - alpha_bar_t)),   s = sqrt(1 - alpha_bar_t) / (same sum)

    Both processes mix x0 and eps; dividing by the sum of the two weights makes them add to 1.
    xt: (B, C, H, W). Returns x_s (B, C, H, W) and s (B, 1, 1, 1), in (0, 1).
    """
    a, b = _a_b(schedule, t, xt, "vp_to_flow")
    return xt / (a + b), b / (a + b)


def flow_to_vp(x_s: torch.Tensor, s: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`vp_to_flow`: the VP point with the same mix of x0 and eps as x_s at flow time s.

        alpha_bar = (1 - s)^2 / ((1 - s)^2 + s^2),   x_t = x_s / sqrt((1 - s)^2 + s^2)

    x_s: (B, C, H, W); s: a float or (B, 1, 1, 1), in [0, 1]. Returns x_t (B, C, H, W) and alpha_bar, shaped as s.
    """
    s = torch.as_tensor(s, dtype=x_s.dtype, device=x_s.device)
    if bool(((s < 0) | (s > 1)).any()):
        raise ValueError("flow_to_vp: s is the flow time and must lie in [0, 1] (0: data, 1: noise)")
    norm = (1 - s) ** 2 + s**2
    return x_s / norm.sqrt(), (1 - s) ** 2 / norm


def as_eps_model(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, kind: str) -> Callable[..., torch.Tensor]:
    """An eps-model (see ``eps_model``) from a network trained on this schedule to predict ``kind``, so that every
    sampler runs it: ``as_eps_model(v_net, schedule, "v")(xt, t[, y])`` returns the eps its v implies."""
    _check_kind(kind, "as_eps_model")
    if kind == "eps":
        return model

    def eps_model(xt: torch.Tensor, t: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        return x0_eps_from_prediction(schedule, xt, t, model(xt, t, *condition), kind)[1]

    eps_model.__wrapped__ = model  # eps_model.model_device finds the network's weights through it
    return eps_model
