"""The command line: ``python -m ddpm_lessons {doctor,train,sample,evaluate}`` (or ``ddpm-lessons ...``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import signal
import sys
from pathlib import Path

import numpy as np
import torch


def cmd_doctor(args) -> int:
    from ddpm_lessons import __version__
    from ddpm_lessons.checkpoints import (
        PRETRAINED_AUTOENCODER,
        PRETRAINED_LATENT_TEXT,
        PRETRAINED_MNIST,
        PRETRAINED_SR7,
    )
    from ddpm_lessons.data import BUNDLED_MNIST, DEBIAN_FASHION_MNIST
    from ddpm_lessons.metrics import CLASSIFIER_PATH
    from ddpm_lessons.utils import PROFILE_ENV, get_device, is_offline, profile_and_reason

    problems = 0

    def shown(path: Path) -> str:  # relative to the course, so the output says the same on every machine
        root = BUNDLED_MNIST.parent.parent
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def line(ok: bool | None, what: str, fix: str = "") -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "FIX ", None: "note"}[ok]
        problems += ok is False
        print(f"[{mark}] {what}" + (f"\n       -> {fix}" if fix and ok is not True else ""))

    py_ok = sys.version_info >= (3, 10)
    line(py_ok, f"Python {platform.python_version()}", "install Python 3.10 or newer")
    line(True, f"ddpm_lessons {__version__}, torch {torch.__version__}")
    device = get_device()
    line(
        True if device.type == "cuda" else None,
        f"device: {device}",
        "no CUDA GPU: training runs on this device; on Colab choose Runtime > Change runtime type > GPU",
    )
    line(
        BUNDLED_MNIST.exists(),
        f"bundled MNIST sample: {shown(BUNDLED_MNIST)}",
        "it ships with the repository: install from a clone (pip install -e .)",
    )
    line(
        CLASSIFIER_PATH.exists(),
        f"metrics classifier: {shown(CLASSIFIER_PATH)}",
        "python benchmarks/train_classifier.py",
    )
    for path, what in (
        (PRETRAINED_MNIST, "pretrained MNIST model (lessons 04-07, the demo)"),
        (PRETRAINED_SR7, "super-resolution model (lesson 07)"),
        (PRETRAINED_AUTOENCODER, "autoencoder (lesson 08)"),
        (PRETRAINED_LATENT_TEXT, "latent text model (lesson 08)"),
    ):
        line(
            path.exists(),
            f"{what}: {shown(path)}",
            "it ships with the repository: install from a clone; data/checkpoints/README.md says how to retrain it",
        )
    full = (BUNDLED_MNIST.parent / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    line(
        True if full else None,
        "full MNIST on disk" if full else "full MNIST not downloaded",
        "optional: load_mnist(source='torchvision') downloads it where the network allows",
    )
    fashion = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
    fashion_what = "Fashion-MNIST installed (Debian's dataset-fashion-mnist)" if fashion else "Fashion-MNIST missing"
    line(True if fashion else None, fashion_what, "optional: sudo apt-get install dataset-fashion-mnist")
    for module, extra in (
        ("matplotlib", "notebooks"),
        ("ipywidgets", "notebooks"),
        ("jupyterlab", "notebooks"),
    ):
        found = importlib.util.find_spec(module) is not None
        line(found, f"{module} {'installed' if found else 'missing'}", f'pip install -e ".[{extra}]"')
    profile, why = profile_and_reason()
    other = "full" if profile == "fast" else "fast"
    line(
        None,
        f"profile: {profile.upper()} ({why}); offline: {is_offline()}",
        f"to change: {PROFILE_ENV}={other} in the environment, or use_profile({other!r}) in a notebook",
    )
    print("all good" if problems == 0 else f"{problems} thing(s) to fix, see above")
    return 1 if problems else 0


def _load_training_data(args):
    from ddpm_lessons.data import ImageFolder, load_fashion_mnist, load_mnist

    if args.dataset == "mnist":
        return (*load_mnist("train", source=args.source), 1, 28)
    if args.dataset == "fashion-mnist":
        return (*load_fashion_mnist("train"), 1, 28)
    if args.data is None:
        raise SystemExit("train --dataset folder needs --data DIR, the folder that holds your images")
    if args.conditional:
        raise SystemExit("--conditional needs labels; an image folder has none. Drop --conditional.")
    ds = ImageFolder(args.data, image_size=args.image_size, channels=args.channels, flip=args.flip)
    return ds, None, args.channels, args.image_size


def _super_resolution(low_size: int | None, image_size: int) -> dict:
    """Trainer arguments for an SR3 model: the condition is the bicubic upsampling of a low_size copy."""
    if not low_size:
        return {}
    if not 0 < low_size < image_size or image_size % low_size:
        raise SystemExit(
            f"--super-resolution {low_size}: the low resolution must divide the image size {image_size} and be "
            f"smaller (for 28x28 digits: 7 or 14)"
        )
    from ddpm_lessons.superres import sr_condition

    return {"condition": sr_condition(low_size), "condition_record": {"kind": "super_resolution", "low_size": low_size}}


def cmd_train(args) -> int:
    from ddpm_lessons.checkpoints import ScheduleConfig
    from ddpm_lessons.training import TrainConfig, Trainer, TrainingDiverged
    from ddpm_lessons.unet import UNetConfig

    images, labels, channels, size = _load_training_data(args)
    model_config = UNetConfig(
        image_size=size,
        in_channels=channels,
        base_channels=args.base_channels,
        channel_mults=tuple(args.channel_mults),
        num_res_blocks=args.num_res_blocks,
        attention_resolutions=tuple(args.attention),
        dropout=args.dropout,
        num_classes=10 if args.conditional else None,
        cond_channels=channels if args.super_resolution else 0,
    )
    train_config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup,
        lr_decay=args.lr_decay,
        ema_decay=args.ema_decay,
        label_dropout=args.label_dropout,
        amp=not args.no_amp,
        compile=args.compile,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        seed=args.seed,
        device=args.device,
    )
    schedule_config = ScheduleConfig(kind=args.schedule, T=args.T)
    trainer = Trainer(
        model_config,
        train_config,
        images,
        args.out,
        labels=labels,
        schedule_config=schedule_config,
        resume=args.resume,
        progress=not args.no_progress,
        **_super_resolution(args.super_resolution, size),
    )
    if trainer.step >= args.steps:
        print(f"{args.out} is already at step {trainer.step} >= --steps {args.steps}; raise --steps to train more")
        return 0
    try:
        trainer.train()
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if trainer.interrupted:
        return 128 + int(getattr(signal, trainer.interrupted))
    print(f"done: step {trainer.step}, model in {Path(args.out) / 'model.safetensors'}")
    return 0


def _labels_for(spec: str | None, n: int, num_classes: int | None) -> torch.Tensor | None:
    if spec is None:
        return torch.arange(n) % num_classes if num_classes else None
    if not num_classes:
        raise SystemExit("--labels needs a class-conditional model; this checkpoint has none")
    if spec == "balanced":
        return torch.arange(n) % num_classes
    if spec == "none":
        return None
    if spec.isdigit() and int(spec) < num_classes:
        return torch.full((n,), int(spec))
    raise SystemExit(f"--labels must be 'balanced', 'none' or a digit 0..{num_classes - 1}, got {spec!r}")


def cmd_sample(args) -> int:
    from ddpm_lessons.checkpoints import load_model
    from ddpm_lessons.data import to_uint8
    from ddpm_lessons.samplers import sample_ddim, sample_ddpm
    from ddpm_lessons.utils import get_device

    out = Path(args.out)
    if out.suffix != ".npz":
        raise SystemExit(f"--out must end in .npz, got {out}")
    device = get_device(args.device)
    model, schedule, record = load_model(args.checkpoint, device=device)
    cfg = model.config
    if cfg.cond_channels:
        raise SystemExit(
            f"{args.checkpoint} is a model conditioned on an image ({record.get('condition', 'cond_channels')}); "
            "`sample` draws from unconditioned models. Sample it in Python with superres.conditioned(model, "
            "cond), as notebooks/07_inpainting_and_super_resolution.ipynb does."
        )
    labels = _labels_for(args.labels, args.n, cfg.num_classes)
    generator = torch.Generator().manual_seed(args.seed)
    chunks = []
    for start in range(0, args.n, args.batch_size):
        b = min(args.batch_size, args.n - start)
        y = None if labels is None else labels[start : start + b].to(device)
        shape = (b, cfg.in_channels, cfg.image_size, cfg.image_size)
        common = dict(y=y, guidance=args.guidance, generator=generator, device=device, progress=not args.no_progress)
        if args.sampler == "ddpm":
            x = sample_ddpm(model, schedule, shape, **common)
        else:
            x = sample_ddim(model, schedule, shape, steps=args.steps, eta=args.eta, **common)
        chunks.append(to_uint8(x))
    images = np.concatenate(chunks)
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


def cmd_evaluate(args) -> int:
    from ddpm_lessons.metrics import evaluate_samples

    path = Path(args.samples)
    if not path.exists():
        raise SystemExit(f"no samples at {path}; make them with `python -m ddpm_lessons sample --out {path}`")
    with np.load(path) as f:
        if "images" not in f:
            raise SystemExit(f"{path} has no 'images' array; it was not written by `sample`")
        images, labels = f["images"], f["labels"] if "labels" in f else None
    print(json.dumps(evaluate_samples(images, labels, seed=args.seed, floor_draws=args.floor_draws), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ddpm_lessons.training import LR_DECAYS

    p = argparse.ArgumentParser(prog="ddpm-lessons", description="Train, sample and measure DDPMs.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("doctor", help="check Python, torch, device and data, and say how to fix what is missing")

    t = sub.add_parser("train", help="train a U-Net (Algorithm 1), with checkpoints and --resume")
    t.add_argument("--dataset", choices=["mnist", "fashion-mnist", "folder"], default="mnist")
    t.add_argument("--data", type=Path, help="image folder for --dataset folder")
    t.add_argument("--image-size", type=int, default=64, help="for --dataset folder")
    t.add_argument("--channels", type=int, choices=[1, 3], default=3, help="for --dataset folder")
    t.add_argument("--flip", action="store_true", help="random horizontal flips (folder)")
    t.add_argument("--source", default="auto", choices=["auto", "bundled", "torchvision"], help="MNIST source")
    t.add_argument("--conditional", action="store_true", help="class-conditional with label dropout")
    t.add_argument(
        "--super-resolution",
        type=int,
        metavar="LOW",
        help="an SR3 model: condition on the image downsampled to LOW x LOW and upsampled (e.g. 7 for 28x28)",
    )
    t.add_argument("--steps", type=int, default=10_000)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup", type=int, default=500)
    t.add_argument("--lr-decay", choices=LR_DECAYS, default="none", help="cosine: down to 0 at --steps")
    t.add_argument("--ema-decay", type=float, default=0.9999)
    t.add_argument("--label-dropout", type=float, default=0.1)
    t.add_argument("--base-channels", type=int, default=32)
    t.add_argument("--channel-mults", type=int, nargs="+", default=[1, 2, 2])
    t.add_argument("--num-res-blocks", type=int, default=1)
    t.add_argument("--attention", type=int, nargs="*", default=[7], help="resolutions with self-attention")
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--schedule", default="linear", choices=["linear", "cosine", "quadratic", "sigmoid"])
    t.add_argument("--T", type=int, default=1000)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--sample-every", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--device", default=None)
    t.add_argument("--no-amp", action="store_true")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("sample", help="draw samples from a checkpoint into an .npz")
    s.add_argument("--checkpoint", required=True, type=Path, help=".safetensors or checkpoint.pt")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--labels", default=None, help="balanced (default for conditional models), none, or a digit")
    s.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddim")
    s.add_argument("--steps", type=int, default=50, help="DDIM steps")
    s.add_argument("--eta", type=float, default=0.0)
    s.add_argument("--guidance", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=50, help="images per sampling batch (CPUs are fastest near 50)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--grid", type=Path)
    s.add_argument("--device", default=None)
    s.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="conditional accuracy and Frechet distance of samples, as JSON")
    e.add_argument("--samples", required=True, type=Path)
    e.add_argument("--seed", type=int, default=0, help="seed of the first draw of real digits for the floor")
    e.add_argument("--floor-draws", type=int, default=10, help="draws of n real digits averaged into the floor")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"doctor": cmd_doctor, "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}
    try:
        return handler[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
