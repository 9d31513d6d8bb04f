"""Quality per CPU-minute: train a class-conditional MNIST model from scratch for a fixed wall-clock
budget on this machine, then draw samples with DDIM and measure them against the real-vs-real floor.

    python benchmarks/quality_per_cpu_minute.py --minutes 15 --n 2000 --guidance 2 --out runs/quality15

Targets (issue "The model, the samplers and training"): conditional accuracy >= 95% and Frechet
distance within 3x of the real-vs-real baseline at the same sample count. Prints one JSON object;
the model is kept in --out (model.safetensors) so the sampling can be repeated with other settings.
"""

import argparse
import json
import platform
import sys
import time

import torch

from ddpm_lessons.data import load_mnist, to_uint8
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.samplers import sample_ddim
from ddpm_lessons.training import TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

p = argparse.ArgumentParser()
p.add_argument("--minutes", type=float, default=15.0)
p.add_argument("--n", type=int, default=2000)
p.add_argument("--ddim-steps", type=int, default=50)
p.add_argument("--guidance", type=float, nargs="+", default=[2.0])
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--ema-decay", type=float, default=0.999)
p.add_argument("--base-channels", type=int, default=32)
p.add_argument("--dropout", type=float, default=0.1, help="inside the residual blocks (UNetConfig.dropout)")
p.add_argument("--sample-batch", type=int, default=50, help="CPU forward passes are fastest at batch ~64-100")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="runs/quality_per_cpu_minute")
args = p.parse_args()

x, y = load_mnist("train", source="bundled")
model_config = UNetConfig(base_channels=args.base_channels, num_classes=10, dropout=args.dropout)
train_config = TrainConfig(
    steps=10**9, batch_size=args.batch_size, lr=args.lr, warmup_steps=200, ema_decay=args.ema_decay,
    checkpoint_every=10**9, log_every=100, seed=args.seed,
)  # fmt: skip
trainer = Trainer(model_config, train_config, x, args.out, labels=y, progress=False)
start = time.perf_counter()
while time.perf_counter() - start < args.minutes * 60:
    trainer.train_step()
    if trainer.step % 100 == 0:
        recent = trainer.step * args.batch_size / (time.perf_counter() - start)
        print(f"step {trainer.step}, {time.perf_counter() - start:.0f} s, {recent:.0f} images/s", flush=True)
train_seconds = time.perf_counter() - start
trainer.save_checkpoint()

results = []
labels = torch.arange(args.n) % 10
for w in args.guidance:
    t0 = time.perf_counter()
    samples = torch.cat([
        sample_ddim(trainer.ema.model, trainer.schedule, (len(chunk), 1, 28, 28), steps=args.ddim_steps, y=chunk,
                    guidance=w, generator=torch.Generator().manual_seed(args.seed + i))
        for i, chunk in enumerate(labels.split(args.sample_batch))
    ])  # fmt: skip
    metrics = evaluate_samples(to_uint8(samples[:, 0]), labels)
    metrics.update(guidance=w, ddim_steps=args.ddim_steps, sampling_seconds=round(time.perf_counter() - t0, 1))
    results.append(metrics)
    print(json.dumps(metrics), flush=True)

print(json.dumps({
    "command": " ".join(["python", *sys.argv]),
    "settings": vars(args),
    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    "train_seconds": round(train_seconds), "train_steps": trainer.step,
    "images_seen": trainer.step * args.batch_size, "results": results,
}, indent=2))  # fmt: skip
