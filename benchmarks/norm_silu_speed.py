"""Does `unet.norm_silu` (recompute GroupNorm in the backward pass) slow training down?

    python benchmarks/norm_silu_speed.py [--batch 64] [--rounds 5] [--steps 10]

One Trainer (the shipped model's recipe) trains in alternating rounds with `norm_silu` and with the
plain `F.silu(norm(x))` patched in its place, so that machine load hits both alike; prints the median
images/s of each and the ratio. The two compute the same values (tests/test_unet.py).
"""

import argparse
import statistics
import tempfile
import time

import torch.nn.functional as F

import ddpm_lessons.unet as unet
from ddpm_lessons.data import load_mnist
from ddpm_lessons.training import TrainConfig, Trainer

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--steps", type=int, default=10)
args = p.parse_args()

variants = {"norm_silu": unet.norm_silu, "plain": lambda norm, x: F.silu(norm(x))}
x, y = load_mnist("train", source="bundled")
recipe = TrainConfig(steps=10**9, batch_size=args.batch, lr=1e-3, warmup_steps=200, ema_decay=0.999,
                     checkpoint_every=10**9, log_every=10**9, seed=0)  # fmt: skip
trainer = Trainer(unet.UNetConfig(num_classes=10), recipe, x, tempfile.mkdtemp(), labels=y, progress=False)
for _ in range(3):
    trainer.train_step()  # warm-up
speeds = {name: [] for name in variants}
for _ in range(args.rounds):
    for name, fn in variants.items():
        unet.norm_silu = fn  # ResBlock and UNet look the name up at call time
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        speeds[name].append(args.steps * args.batch / (time.perf_counter() - start))
for name, values in speeds.items():
    rounds = ", ".join(f"{v:.1f}" for v in values)
    print(f"{name:10s} images/s median {statistics.median(values):6.1f} (rounds: {rounds})")
print(f"ratio norm_silu/plain: {statistics.median(speeds['norm_silu']) / statistics.median(speeds['plain']):.2f}x")
