"""Sampling variants tried on a trained flow model, each against the setting its record carries, on the same sample
seeds (benchmarks/README.md, "Time to quality", "What was tried at sampling on these runs").

    python benchmarks/flow_sampling_probes.py --checkpoint runs/ttq_seed1/model.safetensors --seeds 0 1 \
        --probes record interval:0.2:0.2:0.9 eta:20:0.5 clip

Probes (w: the guidance weight, the record's unless given; s = 1 is noise, s = 0 the data):

- ``record``: the record's sampler, evaluations and w, as ``sample`` draws them;
- ``heun:K``: Heun with K model evaluations at the record's w;
- ``shift:X``: the record's sampler with its grid of flow times moved towards the noise by X (``flow.shift_flow_time``;
  Esser et al. 2024, Sec. 5.3.2; 1: an even grid);
- ``setting:SAMPLER:K:W:X``: any setting ``sample`` takes: euler, heun, dpmpp-2m or unipc (the last two on the flow
  path, ``solvers.sample_flow_multistep``), K model evaluations, guidance W, shift X;
- ``interval:W:LO:HI``: the record's sampler with guidance W only at flow times s in [LO, HI], the conditional
  velocity alone elsewhere (Kynkaenniemi et al. 2024, guidance in a limited interval);
- ``eta:STEPS:ETA``: DDIM's update with its eta (Song et al. 2021, Eq. 12) on the flow path, alpha = 1 - s and
  sigma = s, over STEPS even steps at the record's w, from the same x_1 as the other probes (the added noise z from a
  generator of its own); eta = 0 is the Euler step, eta at most 1;
- ``clip``: the record's sampler, with each data prediction x0 = x - s v clipped to [-1, 1] and v recomputed;
- ``autoguide:WEIGHTS:W``: v = (1 + W) v_model - W v_guide, both conditional and without label guidance, where the
  guide is the same network with the state dict in WEIGHTS (for example an EMA copy from ``ema_copies.py``;
  Karras et al. 2024, autoguidance, whose weight is 1 + W).

Every probe draws x_1 as ``sample`` does for the same seed, runs the network in bfloat16 (``sample --precision
auto`` does so only on a CPU that computes it natively), 100 samples per batch, and scores the samples unquantised
(``sample`` writes 8-bit images; the difference is in the third digit). The model must be a class-conditional flow
model for 28 x 28 digits with a sampling setting in its record (what ``train --dataset mnist --conditional`` writes).

``--weights`` loads another state dict into the model first (``raw``: the un-averaged weights of the run's
checkpoint.pt). Prints, per probe and seed, accuracy, Frechet distance and its ratio to the floor, then the means.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from ddpm_lessons.checkpoints import load_model, load_training_checkpoint
from ddpm_lessons.flow import FLOW_TIME_SCALE, check_flow_shift, flow_timesteps
from ddpm_lessons.metrics import evaluate_samples
from ddpm_lessons.objectives import objective_of
from ddpm_lessons.samplers import guided_eps
from ddpm_lessons.solvers import SAMPLERS_FOR, in_bfloat16, sample_in_batches

p = argparse.ArgumentParser()
p.add_argument("--checkpoint", required=True, help="a flow model's model.safetensors")
p.add_argument("--weights", default=None, help="raw, or a state dict (.pt) to load into the model")
p.add_argument("--n", type=int, default=2000)
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--probes", nargs="+", default=["record"])
args = p.parse_args()


def parse(probe: str) -> tuple[str, list[str]]:
    """A probe's kind and arguments, checked before anything is sampled."""
    kind, _, rest = probe.partition(":")
    if kind == "autoguide":  # the weights' path may hold colons: the weight is after the last one
        path, _, weight = rest.rpartition(":")
        if not Path(path).is_file():
            p.error(f"probe {probe!r}: no state dict at {path!r}")
        return kind, [path, weight]
    values = rest.split(":") if rest else []
    arity = {"record": 0, "clip": 0, "heun": 1, "shift": 1, "eta": 2, "interval": 3, "setting": 4}
    if kind not in arity or len(values) != arity[kind]:
        p.error(f"probe {probe!r}: write record, heun:K, shift:X, setting:SAMPLER:K:W:X, interval:W:LO:HI, "
                "eta:STEPS:ETA, clip or autoguide:WEIGHTS:W")  # fmt: skip
    if kind == "setting":
        if values[0] not in SAMPLERS_FOR["flow"]:
            p.error(f"probe {probe!r}: a flow model's sampler is one of {', '.join(SAMPLERS_FOR['flow'])}")
        values = values[1:]  # the numbers; the sampler is read again in run()
    numbers = [float(v) for v in values]
    if kind in ("shift", "setting"):
        try:
            check_flow_shift(numbers[-1])
        except ValueError as err:
            p.error(f"probe {probe!r}: {err}")
    if kind == "setting" and numbers[1] < 0:
        p.error(f"probe {probe!r}: the guidance weight must be at least 0")
    if kind == "interval" and not 0 <= numbers[1] <= numbers[2] <= 1:
        p.error(f"probe {probe!r}: the interval must satisfy 0 <= LO <= HI <= 1")
    if kind == "eta" and not 0 <= numbers[1] <= 1:
        p.error(f"probe {probe!r}: eta must lie in [0, 1] (0: the Euler step, 1: the most noise DDIM's update allows)")
    if kind in ("heun", "eta", "setting") and int(numbers[0]) < 1:
        p.error(f"probe {probe!r}: the number of evaluations must be at least 1")
    return kind, rest.split(":") if rest else []


probes = [(probe, *parse(probe)) for probe in args.probes]
model, schedule, record = load_model(args.checkpoint)
if objective_of(record) != "flow" or not model.config.num_classes or "sampling" not in record:
    p.error(f"{args.checkpoint}: the probes need a class-conditional flow model whose record carries a sampling "
            "setting (train --dataset mnist --conditional writes one)")  # fmt: skip
if args.weights == "raw":
    model.load_state_dict(load_training_checkpoint(Path(args.checkpoint).with_name("checkpoint.pt"))[0]["model"])
elif args.weights:
    model.load_state_dict(torch.load(args.weights, weights_only=True))
model.eval()
sampling = record["sampling"]
labels = torch.arange(args.n) % 10


def guided(net, weight_at):
    """A velocity network that guides by itself, ``samplers.guided_eps`` at w = weight_at(s), on the network's output in
    float32 (``sample`` combines the two halves outside bfloat16 too)."""

    def in_float32(*inputs):
        return net(*inputs).float()

    return lambda x, t_in, y: guided_eps(in_float32, x, t_in, y, weight_at(float(t_in[0]) / FLOW_TIME_SCALE))


def draw(net, sampler: str, steps: int, seed: int, shift: float | None = None) -> torch.Tensor:
    """The package's flow sampler on a network that does its own guidance (guidance 0 here), network in bf16, on the
    record's grid of flow times unless given another shift."""
    return sample_in_batches(net, schedule, args.n, (1, 28, 28), labels=labels, batch_size=100, sampler=sampler,
                             steps=steps, guidance=0.0, precision="bf16", objective="flow",
                             shift=sampling.get("shift", 1.0) if shift is None else shift,
                             generator=torch.Generator().manual_seed(seed))  # fmt: skip


@torch.no_grad()
def draw_eta(steps: int, eta: float, w: float, seed: int) -> torch.Tensor:
    """DDIM's update x' = a' x0 + sqrt(s'^2 - c^2) eps + c z on alpha = 1 - s, sigma = s, where
    c = eta s' sqrt(1 - (a s')^2 / (a' s)^2) (Song et al. 2021, Eq. 16 in these coordinates), x0 = x - s v and
    eps = x + (1 - s) v (the flow path, Liu et al. 2023, Eq. 1, solved for each); 100 samples at a time, x_1 drawn from
    the seed's generator as ``sample_in_batches`` draws it, z from a second one."""
    net, out = in_bfloat16(guided(model, lambda s: w)), []
    g, g_noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)
    grid = flow_timesteps(steps)
    for start in range(0, args.n, 100):
        y = labels[start : start + 100]
        x = torch.randn(len(y), 1, 28, 28, generator=g)  # x_1 as sample_in_batches draws it
        for s, s_next in zip(grid[:-1], grid[1:], strict=True):
            v = net(x, torch.full((len(y),), FLOW_TIME_SCALE * s), y).float()
            x0, eps = x - s * v, x + (1 - s) * v
            if s_next == 0:
                x = x0
                break
            a, a_next = 1 - s, 1 - s_next
            c = eta * s_next * math.sqrt(max(0.0, 1 - (a * s_next) ** 2 / (a_next * s) ** 2))
            x = a_next * x0 + math.sqrt(s_next**2 - c**2) * eps
            if c > 0:
                x = x + c * torch.randn(x.shape, generator=g_noise)
        out.append(x)
    return torch.cat(out)


guides: dict[str, torch.nn.Module] = {}


def run(kind: str, rest: list[str], seed: int) -> torch.Tensor:
    w, sampler, steps = sampling["guidance"], sampling["sampler"], sampling["steps"]
    if kind == "record":
        return draw(guided(model, lambda s: w), sampler, steps, seed)
    if kind == "heun":
        return draw(guided(model, lambda s: w), "heun", int(rest[0]), seed)
    if kind == "shift":
        return draw(guided(model, lambda s: w), sampler, steps, seed, shift=float(rest[0]))
    if kind == "setting":
        ws = float(rest[2])
        return draw(guided(model, lambda s: ws), rest[0], int(rest[1]), seed, shift=float(rest[3]))
    if kind == "interval":
        wi, lo, hi = (float(v) for v in rest)
        return draw(guided(model, lambda s: wi if lo <= s <= hi else 0.0), sampler, steps, seed)
    if kind == "eta":
        return draw_eta(int(rest[0]), float(rest[1]), w, seed)
    if kind == "clip":
        inner = guided(model, lambda s: w)

        def clipped(x, t_in, y):
            s = float(t_in[0]) / FLOW_TIME_SCALE
            v = inner(x, t_in, y).float()
            return (x - (x - s * v).clamp(-1.0, 1.0)) / s

        return draw(clipped, sampler, steps, seed)
    if kind == "autoguide":
        if rest[0] not in guides:
            guides[rest[0]] = copy.deepcopy(model)
            guides[rest[0]].load_state_dict(torch.load(rest[0], weights_only=True))
        guide, wa = guides[rest[0]], float(rest[1])
        return draw(lambda x, t_in, y: (1 + wa) * model(x, t_in, y).float() - wa * guide(x, t_in, y).float(), sampler,
                    steps, seed)  # fmt: skip
    raise AssertionError(kind)  # parse() admits no other kind


print(f"{args.checkpoint} (weights: {args.weights or 'its EMA'}), step {record['step']}; record's setting {sampling}; "
      f"n = {args.n}")  # fmt: skip
for probe, kind, rest in probes:
    scores = []
    for seed in args.seeds:
        r = evaluate_samples(run(kind, rest, seed).clamp(-1.0, 1.0), labels)
        scores.append((r["conditional_accuracy"], r["frechet_distance"], r["frechet_ratio"]))
        print(f"{probe:28s} seed {seed}: {r['conditional_accuracy']:.2%}, FD {r['frechet_distance']:.2f}, "
              f"{r['frechet_ratio']:.3f}x", flush=True)  # fmt: skip
    mean = [sum(values) / len(values) for values in zip(*scores, strict=True)]
    print(f"{probe:28s} mean over seeds {args.seeds}: {mean[0]:.2%}, FD {mean[1]:.2f}, {mean[2]:.3f}x", flush=True)
