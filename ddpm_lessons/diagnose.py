""" "My samples are still noise": look at a model, its data, its sampling loop and its samples, and name
the usual reasons.

Each test uses something whose right answer is known exactly. The sampling loop is run on the *exact*
eps-predictor of a one-image data distribution (every x_0 equals one image c), for which a correct
DDPM or DDIM loop returns c itself; the noise it ends with and the timesteps it visits tell an
off-by-one, noise added at the last step, or a missing ``torch.no_grad()`` apart. The model is judged
by its L_simple (Eq. 14 of Ho et al. 2020) against 1.0, the loss of predicting no noise at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ddpm_lessons.losses import l_simple
from ddpm_lessons.schedules import NoiseSchedule


@dataclass
class Finding:
    name: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok     ' if self.ok else 'PROBLEM'}  {self.name}: {self.message}"


def _scaling(x0: torch.Tensor) -> tuple[str, float, float]:
    """Which of the usual scalings images are in: "uint8", "0..255" (floats), "[0, 1]", "[-1, 1]" or "other";
    with their smallest and largest value."""
    lo, hi = x0.float().min().item(), x0.float().max().item()
    if not x0.is_floating_point():
        return "uint8", lo, hi
    if hi > 1.5:
        return ("0..255" if lo >= 0 and hi <= 255 else "other"), lo, hi
    if lo >= -0.01 and hi <= 1.01:
        return "[0, 1]", lo, hi
    return ("[-1, 1]" if lo >= -1.01 and hi <= 1.01 else "other"), lo, hi


def check_data_scaling(x0: torch.Tensor) -> Finding:
    """Training data must be floats in [-1, 1] (lesson 00), using most of that range."""
    name = "data scaling"
    kind, lo, hi = _scaling(x0)
    if kind == "uint8":
        return Finding(
            name, False, f"the data are {x0.dtype} pixels; convert them with data.from_uint8 (x -> 2 x / 255 - 1)."
        )
    if kind == "0..255" or (kind == "other" and hi > 1.5):
        return Finding(
            name,
            False,
            f"values run from {lo:.3g} to {hi:.3g}, like 0..255 pixels; map them to [-1, 1] with x -> 2 x / 255 - 1.",
        )
    if kind == "[0, 1]":
        return Finding(
            name,
            False,
            f"values run from {lo:.3g} to {hi:.3g}, i.e. [0, 1]; the model expects [-1, 1] "
            "(x -> 2 x - 1), or its samples come out grey and washed out.",
        )
    if kind == "other":
        return Finding(
            name,
            False,
            f"values run from {lo:.3g} to {hi:.3g}, outside [-1, 1]; do not standardise "
            "the pixels, map them to [-1, 1].",
        )
    return Finding(name, True, f"values in [{lo:.3g}, {hi:.3g}]")


class _ExactPointMass:
    """The exact eps-predictor when every x_0 is the image c.

    eps = (x_t - sqrt(alpha_bar_t) c) / sqrt(1 - alpha_bar_t)
    """

    def __init__(self, schedule: NoiseSchedule, c: torch.Tensor):
        self.schedule, self.c = schedule, c
        self.t_seen: set[int] = set()
        self.grad_enabled = False

    def __call__(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t).reshape(-1).expand(xt.shape[0])
        self.t_seen.update(int(v) for v in t.unique())
        self.grad_enabled |= torch.is_grad_enabled()
        ab = self.schedule.alpha_bar[t.clamp(0, self.schedule.T - 1)].to(xt.dtype).view(-1, 1, 1, 1)
        return (xt - ab.sqrt() * self.c) / (1 - ab).sqrt()  # Eq. (4) solved for eps


def check_sampling_loop(sample_fn: Callable, schedule: NoiseSchedule, shape=(4, 1, 8, 8)) -> list[Finding]:
    """Run ``sample_fn(model, schedule, shape, generator)`` on the exact model of a one-image dataset."""
    c = torch.linspace(-0.8, 0.8, int(torch.tensor(shape[1:]).prod())).reshape(shape[1:])
    exact = _ExactPointMass(schedule, c)
    out = sample_fn(exact, schedule, shape, torch.Generator().manual_seed(0))
    findings = []
    T = schedule.T
    low, high = min(exact.t_seen, default=None), max(exact.t_seen, default=None)
    if high is None:
        return [Finding("sampling loop", False, "sample_fn never called the model.")]
    if high >= T:
        findings.append(
            Finding(
                "t off by one",
                False,
                f"the loop calls the model with t up to {high}, but valid t is "
                f"0..{T - 1}: loop over reversed(range(T)) (the paper's t = T..1 is T-1..0 in code).",
            )
        )
    elif low > 0:
        findings.append(
            Finding(
                "t off by one",
                False,
                f"the loop stops at t = {low} and never takes the last step at "
                "t = 0, which removes the last bit of noise: loop over reversed(range(T)).",
            )
        )
    else:
        findings.append(Finding("timesteps", True, f"the loop visits t = {high} down to 0"))
    if exact.grad_enabled:
        findings.append(
            Finding(
                "no_grad",
                False,
                "the model was called with gradients enabled: every step keeps its "
                "graph in memory. Decorate the loop with @torch.no_grad().",
            )
        )
    else:
        findings.append(Finding("no_grad", True, "sampling runs without gradients"))
    residual = (out - c).pow(2).mean().sqrt().item()
    last_sigma = schedule.betas[0].sqrt().item()
    if residual < 0.1 * last_sigma:
        findings.append(
            Finding("last step", True, f"with an exact model the loop returns the data (error {residual:.1e})")
        )
    elif residual < 3 * last_sigma:
        findings.append(
            Finding(
                "noise at the last step",
                False,
                f"with an exact model the samples are off by "
                f"{residual:.3g}, the size of sigma_0 = sqrt(beta_0) = {last_sigma:.3g}: noise was "
                "added at the last step. Algorithm 2, line 3: z = 0 at t = 0.",
            )
        )
    else:
        findings.append(
            Finding(
                "reverse step",
                False,
                f"with an exact model the samples end {residual:.3g} (rms) away "
                "from the data: the update itself is wrong. Compare your step with Eq. (11) and "
                "checks.check_p_sample.",
            )
        )
    return findings


@torch.no_grad()
def check_training(model: Callable, schedule: NoiseSchedule, x0: torch.Tensor, threshold: float = 0.2) -> Finding:
    """L_simple of the model on real data at 10 timesteps, against 1.0 for predicting zero noise."""
    g = torch.Generator().manual_seed(0)
    x0 = x0[:64]
    losses = []
    for t in torch.linspace(0, schedule.T - 1, 10).round().long():
        eps = torch.randn(x0.shape, generator=g)
        losses.append(l_simple(model, schedule, x0, t=t.repeat(len(x0)), noise=eps).item())  # Eq. (14) at this t
    loss = sum(losses) / len(losses)
    if loss > threshold:
        return Finding(
            "training",
            False,
            f"L_simple is {loss:.3f} (predicting zero noise scores 1.0, a trained MNIST "
            "model 0.03-0.07): too few steps of training, or a learning rate too small or too large.",
        )
    return Finding("training", True, f"L_simple {loss:.3f} (1.0 for predicting zero noise)")


def in_unit_range(x0: torch.Tensor) -> torch.Tensor | None:
    """The images mapped to [-1, 1] when their scaling is one of the usual ones (uint8 or 0..255 pixels,
    [0, 1], or already [-1, 1]: see :func:`check_data_scaling`); None when it is not recognised."""
    kind, _, _ = _scaling(x0)
    x = x0.float()
    return {"uint8": 2 * x / 255 - 1, "0..255": 2 * x / 255 - 1, "[0, 1]": 2 * x - 1, "[-1, 1]": x}.get(kind)


def saturated_share(images: torch.Tensor) -> float:
    """The share of pixels near -1 or 1 (|x| > 0.9): most of a digit's pixels, few of a noise image's."""
    return (images.abs() > 0.9).float().mean().item()


def check_samples(samples: torch.Tensor, x0: torch.Tensor | None = None, reference: float | None = None) -> Finding:
    """Digits are mostly saturated pixels (background at -1, ink near 1); noise is not.

    The samples' share of saturated pixels is compared with ``reference``, or else with the share measured
    on the real images ``x0`` (in [-1, 1]); with neither, only their range is judged.
    """
    share = saturated_share(samples)
    ref = reference if reference is not None else saturated_share(x0) if x0 is not None else None
    if ref is None:
        if samples.abs().max() > 1.5:
            return Finding(
                "samples",
                False,
                f"values reach {samples.abs().max().item():.3g}, far outside [-1, 1], and only {100 * share:.0f}% "
                "of the pixels are near -1 or 1: the samples are still noise. See the problems above.",
            )
        return Finding("samples", True, f"{100 * share:.0f}% of the pixels near -1 or 1 (no real digits to compare)")
    if samples.abs().max() > 1.5 or share < 0.5 * ref:
        return Finding(
            "samples",
            False,
            f"only {100 * share:.0f}% of the pixels are near -1 or 1 (real digits: "
            f"{100 * ref:.0f}%): the samples are still noise. See the problems above.",
        )
    return Finding("samples", True, f"{100 * share:.0f}% of the pixels near -1 or 1 (real digits: {100 * ref:.0f}%)")


def diagnose(
    model: Callable | None = None,
    schedule: NoiseSchedule | None = None,
    data: torch.Tensor | None = None,
    sample_fn: Callable | None = None,
    samples: torch.Tensor | None = None,
    verbose: bool = True,
) -> list[Finding]:
    """Check whatever is given and print one line per finding; returns the findings.

    Args:
        model: an eps-model ``model(xt, t)``; with ``data`` its L_simple is measured.
        schedule: the noise schedule (default: linear, T = 1000).
        data: (B, C, H, W) training images as the model sees them.
        sample_fn: your sampling loop, ``sample_fn(model, schedule, shape, generator) -> x_0``.
        samples: (B, C, H, W) images your loop produced from ``model``; they are compared with ``data``
            mapped to [-1, 1] (the share of pixels near -1 or 1 is measured on both).
    """
    schedule = schedule or NoiseSchedule.make("linear", 1000)
    findings = []
    # the data mapped to [-1, 1] where its scaling is a usual one: the reference for the samples
    real = in_unit_range(data) if data is not None else None
    if data is not None:
        findings.append(check_data_scaling(data))
    if sample_fn is not None:
        findings.extend(check_sampling_loop(sample_fn, schedule))
    if model is not None and data is not None:  # judged even when the scaling is wrong: both verdicts print
        seen = data if data.is_floating_point() else real  # the data as the model sees them, as floats
        if seen is not None:
            findings.append(check_training(model, schedule, seen))
    if samples is not None:
        findings.append(check_samples(samples, real))
    if verbose:
        for finding in findings:
            print(finding)
        bad = sum(not f.ok for f in findings)
        print(f"{bad} problem(s) found" if bad else "no problems found")
    return findings
