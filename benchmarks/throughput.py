"""Training throughput and peak memory: the course U-Net against diffusers.UNet2DModel.

    python benchmarks/throughput.py [--layout course|diffusers-mnist|both] [--batch 128] [--rounds 4] [--steps 5]

In each layout both networks are built alike and, as printed, have the same parameter count:
- course: the course's default UNetConfig (channels 32/64/64, one residual block per level, attention
  at 7x7 with one head, GroupNorm with 8 groups, dropout 0.1), 1,112,801 parameters;
- diffusers-mnist: the layout diffusers tutorials give UNet2DModel for 28x28 MNIST (the Hugging Face
  diffusion course, unit 1): channels 32/64/64, two residual blocks per level, attention at 14x14 and
  7x7 with diffusers' default 8-dimensional heads, 32 groups, no dropout; 1,707,009 parameters.

Speed: both train in this one process, in alternating rounds (ours, theirs, ours, ...) so that
machine load hits both alike; the median images/s of each is reported with the ratio. Peak memory:
each model trains in a fresh subprocess, which first builds a throwaway copy and trains it for one
step at batch 2 (so that imports and one-time initialisation, the same for any batch, fall before
the measurement), then resets the kernel's high-water mark (/proc/self/clear_refs) and reports the
peak resident set size (VmHWM) of three training steps above the size before building the model,
since PyTorch's CPU allocator has no peak counter. Linux only.

Memory is measured twice, each the median of --memory-repeats subprocesses: with glibc's default
malloc, whose peak also counts freed memory that malloc keeps for reuse (it varies by 10% from run
to run), and with MALLOC_MMAP_THRESHOLD_=131072, which returns every freed block over 128 KiB to
the system, so that the peak is what the training step actually holds.

Ceiling: more training steps of each under torch.profiler (the median of --profile-rounds
alternating rounds of one step) split the time into the kernels both networks call with the same
shapes (oneDNN's convolutions and PyTorch's fused attention, forward and backward) and everything
else. If everything else took no time at all, ours could be at most (diffusers' total) / (our time
in those kernels) times as fast: the best any rewrite around the same convolutions and attention can
reach. And how fast are those kernels? The convolutions' arithmetic (counted by torch's
FlopCounterMode) over their time is printed beside the rate of a large matrix product on the same
machine, a practical peak for any kernel.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

LAYOUTS = {
    "course": (
        {},
        dict(
            block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, dropout=0.1,
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        ),
    ),
    "diffusers-mnist": (
        dict(num_res_blocks=2, attention_resolutions=(14, 7), attention_heads=8, groups=32, dropout=0.0),
        dict(
            block_out_channels=(32, 64, 64), layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        ),
    ),
}  # fmt: skip


def build(which: str, layout: str = "course"):
    ours_config, diffusers_config = LAYOUTS[layout]
    if which == "ours":
        from ddpm_lessons.unet import UNet, UNetConfig

        return UNet(UNetConfig(**ours_config))
    from diffusers import UNet2DModel

    net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, **diffusers_config)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x, t).sample

    return Wrapped()


def train_steps(model, opt, batch: int, steps: int) -> float:
    x, g = torch.randn(batch, 1, 28, 28), torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        t = torch.randint(0, 1000, (batch,), generator=g)
        loss = (model(x, t) - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


# The kernels both networks call with the same shapes: oneDNN's convolutions and PyTorch's fused attention.
CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::convolution")
ATTENTION_OPS = (
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)


def profile_step(model, opt, batch: int) -> dict[str, float]:
    """Seconds of one training step (total, convolutions, attention) from the profiler's self times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(model, opt, batch, 1)
    events = prof.key_averages()
    return {
        "total": sum(e.self_cpu_time_total for e in events) / 1e6,
        "convolutions": sum(e.self_cpu_time_total for e in events if e.key in CONVOLUTION_OPS) / 1e6,
        "attention": sum(e.self_cpu_time_total for e in events if e.key in ATTENTION_OPS) / 1e6,
    }


def convolution_gflops(model, opt, batch: int) -> float:
    """The convolutions' arithmetic in one training step, forward and backward, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_steps(model, opt, batch, 1)
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if str(op).startswith("aten.convolution")) / 1e9  # and its backward


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The arithmetic rate of this machine's BLAS on a large float32 matrix product: a practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def peak_memory_child(which: str, layout: str, batch: int) -> None:
    # Import and initialise everything first, then measure from here. Constructing the first optimizer
    # alone imports about 150 MiB of modules, which diffusers' import has already loaded: left out of
    # this warm-up, it was counted in our peak and not in theirs.
    model = build(which, layout)
    train_steps(model, torch.optim.AdamW(model.parameters(), lr=1e-4), 2, 1)
    del model
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    model = build(which, layout)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_steps(model, opt, batch, 3)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def compare(layout: str, args: argparse.Namespace) -> None:
    models = {name: build(name, layout) for name in ("ours", "diffusers")}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    for name in models:
        train_steps(models[name], opts[name], args.batch, 1)  # warm-up
    speeds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            speeds[name].append(train_steps(models[name], opts[name], args.batch, args.steps))
    profiles = {name: [] for name in models}
    for _ in range(args.profile_rounds):  # alternating too: one profiled step is as noisy as a round
        for name in models:
            profiles[name].append(profile_step(models[name], opts[name], args.batch))
    profiled = {
        name: {key: statistics.median(p[key] for p in runs) for key in runs[0]} for name, runs in profiles.items()
    }
    gflops = {name: convolution_gflops(models[name], opts[name], args.batch) for name in models}  # the same each step
    modes = {"default malloc": {}, "freed memory returned": {"MALLOC_MMAP_THRESHOLD_": "131072"}}
    memory = {(name, mode): [] for name in models for mode in modes}
    for _ in range(args.memory_repeats):
        for mode, extra_env in modes.items():
            for name in models:
                command = [sys.executable, __file__, "--memory-child", name, "--layout", layout]
                command += ["--batch", str(args.batch)]
                env = {**os.environ, **extra_env}
                out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                memory[name, mode].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])
    memory = {key: statistics.median(values) for key, values in memory.items()}
    med = {name: statistics.median(v) for name, v in speeds.items()}
    print(f"layout {layout}: batch {args.batch}, {args.rounds} alternating rounds of {args.steps} training steps each")
    for name in models:
        rounds = ", ".join(f"{s:.1f}" for s in speeds[name])
        print(f"{name:10s} params {params[name]:,}  images/s median {med[name]:6.1f} (rounds: {rounds})")
        for mode in modes:
            print(f"{'':10s} peak memory above baseline, {mode}: {memory[name, mode]:.0f} MiB")
        prof = profiled[name]
        rate = gflops[name] / prof["convolutions"]
        print(f"{'':10s} profiled step {prof['total']:.2f} s: convolutions {prof['convolutions']:.2f} s "
              f"({prof['convolutions'] / prof['total']:.0%}; {gflops[name]:.0f} GFLOP at {rate:.0f} "
              f"GFLOP/s), attention {prof['attention']:.2f} s")  # fmt: skip
    paired = [a / b for a, b in zip(speeds["ours"], speeds["diffusers"], strict=True)]
    print(f"speed ratio ours/diffusers: {med['ours'] / med['diffusers']:.2f}x; "
          f"per round: {', '.join(f'{r:.2f}' for r in paired)}")  # fmt: skip
    ceiling = profiled["diffusers"]["total"] / (profiled["ours"]["convolutions"] + profiled["ours"]["attention"])
    print(f"ceiling with the same kernels (diffusers' step / our convolution and attention time): {ceiling:.2f}x")
    for mode in modes:
        ratio = memory["ours", mode] / memory["diffusers", mode]
        print(f"memory ratio ours/diffusers, {mode}: {ratio:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--profile-rounds", type=int, default=3)
    p.add_argument("--memory-repeats", type=int, default=3)
    p.add_argument("--memory-child", choices=["ours", "diffusers"])
    args = p.parse_args()
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.layout, args.batch)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"a 2048x2048 float32 matrix product runs at {matmul_gflops():.0f} GFLOP/s")  # fmt: skip
    for layout in LAYOUTS if args.layout == "both" else [args.layout]:
        compare(layout, args)


if __name__ == "__main__":
    main()
