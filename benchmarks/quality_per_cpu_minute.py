"""Quality per CPU-minute: train a class-conditional MNIST model from scratch for a fixed wall-clock
budget on this machine, then draw samples (``--sampling``) and measure them against the real-vs-real floor.

    python benchmarks/quality_per_cpu_minute.py --minutes 10 --out runs/quality10

The defaults are the project's recipe, ``training.DIGITS_RECIPE`` (what ``train --dataset mnist`` does without
options; benchmarks/README.md says why each choice is there), and it is sampled at the setting the recipe's
record carries; every option below moves one lever of the ablation table in benchmarks/README.md.

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
from ddpm_lessons.flow import FLOW_TIMES
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.objectives import LOSS_WEIGHTINGS, OBJECTIVES
from ddpm_lessons.solvers import PRECISIONS, check_shift, native_bf16, sample_in_batches
from ddpm_lessons.training import DIGITS_RECIPE, LR_DECAYS, TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

recipe = {**DIGITS_RECIPE["train"], **DIGITS_RECIPE["model"]}
sampling = DIGITS_RECIPE["sampling"]

p = argparse.ArgumentParser()
budget = p.add_mutually_exclusive_group()
budget.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
budget.add_argument("--steps", type=int, default=0, help="train for this many steps instead of --minutes")
p.add_argument("--n", type=int, default=2000)
p.add_argument("--sampling", nargs="+", default=[f"{sampling['sampler']}:{sampling['steps']}"],
               help="sampler:model-evaluations, e.g. dpmpp-2m:10 ddim:50 (default: the recipe's)")  # fmt: skip
p.add_argument("--guidance", type=float, nargs="+", default=[sampling["guidance"]])
p.add_argument("--shift", type=float, default=None,
               help="a flow model's grid of flow times moved towards the noise (flow.shift_flow_time); default: the "
                    "recipe's for a flow model, 1 (none) for the others")  # fmt: skip
p.add_argument("--precision", choices=PRECISIONS, default="bf16", help="of the sampling network (solvers.PRECISIONS)")
p.add_argument("--objective", choices=OBJECTIVES, default=recipe.get("objective", "eps"))
p.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=recipe.get("loss_weighting", "none"))
p.add_argument("--min-snr-gamma", type=float, default=recipe.get("min_snr_gamma", 5.0))
p.add_argument("--flow-time", choices=FLOW_TIMES, default=recipe.get("flow_time", "uniform"))
p.add_argument("--flow-time-loc", type=float, default=recipe.get("flow_time_loc", 0.0),
               help="the logit-normal's location (TrainConfig.flow_time_loc)")  # fmt: skip
p.add_argument("--cpu-bf16", type=int, choices=(0, 1),
               default=int(recipe.get("cpu_bf16", False) and native_bf16()),  # as `train` resolves the recipe
               help="1: the training network's forward pass in bfloat16 on the CPU (TrainConfig.cpu_bf16); "
                    "default: the recipe's, on a CPU that computes bfloat16 natively")  # fmt: skip
p.add_argument("--batch-size", type=int, default=recipe["batch_size"])
p.add_argument("--lr", type=float, default=recipe["lr"])
p.add_argument("--lr-decay", choices=LR_DECAYS, default=recipe["lr_decay"],
               help="cosine: from --lr down to 0 over the budget (its minutes, or its steps)")  # fmt: skip
p.add_argument("--warmup", type=int, default=recipe["warmup_steps"], help="linear learning-rate warm-up, in steps")
p.add_argument("--ema-decay", type=float, default=recipe["ema_decay"])
p.add_argument("--label-dropout", type=float, default=0.1)
p.add_argument("--schedule", default="linear", help="noise schedule kind (ScheduleConfig.kind)")
p.add_argument("--T", type=int, default=1000, help="diffusion steps of the schedule (ScheduleConfig.T)")
p.add_argument("--base-channels", type=int, default=recipe["base_channels"])
p.add_argument("--channel-mults", type=int, nargs="+", default=list(recipe["channel_mults"]))
p.add_argument("--num-res-blocks", type=int, default=recipe.get("num_res_blocks", 1))
p.add_argument("--attention", type=int, nargs="*", default=list(recipe["attention_resolutions"]),
               help="side lengths with self-attention")  # fmt: skip
p.add_argument("--dropout", type=float, default=recipe["dropout"], help="inside the residual blocks")
p.add_argument("--sample-batch", type=int, default=100, help="CPU forward passes are fastest at batch ~64-100")
p.add_argument("--device", default="cpu", help="cpu for the benchmark itself; cuda to search recipes by --steps")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="runs/quality_per_cpu_minute")
args = p.parse_args()
shift = args.shift
if shift is None:  # the recipe's for a flow model; the other objectives have no grid of flow times to shift
    shift = sampling.get("shift", 1.0) if args.objective == "flow" else 1.0
try:
    check_shift(shift, args.objective)  # before training, not after it
except ValueError as err:
    p.error(str(err))

x, y = load_mnist("train", source="bundled")
model_config = UNetConfig(
    base_channels=args.base_channels, channel_mults=tuple(args.channel_mults), num_res_blocks=args.num_res_blocks,
    attention_resolutions=tuple(args.attention), num_classes=10, dropout=args.dropout,
)  # fmt: skip
train_config = TrainConfig(
    steps=args.steps or 10**9, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, lr_decay=args.lr_decay,
    ema_decay=args.ema_decay, label_dropout=args.label_dropout, amp=False, checkpoint_every=10**9,
    log_every=100, seed=args.seed, device=args.device, objective=args.objective, loss_weighting=args.loss_weighting,
    min_snr_gamma=args.min_snr_gamma, cpu_bf16=bool(args.cpu_bf16), flow_time=args.flow_time,
    flow_time_loc=args.flow_time_loc,
)  # fmt: skip
trainer = Trainer(
    model_config, train_config, x, args.out, labels=y, schedule_config=ScheduleConfig(kind=args.schedule, T=args.T),
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
for spec in args.sampling:
    sampler, steps = spec.split(":")
    for w in args.guidance:
        t0 = time.perf_counter()
        samples = sample_in_batches(
            model, trainer.schedule, args.n, (1, 28, 28), labels=labels, batch_size=args.sample_batch, sampler=sampler,
            steps=int(steps), guidance=w, generator=torch.Generator().manual_seed(args.seed), device=trainer.device,
            objective=args.objective, precision=args.precision, shift=shift,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        metrics = evaluate_samples(to_uint8(samples[:, 0]), labels)
        metrics.update(sampler=sampler, steps=int(steps), guidance=w, shift=shift,
                       sampling_seconds=round(seconds, 1),
                       sampling_seconds_per_1000=round(seconds * 1000 / args.n, 1))  # fmt: skip
        results.append(metrics)
        print(json.dumps(metrics), flush=True)

print(json.dumps({
    "command": " ".join(["python", *sys.argv]),
    "settings": vars(args),
    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {trainer.device}",
    "train_seconds": round(train_seconds), "train_steps": trainer.step,
    "images_seen": trainer.step * args.batch_size, "results": results,
}, indent=2))  # fmt: skip
