"""Quality against the number of sampling steps for the shipped model (lesson 05), measured at a sample count
where the Frechet distance means something, and written to a JSON file that the lesson reads.

For each DDIM step count: n samples (n / 10 of each digit, no guidance, x0_hat clipped as in the lesson), scored
by ``metrics.evaluate_samples`` (conditional accuracy, Frechet distance to the 2,000 held-out bundled digits,
and the real-vs-real floor at the same n, the mean of 10 draws). Then 1000-step DDPM (Algorithm 2) with fewer
samples, and, for a like-for-like comparison, every DDIM row scored again on its first that-many samples.

    .venv/bin/python benchmarks/lesson05_steps.py            # n = 500 per DDIM row, 100 for DDPM
    .venv/bin/python benchmarks/lesson05_steps.py --steps --ddpm-n 100 --threads 1 --append   # the DDPM row alone

Each row records the command, machine and date that produced it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from ddpm_lessons.checkpoints import load_pretrained
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.samplers import sample_ddim, sample_ddpm

KEYS = ("n", "conditional_accuracy", "frechet_distance", "frechet_distance_real_vs_real")
KEYS += ("frechet_distance_real_vs_real_sd", "frechet_ratio", "diversity", "diversity_real")


def sample(model, schedule, n: int, steps: int | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """n samples, labels 0..9 in turn; steps=None is 1000-step DDPM. Chunk i uses seed i."""
    y = torch.arange(n) % 10
    start, parts = time.perf_counter(), []
    for i, labels in enumerate(y.split(chunk)):
        g, shape = torch.Generator().manual_seed(i), (len(labels), 1, 28, 28)
        if steps is None:
            parts.append(sample_ddpm(model, schedule, shape, y=labels, generator=g))
        else:
            parts.append(sample_ddim(model, schedule, shape, steps=steps, y=labels, generator=g))
    return torch.cat(parts), y, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="samples per DDIM row")
    parser.add_argument("--ddpm-n", type=int, default=100, help="samples for the 1000-step DDPM row")
    parser.add_argument("--steps", type=int, nargs="*", default=[10, 20, 50, 100], help="DDIM step counts")
    parser.add_argument("--no-ddpm", action="store_true", help="leave out the 1000-step DDPM row")
    parser.add_argument("--append", action="store_true", help="add the rows to those already in --out")
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="data/measured/lesson05_steps.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, schedule, record = load_pretrained("cpu")
    result = {
        "what": "quality against sampling steps, shipped model data/checkpoints/mnist_conditional.safetensors "
        f"(step {record['step']}), no guidance, labels balanced, x0_hat clipped to [-1, 1]",
        "command": "python benchmarks/lesson05_steps.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, torch {torch.__version__}, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''} "
        "(seconds are indicative: other jobs may share the cores)",
        "date": datetime.date.today().isoformat(),
        "rows": [],
    }
    out = Path(args.out)
    if args.append and out.exists():
        result["rows"] = json.loads(out.read_text())["rows"]

    def add(row: dict) -> None:
        row.update(command=result["command"], machine=result["machine"], date=result["date"])
        result["rows"].append(row)
        out.write_text(json.dumps(result, indent=1) + "\n")  # after every row, so a stopped run keeps its rows
        print(json.dumps(row), flush=True)

    for steps in args.steps:
        images, y, seconds = sample(model, schedule, args.n, steps, args.chunk)
        row = {"sampler": "ddim", "steps": steps, "seconds": round(seconds, 1)}
        row.update({k: evaluate_samples(images, y)[k] for k in KEYS})
        k = args.ddpm_n  # the same rows scored on as many samples as the DDPM row has
        row["at_ddpm_n"] = {key: evaluate_samples(images[:k], y[:k])[key] for key in KEYS}
        add(row)
    if args.no_ddpm:
        return
    images, y, seconds = sample(model, schedule, args.ddpm_n, None, args.chunk)
    row = {"sampler": "ddpm", "steps": schedule.T, "seconds": round(seconds, 1)}
    row.update({k: evaluate_samples(images, y)[k] for k in KEYS})
    add(row)


if __name__ == "__main__":
    main()
