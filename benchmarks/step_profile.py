"""Where one training step of the project's digits recipe spends its time on this CPU: the network's convolutions,
attention and normalisation, the optimiser and the EMA, gradient clipping, and everything else (batch drawing,
noising, the loss), from the profiler's self times over ``--steps`` steps of ``Trainer.train_step``. The split is by
operator name and approximate.

    python benchmarks/step_profile.py --steps 20 --objective eps

Also times, in alternating rounds, the same number of bare steps (the network's forward, in the same precision, its
backward and AdamW, nothing else), so that the per-step overhead of the trainer is read as a ratio, and the trainer's
steps with PyTorch's default AdamW in place of the fused one that ``training.adamw`` picks where it can, with
``--precision bf16`` the trainer's steps with attention left to PyTorch's bfloat16 kernel (``unet.attention``
computes it in float32 there), and, with ``--against``, the trainer's steps of a network with other
settings, as JSON:

    python benchmarks/step_profile.py --precision bf16 --objective flow --dropout 0 --rounds 4 \
        --against '{"attention_resolutions": []}'

Prints one JSON object.
"""

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ddpm_lessons import unet
from ddpm_lessons.data import load_mnist
from ddpm_lessons.objectives import OBJECTIVES
from ddpm_lessons.training import DIGITS_RECIPE, TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="TrainConfig.cpu_bf16 (recipe: bf16)")
p.add_argument("--objective", choices=OBJECTIVES, default=DIGITS_RECIPE["train"].get("objective", "eps"))
p.add_argument("--dropout", type=float, default=DIGITS_RECIPE["model"]["dropout"], help="inside the residual blocks")
p.add_argument("--against", type=json.loads, default=None,
               help="UNetConfig settings, as JSON, of a second network timed in the same rounds")  # fmt: skip
args = p.parse_args()
if args.against is not None and not isinstance(args.against, dict):
    p.error(f"--against takes UNetConfig settings as a JSON object, as '{{\"scale_shift\": true}}', got {args.against}")

CATEGORIES = {  # profiler op name fragments -> category (first match wins)
    "convolution": ("convolution", "mkldnn_conv"),
    "attention": ("scaled_dot_product", "attention"),
    "normalisation": ("group_norm", "groupnorm"),  # aten's and the package's fused GroupNorm + SiLU (fused.py)
    "optimiser and EMA": ("_foreach_", "adamw", "addcdiv", "addcmul", "lerp"),  # both use lerp: one category
    "gradient clipping": ("linalg_vector_norm",),  # clip_grad_norm_'s norms; its scaling (mul_) falls in "other"
}


def category(name: str) -> str:
    lowered = name.lower()
    return next((cat for cat, keys in CATEGORIES.items() if any(k in lowered for k in keys)), "other")


x, y = load_mnist("train", source="bundled")
config = UNetConfig(num_classes=10, **{**DIGITS_RECIPE["model"], "dropout": args.dropout})
train = {k: v for k, v in DIGITS_RECIPE["train"].items() if k in TrainConfig.__dataclass_fields__}
train.update(cpu_bf16=args.precision == "bf16", objective=args.objective, device="cpu", checkpoint_every=10**9)
trainer = Trainer(config, TrainConfig(**train), x, tempfile.mkdtemp(), labels=y, progress=False)
bare = trainer.model  # the same network and optimiser, stepped without the trainer around them
unfused = Trainer(config, TrainConfig(**train), x, tempfile.mkdtemp(), labels=y, progress=False)
unfused.optimizer = torch.optim.AdamW(
    unfused.model.parameters(), lr=unfused.config.lr, weight_decay=unfused.config.weight_decay
)
batch = train.get("batch_size", 64)
against = None
if args.against is not None:
    against = Trainer(UNetConfig(**{**config.to_dict(), **args.against}), TrainConfig(**train), x, tempfile.mkdtemp(),
                      labels=y, progress=False)  # fmt: skip


def bare_step() -> None:
    xb, t, yb = x[:batch], torch.randint(0, 1000, (batch,)), y[:batch]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):  # as the trainer runs it
        out = bare(xb, t, yb)
    loss = (out.float() - xb).pow(2).mean()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()


def kernel_attention_step() -> None:  # only where the package's attention differs: a bfloat16 step
    own = unet.attention
    unet.attention = F.scaled_dot_product_attention  # in the step's precision, bfloat16 under the CPU autocast
    try:
        kernel_attention.train_step(progress=0.0)
    finally:
        unet.attention = own


steps = [
    ("trainer", lambda: trainer.train_step(progress=0.0)),
    ("bare", bare_step),
    ("trainer_default_adamw", lambda: unfused.train_step(progress=0.0)),
]
if args.precision == "bf16":
    kernel_attention = Trainer(config, TrainConfig(**train), x, tempfile.mkdtemp(), labels=y, progress=False)
    steps.append(("trainer_kernel_attention", kernel_attention_step))
if against is not None:
    steps.append(("trainer_against", lambda: against.train_step(progress=0.0)))
for _ in range(5):  # warm-up
    for _, step in steps:
        step()
timings = {name: [] for name, _ in steps}
for _ in range(args.rounds):
    for name, step in steps:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        timings[name].append((time.perf_counter() - start) / args.steps)

with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(args.steps):
        trainer.train_step(progress=0.0)
shares = defaultdict(float)
for event in prof.key_averages():
    shares[category(event.key)] += event.self_cpu_time_total
total = sum(shares.values())
median = {name: sorted(values)[len(values) // 2] for name, values in timings.items()}
print(json.dumps({
    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    "precision": args.precision, "batch": batch,
    "seconds_per_step": {name: round(value, 4) for name, value in median.items()},
    "images_per_s": round(batch / median["trainer"], 1),
    "trainer_over_bare": round(median["trainer"] / median["bare"], 3),
    "fused_adamw": trainer.optimizer.defaults["fused"],
    "default_adamw_over_fused": round(median["trainer_default_adamw"] / median["trainer"], 3),
    **({"kernel_attention_over_trainer": round(median["trainer_kernel_attention"] / median["trainer"], 3)}
       if "trainer_kernel_attention" in median else {}),
    **({"against": args.against, "against_over_trainer": round(median["trainer_against"] / median["trainer"], 3)}
       if against is not None else {}),
    "share_of_profiled_time": {cat: round(v / total, 3) for cat, v in sorted(shares.items(), key=lambda kv: -kv[1])},
}, indent=2))  # fmt: skip
