"""The forward (noising) process q of Ho et al. 2020 and the quantities derived from it.

All functions take a :class:`~ddpm_lessons.schedules.NoiseSchedule`, data ``x0`` in [-1, 1] of
shape (B, C, H, W) (any shape with the batch first works) and 0-indexed timesteps ``t`` (an int,
or an int64 tensor of shape (B,)).
"""

from __future__ import annotations

import torch

from ddpm_lessons.schedules import NoiseSchedule

# Data scaled to [-1, 1] may overshoot a little after resizing or float rounding.
X0_TOLERANCE = 1e-3


def check_x0(x0: torch.Tensor, caller: str) -> None:
    """Raise if x0 is not floating point data in [-1, 1], naming the fix."""
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"{caller}: x0 must be a torch.Tensor, got {type(x0).__name__}")
    if not x0.is_floating_point():
        raise TypeError(
            f"{caller}: x0 has dtype {x0.dtype}; the model works on floats in [-1, 1]. "
            "Convert images with ddpm_lessons.data.from_uint8(images)."
        )
    if x0.numel() and not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{caller}: x0 contains NaN or inf; check the data pipeline")
    if x0.numel():
        lo, hi = float(x0.min()), float(x0.max())
        if lo < -1 - X0_TOLERANCE or hi > 1 + X0_TOLERANCE:
            hint = " (it looks like uint8 pixels: use from_uint8)" if hi > 2 else ""
            raise ValueError(
                f"{caller}: x0 has values in [{lo:.3g}, {hi:.3g}] but must lie in [-1, 1]{hint}; "
                "scale images with x0 = 2 * x - 1 for x in [0, 1]"
            )


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str, caller: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{caller}: {names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def q_step(
    schedule: NoiseSchedule,
    x_prev: torch.Tensor,
    t: torch.Tensor | int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One step of the forward Markov chain, Eq. (2) of Ho et al. 2020.

        q(x_t | x_{t-1}) = N(x_t; sqrt(1 - beta_t) x_{t-1}, beta_t I)

    ``x_prev`` is x_{t-1} (the data itself when t = 0). Returns x_t, the same shape as x_prev. The noise is
    drawn on the CPU (``generator`` is a CPU generator) and moved, so a seed gives the same x_t on every device.
    """
    t = schedule.check_t(t, "q_step", batch=x_prev.shape[0])
    beta = schedule.gather(schedule.betas, t, x_prev)  # (B, 1, 1, 1)
    noise = torch.randn(x_prev.shape, generator=generator, dtype=x_prev.dtype).to(x_prev.device)
    return (1.0 - beta).sqrt() * x_prev + beta.sqrt() * noise  # Eq. (2)


def q_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and log-variance of q(x_t | x_0), Eq. (4) of Ho et al. 2020.

        q(x_t | x_0) = N(x_t; sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)

    Returns mean (B, C, H, W) and variance, log_variance broadcastable as (B, 1, 1, 1).
    """
    check_x0(x0, "q_mean_variance")
    t = schedule.check_t(t, "q_mean_variance", batch=x0.shape[0])
    alpha_bar = schedule.gather(schedule.alpha_bar, t, x0)
    mean = alpha_bar.sqrt() * x0  # Eq. (4)
    variance = 1.0 - alpha_bar
    return mean, variance, variance.log()


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one shot, Eq. (4) of Ho et al. 2020 (reparameterised).

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)

    Args:
        x0: clean data in [-1, 1], (B, C, H, W).
        t: 0-indexed timesteps, int or (B,).
        noise: eps, same shape as x0; drawn with ``generator`` when None, on the generator's device and moved to
            x0's (a CPU generator gives the same noise for x0 on any device).
    """
    check_x0(x0, "q_sample")
    t = schedule.check_t(t, "q_sample", batch=x0.shape[0])
    if noise is None:
        where = generator.device if generator is not None else x0.device
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=where).to(x0.device)
    _check_same_shape(x0, noise, "x0 and noise", "q_sample")
    alpha_bar = schedule.gather(schedule.alpha_bar, t, x0)  # (B, 1, 1, 1)
    return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise  # Eq. (4)


def q_posterior(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and log-variance of q(x_{t-1} | x_t, x_0), Eqs. (6)-(7) of Ho et al. 2020.

        mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                     + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t

    with variance beta_tilde_t. At t = 0 the variance is 0; its log is clipped to
    log(beta_tilde[1]) so it stays finite. Returns mean (B, C, H, W), variance and log-variance
    as (B, 1, 1, 1).
    """
    _check_same_shape(x0, xt, "x0 and xt", "q_posterior")
    t = schedule.check_t(t, "q_posterior", batch=x0.shape[0])
    coef_x0 = schedule.gather(schedule.posterior_mean_coef_x0, t, xt)
    coef_xt = schedule.gather(schedule.posterior_mean_coef_xt, t, xt)
    mean = coef_x0 * x0 + coef_xt * xt  # Eq. (7), mu_tilde
    variance = schedule.gather(schedule.beta_tilde, t, xt)  # Eq. (7), beta_tilde
    log_variance = schedule.gather(schedule.beta_tilde_log_clipped, t, xt)
    return mean, variance, log_variance


def predict_x0_from_eps(
    schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor
) -> torch.Tensor:
    """Invert Eq. (4) for x_0 given the noise, Eq. (15) of Ho et al. 2020.

    x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
    """
    _check_same_shape(xt, eps, "xt and eps", "predict_x0_from_eps")
    t = schedule.check_t(t, "predict_x0_from_eps", batch=xt.shape[0])
    alpha_bar = schedule.gather(schedule.alpha_bar, t, xt)
    return (xt - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()  # Eq. (15)


def predict_eps_from_x0(
    schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor
) -> torch.Tensor:
    """The noise that takes x_0 to x_t: Eq. (4) of Ho et al. 2020 solved for eps.

    eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)
    """
    _check_same_shape(xt, x0, "xt and x0", "predict_eps_from_x0")
    t = schedule.check_t(t, "predict_eps_from_x0", batch=xt.shape[0])
    alpha_bar = schedule.gather(schedule.alpha_bar, t, xt)
    return (xt - alpha_bar.sqrt() * x0) / (1.0 - alpha_bar).sqrt()  # Eq. (4)


def p_mean_from_eps(
    schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor
) -> torch.Tensor:
    """Mean of p_theta(x_{t-1} | x_t) under the eps parameterisation, Eq. (11) of Ho et al. 2020.

    mu_theta(x_t, t) = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t))
    """
    _check_same_shape(xt, eps, "xt and eps", "p_mean_from_eps")
    t = schedule.check_t(t, "p_mean_from_eps", batch=xt.shape[0])
    alpha = schedule.gather(schedule.alphas, t, xt)
    beta = schedule.gather(schedule.betas, t, xt)
    alpha_bar = schedule.gather(schedule.alpha_bar, t, xt)
    return (xt - beta / (1.0 - alpha_bar).sqrt() * eps) / alpha.sqrt()  # Eq. (11)


def p_variance(
    schedule: NoiseSchedule, t: torch.Tensor | int, like: torch.Tensor, variance: str = "beta"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed reverse-process variance sigma_t^2 of Ho et al. 2020, Sec. 3.2, and its log.

    ``variance="beta"`` gives sigma_t^2 = beta_t (with beta_tilde_1 at t = 0, as the paper's code);
    ``variance="beta_tilde"`` gives sigma_t^2 = beta_tilde_t (log clipped at t = 0). The paper
    reports similar sample quality for both. Returns two tensors shaped (B, 1, 1, 1).
    """
    t = schedule.check_t(t, "p_variance", batch=like.shape[0])
    if variance == "beta":
        var = torch.cat([schedule.beta_tilde[1:2], schedule.betas[1:]]) if schedule.T > 1 else schedule.betas
        log_var = var.log()
    elif variance == "beta_tilde":
        var, log_var = schedule.beta_tilde, schedule.beta_tilde_log_clipped
    else:
        raise ValueError(f"unknown variance {variance!r}; choose 'beta' or 'beta_tilde'")
    return schedule.gather(var, t, like), schedule.gather(log_var, t, like)
