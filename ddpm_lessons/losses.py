"""The training objectives of Ho et al. 2020: the variational bound (Eq. 5) and L_simple (Eq. 14).

They take any eps-model (see ``eps_model``): a callable ``(xt, t[, y]) -> eps``, not necessarily a network,
so every formula here can be checked with an exact ("oracle") noise predictor before any training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ddpm_lessons.eps_model import EpsModel, call_eps_model, model_device
from ddpm_lessons.forward import check_x0, p_mean_from_eps, p_variance, q_posterior, q_sample
from ddpm_lessons.schedules import NoiseSchedule


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats, elementwise (all inputs broadcast).

        KL = 0.5 (logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1)

    The closed form behind every L_{t-1} term of Eq. (5) of Ho et al. 2020.
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) = 0.5 (1 + erf(x / sqrt 2))."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x0: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor
) -> torch.Tensor:
    """log p(x0) under a Gaussian discretised to 256 pixel bins: the decoder of Eq. (13), Ho et al. 2020.

        p(x0 | x1) = prod_i integral_{delta_-(x0_i)}^{delta_+(x0_i)} N(x; mu_i, sigma^2) dx

    with bins of width 2/255 around each of the 256 levels of [-1, 1], and the outer bins reaching
    to -inf and +inf, so the 256 probabilities sum to one. x0 must hold values on that grid
    (from_uint8 of uint8 pixels). Returns the elementwise log-probability in nats, shape of x0.
    """
    check_x0(x0, "discretized_gaussian_log_likelihood")
    inv_std = torch.exp(-0.5 * log_variance)
    centred = x0 - mean
    cdf_plus = standard_normal_cdf(inv_std * (centred + 1.0 / 255))  # delta_+ (Eq. 13)
    cdf_minus = standard_normal_cdf(inv_std * (centred - 1.0 / 255))  # delta_-
    tiny = 1e-12
    log_cdf_plus = torch.log(cdf_plus.clamp(min=tiny))  # the bin of x0 = -1 reaches to -inf
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=tiny))  # x0 = 1 reaches to +inf
    log_bin = torch.log((cdf_plus - cdf_minus).clamp(min=tiny))
    edge = 1.0 - 1.0 / 255 / 2  # halfway between the last two levels
    return torch.where(x0 < -edge, log_cdf_plus, torch.where(x0 > edge, log_one_minus_cdf_minus, log_bin))


def l_simple(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The simplified objective, Eq. (14) of Ho et al. 2020 (Algorithm 1, lines 2-5), a scalar.

        L_simple = E_{t, x0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

    t is drawn uniformly from 0..T-1 and eps from N(0, I) (with ``generator``) when not given.
    The squared error is averaged over pixels and batch, as in the paper's code.
    """
    check_x0(x0, "l_simple")
    batch = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.T, (batch,), generator=generator).to(x0.device)  # Algorithm 1, line 3
    t = schedule.check_t(t, "l_simple", batch=batch).to(x0.device).expand(batch)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)  # line 4
    xt = q_sample(schedule, x0, t, noise=noise)
    eps = call_eps_model(eps_model, xt, t, y)
    return ((noise - eps) ** 2).mean()  # Algorithm 1, line 5


@dataclass
class VLBTerms:
    """The terms of the variational bound, Eq. (5) of Ho et al. 2020, in nats per image.

    Paper steps are 1..T and code steps 0..T-1, so the KL term the paper calls L_{t-1} (t = 2..T)
    sits at ``L_t_minus_1[:, t - 2]`` and uses code step t - 1.
    """

    L_T: torch.Tensor  # (B,) KL(q(x_T | x_0) || N(0, I))
    L_t_minus_1: torch.Tensor  # (B, T-1) KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), paper t = 2..T
    L_0: torch.Tensor  # (B,) -log p(x_0 | x_1), the discretised decoder of Eq. (13)

    @property
    def total(self) -> torch.Tensor:
        """L = L_T + sum_t L_{t-1} + L_0, shape (B,), nats per image."""
        return self.L_T + self.L_t_minus_1.sum(dim=1) + self.L_0


@torch.no_grad()
def vlb_terms(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    y: torch.Tensor | None = None,
    variance: str = "beta_tilde",
    generator: torch.Generator | None = None,
) -> VLBTerms:
    """Every term of the variational bound, Eq. (5) of Ho et al. 2020, for one draw of x_t per step.

        L = KL(q(x_T|x_0) || p(x_T)) + sum_{t>1} KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) - log p(x_0|x_1)

    The reverse mean comes from eps_model through Eq. (11); its variance is the fixed sigma_t^2
    chosen by ``variance`` (see forward.p_variance). This calls eps_model T times on the batch, on the device of
    its weights (x0 and y are moved there; a function without weights gets them where they are); the terms come
    back on x0's device.
    """
    check_x0(x0, "vlb_terms")
    home, device = x0.device, model_device(eps_model)
    if device is not None:
        x0, y = x0.to(device), (None if y is None else y.to(device))
    batch = x0.shape[0]
    # L_T: q(x_T | x_0) against the prior N(0, I); no parameters, so a constant near zero.
    alpha_bar_T = schedule.alpha_bar[-1].to(x0)
    prior = normal_kl(alpha_bar_T.sqrt() * x0, (1 - alpha_bar_T).log(), torch.zeros_like(x0), torch.zeros_like(x0))
    L_T = prior.flatten(1).sum(1)

    kls = []
    L_0 = torch.zeros(batch, dtype=x0.dtype, device=x0.device)
    for step in range(schedule.T):
        t = torch.full((batch,), step, dtype=torch.long, device=x0.device)
        xt = q_sample(schedule, x0, t, generator=generator)
        eps = call_eps_model(eps_model, xt, t, y)
        mean = p_mean_from_eps(schedule, xt, t, eps)  # Eq. (11)
        _, log_var = p_variance(schedule, t, xt, variance)
        if step == 0:
            L_0 = -discretized_gaussian_log_likelihood(x0, mean, log_var).flatten(1).sum(1)  # Eq. (13)
        else:
            true_mean, _, true_log_var = q_posterior(schedule, x0, xt, t)  # Eqs. (6)-(7)
            kls.append(normal_kl(true_mean, true_log_var, mean, log_var).flatten(1).sum(1))
    L_t_minus_1 = torch.stack(kls, dim=1) if kls else torch.zeros(batch, 0, dtype=x0.dtype, device=x0.device)
    return VLBTerms(L_T=L_T.to(home), L_t_minus_1=L_t_minus_1.to(home), L_0=L_0.to(home))


def bits_per_dim(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    y: torch.Tensor | None = None,
    variance: str = "beta_tilde",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The variational bound of Eq. (5) in bits per dimension, shape (B,): L / (D ln 2)."""
    terms = vlb_terms(eps_model, schedule, x0, y=y, variance=variance, generator=generator)
    return terms.total / (x0[0].numel() * math.log(2.0))
