"""Training: Algorithm 1 of Ho et al. 2020 with the practical pieces around it.

AdamW with a linear learning-rate warm-up and an optional cosine decay, gradient clipping, an
exponential moving average (EMA) of the weights (what we sample from), label dropout for
classifier-free guidance, mixed precision on CUDA, gradient accumulation, optional ``torch.compile``,
a progress bar, periodic sample grids, and checkpoints every N steps from which a run resumes
exactly (see ``checkpoints``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ddpm_lessons.checkpoints import (
    ScheduleConfig,
    check_same_config,
    config_record,
    export_model,
    load_training_checkpoint,
    save_training_checkpoint,
)
from ddpm_lessons.distributed import init_from_env
from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.flow import check_flow_times, draw_flow_times, flow_matching_loss, sample_flow
from ddpm_lessons.forward import check_x0, q_sample
from ddpm_lessons.objectives import LOSS_WEIGHTINGS, OBJECTIVES, as_eps_model, min_snr_weight, prediction_target
from ddpm_lessons.runs import RunLog, StopOnSignal, capture_state, restore_state
from ddpm_lessons.samplers import sample_ddim
from ddpm_lessons.solvers import SamplingConfig, check_sampler, check_shift, default_sampling
from ddpm_lessons.superres import conditioned
from ddpm_lessons.unet import UNet, UNetConfig
from ddpm_lessons.utils import TimeEstimate, get_device, progress

LR_DECAYS = ("none", "cosine")  # what TrainConfig.lr_decay accepts

# The recipe the project recommends for 28 x 28 digits (MNIST, Fashion-MNIST), measured in benchmarks/README.md
# ("Quality per CPU-minute" and "Time to quality"): what `train --dataset mnist` uses for every option it is not given.
# "train" holds TrainConfig fields, "model" UNetConfig fields, "sampling" the setting its checkpoint record carries for
# `sample`. Each choice was measured from scratch on 2 cores against a baseline: a network with fewer channels at
# 28 x 28 than the course's (1.9x the steps per minute) and a learning rate of 2e-3 decayed to 0 along a cosine over
# the budget, at 15 minutes; the flow-matching velocity with logit-normal times (lesson 11), 41% closer to the data
# than plain eps-prediction and by a margin near the noise over eps or v with min-SNR weighting, the forward pass in
# bfloat16 on a CPU that computes it natively (1.2x the steps per minute; `train` keeps float32 on other CPUs) and no
# dropout (1.14x the steps, 8% closer), at 5 minutes; Heun with 15 model evaluations at w = 0.1, the closest to the
# data of the settings tried at sample seed 1 on a 10-minute model, on a grid of flow times shifted towards the noise
# by 2.5 (flow.shift_flow_time: 3-4% closer than the even grid on each of four 10-minute models). Its EMA decay 0.999
# is not reached in 10 minutes on 2 CPU cores (3,861-5,611 steps; the warm-up gets there at step 8,990): the
# warm-up's average, whose mean age is about a tenth of the steps, is what was measured, and longer ones were worse.
DIGITS_RECIPE = {
    "train": {
        "objective": "flow",
        "flow_time": "logit-normal",
        "cpu_bf16": True,
        "batch_size": 64,
        "lr": 2e-3,
        "lr_decay": "cosine",
        "warmup_steps": 200,
        "ema_decay": 0.999,
    },
    "model": {"base_channels": 16, "channel_mults": (1, 2, 4), "attention_resolutions": (7,), "dropout": 0.0},
    "sampling": {"sampler": "heun", "steps": 15, "guidance": 0.1, "shift": 2.5},
}


@dataclass
class TrainConfig:
    """How to train. Ho et al. 2020 used lr 2e-4, batch 128, warm-up 5000, clip 1.0, EMA 0.9999."""

    steps: int = 10_000  # optimiser steps in total (a resumed run continues up to this)
    minutes: float = 0.0  # a wall-clock budget: stop after this many minutes of training (0: none; see train())
    objective: str = "eps"  # what the network predicts: eps, x0 or v on the schedule's x_t, or "flow" (see flow)
    loss_weighting: str = "none"  # "none" (L_simple) or "min-snr" (Hang et al. 2023; eps, x0, v): LOSS_WEIGHTINGS
    min_snr_gamma: float = 5.0  # the gamma of "min-snr"
    flow_time: str = "uniform"  # how the flow objective draws s: "uniform" or "logit-normal" (flow.FLOW_TIMES)
    flow_time_loc: float = 0.0  # the logit-normal's location (flow.draw_flow_times; > 0: towards the noise)
    batch_size: int = 128  # images per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    lr: float = 2e-4  # peak learning rate of AdamW
    warmup_steps: int = 500  # linear warm-up from 0 to lr
    lr_decay: str = "none"  # "none" keeps lr after the warm-up; "cosine" takes it down to 0 at `steps`
    weight_decay: float = 0.0
    adam_beta2: float = 0.999  # AdamW's second-moment decay (its betas are (0.9, adam_beta2); PyTorch's default)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema_decay: float = 0.9999  # EMA decay, warmed up (see EMA): the warm-up alone sets it below step 89,990
    label_dropout: float = 0.1  # share of labels replaced by "no label" (classifier-free guidance)
    amp: bool = True  # mixed precision on CUDA (bf16 from compute capability 8, else fp16); on a CPU see cpu_bf16
    cpu_bf16: bool = False  # on a CPU, run the network's forward pass in bfloat16 under torch.autocast
    compile: bool = False  # torch.compile the model
    checkpoint_every: int = 1000  # steps between checkpoints
    sample_every: int = 0  # steps between sample grids (0: never)
    sample_steps: int = 50  # DDIM steps for those grids
    log_every: int = 50  # steps between log lines in log.jsonl
    seed: int = 0
    device: str | None = None  # None: cuda, then mps, then cpu


def learning_rate(config: TrainConfig, step: int, progress: float | None = None) -> float:
    """The learning rate of optimiser step ``step``: the linear warm-up times, with lr_decay "cosine",
    (1 + cos(pi * progress)) / 2 (Loshchilov & Hutter 2017, without restarts), where progress is the
    share of the run done: step / steps unless given (a wall-clock budget passes its share of time).
    The decay depends on ``steps``: resuming with more steps than planned raises the rate again. With a
    wall-clock budget (``minutes``) the trainer passes the share of the minutes spent.
    """
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_decay == "none":
        return config.lr * warm
    progress = min(1.0, step / config.steps if progress is None else progress)
    return config.lr * warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw(params, lr: float, weight_decay: float, beta2: float = 0.999) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019, Alg. 2) with betas (0.9, ``beta2``), in PyTorch's fused implementation
    where it has one for the parameters' device (one kernel over all the parameters: on the 2-core CPU the update
    takes 0.7 ms instead of 3.7, 2.4% of a step of the digits recipe; a CPU has one from torch 2.4), else its default
    one. Both compute the same update, up to rounding. Decided here, not left to the first step: from torch 2.4 an
    unsupported device fails only there."""
    params, settings = list(params), {"lr": lr, "betas": (0.9, beta2), "weight_decay": weight_decay}
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
    except ImportError:
        supported = set()
    if params and all(p.device.type in supported and p.is_floating_point() for p in params):
        try:
            return torch.optim.AdamW(params, **settings, fused=True)
        except RuntimeError:  # refused at construction (older torch)
            pass
    return torch.optim.AdamW(params, **settings)


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether a CUDA GPU computes bfloat16 natively (compute capability 8.0 on: A100, RTX 30xx, H100, ...). Older
    ones (Colab's T4, 7.5) only emulate it, and their convolutions in bfloat16 fall back to slow kernels, so mixed
    precision there is float16 with a gradient scaler. (``torch.cuda.is_bf16_supported()`` counts emulation too.)"""
    if torch.version.hip:  # ROCm: every architecture PyTorch supports has it
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class EMA:
    """Exponential moving average of a model's weights: ema = d_step * ema + (1 - d_step) * weights, with the decay
    warmed up as d_step = min(decay, (1 + step) / (warmup + step)). Until d_step reaches ``decay``, at step
    (warmup * decay - 1) / (1 - decay), the warm-up alone sets the average: it holds the weights of step j in
    proportion to about (warmup + j)^(warmup - 2), whose mean age is step / warmup (a tenth of the steps at 10)."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: float = 10.0):
        if not warmup > 1:
            raise ValueError(f"EMA warmup={warmup!r} must be above 1 (at 1 the average never leaves the first weights)")
        self.decay, self.warmup = decay, warmup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (self.warmup + step))  # a short memory early, while weights move fast
        averaged, current = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        if len(averaged) != len(current):
            raise ValueError(f"EMA.update: the model has {len(current)} parameter tensors, its average {len(averaged)}")
        torch._foreach_lerp_(averaged, current, 1.0 - d)  # one fused call: on a GPU a few kernels instead of one each
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


class Trainer:
    """Trains a UNet on images (N, C, H, W) in [-1, 1] (a tensor, or a Dataset of such tensors).

    Files in ``out_dir``: checkpoint.pt (+ .json), model.safetensors (the EMA weights, + .json),
    log.jsonl (one line per ``log_every`` steps), samples/step_XXXXXX.png.
    """

    def __init__(
        self,
        model_config: UNetConfig,
        train_config: TrainConfig,
        images,
        out_dir: str | Path,
        labels: torch.Tensor | None = None,
        schedule_config: ScheduleConfig | None = None,
        resume: bool = False,
        progress: bool = True,
        condition=None,
        condition_record: dict | None = None,
        sampling: SamplingConfig | None = None,
    ):
        self.model_config, self.config = model_config, train_config
        self.condition = condition  # x0 -> cond, for models with cond_channels (e.g. superres.sr_condition)
        self.condition_record = condition_record  # what the condition is, saved in the record: {"low_size": 7}
        if bool(model_config.cond_channels) != (condition is not None):
            raise ValueError(
                "a model with cond_channels needs condition= (a function x0 -> cond image), and only such a model"
            )
        if train_config.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {train_config.lr_decay!r}")
        if train_config.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {train_config.objective!r}")
        self.sampling = sampling or default_sampling(train_config.objective)  # what the record tells `sample`
        check_sampler(self.sampling.sampler, train_config.objective)
        check_shift(self.sampling.shift, train_config.objective)
        if train_config.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got "
                             f"{train_config.loss_weighting!r}")  # fmt: skip
        check_flow_times(train_config.flow_time, train_config.flow_time_loc)
        if train_config.loss_weighting == "min-snr" and train_config.objective == "flow":
            raise ValueError("loss_weighting 'min-snr' is defined for the eps, x0 and v objectives; "
                             "train the flow objective with loss_weighting 'none'")  # fmt: skip
        if not train_config.minutes >= 0:
            raise ValueError(f"minutes must be 0 (no budget) or a positive number, got {train_config.minutes!r}")
        self.schedule_config = schedule_config or ScheduleConfig()
        self.schedule = self.schedule_config.build()
        self.world = init_from_env()  # one process, or one of torchrun's N (see distributed.py)
        if train_config.batch_size % self.world.size:
            raise ValueError(
                f"batch_size {train_config.batch_size} must be a multiple of the {self.world.size} processes: "
                "it is the global batch, split evenly between them"
            )
        self.out_dir, self.progress = Path(out_dir), progress and self.world.is_main
        self.device = get_device(train_config.device or (self.world.device if self.world.size > 1 else None))
        self._set_data(images, labels)

        torch.manual_seed(train_config.seed)  # the initial weights and dropout
        self.model = UNet(model_config).to(self.device)
        self.ema = EMA(self.model, train_config.ema_decay)
        self.optimizer = adamw(self.model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay,
                               beta2=train_config.adam_beta2)  # fmt: skip
        self.data_gen = torch.Generator().manual_seed(train_config.seed + 1)  # batch indices
        self.noise_gen = torch.Generator().manual_seed(train_config.seed + 2)  # t, eps, label dropout
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.eps_theta = self.model  # what a training step calls: the model, wrapped for DDP or compiled
        if self.world.size > 1:  # averages the gradients over the processes during backward()
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.eps_theta = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if train_config.compile:
            self.eps_theta = torch.compile(self.eps_theta)
        self.step, self.last_checkpoint_step, self.interrupted = 0, None, None
        self.seconds = 0.0  # wall-clock seconds spent in train() so far, over every resume (the budget's clock)
        self.log = RunLog(self.out_dir / "log.jsonl")
        if resume:
            self._resume()
        elif (self.out_dir / "checkpoint.pt").exists():
            raise FileExistsError(
                f"{self.out_dir} already holds a checkpoint; pass resume=True (--resume) to continue it, "
                "or choose a new output directory"
            )

    def _set_data(self, images, labels) -> None:
        if len(images) == 0:
            raise ValueError("the training set is empty; check the data path")
        if isinstance(images, torch.Tensor):
            check_x0(images, "Trainer")
            expected = (
                self.model_config.in_channels,
                self.model_config.image_size,
                self.model_config.image_size,
            )
            if tuple(images.shape[1:]) != expected:
                raise ValueError(
                    f"Trainer: images are {tuple(images.shape[1:])} but the model expects {expected}; "
                    "set UNetConfig(in_channels=..., image_size=...) to match the data"
                )
            images = images.to(self.device)
        self.images = images
        conditional = self.model_config.num_classes or self.model_config.text_conditioning
        if conditional and labels is None:
            raise ValueError("the model is conditional (num_classes or text_conditioning) but no labels were given")
        self.labels = None if labels is None or not conditional else labels.to(self.device)  # (N,) or tokens (N, L)

    def _amp_dtype(self):
        if self.device.type == "cpu" and self.config.cpu_bf16:
            return torch.bfloat16
        if not (self.config.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if cuda_native_bf16(self.device) else torch.float16

    def _record(self) -> dict:
        extra = {} if self.condition_record is None else {"condition": self.condition_record}
        return config_record(self.model_config, self.schedule_config, self.step, train=asdict(self.config),
                             train_seconds=round(self.seconds, 1), sampling=asdict(self.sampling), **extra)  # fmt: skip

    # ---- checkpoints --------------------------------------------------------------------------
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.data_gen, "noise": self.noise_gen}

    def save_checkpoint(self) -> Path:
        state = capture_state(self.model, self.ema.model, self.optimizer, self.scaler, self._generators(),
                              self.step, self.device)  # fmt: skip
        path = self.out_dir / "checkpoint.pt"
        save_training_checkpoint(path, state, self._record())
        export_model(self.out_dir / "model.safetensors", self.ema.model, self._record())
        self.last_checkpoint_step = self.step
        return path

    def _checkpoint_on_main(self) -> None:
        if self.world.is_main:
            self.save_checkpoint()
        self.last_checkpoint_step = self.step
        self.world.barrier()  # nobody runs ahead of a checkpoint it might have to resume from

    def _resume(self) -> None:
        path = self.out_dir / "checkpoint.pt"
        state, record = load_training_checkpoint(path, map_location=self.device)
        check_same_config(record, self.model_config, self.schedule_config, str(path))
        saved = record.get("train", {}).get("objective", "eps")
        if saved != self.config.objective:
            raise ValueError(f"{path} was trained with objective {saved!r}, not {self.config.objective!r}; resume it "
                             f"with --objective {saved}, or start a new run in another directory")  # fmt: skip
        self.seconds = float(record.get("train_seconds", 0.0))
        self.step = self.last_checkpoint_step = restore_state(
            state, self.model, self.ema.model, self.optimizer, self.scaler, self._generators(), self.device
        )
        self.log.truncate_after(self.step)  # the run died after those lines and redoes their steps

    # ---- one step of Algorithm 1 ---------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Every process draws the same global batch and keeps its slice (the whole batch in one process).
        idx = self.world.shard(torch.randint(len(self.images), (self.config.batch_size,), generator=self.data_gen))
        if isinstance(self.images, torch.Tensor):
            x0 = self.images[idx.to(self.device)]
        else:
            x0 = torch.stack([self.images[int(i)] for i in idx]).to(self.device)
        y = None if self.labels is None else self.labels[idx.to(self.device)]
        return x0, y  # Algorithm 1, line 2: x0 ~ q(x0)

    def _loss(self, x0: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        B, shard = self.config.batch_size, self.world.shard  # drawn for the global batch, sliced per process
        objective = self.config.objective
        if objective == "flow":  # s in (0, 1), continuous: U[0, 1] (Lipman et al. 2023, Eq. 23) or logit-normal
            times = draw_flow_times(B, self.noise_gen, self.config.flow_time, self.config.flow_time_loc)
            t = shard(times).to(self.device)
        else:
            t = shard(torch.randint(0, self.schedule.T, (B,), generator=self.noise_gen)).to(self.device)  # line 3
        eps = shard(torch.randn((B, *x0.shape[1:]), generator=self.noise_gen)).to(self.device)  # line 4
        if y is not None and self.config.label_dropout > 0:
            drop = shard(torch.rand(B, generator=self.noise_gen)).to(self.device) < self.config.label_dropout
            drop = drop.view(-1, *[1] * (y.ndim - 1))  # (B,) for labels, (B, 1) for a prompt's tokens
            y = torch.where(drop, torch.full_like(y, NO_LABEL), y)  # learn the unconditional model too
        cond = None if self.condition is None else self.condition(x0)  # e.g. SR3: the upsampled low-res x0

        def network(x: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                return self.eps_theta(x, t_in, labels, cond).float()

        if objective == "flow":
            return flow_matching_loss(network, x0, t, eps, y)  # || (eps - x0) - v_theta(x_s, s) ||^2
        xt = q_sample(self.schedule, x0, t, noise=eps)  # Eq. (4)
        target = prediction_target(self.schedule, x0, eps, t, objective)  # eps for Ho et al.; x0 or v
        if self.config.loss_weighting == "none":
            return ((target - network(xt, t, y)) ** 2).mean()  # line 5: || eps - eps_theta ||^2 (Eq. 14) for eps
        per_example = ((target - network(xt, t, y)) ** 2).flatten(1).mean(1)
        weight = min_snr_weight(self.schedule, t, objective, self.config.min_snr_gamma)  # Hang et al. 2023
        return (weight * per_example).mean()

    def lr_at(self, step: int, progress: float | None = None) -> float:
        """This run's :func:`learning_rate` at ``step``."""
        return learning_rate(self.config, step, progress)

    def train_step(self, progress: float | None = None) -> float:
        """One optimiser step over ``grad_accum`` micro-batches; returns the mean loss. ``progress``:
        see :meth:`lr_at`."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step, progress)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.config.grad_accum):
            loss = self._loss(*self._batch())
            value = self.world.mean(loss.item())  # the global batch's loss, the same on every process
            if not math.isfinite(value):
                kept = (
                    f"the last good checkpoint (step {self.last_checkpoint_step}) is kept in {self.out_dir}"
                    if self.last_checkpoint_step is not None
                    else "no checkpoint had been written yet"
                )
                raise TrainingDiverged(
                    f"loss became {value} at step {self.step}; {kept}. "
                    "Lower the learning rate (--lr), keep gradient clipping on, and check the data is finite."
                )
            self.scaler.scale(loss / self.config.grad_accum).backward()
            total += value / self.config.grad_accum
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)  # Algorithm 1, line 5: gradient step
        self.scaler.update()
        self.ema.update(self.model, self.step)
        self.step += 1
        return total

    # ---- the loop ---------------------------------------------------------------------------
    def sample_grid(self, path: Path | None = None, n: int = 20, seed: int = 0) -> torch.Tensor:
        """DDIM samples from the EMA model (labels 0..K-1 in turn when class-conditional; conditioned on the first
        n training images when the model takes a condition image), saved as a PNG grid."""
        import torchvision.utils

        cfg = self.model_config
        y = torch.arange(n, device=self.device) % cfg.num_classes if cfg.num_classes else None
        shape = (n, cfg.in_channels, cfg.image_size, cfg.image_size)
        generator = torch.Generator().manual_seed(seed)
        model = self.ema.model
        if self.config.objective != "flow":
            model = as_eps_model(model, self.schedule, self.config.objective)
        if self.condition is not None:  # conditioned on the first n training images (e.g. their low-res copies)
            first = self.images[:n] if isinstance(self.images, torch.Tensor) else torch.stack(
                [self.images[i] for i in range(n)])  # fmt: skip
            model = conditioned(model, self.condition(first.to(self.device)))
        if self.config.objective == "flow":
            x = sample_flow(model, shape, self.config.sample_steps, y=y, generator=generator, device=self.device)
        else:
            x = sample_ddim(model, self.schedule, shape, self.config.sample_steps, y=y, generator=generator,
                            device=self.device)  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            nrow = cfg.num_classes or int(math.sqrt(n))
            torchvision.utils.save_image((x.float().cpu() + 1) / 2, path, nrow=nrow, padding=1)
        return x

    def _budget_spent(self) -> float | None:
        """The share of the wall-clock budget spent, 0 to 1, or None when the run has no budget (``minutes`` 0)."""
        return min(1.0, self.seconds / (60.0 * self.config.minutes)) if self.config.minutes else None

    def _done(self) -> bool:
        spent = self._budget_spent()
        return self.step >= self.config.steps or (spent is not None and spent >= 1.0)

    def train(self) -> Trainer:
        """Run until ``config.steps``, or until ``config.minutes`` of wall-clock time (over every resume) when it
        is set, whichever comes first; the learning rate's cosine decay then follows the minutes. SIGINT/SIGTERM
        stop it after the current step with a checkpoint."""
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        budgeted = cfg.minutes > 0
        total = None if budgeted and cfg.steps >= 10**8 else cfg.steps  # an open step count: the bar counts up
        bar = progress(total=total, initial=self.step, disable=not self.progress, desc="train")
        window, t0, images_per_step = [], time.perf_counter(), cfg.batch_size * cfg.grad_accum
        clock = TimeEstimate("training", 0 if budgeted else cfg.steps - self.step, unit="step")  # for a long run
        with StopOnSignal() as stop, bar:
            while not self._done() and not self.world.any(stop.name is not None):
                started = time.perf_counter()
                window.append(self.train_step(self._budget_spent()))
                if self.world.is_main:
                    clock.tick()
                speed = len(window) * images_per_step / (time.perf_counter() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{window[-1]:.4f}", img_s=f"{speed:.0f}")
                finished = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or finished:
                    if self.world.is_main:  # rank 0 alone writes files; every rank holds the same weights
                        self._log(sum(window) / len(window), speed)
                    window, t0 = [], time.perf_counter()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.world.is_main:
                    self.sample_grid(self.out_dir / "samples" / f"step_{self.step:06d}.png")
                # the budget's clock: every process adds the same (the slowest one's) time, so all stop together
                self.seconds += self.world.max(time.perf_counter() - started)
                if self.step % cfg.checkpoint_every == 0 or self._done():
                    if window and self._done() and self.world.is_main:  # the last lines of a budgeted run
                        self._log(sum(window) / len(window), speed)
                        window = []
                    self._checkpoint_on_main()
            if not self._done():  # stopped early: a signal reached this process or another one
                self.interrupted = stop.name
                if self.last_checkpoint_step != self.step:
                    self._checkpoint_on_main()
                if self.world.is_main:
                    print(f"\n{self.interrupted or 'stopped'}: checkpoint at step {self.step} written to "
                          f"{self.out_dir}; continue with resume=True (--resume)")  # fmt: skip
        return self

    def _log(self, loss: float, images_per_s: float) -> None:
        self.log.append(
            {
                "step": self.step,
                "loss": loss,
                "lr": self.lr_at(self.step - 1, self._budget_spent()),
                "images_per_s": images_per_s,
            }  # fmt: skip
        )

    def read_log(self) -> list[dict]:
        """The run's log.jsonl: one dict per logged step (step, mean loss, lr, images/s)."""
        return self.log.read()
