"""A shipped conditional model sampled with few model evaluations: DDIM (eta = 0), DPM-Solver++(2M), UniPC and Heun
for the eps model, Euler and Heun (and DPM-Solver++(2M) and UniPC on its path, even in s) for the flow model, each
scored by the package's metrics, with the time to draw the samples on this machine.

    .venv/bin/python benchmarks/fast_solvers.py --n 2000 --evals 5 10 --guidance 0.2
    .venv/bin/python benchmarks/fast_solvers.py --samplers dpmpp-2m dpmpp-2m:logsnr unipc --evals 5 10
    .venv/bin/python benchmarks/fast_solvers.py --samplers unipc:999,701,441,229,100 --evals 5 --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/fast_solvers.py --model mnist_flow --samplers euler heun --evals 5 10 20

For each sampler and number of model evaluations K: n samples (n / 10 of each digit) with classifier-free
guidance w (one call on a doubled batch per evaluation), drawn 100 at a time from one seed with
``solvers.sample_in_batches`` (what ``sample --sampler ... --steps K`` runs), then conditional accuracy, the
Frechet distance to the 2,000 held-out bundled digits and the real-vs-real floor at the same n (mean of 10
draws of n real training digits, each with the samples' class mix: n / 10 of each digit). A grid after a colon is
a name (``solvers.SPACINGS``) or the timesteps themselves, largest first (that row runs only at as many
evaluations as it has timesteps). With several ``--seeds`` each row is the mean over them, and the distance at each
seed follows. Prints one line per row and the machine; the model loads once, and the seconds count sampling only
(at the first seed).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import sys
import time

import torch

from ddpm_lessons.checkpoints import load_pretrained
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.objectives import objective_of
from ddpm_lessons.solvers import (
    PRECISIONS,
    SPACINGS,
    sample_dpmpp_2m,
    sample_heun,
    sample_in_batches,
    sample_unipc,
)
from ddpm_lessons.solvers import parse_grid as solver_grid

GRIDDED = {"dpmpp-2m": sample_dpmpp_2m, "unipc": sample_unipc, "heun": sample_heun}
DEFAULT_SPACING = {name: inspect.signature(fn).parameters["spacing"].default for name, fn in GRIDDED.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist_conditional", help="a shipped model's name (checkpoints.PRETRAINED)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--evals", type=int, nargs="+", default=[5, 10])
    p.add_argument("--samplers", nargs="+", default=["ddim", "dpmpp-2m", "heun"],
                   help="samplers; dpmpp-2m, unipc and heun take a grid after a colon, as in dpmpp-2m:logsnr or "
                        "unipc:999,701,441,229,100")  # fmt: skip
    p.add_argument(
        "--spacings",
        nargs="+",
        choices=SPACINGS,
        default=[None],
        help="timestep spacings of dpmpp-2m, unipc and heun to compare (time, logsnr, karras); default: theirs",
    )
    p.add_argument("--guidance", type=float, default=0.2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="sample seeds; each row is their mean")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="bf16: the network in bfloat16")
    p.add_argument("--json", help="also write the rows, the machine and the command to this JSON file")
    args = p.parse_args()
    try:  # before anything is loaded
        rows = [(name.split(":")[0], solver_grid(name.split(":")[1])) if ":" in name else (name, spacing)
                for name in args.samplers
                for spacing in (args.spacings if name in DEFAULT_SPACING else [None])]  # fmt: skip
    except ValueError as err:
        p.error(f"a grid after a colon {err}")
    for sampler, spacing in rows:
        if spacing is not None and sampler not in DEFAULT_SPACING:
            p.error(f"{sampler}: only {', '.join(DEFAULT_SPACING)} take a grid")
        if isinstance(spacing, tuple) and (sampler == "heun" or len(spacing) not in args.evals):
            p.error(f"{sampler}:{','.join(map(str, spacing))}: a grid of {len(spacing)} timesteps fits dpmpp-2m and "
                    f"unipc with {len(spacing)} evaluations; add {len(spacing)} to --evals")  # fmt: skip
    model, schedule, record = load_pretrained(name=args.model)
    objective = objective_of(record)
    labels = torch.arange(args.n) % 10
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{datetime.date.today()}; {args.model}, step {record['step']}; n = {args.n}, w = {args.guidance}, "
          f"network in {args.precision}, sample seeds {' '.join(map(str, args.seeds))}")  # fmt: skip
    width = max([8] + [len(",".join(map(str, g))) for _, g in rows if isinstance(g, tuple)])
    print(
        f"sampler   {'spacing':{width}s} evals  accuracy  FD     floor (sd)     FD/floor  seconds  s per 1,000"
        + ("  FD at each seed" if len(args.seeds) > 1 else "")
    )
    table = []
    kept = ("conditional_accuracy", "frechet_distance", "frechet_distance_real_vs_real",
            "frechet_distance_real_vs_real_sd", "frechet_ratio")  # fmt: skip
    for sampler, spacing in rows:
        for evals in args.evals:
            if isinstance(spacing, tuple) and evals != len(spacing):
                continue  # a grid of its own timesteps runs at its own number of evaluations only
            per_seed = []
            for seed in args.seeds:
                start = time.perf_counter()
                x = sample_in_batches(model, schedule, args.n, (1, 28, 28), labels=labels, batch_size=100,
                                      sampler=sampler, steps=evals, guidance=args.guidance, spacing=spacing,
                                      precision=args.precision, objective=objective,
                                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
                seconds = time.perf_counter() - start
                r = evaluate_samples(x, labels)
                per_seed.append({"seed": seed, "seconds_per_100": 100 * seconds / args.n, **{k: r[k] for k in kept}})
            r = {k: sum(row[k] for row in per_seed) / len(per_seed) for k in kept}
            seconds = args.n * per_seed[0]["seconds_per_100"] / 100
            floor = f"{r['frechet_distance_real_vs_real']:5.2f} ({r['frechet_distance_real_vs_real_sd']:.2f})"
            grid = "-" if objective == "flow" else spacing or DEFAULT_SPACING.get(sampler, "-")  # flow: even in s
            grid = ",".join(map(str, grid)) if isinstance(grid, tuple) else grid
            seeds = "  " + " ".join(f"{row['frechet_distance']:.2f}" for row in per_seed) if len(per_seed) > 1 else ""
            print(f"{sampler:9s} {grid:{width}s} {evals:5d}  {r['conditional_accuracy']:7.1%}  "
                  f"{r['frechet_distance']:5.2f}  {floor}  "
                  f"{r['frechet_ratio']:7.2f}x  {seconds:7.1f}  {1000 * seconds / args.n:10.1f}{seeds}")  # fmt: skip
            row = {"sampler": sampler, "spacing": None if grid == "-" else grid, "evals": evals,
                   "seconds_per_100": per_seed[0]["seconds_per_100"], **r}  # fmt: skip
            if len(per_seed) > 1:
                row["per_seed"] = per_seed
            table.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/fast_solvers.py " + " ".join(sys.argv[1:]),
                       "date": str(datetime.date.today()), "threads": torch.get_num_threads(),
                       "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
                       "model": args.model, "model_step": record["step"], "n": args.n, "guidance": args.guidance,
                       "seeds": args.seeds, "precision": args.precision, "rows": table},
                      f, indent=1)  # fmt: skip
            f.write("\n")


if __name__ == "__main__":
    main()
