"""Flow matching against eps-prediction: the same U-Net, the same recipe, the same CPU minutes.

    .venv/bin/python benchmarks/flow_vs_eps.py --minutes 10 --parallel --n 1000 --evals 5 10 20 50 \
        --json data/measured/lesson11_flow_vs_eps.json

Trains two class-conditional MNIST models from scratch on the bundled digits with the project's own command
(`python -m ddpm_lessons train ... --objective eps|flow --minutes M`), every other setting shared (``RECIPE``), then
draws n samples (n / 10 of each digit) from each with classifier-free guidance w at each number of model
evaluations: the eps model with DDIM and DPM-Solver++(2M), the flow model with Euler and Heun. Each is scored by
the package's metrics (conditional accuracy; Frechet distance to the 2,000 held-out digits and its class-balanced
real-vs-real floor). ``--parallel`` trains both at once, each on half of the cores (same minutes, same share of
the machine); without it they train one after the other on all cores. Prints one line per row; ``--json`` also
writes the rows with the command, the date and each run's steps and images/s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ddpm_lessons.checkpoints import load_model
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.objectives import objective_of
from ddpm_lessons.solvers import PRECISIONS, sample_in_batches

# The 15-minute recipe of benchmarks/README.md ("Quality per CPU-minute"), shared by both objectives: float32,
# uniform flow times and the plain loss, as measured there (every option given, so later recipes do not move it).
RECIPE = {"batch-size": 64, "lr": 2e-3, "lr-decay": "cosine", "warmup": 200, "ema-decay": 0.999,
          "base-channels": 16, "channel-mults": "1 2 4", "attention": 7, "dropout": 0.1, "seed": 0,
          "precision": "fp32", "flow-time": "uniform", "loss-weighting": "none"}  # fmt: skip
SAMPLERS = {"eps": ("ddim", "dpmpp-2m"), "flow": ("euler", "heun")}


def train_command(objective: str, minutes: float, out: Path) -> list[str]:
    flags = [part for key, value in RECIPE.items() for part in (f"--{key}", *str(value).split())]
    return [sys.executable, "-m", "ddpm_lessons", "train", "--dataset", "mnist", "--source", "bundled", "--conditional",
            "--objective", objective, "--minutes", str(minutes), "--checkpoint-every", "100000", "--no-progress",
            *flags, "--out", str(out)]  # fmt: skip


def train_both(minutes: float, out: Path, parallel: bool) -> dict[str, dict]:
    cores = os.cpu_count() or 2
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // 2))) if parallel else dict(os.environ)
    runs = {}
    for objective in SAMPLERS:
        run = out / objective
        if (run / "model.safetensors").exists():
            raise SystemExit(f"{run} already holds a model; pass another --out, or --score-only to score it")
        runs[objective] = subprocess.Popen(train_command(objective, minutes, run), env=env)
        if not parallel:
            runs[objective].wait()
    for objective, process in runs.items():
        if process.wait() != 0:
            raise SystemExit(f"training the {objective} model failed (exit status {process.returncode})")
    return {objective: summary(out / objective) for objective in SAMPLERS}


def summary(run: Path) -> dict:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    record = json.loads((run / "model.json").read_text())
    speeds = sorted(line["images_per_s"] for line in log)
    return {"steps": record["step"], "minutes": record["train"]["minutes"], "train_seconds": record["train_seconds"],
            "images_per_s": speeds[len(speeds) // 2]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training budget of each model")
    p.add_argument("--parallel", action="store_true", help="train both at once, each on half of the cores")
    p.add_argument("--score-only", action="store_true", help="score the models already in --out")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--evals", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--guidance", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="bf16: sample with the network in bfloat16")
    p.add_argument("--out", type=Path, default=Path("runs/flow_vs_eps"))
    p.add_argument("--json", help="also write the rows, the runs and the command to this JSON file")
    args = p.parse_args()
    runs = ({objective: summary(args.out / objective) for objective in SAMPLERS} if args.score_only
            else train_both(args.minutes, args.out, args.parallel))  # fmt: skip
    for objective, run in runs.items():
        print(f"{objective}: {run['steps']} steps in {run['train_seconds']} s, {run['images_per_s']:.0f} images/s")
    labels = torch.arange(args.n) % 10
    print(f"{datetime.date.today()}, {torch.get_num_threads()} threads; n = {args.n}, w = {args.guidance}, "
          f"network in {args.precision}")  # fmt: skip
    print("objective  sampler   evals  accuracy  FD     floor (sd)     FD/floor  s per 100")
    rows = []
    for objective in SAMPLERS:
        model, schedule, record = load_model(args.out / objective / "model.safetensors")
        assert objective_of(record) == objective
        for sampler in SAMPLERS[objective]:
            for evals in args.evals:
                start = time.perf_counter()
                x = sample_in_batches(model, schedule, args.n, (1, 28, 28), labels=labels, batch_size=100,
                                      sampler=sampler, steps=evals, guidance=args.guidance, objective=objective,
                                      precision=args.precision,
                                      generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
                seconds = time.perf_counter() - start
                r = evaluate_samples(x, labels)
                kept = ("conditional_accuracy", "frechet_distance", "frechet_distance_real_vs_real",
                        "frechet_distance_real_vs_real_sd", "frechet_ratio")  # fmt: skip
                rows.append({"objective": objective, "sampler": sampler, "evals": evals,
                             "seconds_per_100": 100 * seconds / args.n, **{k: r[k] for k in kept}})  # fmt: skip
                floor = f"{r['frechet_distance_real_vs_real']:5.2f} ({r['frechet_distance_real_vs_real_sd']:.2f})"
                print(f"{objective:9s}  {sampler:8s}  {evals:5d}  {r['conditional_accuracy']:7.1%}  "
                      f"{r['frechet_distance']:5.2f}  {floor}  {r['frechet_ratio']:7.2f}x  "
                      f"{100 * seconds / args.n:9.2f}", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/flow_vs_eps.py " + " ".join(sys.argv[1:]),
                       "date": str(datetime.date.today()), "minutes": runs["eps"]["minutes"], "parallel": args.parallel,
                       "recipe": RECIPE, "runs": runs, "n": args.n, "guidance": args.guidance,
                       "precision": args.precision, "rows": rows},
                      f, indent=1)  # fmt: skip
            f.write("\n")


if __name__ == "__main__":
    main()
