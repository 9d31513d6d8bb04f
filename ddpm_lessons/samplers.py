"""Reverse processes over any eps-model: DDPM ancestral sampling (Algorithm 2 of Ho et al. 2020),
DDIM (Song, Meng & Ermon 2021), classifier-free guidance (Ho & Salimans 2022) and respacing. DDIM with
eta = 0 is the first-order step of the probability-flow ODE; ``solvers`` holds second-order ones.

A model is any eps-model (see ``eps_model``): ``model(xt, t)`` or, with a condition, ``model(xt, t, y)``
returning eps of the shape of xt; ``y`` holds class ids or a prompt's token ids, NO_LABEL (-1) meaning "no
condition". Every sampler takes a ``torch.Generator``: the same seed gives the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ddpm_lessons.eps_model import NO_LABEL, call_eps_model, model_device
from ddpm_lessons.forward import (
    p_mean_from_eps,
    p_variance,
    predict_eps_from_x0,
    predict_x0_from_eps,
    q_posterior,
)
from ddpm_lessons.schedules import NoiseSchedule
from ddpm_lessons.utils import TimeEstimate
from ddpm_lessons.utils import progress as progress_bar


def guided_eps(
    model: Callable[..., torch.Tensor],
    xt: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
) -> torch.Tensor:
    """Noise prediction with classifier-free guidance, Eq. (6) of Ho & Salimans 2022.

        eps = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, no label)

    With ``y=None`` or ``guidance=0`` this is one plain call. The conditional and unconditional
    passes run as one batch of 2B.
    """
    if y is None or guidance == 0:
        return call_eps_model(model, xt, t, y)
    y = torch.as_tensor(y, device=xt.device)
    y = y.reshape(-1).expand(xt.shape[0]) if y.ndim <= 1 else y.expand(xt.shape[0], -1)  # labels, or prompts' tokens
    both = call_eps_model(model, torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, NO_LABEL)]))
    eps_cond, eps_uncond = both.chunk(2)
    return (1 + guidance) * eps_cond - guidance * eps_uncond


@dataclass
class PMeanVariance:
    mean: torch.Tensor  # (B, C, H, W) mean of p_theta(x_{t-1} | x_t)
    variance: torch.Tensor  # (B, 1, 1, 1) sigma_t^2
    log_variance: torch.Tensor  # (B, 1, 1, 1)
    x0_hat: torch.Tensor  # (B, C, H, W) the model's estimate of x_0 (Eq. 15)
    eps: torch.Tensor  # (B, C, H, W) eps_theta(x_t, t), guided where asked


def p_mean_variance(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    variance: str = "beta",
) -> PMeanVariance:
    """Mean and variance of p_theta(x_{t-1} | x_t), Eq. (11) of Ho et al. 2020.

        mu_theta(x_t, t) = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t))

    With ``clip_x0`` the predicted x_0 (Eq. 15) is clipped to [-1, 1] and the mean is the
    posterior mean of Eq. (7) at that x_0, which equals Eq. (11) whenever nothing is clipped.
    ``variance`` is "beta" (sigma_t^2 = beta_t) or "beta_tilde" (Eq. 7), see forward.p_variance.
    """
    t = schedule.check_t(t, "p_mean_variance", batch=xt.shape[0]).to(xt.device).expand(xt.shape[0])
    eps = guided_eps(model, xt, t, y, guidance)
    x0_hat = predict_x0_from_eps(schedule, xt, t, eps)  # Eq. (15)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        mean, _, _ = q_posterior(schedule, x0_hat, xt, t)  # Eq. (7) at the clipped x_0
    else:
        mean = p_mean_from_eps(schedule, xt, t, eps)  # Eq. (11)
    var, log_var = p_variance(schedule, t, xt, variance)
    return PMeanVariance(mean, var, log_var, x0_hat, eps)


def p_sample(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    t: int,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    variance: str = "beta",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One step of Algorithm 2 of Ho et al. 2020: x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    ``t`` is one int for the whole batch; at t = 0 no noise is added (Algorithm 2, line 3: z = 0
    when t = 1 in the paper's numbering), so the last step returns the mean itself.
    """
    t_batch = torch.full((xt.shape[0],), int(t), dtype=torch.long, device=xt.device)
    out = p_mean_variance(model, schedule, xt, t_batch, y, guidance, clip_x0, variance)
    if t == 0:
        return out.mean  # Algorithm 2, line 3: z = 0 at the last step
    z = torch.randn(xt.shape, generator=generator, dtype=xt.dtype).to(xt.device)  # line 3
    return out.mean + (0.5 * out.log_variance).exp() * z  # Algorithm 2, line 4


def sampling_device(model, device=None, x_T: torch.Tensor | None = None) -> torch.device:
    """The device a sampler works on: ``device`` if given, else where the model's weights are, else where ``x_T``
    is, else the CPU. So a model moved to a GPU samples there without being told."""
    if device is not None:
        return torch.device(device)
    found = model_device(model)
    if found is None and x_T is not None:
        found = x_T.device
    return found if found is not None else torch.device("cpu")


def draw_x_T(shape, generator, device, dtype, x_T, model=None):
    """x_T ~ N(0, I) of ``shape``, drawn on the CPU with ``generator`` and moved (or ``x_T`` itself if given), on
    ``sampling_device(model, device, x_T)``."""
    device = sampling_device(model, device, x_T)
    if x_T is not None:
        return x_T.to(device)
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)  # Algorithm 2, line 1


@torch.no_grad()
def sample_ddpm(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    variance: str = "beta",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Ancestral sampling, Algorithm 2 of Ho et al. 2020: x_T ~ N(0, I), then T steps of p_sample.

    Args:
        shape: (B, C, H, W) of the samples.
        y: the condition, (B,) class ids or (B, L) token ids (or None); guidance: the weight w of
            classifier-free guidance.
        generator: a CPU torch.Generator; noise is drawn on the CPU and moved, so a seed gives the
            same samples on every device.
        device: where to sample; None (the default): where the model's weights are (``sampling_device``).
        x_T: start from this noise instead of drawing it.
        return_trajectory: also return the list [x_T, x_{T-1}, ..., x_0] (T + 1 tensors, on the CPU).

    Returns:
        x_0 (B, C, H, W), or (x_0, trajectory).
    """
    x = draw_x_T(shape, generator, device, dtype, x_T, model)
    trajectory = [x.cpu()] if return_trajectory else None
    clock = TimeEstimate("DDPM sampling", schedule.T, unit="network call")
    for t in progress_bar(range(schedule.T - 1, -1, -1), desc="DDPM", disable=not progress, transient=True):
        x = p_sample(model, schedule, x, t, y, guidance, clip_x0, variance, generator)  # Alg. 2, 2-5
        clock.tick()
        if trajectory is not None:
            trajectory.append(x.cpu())
    return (x, trajectory) if return_trajectory else x


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The ``steps`` timesteps DDIM visits: evenly spaced over 0..T-1, largest first, with T-1 and 0."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM needs 1 <= steps <= T={T}, got steps={steps}")
    if steps == 1:
        return [T - 1]
    ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().unique().tolist()
    return ts[::-1]


def ddim_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    return_x0: bool = False,
):
    """One DDIM update from step t to an earlier step t_prev, Eq. (12) of Song, Meng & Ermon 2021.

        x_{t'} = sqrt(alpha_bar_{t'}) x0_hat + sqrt(1 - alpha_bar_{t'} - sigma^2) eps + sigma z

    with x0_hat from Eq. (15) of Ho et al. and sigma from Song et al.'s Eq. (16) times eta. ``t_prev = -1``
    means "after the last step": alpha_bar there is 1, so the result is x0_hat itself. With eta = 0 this is the
    first-order step of the probability-flow ODE (see ``solvers.dpmpp_2m_step`` and ``solvers.sample_heun``).
    xt, eps: (B, C, H, W); t, t_prev: ints with -1 <= t_prev < t. Returns x_{t'} (B, C, H, W), or with
    ``return_x0`` the pair (x_{t'}, x0_hat), the (clipped) estimate of x_0 the step moved towards.
    """
    if not -1 <= t_prev < t:
        raise ValueError(f"ddim_step goes backwards: need -1 <= t_prev < t, got t={t}, t_prev={t_prev}")
    t_batch = torch.full((xt.shape[0],), int(t), dtype=torch.long, device=xt.device)
    x0_hat = predict_x0_from_eps(schedule, xt, t_batch, eps)  # Eq. (15) of Ho et al.; Song's "predicted x0"
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps = predict_eps_from_x0(schedule, xt, t_batch, x0_hat)  # keep eps consistent with the clip
    alpha_bar_t = schedule.alpha_bar[t].item()
    alpha_bar_prev = schedule.alpha_bar[t_prev].item() if t_prev >= 0 else 1.0
    # Song et al. Eq. (16), times eta
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)) ** 0.5
    x = alpha_bar_prev**0.5 * x0_hat + max(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * eps  # Eq. (12)
    if sigma > 0:
        x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x, x0_hat) if return_x0 else x


@torch.no_grad()
def sample_ddim(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    steps: int = 50,
    eta: float = 0.0,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """DDIM sampling, Eq. (12) of Song, Meng & Ermon 2021, over a subsequence of ``steps`` timesteps.

        x_{t'} = sqrt(alpha_bar_{t'}) x0_hat + sqrt(1 - alpha_bar_{t'} - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - alpha_bar_{t'}) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_{t'})

    for consecutive visited steps t > t' (alpha_bar after the last step is 1: x_0 itself).
    eta = 0 is deterministic given x_T; eta = 1 with every step is DDPM with sigma_t^2 = beta_tilde_t.
    Arguments and return value as :func:`sample_ddpm`; the trajectory has one entry per visited step.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    x = draw_x_T(shape, generator, device, dtype, x_T, model)
    trajectory = [x.cpu()] if return_trajectory else None
    ts = ddim_timesteps(schedule.T, steps)
    clock = TimeEstimate("DDIM sampling", len(ts), unit="network call")
    for i, t in enumerate(progress_bar(ts, desc="DDIM", disable=not progress, transient=True)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = guided_eps(model, x, t_batch, y, guidance)
        x = ddim_step(schedule, x, eps, t, t_prev, eta, clip_x0, generator)
        clock.tick()
        if trajectory is not None:
            trajectory.append(x.cpu())
    return (x, trajectory) if return_trajectory else x


def respace(
    model: Callable[..., torch.Tensor], schedule: NoiseSchedule, steps: int
) -> tuple[Callable[..., torch.Tensor], NoiseSchedule]:
    """A shorter diffusion over ``steps`` of the T timesteps, for the same model (Nichol & Dhariwal 2021, Sec. 4).

    Keep the timesteps S_0 < ... < S_{K-1} (those of :func:`ddim_timesteps`) and give the short chain
    the betas that reproduce alpha_bar exactly there:

        beta'_i = 1 - alpha_bar_{S_i} / alpha_bar_{S_{i-1}}   (alpha_bar_{S_{-1}} = 1)

    Every sampler that walks a schedule step by step (``sample_ddpm``, ``inpainting.repaint``) then runs
    K network calls instead of T. Returns the model with its t mapped from i to S_i, and the new schedule.
    """
    kept = torch.tensor(ddim_timesteps(schedule.T, steps)[::-1])  # (K,) increasing, S_0 = 0, S_{K-1} = T-1

    def respaced_model(xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        original_t = kept.to(t.device)[t]  # i -> S_i, the timestep the network was trained on
        return model(xt, original_t, **kwargs) if y is None else model(xt, original_t, y, **kwargs)

    respaced_model.__wrapped__ = model  # eps_model.model_device finds the network's weights through it
    kind = f"{schedule.kind}, respaced to {len(kept)} steps"
    return respaced_model, NoiseSchedule.from_alpha_bar(schedule.alpha_bar[kept], kind=kind)  # the betas above
