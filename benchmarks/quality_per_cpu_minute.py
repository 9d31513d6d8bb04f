"""Quality per CPU-minute: train a class-conditional MNIST model from scratch for a fixed wall-clock
budget on this machine, then draw samples with DDIM and measure them against the real-vs-real floor.

    python benchmarks/quality_per_cpu_minute.py --minutes 15 --out runs/quality15

The default recipe is the best measured one (benchmarks/README.md): a network with fewer channels
at 28x28 than the course's default (16/32/64 instead of 32/64/64: 1.9x the steps per minute), learning
rate 2e-3 decayed to 0 along a cosine over the budget, and guidance weight 0.5.

It reports conditional accuracy and the Frechet distance over the real-vs-real baseline at the same
sample count, the project's measure of quality per CPU-minute. Prints one JSON object;
the model is kept in --out (model.safetensors) so the sampling can be repeated with other settings.

A wall-clock budget also measures the hour it runs in: these shared machines' speed moves by about
1.5x from hour to hour. ``--steps N`` trains for N optimiser steps instead (the minutes it took are
printed beside them), so that recipes can be compared at the same budget whatever the hour;
``--device cuda`` runs such a search on a GPU (no GPU run is recorded in benchmarks/README.md).
"""

import argparse
import json
import platform
import sys
import time

import torch

from ddpm_lessons.checkpoints import ScheduleConfig
from ddpm_lessons.data import load_mnist, to_uint8
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.samplers import sample_ddim
from ddpm_lessons.training import LR_DECAYS, TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

p = argparse.ArgumentParser()
budget = p.add_mutually_exclusive_group()
budget.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
budget.add_argument("--steps", type=int, default=0, help="train for this many steps instead of --minutes")
p.add_argument("--n", type=int, default=2000)
p.add_argument("--ddim-steps", type=int, default=50)
p.add_argument("--guidance", type=float, nargs="+", default=[0.5])
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--lr-decay", choices=LR_DECAYS, default="cosine",
               help="cosine: from --lr down to 0 over the budget (its minutes, or its steps)")  # fmt: skip
p.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up, in steps")
p.add_argument("--ema-decay", type=float, default=0.999)
p.add_argument("--label-dropout", type=float, default=0.1)
p.add_argument("--schedule", default="linear", help="noise schedule kind (ScheduleConfig.kind)")
p.add_argument("--base-channels", type=int, default=16)
p.add_argument("--channel-mults", type=int, nargs="+", default=[1, 2, 4])
p.add_argument("--num-res-blocks", type=int, default=1)
p.add_argument("--attention", type=int, nargs="*", default=[7], help="side lengths with self-attention")
p.add_argument("--dropout", type=float, default=0.1, help="inside the residual blocks (UNetConfig.dropout)")
p.add_argument("--sample-batch", type=int, default=50, help="CPU forward passes are fastest at batch ~64-100")
p.add_argument("--device", default="cpu", help="cpu for the benchmark itself; cuda to search recipes by --steps")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="runs/quality_per_cpu_minute")
args = p.parse_args()

x, y = load_mnist("train", source="bundled")
model_config = UNetConfig(
    base_channels=args.base_channels, channel_mults=tuple(args.channel_mults), num_res_blocks=args.num_res_blocks,
    attention_resolutions=tuple(args.attention), num_classes=10, dropout=args.dropout,
)  # fmt: skip
train_config = TrainConfig(
    steps=args.steps or 10**9, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, lr_decay=args.lr_decay,
    ema_decay=args.ema_decay, label_dropout=args.label_dropout, amp=False, checkpoint_every=10**9,
    log_every=100, seed=args.seed, device=args.device,
)  # fmt: skip
trainer = Trainer(
    model_config, train_config, x, args.out, labels=y, schedule_config=ScheduleConfig(kind=args.schedule),
    progress=False,
)  # fmt: skip
start = time.perf_counter()


def spent() -> float:
    """The share of the training budget used so far, 0 to 1."""
    if args.steps:
        return trainer.step / args.steps
    return min(1.0, (time.perf_counter() - start) / (args.minutes * 60))


while spent() < 1.0:
    trainer.train_step(progress=spent())  # the learning rate decays over the budget's minutes or steps
    if trainer.step % 100 == 0:
        recent = trainer.step * args.batch_size / (time.perf_counter() - start)
        print(f"step {trainer.step}, {time.perf_counter() - start:.0f} s, {recent:.0f} images/s", flush=True)
train_seconds = time.perf_counter() - start
trainer.save_checkpoint()

results = []
labels = torch.arange(args.n) % 10
model = trainer.ema.model
for w in args.guidance:
    t0 = time.perf_counter()
    samples = torch.cat([
        sample_ddim(model, trainer.schedule, (len(chunk), 1, 28, 28), steps=args.ddim_steps, y=chunk.to(trainer.device),
                    guidance=w, generator=torch.Generator().manual_seed(args.seed + i), device=trainer.device).cpu()
        for i, chunk in enumerate(labels.split(args.sample_batch))
    ])  # fmt: skip
    metrics = evaluate_samples(to_uint8(samples[:, 0]), labels)
    metrics.update(guidance=w, ddim_steps=args.ddim_steps, sampling_seconds=round(time.perf_counter() - t0, 1))
    results.append(metrics)
    print(json.dumps(metrics), flush=True)

print(json.dumps({
    "command": " ".join(["python", *sys.argv]),
    "settings": vars(args),
    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {trainer.device}",
    "train_seconds": round(train_seconds), "train_steps": trainer.step,
    "images_seen": trainer.step * args.batch_size, "results": results,
}, indent=2))  # fmt: skip
