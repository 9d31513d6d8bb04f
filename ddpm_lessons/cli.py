"""The command line: ``python -m ddpm_lessons {doctor,train,sample,evaluate}`` (or ``ddpm-lessons ...``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import numpy as np
import torch


def cmd_doctor(args) -> int:
    from ddpm_lessons.doctor import run_doctor

    return run_doctor()


class UsageError(ValueError):
    """Options that do not fit together or do not fit the data; ``main`` prints it and exits with status 2."""


def _load_training_data(args):
    from ddpm_lessons.data import ImageFolder, load_fashion_mnist, load_mnist

    if args.dataset == "mnist":
        return (*load_mnist("train", source=args.source), 1, 28)
    if args.dataset == "fashion-mnist":
        return (*load_fashion_mnist("train"), 1, 28)
    if args.data is None:
        raise UsageError("train --dataset folder needs --data DIR, the folder that holds your images")
    if args.conditional:
        raise UsageError("--conditional needs labels; an image folder has none. Drop --conditional.")
    ds = ImageFolder(args.data, image_size=args.image_size, channels=args.channels, flip=args.flip)
    return ds, None, args.channels, args.image_size


def _super_resolution(low_size: int | None, image_size: int) -> dict:
    """Trainer arguments for an SR3 model: the condition is the bicubic upsampling of a low_size copy."""
    if not low_size:
        return {}
    if not 0 < low_size < image_size or image_size % low_size:
        raise UsageError(
            f"--super-resolution {low_size}: the low resolution must divide the image size {image_size} and be "
            f"smaller (for 28x28 digits: 7 or 14)"
        )
    from ddpm_lessons.superres import sr_condition

    return {"condition": sr_condition(low_size), "condition_record": {"kind": "super_resolution", "low_size": low_size}}


def cmd_train(args) -> int:
    from ddpm_lessons.schedules import ScheduleConfig
    from ddpm_lessons.solvers import SamplingConfig, default_sampling
    from ddpm_lessons.training import DIGITS_RECIPE, TrainConfig, Trainer, TrainingDiverged
    from ddpm_lessons.unet import UNetConfig

    images, labels, channels, size = _load_training_data(args)
    _fill_from_recipe(args)
    model_config = UNetConfig(
        image_size=size,
        in_channels=channels,
        base_channels=args.base_channels,
        channel_mults=tuple(args.channel_mults),
        num_res_blocks=args.num_res_blocks,
        attention_resolutions=tuple(args.attention),
        dropout=args.dropout,
        scale_shift=args.embedding == SWITCHES["embedding"][1],
        zero_init_residual=args.residual_init == SWITCHES["residual_init"][1],
        num_classes=10 if args.conditional else None,
        cond_channels=channels if args.super_resolution else 0,
    )
    if args.steps is None:  # a budget alone runs for its minutes; neither: TrainConfig's step count
        args.steps = 10**9 if args.minutes else TrainConfig.steps
    train_config = TrainConfig(
        steps=args.steps,
        minutes=args.minutes or 0.0,
        objective=args.objective,
        loss_weighting=args.loss_weighting,
        min_snr_gamma=args.min_snr_gamma,
        flow_time=args.flow_time,
        flow_time_loc=args.flow_time_loc,
        cpu_bf16=args.precision == "bf16",
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup,
        lr_decay=args.lr_decay,
        ema_decay=args.ema_decay,
        adam_beta2=args.adam_beta2,
        label_dropout=args.label_dropout,
        amp=not args.no_amp,
        compile=args.compile,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        seed=args.seed,
        device=args.device,
    )
    schedule_config = ScheduleConfig(kind=args.schedule, T=args.T)
    sampling = default_sampling(args.objective)
    if args.recipe and args.objective == DIGITS_RECIPE["train"].get("objective", "eps"):  # the recipe's measured one
        sampling = SamplingConfig(**DIGITS_RECIPE["sampling"])
    sampling = SamplingConfig(args.sampler or sampling.sampler, args.sampling_steps or sampling.steps,
                              sampling.guidance if args.guidance is None else args.guidance,
                              sampling.shift if args.sampling_shift is None else args.sampling_shift)  # fmt: skip
    trainer = Trainer(  # refuses a sampler or shift that does not fit the objective before it writes anything
        model_config,
        train_config,
        images,
        args.out,
        labels=labels,
        schedule_config=schedule_config,
        resume=args.resume,
        progress=not args.no_progress,
        sampling=sampling,
        **_super_resolution(args.super_resolution, size),
    )
    if trainer._done():
        trainer.world.close()
        print(f"{args.out} is already at step {trainer.step} after {trainer.seconds / 60:.1f} min (--steps "
              f"{args.steps}, --minutes {args.minutes or 0:g}); raise them to train more")  # fmt: skip
        return 0
    diverged = None
    try:
        trainer.train()
    except TrainingDiverged as err:
        diverged = err
    trainer.world.close()  # every rank gets here together: they share the loss and the signal to stop
    if diverged is not None:
        print(f"error: {diverged}", file=sys.stderr)
        return 2
    if trainer.interrupted:
        return 128 + int(getattr(signal, trainer.interrupted))
    log = trainer.read_log()
    speed = sorted(line["images_per_s"] for line in log)[len(log) // 2] if log else float("nan")
    loss = f", loss {log[-1]['loss']:.4f} (its last log line)" if log else ""
    print(f"done: step {trainer.step} in {trainer.seconds / 60:.1f} min ({speed:.0f} images/s median){loss}, "
          f"objective {train_config.objective}; model in {Path(args.out) / 'model.safetensors'}")  # fmt: skip
    return 0


# `train` options the MNIST recipe sets when they are not given: option dest -> (recipe part, field).
RECIPE_OPTIONS = {
    "objective": ("train", "objective"),
    "loss_weighting": ("train", "loss_weighting"),
    "min_snr_gamma": ("train", "min_snr_gamma"),
    "flow_time": ("train", "flow_time"),
    "flow_time_loc": ("train", "flow_time_loc"),
    "precision": ("train", "cpu_bf16"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "lr_decay": ("train", "lr_decay"),
    "warmup": ("train", "warmup_steps"),
    "ema_decay": ("train", "ema_decay"),
    "adam_beta2": ("train", "adam_beta2"),
    "base_channels": ("model", "base_channels"),
    "channel_mults": ("model", "channel_mults"),
    "num_res_blocks": ("model", "num_res_blocks"),
    "attention": ("model", "attention_resolutions"),
    "dropout": ("model", "dropout"),
    "embedding": ("model", "scale_shift"),
    "residual_init": ("model", "zero_init_residual"),
}
# The recipe options that switch a UNetConfig flag, named on the command line: dest -> (name when off, name when on).
SWITCHES = {"embedding": ("add", "scale-shift"), "residual_init": ("default", "zero")}


def _fill_from_recipe(args) -> None:
    """Every recipe option not given on the command line: with --resume, from the run's own record (so a run goes on
    as it started, whatever the recipe is now); else from the digits recipe (training.DIGITS_RECIPE) for --dataset
    mnist or fashion-mnist (not an SR3 model), and from TrainConfig's and UNetConfig's defaults otherwise."""
    from ddpm_lessons.training import DIGITS_RECIPE, TrainConfig
    from ddpm_lessons.unet import UNetConfig

    args.recipe = args.dataset in ("mnist", "fashion-mnist") and not args.super_resolution
    defaults = {"train": vars(TrainConfig()), "model": vars(UNetConfig())}
    record_path = Path(args.out) / "checkpoint.json"
    started = None
    if args.resume and record_path.is_file():
        try:
            started = json.loads(record_path.read_text())
        except (OSError, ValueError):  # unreadable: the trainer names the problem when it reads the checkpoint
            pass
    for dest, (part, field) in RECIPE_OPTIONS.items():
        if getattr(args, dest) is None:
            if started is not None:  # a field the record predates: TrainConfig's default, which that run used
                setattr(args, dest, started.get(part, {}).get(field, defaults[part][field]))
                continue
            recipe = DIGITS_RECIPE[part] if args.recipe else {}
            setattr(args, dest, recipe.get(field, defaults[part][field]))
    for dest, names in SWITCHES.items():  # a flag from the recipe, the record or the defaults: its name
        if isinstance(getattr(args, dest), bool):
            setattr(args, dest, names[int(getattr(args, dest))])
    if isinstance(args.precision, bool):  # TrainConfig.cpu_bf16, from the recipe or the defaults
        from ddpm_lessons.solvers import native_bf16
        from ddpm_lessons.utils import get_device

        # the recipe's bfloat16 only where the CPU computes it natively: emulated, it would be slower than float32
        args.precision = "bf16" if args.precision and native_bf16(get_device(args.device)) else "fp32"


def _labels_for(spec: str | None, n: int, num_classes: int | None) -> torch.Tensor | None:
    if spec is None:
        return torch.arange(n) % num_classes if num_classes else None
    if not num_classes:
        raise UsageError("--labels needs a class-conditional model; this checkpoint has none")
    if spec == "balanced":
        return torch.arange(n) % num_classes
    if spec == "none":
        return None
    if spec.isdigit() and int(spec) < num_classes:
        return torch.full((n,), int(spec))
    raise UsageError(f"--labels must be 'balanced', 'none' or a digit 0..{num_classes - 1}, got {spec!r}")


def cmd_sample(args) -> int:
    from ddpm_lessons.checkpoints import load_model
    from ddpm_lessons.data import to_uint8
    from ddpm_lessons.objectives import objective_of
    from ddpm_lessons.solvers import SAMPLERS_FOR, check_sampler, check_shift, native_bf16, sample_in_batches
    from ddpm_lessons.utils import get_device

    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must end in .npz, got {out}")
    device = get_device(args.device)
    model, schedule, record = load_model(args.checkpoint, device=device)
    objective = objective_of(record)
    saved = record.get("sampling")  # the setting the model's recipe was measured with, if the record has one
    if saved is None:  # a record older than the field: DDIM-50 (Euler-50 for a flow model), no guidance
        saved = {"sampler": SAMPLERS_FOR[objective][1 if objective != "flow" else 0], "steps": 50, "guidance": 0.0}
    saved = {"shift": 1.0, **saved}  # a record older than the shift: an even grid
    told = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "shift": args.shift}
    if objective != "flow" and args.shift is None:
        told.pop("shift")  # only a flow model has a grid of flow times to shift
    setting = {key: saved[key] if value is None else value for key, value in told.items()}
    args.sampler, args.steps, args.guidance = setting["sampler"], setting["steps"], setting["guidance"]
    args.shift = setting.get("shift", 1.0)
    untold = [key for key, value in told.items() if value is None]
    if untold and not args.no_progress:
        shifted = "" if objective != "flow" else (f", flow times shifted by {args.shift:g}" if args.shift != 1.0
                                                  else ", an even grid of flow times")  # fmt: skip
        print(f"sampling with {args.sampler}, {args.steps} model evaluations, guidance {args.guidance:g}{shifted} "
              f"({', '.join(untold)} from the checkpoint's record; override with --{' --'.join(untold)})")  # fmt: skip
    if args.precision == "auto":
        args.precision = "bf16" if native_bf16(device) else "fp32"
        if args.precision == "bf16" and not args.no_progress:
            print("the network runs in bfloat16: this CPU computes it natively, up to three times as fast as float32 "
                  "at the same measured quality (--precision fp32 for float32)")  # fmt: skip
    check_sampler(args.sampler, objective)  # before any work: a sampler that does not fit names the ones that do
    check_shift(args.shift, objective)
    cfg = model.config
    if cfg.cond_channels:
        raise UsageError(
            f"{args.checkpoint} is a model conditioned on an image ({record.get('condition', 'cond_channels')}); "
            "`sample` draws from unconditioned models. Sample it in Python with superres.conditioned(model, "
            "cond), as notebooks/07_inpainting_and_super_resolution.ipynb does."
        )
    labels = _labels_for(args.labels, args.n, cfg.num_classes)
    x = sample_in_batches(
        model,
        schedule,
        args.n,
        (cfg.in_channels, cfg.image_size, cfg.image_size),
        labels=labels,
        batch_size=args.batch_size,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        guidance=args.guidance,
        generator=torch.Generator().manual_seed(args.seed),
        device=device,
        progress=not args.no_progress,
        objective=objective,
        precision=args.precision,
        shift=args.shift,
        spacing=args.spacing,
    )
    images = to_uint8(x)
    if cfg.in_channels == 1:
        images = images[:, 0]  # (N, H, W)
    arrays = {"images": images}
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {len(images)} samples to {out}")
    if args.grid:
        import torchvision.utils

        grid = torch.as_tensor(images[:100]).float() / 255
        grid = grid.unsqueeze(1) if grid.ndim == 3 else grid
        torchvision.utils.save_image(grid, args.grid, nrow=10, padding=1)
        print(f"wrote a grid of {len(grid)} to {args.grid}")
    return 0


# Below this many samples the Frechet distance of the classifier's 64 features is mostly sampling noise.
MIN_SAMPLES_FOR_DISTANCE = 500


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The images (N, 28, 28) uint8 and labels (N,) int of a samples file, checked on the way in."""
    if not path.exists():
        raise FileNotFoundError(f"no samples at {path}; make them with `python -m ddpm_lessons sample --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except Exception as err:
        raise ValueError(
            f"cannot read {path} ({type(err).__name__}); it is not an .npz file, or it is truncated. "
            "Write it with `python -m ddpm_lessons sample --out FILE.npz`"
        ) from None
    if "images" not in arrays:
        raise ValueError(
            f"{path} has no 'images' array (it has {sorted(arrays) or 'none'}); it was not written by `sample`"
        )
    images, labels = arrays["images"], arrays.get("labels")
    if images.dtype != np.uint8:
        raise ValueError(
            f"{path}: images are {images.dtype}, expected uint8 pixels 0..255 as `sample` writes them; convert floats "
            "in [-1, 1] with ddpm_lessons.data.to_uint8"
        )
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) < 2:
        raise ValueError(f"{path}: images have shape {images.shape}; the MNIST metrics need (N, 28, 28) with N >= 2")
    if labels is not None:
        if labels.shape != (len(images),) or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
            raise ValueError(
                f"{path}: labels must be {len(images)} whole numbers 0..9, one per image; got {labels.dtype} of shape "
                f"{labels.shape}. Drop the 'labels' array to score unconditional samples"
            )
    return images, labels


def cmd_evaluate(args) -> int:
    from ddpm_lessons.metrics import evaluate_samples

    images, labels = read_samples(Path(args.samples))
    result = evaluate_samples(images, labels, seed=args.seed, floor_draws=args.floor_draws)
    print(json.dumps(result, indent=2))
    if len(images) < MIN_SAMPLES_FOR_DISTANCE:
        floor, spread = result["frechet_distance_real_vs_real"], result["frechet_distance_real_vs_real_sd"]
        print(
            f"note: with {len(images)} samples the Frechet distance is mostly noise (real digits against real digits "
            f"already give {floor:.1f} +- {spread:.1f} here); compare models with at least "
            f"{MIN_SAMPLES_FOR_DISTANCE} samples (the course uses 2,000)",
            file=sys.stderr,
        )
    return 0


# ---- argument types: each names the problem and the fix; argparse adds the argument's name and exits 2 ----
def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count or a size: 1 or more."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A count where 0 means "none" (warm-up steps, sample grids)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A weight: 0 or more (guidance w, eta)."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def fraction(text: str) -> float:
    """A rate in [0, 1): dropout, label dropout, EMA decay, AdamW's beta2."""
    value = _real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value:g}")
    return value


def grid_spec(text: str) -> str | tuple[int, ...]:
    """A solver's grid (solvers.parse_grid), checked against the sampler and the schedule when the model is loaded."""
    from ddpm_lessons.solvers import parse_grid

    try:
        return parse_grid(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The parser. Defaults and choices come from the package (TrainConfig, UNetConfig, ScheduleConfig,
    the schedule kinds), so the command line and Python agree."""
    from ddpm_lessons.flow import FLOW_TIMES
    from ddpm_lessons.objectives import LOSS_WEIGHTINGS, OBJECTIVES
    from ddpm_lessons.schedules import SCHEDULE_KINDS, ScheduleConfig
    from ddpm_lessons.solvers import PRECISIONS, SAMPLERS
    from ddpm_lessons.training import LR_DECAYS, TrainConfig

    train_defaults, schedule_defaults = TrainConfig(), ScheduleConfig()
    p = argparse.ArgumentParser(prog="ddpm-lessons", description="Train, sample and measure DDPMs.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("doctor", help="check Python, torch, device and data, and say how to fix what is missing")

    t = sub.add_parser(
        "train",
        help="train a U-Net (Algorithm 1), with checkpoints and --resume",
        description="With --dataset mnist or fashion-mnist, every option of the network and the optimiser that is not "
        "given comes from the project's recipe for digits (training.DIGITS_RECIPE, measured in benchmarks/README.md); "
        "with --dataset folder or --super-resolution, from TrainConfig's and UNetConfig's defaults.",
    )
    t.add_argument("--dataset", choices=["mnist", "fashion-mnist", "folder"], default="mnist")
    t.add_argument("--data", type=Path, help="image folder for --dataset folder")
    t.add_argument("--image-size", type=positive_int, default=64, help="for --dataset folder")
    t.add_argument("--channels", type=int, choices=[1, 3], default=3, help="for --dataset folder")
    t.add_argument("--flip", action="store_true", help="random horizontal flips (folder)")
    t.add_argument("--source", default="auto", choices=["auto", "bundled", "torchvision"], help="MNIST source")
    t.add_argument("--conditional", action="store_true", help="class-conditional with label dropout")
    t.add_argument(
        "--super-resolution",
        type=positive_int,
        metavar="LOW",
        help="an SR3 model: condition on the image downsampled to LOW x LOW and upsampled (e.g. 7 for 28x28)",
    )
    t.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"optimiser steps (default {train_defaults.steps}; with --minutes alone, until the budget)",
    )
    t.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="a wall-clock budget: train this many minutes (over every --resume); --lr-decay follows it",
    )
    t.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="what the network predicts: eps (Ho et al.), x0, v, or flow (flow matching's velocity)",
    )
    t.add_argument(
        "--loss-weighting",
        choices=LOSS_WEIGHTINGS,
        default=None,
        help="none: L_simple; min-snr: min-SNR-gamma (Hang et al. 2023), for eps, x0 and v",
    )
    t.add_argument("--min-snr-gamma", type=positive_float, default=None, help="the gamma of min-snr (default 5)")
    t.add_argument(
        "--flow-time",
        choices=FLOW_TIMES,
        default=None,
        help="how --objective flow draws its times: uniform, or logit-normal (Esser et al. 2024)",
    )
    t.add_argument(
        "--flow-time-loc",
        type=_real,
        default=None,
        help="the logit-normal's location: > 0 draws more training times near the noise (default 0)",
    )
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="bf16: the training forward pass in bfloat16 on a CPU (on CUDA mixed precision is on unless --no-amp); "
        "default: the recipe's bf16 on a CPU that computes it natively (AVX512-BF16 or AMX), else fp32",
    )
    t.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="the sampling setting the record carries for `sample` (default: dpmpp-2m, or heun for flow)",
    )
    t.add_argument("--sampling-steps", type=positive_int, default=None, help="its model evaluations (default 10)")
    t.add_argument("--guidance", type=nonnegative_float, default=None, help="its guidance weight (default 0)")
    t.add_argument(
        "--sampling-shift",
        type=positive_float,
        default=None,
        help="for a flow model, its grid of flow times moved towards the noise by this factor (default: the "
        "recipe's on digits with the flow objective, training.DIGITS_RECIPE; else 1: even)",
    )
    t.add_argument("--batch-size", type=positive_int, default=None)
    t.add_argument("--grad-accum", type=positive_int, default=train_defaults.grad_accum)
    t.add_argument("--lr", type=positive_float, default=None)
    t.add_argument("--warmup", type=nonnegative_int, default=None)
    t.add_argument(
        "--lr-decay",
        choices=LR_DECAYS,
        default=None,
        help="cosine: to 0 at --steps, or at --minutes",
    )
    t.add_argument(
        "--ema-decay",
        type=fraction,
        default=None,
        help="the EMA's decay d (default: 0.999 on digits, else 0.9999); its warm-up, min(d, (1 + step) / (10 + "
        "step)), reaches d at step (10 d - 1) / (1 - d), 8,990 for 0.999: before that the warm-up sets the average, "
        "whose mean age is about a tenth of the steps",
    )
    t.add_argument(
        "--adam-beta2",
        type=fraction,
        default=None,
        help="AdamW's second-moment decay; its betas are (0.9, this) (default 0.999, PyTorch's, the recipe's too)",
    )
    t.add_argument("--label-dropout", type=fraction, default=train_defaults.label_dropout)
    t.add_argument("--base-channels", type=positive_int, default=None)
    t.add_argument("--channel-mults", type=positive_int, nargs="+", default=None)
    t.add_argument("--num-res-blocks", type=positive_int, default=None)
    t.add_argument(
        "--attention",
        type=positive_int,
        nargs="*",
        default=None,
        help="resolutions with self-attention",
    )
    t.add_argument("--dropout", type=fraction, default=None)
    t.add_argument(
        "--embedding",
        choices=SWITCHES["embedding"],
        default=None,
        help="how the time (and class) embedding enters each residual block: added to its features (Ho et al.), or "
        "as a scale and a shift of its second GroupNorm's output (AdaGN, Dhariwal & Nichol 2021)",
    )
    t.add_argument(
        "--residual-init",
        choices=SWITCHES["residual_init"],
        default=None,
        help="zero: each residual block's last convolution and each attention's output projection start at zero, so "
        "that every block starts as its skip path (the code of Ho et al. 2020); default: PyTorch's initialisation "
        "for them too (the recipe's on digits)",
    )
    t.add_argument("--schedule", default=schedule_defaults.kind, choices=SCHEDULE_KINDS)
    t.add_argument("--T", type=positive_int, default=schedule_defaults.T)
    t.add_argument("--checkpoint-every", type=positive_int, default=train_defaults.checkpoint_every)
    t.add_argument("--sample-every", type=nonnegative_int, default=train_defaults.sample_every, help="0: never")
    t.add_argument("--seed", type=nonnegative_int, default=train_defaults.seed)
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--device", default=train_defaults.device)
    t.add_argument("--no-amp", action="store_true")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("sample", help="draw samples from a checkpoint into an .npz")
    s.add_argument("--checkpoint", required=True, type=Path, help=".safetensors or checkpoint.pt")
    s.add_argument("--n", type=positive_int, default=100)
    s.add_argument("--labels", default=None, help="balanced (default for conditional models), none, or a digit")
    s.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="default: the checkpoint record's; the model's objective decides which fit",
    )
    s.add_argument(
        "--steps", type=positive_int, default=None, help="model evaluations (all but ddpm); default: the record's"
    )
    s.add_argument("--eta", type=nonnegative_float, default=0.0)
    s.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="bf16: the network in bfloat16 (up to three times as fast on CPUs with AVX512-BF16 or AMX, slower on "
        "others); auto: bf16 on such a CPU, else fp32",
    )
    s.add_argument("--guidance", type=nonnegative_float, default=None, help="default: the checkpoint record's")
    s.add_argument(
        "--shift",
        type=positive_float,
        default=None,
        help="a flow model's grid of flow times moved towards the noise by this factor (1: even); default: the "
        "checkpoint record's",
    )
    s.add_argument(
        "--spacing",
        type=grid_spec,
        default=None,
        help="the grid of timesteps of dpmpp-2m, unipc and heun: time, logsnr or karras, or the timesteps "
        "themselves, largest first, as 999,701,441,229,100 (one per model evaluation of dpmpp-2m and unipc); "
        "default: the sampler's (time; karras for heun)",
    )
    s.add_argument("--seed", type=nonnegative_int, default=0)
    s.add_argument(
        "--batch-size", type=positive_int, default=50, help="images per sampling batch (CPUs are fastest near 50)"
    )
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--grid", type=Path)
    s.add_argument("--device", default=None)
    s.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="conditional accuracy and Frechet distance of samples, as JSON")
    e.add_argument("--samples", required=True, type=Path)
    e.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the first draw of real digits for the floor"
    )
    e.add_argument(
        "--floor-draws", type=positive_int, default=10, help="draws of n real digits averaged into the floor"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"doctor": cmd_doctor, "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}
    try:
        return handler[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # bad input; ConfigMismatch is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
