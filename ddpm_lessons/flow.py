"""Flow matching on the straight path from data to noise, and its Euler and Heun samplers (DPM-Solver++(2M) and
UniPC on the same path: ``solvers.sample_flow_multistep``).

The path (Lipman et al. 2023, Sec. 4.1 with sigma_min = 0; Liu et al. 2023, rectified flow, Eq. 1):

    x_s = (1 - s) x0 + s eps,   s in [0, 1]   (s = 0: the data, s = 1: pure noise)

Its velocity is d x_s / d s = eps - x0. A network v_theta(x_s, s) trained to regress it,

    L_FM = E_{s, x0, eps} || (eps - x0) - v_theta(x_s, s) ||^2          (Lipman et al. 2023, Eq. 23)

learns E[eps - x0 | x_s], the velocity field whose ODE d x / d s = v_theta(x, s) carries N(0, I) at s = 1 to
the data at s = 0 (Lipman et al. 2023, Thm. 1; by their Thm. 2 this loss has the gradient of regressing that
field). Sampling integrates that ODE backwards in s.

The network is the package's U-Net: its timestep input is the continuous s scaled by ``FLOW_TIME_SCALE``, so
that the sinusoidal embedding sees the same range as the DDPM's 0..999. A velocity-model is called like an
eps-model (see ``eps_model``): ``model(x_s, FLOW_TIME_SCALE * s[, y])`` returns v, shaped as x_s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lessons.samplers import draw_x_T, guided_eps
from ddpm_lessons.utils import TimeEstimate
from ddpm_lessons.utils import progress as progress_bar

FLOW_TIME_SCALE = 1000.0  # the U-Net sees t = 1000 s


def _check_s(s: torch.Tensor, like: torch.Tensor, caller: str) -> torch.Tensor:
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if bool(((s < 0) | (s > 1)).any()):
        raise ValueError(f"{caller}: s is the flow time and must lie in [0, 1] (0: data, 1: noise)")
    if s.ndim == 1:
        if len(s) != like.shape[0]:
            raise ValueError(f"{caller}: s has {len(s)} entries but the batch has {like.shape[0]}; give one per image")
        s = s.view(-1, *[1] * (like.ndim - 1))  # (B, 1, 1, 1)
    return s


def flow_path(x0: torch.Tensor, eps: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """x_s = (1 - s) x0 + s eps (Liu et al. 2023, Eq. 1). x0, eps: (B, C, H, W); s: a float or (B,). Returns x_s."""
    if x0.shape != eps.shape:
        raise ValueError(f"flow_path: x0 and eps must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(eps.shape)}")  # fmt: skip
    s = _check_s(s, x0, "flow_path")
    return (1 - s) * x0 + s * eps


FLOW_TIMES = ("uniform", "logit-normal")  # how training draws s (TrainConfig.flow_time, `train --flow-time`)


def check_flow_times(kind: str, loc: float = 0.0) -> None:
    """Refuse an unknown kind of training times, or a location that is not finite or is given to uniform times."""
    if kind not in FLOW_TIMES:
        raise ValueError(f"unknown flow time sampling {kind!r}; choose one of {', '.join(FLOW_TIMES)}")
    if not math.isfinite(loc) or (loc != 0.0 and kind != "logit-normal"):
        raise ValueError(f"loc={loc!r} is the logit-normal's location, a finite number, and only that kind has one; "
                         "leave it at 0 for uniform times")  # fmt: skip


def draw_flow_times(
    n: int, generator: torch.Generator | None = None, kind: str = "uniform", loc: float = 0.0
) -> torch.Tensor:
    """n flow times s in (0, 1) for a training batch: "uniform", s ~ U[0, 1] (Lipman et al. 2023, Eq. 23), or
    "logit-normal", s = sigmoid(u) with u ~ N(loc, 1) (Esser et al. 2024, Sec. 3.1: more of the batch at middle
    times, where the velocity is hardest to predict, and fewer near the ends; loc > 0 centres them towards the noise,
    at the median s = sigmoid(loc)). Returns (n,) float32 on the CPU."""
    check_flow_times(kind, loc)
    if kind == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(loc + torch.randn(n, generator=generator))  # logit-normal


def flow_matching_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    s: torch.Tensor,
    eps: torch.Tensor,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """The conditional flow-matching loss of one batch, Lipman et al. 2023, Eq. 23 with sigma_min = 0:

        mean over the batch and pixels of || (eps - x0) - v_theta((1 - s) x0 + s eps, s) ||^2

    x0, eps: (B, C, H, W); s: (B,) in [0, 1]; y: (B,) labels or None. The model is called with
    ``FLOW_TIME_SCALE * s``. Returns a scalar.
    """
    x_s = flow_path(x0, eps, s)
    t_in = FLOW_TIME_SCALE * torch.as_tensor(s, dtype=x0.dtype, device=x0.device).reshape(-1).expand(x0.shape[0])
    v = model(x_s, t_in) if y is None else model(x_s, t_in, y)
    return ((eps - x0) - v.float()).pow(2).mean()


def velocity(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    s: float,
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
) -> torch.Tensor:
    """v_theta(x, s) at one flow time s for the whole batch, with classifier-free guidance

        v = (1 + w) v_theta(x, s, y) - w v_theta(x, s, no label)

    in one call on a doubled batch. Given x, the velocity eps - x0 = (eps - x) / (1 - s) is affine in the eps
    the network implies, so guiding the velocity is guiding eps (Ho & Salimans 2022, Eq. 6) in other
    coordinates. x: (B, C, H, W). Returns (B, C, H, W).
    """
    t_in = torch.full((x.shape[0],), FLOW_TIME_SCALE * float(s), dtype=x.dtype, device=x.device)
    return guided_eps(model, x, t_in, y, guidance)


def check_flow_shift(shift: float) -> None:
    """Refuse a shift of the flow-time grid that is not a positive, finite number (1: no shift)."""
    if not shift > 0 or math.isinf(shift):
        raise ValueError(f"shift={shift!r} multiplies the noise-to-signal ratio and must be a positive number "
                         "(1: no shift)")  # fmt: skip


def shift_flow_time(s: float, shift: float) -> float:
    """The flow time s moved towards the noise by a factor ``shift`` (Esser et al. 2024, Sec. 5.3.2):

        s' = shift s / (1 + (shift - 1) s),   so that   s' / (1 - s') = shift * s / (1 - s)

    On the path x_s = (1 - s) x0 + s eps the noise-to-signal ratio s / (1 - s) is multiplied by ``shift``, so the
    log-SNR, 2 log((1 - s) / s), moves down by 2 log(shift) at every s; s = 0 and s = 1 stay where they are.
    shift > 1 puts more of a grid at high noise, shift = 1 leaves it even, 0 < shift < 1 moves it towards the data.
    """
    check_flow_shift(shift)
    return shift * s / (shift * s + (1 - s))  # = shift s / (1 + (shift - 1) s), exact at s = 0 and s = 1


def flow_timesteps(steps: int, shift: float = 1.0) -> list[float]:
    """steps + 1 flow times from 1 (noise) down to 0 (data): evenly spaced, each then moved by
    :func:`shift_flow_time` (``shift`` = 1: evenly spaced)."""
    return [shift_flow_time(1.0 - i / steps, shift) for i in range(steps + 1)]


def euler_step(x: torch.Tensor, v: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    """One Euler step of d x / d s = v from s to s_next < s: x + (s_next - s) v. x, v: (B, C, H, W)."""
    if not 0.0 <= s_next < s <= 1.0:
        raise ValueError(f"euler_step goes from noise to data: need 0 <= s_next < s <= 1, got s={s}, s_next={s_next}")
    return x + (s_next - s) * v


def check_flow_steps(steps: int, caller: str) -> None:
    """Refuse a number of model evaluations that is not a positive int, naming the caller."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{caller}: steps={steps!r} counts model evaluations and must be a positive int (10 is a "
                         "good start)")  # fmt: skip


@torch.no_grad()
def sample_flow(
    model: Callable[..., torch.Tensor],
    shape: tuple[int, ...],
    steps: int = 10,
    method: str = "euler",
    y: torch.Tensor | None = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    shift: float = 1.0,
):
    """Integrate d x / d s = v_theta(x, s) from x_1 ~ N(0, I) at s = 1 to s = 0, with ``steps`` model evaluations.

    ``method="euler"``: ``steps`` Euler steps on :func:`flow_timesteps`. ``method="heun"``: Heun's method
    (the explicit trapezoidal rule, Karras et al. 2022, Alg. 1 lines 5-8): a step costs two evaluations, v at
    (x, s) and at the Euler guess (x', s'), and moves by the mean of the two. As in Alg. 1, the last step, into
    s = 0, is an Euler step: near s = 0 the velocity of data concentrated near a thin set (digits) changes
    abruptly, v = (x_s - E[x0 | x_s]) / s, and a correction evaluated at s = 0 itself does more harm than good.
    So ``steps`` = 2N - 1 evaluations make N steps on :func:`flow_timesteps` (N), N - 1 of them Heun steps;
    an even ``steps`` makes N = steps / 2 + 1 steps and an Euler first step too (at s = 1 the path is nearly
    straight). ``shift`` moves the grid's times towards the noise (:func:`shift_flow_time`; 1: evenly spaced).
    Deterministic given x_T; ``generator`` draws x_T only. ``device``: where to sample; None: where the model's
    weights are (``samplers.sampling_device``). Returns x_0 (shape ``shape``), and with ``return_trajectory`` the
    list of x at every visited s.
    """
    check_flow_steps(steps, "sample_flow")
    if method not in ("euler", "heun"):
        raise ValueError(f"sample_flow: method must be 'euler' or 'heun', got {method!r}")
    if method == "heun":  # Karras et al.'s count: the last step is Euler; an even count adds an Euler first step
        grid, n_heun = flow_timesteps(steps // 2 + 1, shift), (steps - 1) // 2
    else:
        grid, n_heun = flow_timesteps(steps, shift), 0
    last = len(grid) - 2  # the index of the last step, an Euler step into s = 0
    heun_steps = range(last - n_heun, last)  # the n_heun steps before it (after an Euler first step, if any)
    x = draw_x_T(shape, generator, device, dtype, x_T, model)
    trajectory = [x.cpu()] if return_trajectory else None
    clock = TimeEstimate(f"flow sampling ({method})", steps, unit="network call")
    for i in progress_bar(range(len(grid) - 1), desc=f"flow {method}", disable=not progress, transient=True):
        s, s_next = grid[i], grid[i + 1]
        v = velocity(model, x, s, y, guidance)
        clock.tick()
        x_next = euler_step(x, v, s, s_next)
        if i in heun_steps:  # the trapezoidal correction: the mean of the velocities at both ends
            v_next = velocity(model, x_next, s_next, y, guidance)
            clock.tick()
            x_next = x + (s_next - s) * 0.5 * (v + v_next)
        x = x_next
        if trajectory is not None:
            trajectory.append(x.cpu())
    return (x, trajectory) if return_trajectory else x
