"""One training step of lesson 04's FULL recipe (the shipped eps model's: min-SNR weights, batch 64, AdamW at
2e-3, EMA, gradient clipping, mixed precision on CUDA) on this machine's device: milliseconds and images per
second over ``--steps`` steps after 30 of warm-up, then, on CUDA, how many GPU kernels a step launches and how long
they run together (the profiler's device times over 10 steps), beside the wall time. Where the kernels' time is a
small part of the wall time, the step is bound by launching them, not by the GPU's arithmetic.

    python benchmarks/gpu_step.py --batch 64 256
    python benchmarks/gpu_step.py --batch 64 --compile      # torch.compile (its first steps compile)

Prints one block per batch size, and the profiler's table of the operators with the most CPU time.
"""

import argparse
import platform
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ddpm_lessons.data import load_mnist
from ddpm_lessons.training import TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, nargs="+", default=[64])
p.add_argument("--steps", type=int, default=100, help="timed steps (after 30 of warm-up)")
p.add_argument("--compile", action="store_true", help="TrainConfig(compile=True); no profile then")
args = p.parse_args()

x, y = load_mnist("train", source="bundled")
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
name = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()} CPU"
print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


for batch in args.batch:
    recipe = TrainConfig(  # lesson 04, section 4 (its FULL run), without checkpoints
        steps=10**6,
        loss_weighting="min-snr",
        batch_size=batch,
        lr=2e-3,
        lr_decay="cosine",
        warmup_steps=200,
        ema_decay=0.999,
        checkpoint_every=10**9,
        seed=0,
        compile=args.compile,
    )
    trainer = Trainer(UNetConfig(num_classes=10), recipe, x, tempfile.mkdtemp(), labels=y, progress=False)
    start = time.perf_counter()
    for _ in range(30):
        trainer.train_step()
    sync()
    print(f"batch {batch}, compile {args.compile}: first 30 steps {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    sync()
    wall = (time.perf_counter() - start) / args.steps
    print(f"batch {batch}, compile {args.compile}: {1000 * wall:.1f} ms per step, {batch / wall:.0f} images/s")
    if args.compile:
        continue
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(10):
            trainer.train_step()
        sync()
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        busy_ms = sum(e.device_time if hasattr(e, "device_time") else e.cuda_time for e in kernels) / 1000 / 10
        print(
            f"batch {batch}: {len(kernels) / 10:.0f} GPU kernels per step, running {busy_ms:.1f} ms of the step's "
            f"{1000 * wall:.1f} ms ({busy_ms / (1000 * wall):.0%})"
        )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
