"""Gaussian data, where everything is known in closed form: the exact eps-predictor and the probability-flow ODE's
solution. The solvers are measured against it (lesson 10, ``tests/test_solvers.py``).

For data with every pixel ~ N(mu, std^2), independent, x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps is
Gaussian too, x_t ~ N(sqrt(alpha_bar) mu, alpha_bar std^2 + 1 - alpha_bar), and the best eps-prediction in squared
error (what L_simple, Eq. 14 of Ho et al. 2020, is minimised by) is the regression of eps on x_t:

    E[eps | x_t] = sqrt(1 - alpha_bar) (x_t - sqrt(alpha_bar) mu) / (alpha_bar std^2 + 1 - alpha_bar)

In x_hat = x_t / sqrt(alpha_bar) and sigma = sqrt((1 - alpha_bar) / alpha_bar) the probability-flow ODE is
d x_hat / d sigma = E[eps | x_t] = sigma (x_hat - mu) / (std^2 + sigma^2) (Karras et al. 2022, Eq. 4 for the VP
case), so x_hat - mu grows like sqrt(std^2 + sigma^2), and between alpha_bar values ab and ab':

    x_{t'} = sqrt(ab') mu + (x_t - sqrt(ab) mu) sqrt((ab' std^2 + 1 - ab') / (ab std^2 + 1 - ab))

It depends on alpha_bar only, so a solver's error against it is its discretisation error alone, and
:func:`convergence_order` reads a solver's order from those errors.
"""

from __future__ import annotations

import torch

from ddpm_lessons.schedules import NoiseSchedule


def gaussian_eps(xt: torch.Tensor, alpha_bar: torch.Tensor | float, mu: float, std: float) -> torch.Tensor:
    """E[eps | x_t] for data ~ N(mu, std^2) per pixel, at any alpha_bar (a float or shaped to broadcast with xt)."""
    return (1 - alpha_bar) ** 0.5 * (xt - alpha_bar**0.5 * mu) / (alpha_bar * std**2 + 1 - alpha_bar)


def gaussian_eps_model(schedule: NoiseSchedule, mu: float, std: float):
    """The exact eps-model of Gaussian data on ``schedule``: ``model(xt, t)`` with t (B,) ints returns
    E[eps | x_t] (module docstring), shaped as xt. Any sampler runs it like a trained network."""

    def model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alpha_bar[torch.as_tensor(t).long().cpu()].to(xt).view(-1, *[1] * (xt.ndim - 1))
        return gaussian_eps(xt, alpha_bar, mu, std)

    return model


def exact_flow(x: torch.Tensor, ab_from: float, ab_to: float, mu: float, std: float) -> torch.Tensor:
    """The probability-flow ODE's exact solution for Gaussian data, from alpha_bar ``ab_from`` to ``ab_to``
    (module docstring). x: any shape. Returns the same shape."""
    ratio = (ab_to * std**2 + 1 - ab_to) / (ab_from * std**2 + 1 - ab_from)
    return ab_to**0.5 * mu + (x - ab_from**0.5 * mu) * ratio**0.5


def convergence_order(counts: list[int], errors: list[float]) -> float:
    """The order p of a solver whose error falls like K^-p in the number of model evaluations K: the least-squares
    slope of -log(error) against log(K) over the given counts."""
    if len(counts) != len(errors) or len(counts) < 2:
        raise ValueError("convergence_order needs at least two (count, error) pairs, as many counts as errors")
    x = torch.tensor(counts, dtype=torch.float64).log()
    y = torch.tensor(errors, dtype=torch.float64).log()
    x = x - x.mean()
    return -float((x * (y - y.mean())).sum() / (x * x).sum())
