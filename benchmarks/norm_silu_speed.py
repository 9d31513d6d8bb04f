"""How fast does training run with `fused.norm_silu` against the plain composition it replaces?

    python benchmarks/norm_silu_speed.py [--batch 64] [--rounds 5] [--steps 10]

One Trainer (the shipped model's recipe, dropout 0.1) trains in alternating rounds with three versions of
the residual block's dropout(silu(group_norm(x))), patched in as `unet.norm_silu`, so that machine load
hits all alike: `fused` (the package's: GroupNorm recomputed in the backward pass, dropout in place with
its cheaper mask), `plain` (F.dropout(F.silu(norm(x)), p), what PyTorch's modules do), and `no dropout`
(F.silu(norm(x)): what dropout costs at most). Prints the median images/s of each and the ratios. The
first two compute the same function (tests/test_unet.py).
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

variants = {
    "fused": unet.norm_silu,
    "plain": lambda norm, x, dropout=0.0: F.dropout(F.silu(norm(x)), dropout),
    "no dropout": lambda norm, x, dropout=0.0: F.silu(norm(x)),
}
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
med = {name: statistics.median(values) for name, values in speeds.items()}
print(f"ratio fused/plain: {med['fused'] / med['plain']:.2f}x")
print(f"ratio no dropout/plain: {med['no dropout'] / med['plain']:.2f}x")
