"""Beta schedules and the constants of the forward process that every other module reads.

Timesteps are 0-indexed in code: ``t = 0 .. T-1``. Code step ``t`` is the paper's step ``t + 1``, so
``alpha_bar[0] = alpha_1`` and ``alpha_bar[T-1] = alpha_bar_T``. Arrays are stored in float64 so
that products such as ``alpha_bar`` (a cumulative product over 1000 factors) lose nothing; they are
cast to the data's dtype when they are gathered (see :meth:`NoiseSchedule.gather`).

This module imports nothing else of the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULE_KINDS = ("linear", "cosine", "quadratic", "sigmoid")


def make_beta_schedule(
    kind: str = "linear",
    T: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    cosine_s: float = 0.008,
    max_beta: float = 0.999,
) -> torch.Tensor:
    """Return the variances beta_t of the forward process, shape (T,), float64.

    Args:
        kind: "linear" (Ho et al. 2020: beta from 1e-4 to 0.02), "cosine" (Nichol & Dhariwal
            2021, Eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)),
            "quadratic" (linear in sqrt(beta)) or "sigmoid" (a sigmoid over [-6, 6] rescaled to
            [beta_start, beta_end]).
        T: number of diffusion steps.
        beta_start, beta_end: first and last beta (linear, quadratic, sigmoid).
        cosine_s: the small offset s of the cosine schedule.
        max_beta: the cosine schedule's betas are clipped here so the last step is not singular.
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
    if kind != "cosine" and not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")

    if kind == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if kind == "quadratic":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    if kind == "sigmoid":
        s = torch.sigmoid(torch.linspace(-6.0, 6.0, T, dtype=torch.float64))
        return s * (beta_end - beta_start) + beta_start
    # cosine: beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t), with the paper's t = code t + 1
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
    return (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process's constants, all of shape (T,), float64, indexed by code t = 0..T-1.

    Build one with :meth:`NoiseSchedule.make`. ``alpha_bar_prev[0] = 1`` (there is no noise
    before the first step), so ``beta_tilde[0] = 0``.
    """

    kind: str
    betas: torch.Tensor  # beta_t, variance added at step t (Eq. 2)
    alphas: torch.Tensor  # alpha_t = 1 - beta_t
    alpha_bar: torch.Tensor  # alpha_bar_t = prod_{s <= t} alpha_s (Eq. 4)
    alpha_bar_prev: torch.Tensor  # alpha_bar_{t-1}, with alpha_bar_{-1} = 1
    beta_tilde: torch.Tensor  # posterior variance of q(x_{t-1} | x_t, x_0) (Eq. 7)
    posterior_mean_coef_x0: torch.Tensor  # coefficient of x_0 in mu_tilde (Eq. 7)
    posterior_mean_coef_xt: torch.Tensor  # coefficient of x_t in mu_tilde (Eq. 7)

    @classmethod
    def make(cls, kind: str = "linear", T: int = 1000, **kwargs: float) -> NoiseSchedule:
        """Build the schedule of the given kind; keyword arguments go to make_beta_schedule."""
        return cls.from_betas(make_beta_schedule(kind, T, **kwargs), kind=kind)

    @classmethod
    def from_alpha_bar(cls, alpha_bar: torch.Tensor, kind: str = "custom") -> NoiseSchedule:
        """Build the schedule whose alpha_bar is the given one, shape (T,), falling strictly from below 1 to above 0:
        the betas of alpha_bar_t = prod_{s <= t} (1 - beta_s) (Ho et al. 2020, Sec. 2, under Eq. 4), that is
        beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} with alpha_bar_{-1} = 1."""
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64).flatten()
        before = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        if len(alpha_bar) == 0 or not bool(((alpha_bar > 0) & (alpha_bar < before)).all()):
            raise ValueError("alpha_bar must fall strictly from below 1 to above 0, largest (least noise) first")
        return cls.from_betas(1.0 - alpha_bar / before, kind=kind)

    @classmethod
    def from_betas(cls, betas: torch.Tensor, kind: str = "custom") -> NoiseSchedule:
        """Build the schedule from any betas in (0, 1), shape (T,)."""
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if len(betas) == 0 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a non-empty 1-D sequence of values in (0, 1)")
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # Eq. (7): beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t
        beta_tilde = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * betas
        # Eq. (7): mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
        #                     + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        coef_x0 = alpha_bar_prev.sqrt() * betas / (1.0 - alpha_bar)
        coef_xt = alphas.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        return cls(kind, betas, alphas, alpha_bar, alpha_bar_prev, beta_tilde, coef_x0, coef_xt)

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return len(self.betas)

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio of q(x_t | x_0): alpha_bar_t / (1 - alpha_bar_t), shape (T,)."""
        return self.alpha_bar / (1.0 - self.alpha_bar)

    @property
    def beta_tilde_log_clipped(self) -> torch.Tensor:
        """log(beta_tilde) with the t=0 entry (log 0) replaced by log(beta_tilde[1]), as Ho et al.'s code."""
        if self.T == 1:
            return self.betas.log()
        return torch.cat([self.beta_tilde[1:2], self.beta_tilde[1:]]).log()

    def check_t(self, t: torch.Tensor | int, caller: str, batch: int | None = None) -> torch.Tensor:
        """Return t as an int64 tensor of shape (B,), or raise naming the bad value and the fix."""
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{caller}: t must hold integer timesteps, got dtype {t.dtype}")
        t = t.long().reshape(-1) if t.ndim <= 1 else t
        if t.ndim != 1:
            raise ValueError(f"{caller}: t must be an int or a 1-D tensor of shape (B,), got {tuple(t.shape)}")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= self.T):
            bad = int(t.max()) if int(t.max()) >= self.T else int(t.min())
            raise ValueError(
                f"{caller}: t has value {bad} but the schedule has T={self.T} steps "
                f"(valid t: 0..{self.T - 1}; timesteps are 0-indexed in this package)"
            )
        if batch is not None and len(t) not in (1, batch):
            raise ValueError(
                f"{caller}: t has {len(t)} entries but the batch has {batch} (pass one t per image, or one for all)"
            )
        return t

    def gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Pick values[t] and shape it to broadcast against ``like``: (B,) -> (B, 1, 1, ...)."""
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)


@dataclass
class ScheduleConfig:
    """The noise schedule a model is trained with; defaults are Ho et al. 2020's."""

    kind: str = "linear"  # linear, cosine, quadratic or sigmoid
    T: int = 1000  # diffusion steps
    beta_start: float = 1e-4  # ignored by the cosine schedule
    beta_end: float = 0.02  # ignored by the cosine schedule

    def build(self) -> NoiseSchedule:
        if self.kind == "cosine":
            return NoiseSchedule.make("cosine", self.T)
        return NoiseSchedule.make(self.kind, self.T, beta_start=self.beta_start, beta_end=self.beta_end)
