"""The project's MNIST recipe side by side with the recipes a user would otherwise pick, for the same minutes on the
same cores, each sampled as its authors do and scored by the same metric (benchmarks/README.md, "Side by side").

    python -u benchmarks/side_by_side.py --minutes 10 --out runs/side_by_side

The project's recipe runs as a user runs it: ``train --dataset mnist --source bundled --conditional --minutes M``, then
``sample --n 2000 --labels balanced --seed S`` with no sampling options (the checkpoint's record carries them), each a
command of its own, so the sampling time (seed 0's) includes loading. One draw of 2,000 samples is a noisy estimate of
the distance (its standard deviation over sample seeds is 7-12% of it on the recipe's 10-minute models, as large as the
floor's over its draws), so the project's recipe is drawn at ``--seeds`` seeds, 0, 1, ..., each scored, and its row
reports the means with the standard deviation over the seeds, as the floor is the mean over its draws. The others
(``other_recipes.py``) train in this process on the same bundled digits for the same minutes. Their samplers take
hundreds of network calls per sample, so they are scored on fewer samples (``--n-other``; the distance's floor is drawn
at the same count, and the project's samples of seed 0 are scored again at each such count), and their seconds per 1,000
samples are those of the n drawn, scaled.
Prints one JSON line per draw of the project's samples and per recipe and weight, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from other_recipes import BUILD, RECIPES  # noqa: E402

from ddpm_lessons.data import load_mnist, to_uint8  # noqa: E402
from ddpm_lessons.metrics import evaluate_samples  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--minutes", type=float, default=10.0)
p.add_argument("--n", type=int, default=2000, help="samples of the project's recipe")
p.add_argument("--seeds", type=int, default=5, help="draws of the project's samples, at seeds 0 .. SEEDS - 1")
p.add_argument("--n-other", type=int, nargs=2, default=[20, 40], metavar=("TEAPEARCE", "HF_COURSE"),
               help="samples of the other recipes (their samplers call the network 400 and 1,000 times)")  # fmt: skip
p.add_argument("--recipes", nargs="+", default=["ours", *RECIPES], choices=["ours", *RECIPES])
p.add_argument("--guidance", type=float, nargs="*", default=None,
               help="override the published weights of a guided recipe (default: all of them)")  # fmt: skip
p.add_argument("--out", default="runs/side_by_side")
args = p.parse_args()
if args.seeds < 1:
    p.error(f"--seeds {args.seeds}: the project's samples need at least one draw; 5 is the default")
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
rows = []


def score(images01: torch.Tensor, labels: torch.Tensor, **extra) -> dict:
    metrics = evaluate_samples(images01, labels)
    metrics.update(extra)
    print(json.dumps(metrics), flush=True)
    rows.append(metrics)
    return metrics


def ours() -> None:
    run = out / "ours"
    cli = [sys.executable, "-m", "ddpm_lessons"]
    train = [*cli, "train", "--dataset", "mnist", "--source", "bundled", "--conditional", "--minutes",
             str(args.minutes), "--out", str(run)]  # fmt: skip
    trained_here = not (run / "model.safetensors").exists()
    if trained_here:
        subprocess.run(train, check=True)
    record = json.loads((run / "model.json").read_text())
    common = dict(recipe="ours (train --dataset mnist --conditional)", steps=record["step"], train_minutes=args.minutes,
                  train_seed=record["train"].get("seed"))  # fmt: skip
    if trained_here:
        common["command"] = " ".join(train[1:])
    else:  # a model already in place: its own record, not this call, says how it was trained
        common["model"] = f"{run / 'model.safetensors'}, in place before this call"
    draws = []
    for seed in range(args.seeds):
        samples = run / ("samples.npz" if seed == 0 else f"samples_seed{seed}.npz")
        start = time.perf_counter()
        subprocess.run([*cli, "sample", "--checkpoint", str(run / "model.safetensors"), "--n", str(args.n), "--labels",
                        "balanced", "--seed", str(seed), "--out", str(samples)], check=True)  # fmt: skip
        seconds = time.perf_counter() - start
        data = np.load(samples)
        images, labels = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
        metrics = {**evaluate_samples(images, labels), "sampling_seconds": round(seconds, 1)}
        draws.append(metrics)
        print(json.dumps({"seed": seed, **metrics}), flush=True)
        if seed == 0:
            seconds_per_1000 = round(seconds * 1000 / args.n, 1)
            for n in sorted(set(args.n_other)):  # the same samples at the other recipes' counts: rows compare at one n
                score(images[:n], labels[:n], sampling_seconds_per_1000=seconds_per_1000, seeds=1, **common)
    varying = ("conditional_accuracy", "diversity", "frechet_distance", "frechet_ratio", "sampling_seconds")
    per_seed = {key: [d[key] for d in draws] for key in varying if key in draws[0]}
    mean = {key: sum(values) / len(values) for key, values in per_seed.items() if key != "sampling_seconds"}
    same = {key: value for key, value in draws[0].items() if key not in varying and key != "frechet_distance_sd"}
    sd = statistics.stdev(per_seed["frechet_distance"]) if len(draws) > 1 else 0.0
    score_row = {**same, **mean, "seeds": len(draws), "frechet_distance_sd_over_seeds": sd, "per_seed": per_seed,
                 "sampling_seconds_per_1000": seconds_per_1000, **common}  # fmt: skip
    print(json.dumps(score_row), flush=True)
    rows.insert(0, score_row)


def other(name: str, n: int) -> None:
    recipe = BUILD[name]()
    x, y = load_mnist("train", source="bundled")
    gen = torch.Generator().manual_seed(0)
    start, steps, seen, loss = time.perf_counter(), 0, 0, float("nan")
    while time.perf_counter() - start < args.minutes * 60:
        idx = torch.randint(len(x), (recipe.batch_size,), generator=gen)
        loss = recipe.train_step(x[idx], y[idx], seen)
        steps, seen = steps + 1, seen + recipe.batch_size
        if steps % 10 == 0:
            print(f"{name}: step {steps}, {time.perf_counter() - start:.0f} s, loss {loss:.4f}", flush=True)
    train_seconds = time.perf_counter() - start
    torch.save(recipe.network.state_dict(), out / f"{name}.pt")
    labels = torch.arange(n) % 10
    guided = recipe.guidance != (0.0,)  # --guidance overrides the published weights of a guided recipe only
    for w in args.guidance if args.guidance is not None and guided else recipe.guidance:
        t0 = time.perf_counter()
        images = recipe.sample(labels, w, torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - t0
        score(to_uint8(images[:, 0]), labels, recipe=recipe.name, steps=steps, train_seconds=round(train_seconds),
              images_seen=seen, last_loss=round(loss, 4), guidance=w, sampling_seconds=round(seconds, 1),
              sampling_seconds_per_1000=round(seconds * 1000 / n, 1), settings=recipe.settings)  # fmt: skip


machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
print(json.dumps({"machine": machine, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}))
for name in args.recipes:
    if name == "ours":
        ours()
    else:
        other(name, args.n_other[RECIPES.index(name)])

# rows of recipes run earlier into the same --out are kept, so recipes can be run one at a time
saved = out / "side_by_side.json"
names = {row["recipe"] for row in rows}
kept = [row for row in json.loads(saved.read_text()) if row["recipe"] not in names] if saved.exists() else []
rows = kept + rows
saved.write_text(json.dumps(rows, indent=2))
print("\n| recipe | steps | w | n | seeds | accuracy | FD (sd over seeds) | floor | FD / floor | s per 1,000 samples |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    sd = f" ({r['frechet_distance_sd_over_seeds']:.2f})" if r.get("seeds", 1) > 1 else ""
    print(f"| {r['recipe']} | {r['steps']} | {r.get('guidance', 'record')} | {r['n']} | {r.get('seeds', 1)} | "
          f"{r['conditional_accuracy']:.1%} | {r['frechet_distance']:.2f}{sd} | "
          f"{r['frechet_distance_real_vs_real']:.2f} | "
          f"{r['frechet_ratio']:.2f}x | {r['sampling_seconds_per_1000']:.0f} |")  # fmt: skip
