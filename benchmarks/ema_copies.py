"""Train with `python -m ddpm_lessons train ...` while keeping extra EMA copies of the weights beside the trainer's own,
so that EMA settings compare on one run, free of the noise between runs (benchmarks/README.md, "Time to quality").

    python benchmarks/ema_copies.py --decays 0.998 0.9993 0.9995 0.9997 -- train --dataset mnist --source bundled \
        --conditional --minutes 10 --seed 2 --out runs/ttq_ema
    python benchmarks/ema_copies.py --warmups 3 5 7 20 -- train --dataset mnist --source bundled --conditional \
        --minutes 10 --seed 3 --out runs/ttq_emaK

Everything after ``--`` goes to the command line unchanged. Each copy is a ``training.EMA`` with decay d and warm-up
constant K, d_step = min(d, (1 + step) / (K + step)), updated after every optimiser step with the trainer's own:
``--decays`` varies d at the trainer's K = 10, ``--warmups`` varies K at d = 0.9999, so that the warm-up alone sets
those copies on short runs (below step (K d - 1) / (1 - d): 19,997 for K = 3). The copies are written as OUT/ema_d<d>.pt
or OUT/ema_K<K>.pt (state dicts that fit the run's model.safetensors), and the largest difference of each from the
trainer's EMA is printed (0 for a copy at the trainer's own setting). A run that resumes would start the copies from the
resumed EMA, so ``--resume`` is refused. `python -m ddpm_lessons sample` does not read them: ``flow_sampling_probes.py
--checkpoint OUT/model.safetensors --weights OUT/ema_K3.pt`` samples one, or load it into the model of
``checkpoints.load_model``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ddpm_lessons import training
from ddpm_lessons.cli import main

p = argparse.ArgumentParser()
p.add_argument("--decays", type=float, nargs="*", default=[], help="decays d of extra copies, at the trainer's K = 10")
p.add_argument("--warmups", type=float, nargs="*", default=[], help="warm-up constants K of extra copies, d = 0.9999")
p.add_argument("command", nargs=argparse.REMAINDER, help="-- and then the ddpm_lessons command line (train ...)")
args = p.parse_args()
command = args.command[1:] if args.command[:1] == ["--"] else args.command
if not command or command[0] != "train" or "--out" not in command:
    sys.exit("give the training command after --, as in: -- train --dataset mnist ... --out runs/NAME")
settings = [(f"d{d}", d, 10.0) for d in args.decays] + [(f"K{k:g}", 0.9999, k) for k in args.warmups]
if not settings:
    sys.exit("give at least one of --decays and --warmups")
if any(not 0 < d < 1 for d in args.decays) or any(k <= 1 for k in args.warmups):
    sys.exit("each decay must lie in (0, 1) and each warm-up constant K above 1 (K = 1 never leaves the first weights)")
if "--resume" in command:
    sys.exit("--resume: the copies would start from the resumed EMA, not from the run's first weights; start afresh")

copies: dict[str, training.EMA] = {}
trainer_ema: list[training.EMA] = []
update = training.EMA.update


def update_with_copies(self: training.EMA, model: torch.nn.Module, step: int) -> None:
    if not copies:  # before the trainer's first update: every copy starts from the weights its EMA starts from
        trainer_ema.append(self)
        copies.update({name: training.EMA(self.model, decay, warmup) for name, decay, warmup in settings})
    update(self, model, step)
    for kept in copies.values():
        update(kept, model, step)


training.EMA.update = update_with_copies
status = main(command)
if status:
    sys.exit(status)  # the command said what went wrong; no copies are written for a run that did not finish
out = Path(command[command.index("--out") + 1])
own = trainer_ema[0].model.state_dict()
for name, kept in copies.items():
    torch.save(kept.model.state_dict(), out / f"ema_{name}.pt")
    gap = max((v.float() - own[k].float()).abs().max().item() for k, v in kept.model.state_dict().items())
    print(f"{out / f'ema_{name}.pt'}: largest difference from the trainer's EMA {gap:.3g}")
sys.exit(status)
