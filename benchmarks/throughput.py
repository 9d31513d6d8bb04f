"""Training throughput and peak memory: the course U-Net against diffusers.UNet2DModel.

    python benchmarks/throughput.py [--batch 128] [--rounds 4] [--steps 5]

Both networks have the same layout (channels 32/64/64, one residual block per level, attention at
7x7) and, as printed, the same parameter count. Speed: both train in this one process, in
alternating rounds (ours, theirs, ours, ...) so that machine load hits both alike; the median
images/s of each is reported with the ratio. Peak memory: each model trains in a fresh
subprocess, which resets the kernel's high-water mark (/proc/self/clear_refs) after its imports and
reports the peak resident set size (VmHWM) above the size before building the model, since
PyTorch's CPU allocator has no peak counter. Linux only.

Memory is measured twice, each the median of --memory-repeats subprocesses: with glibc's default
malloc, whose peak also counts freed memory that malloc keeps for reuse (it varies by 10% from run
to run), and with MALLOC_MMAP_THRESHOLD_=131072, which returns every freed block over 128 KiB to
the system, so that the peak is what the training step actually holds.

Ceiling: one more training step of each, under torch.profiler, splits the time into the
convolutions (oneDNN's kernels, forward and backward, the same for both networks) and everything
else. If everything but the convolutions took no time at all, ours could be at most
(diffusers' total) / (our convolution time) times as fast: the best any rewrite around the same
convolutions can reach.
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


def build(which: str):
    if which == "ours":
        from ddpm_lessons.unet import UNet, UNetConfig

        return UNet(UNetConfig())
    from diffusers import UNet2DModel

    net = UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, dropout=0.1,
    )  # fmt: skip

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


CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::convolution")


def profile_step(model, opt, batch: int) -> tuple[float, float]:
    """(total, convolution) seconds of one training step, from the profiler's self times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(model, opt, batch, 1)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONVOLUTION_OPS) / 1e6
    return total, conv


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def peak_memory_child(which: str, batch: int) -> None:
    build(which)  # import everything the model needs first, then measure from here
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    model = build(which)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_steps(model, opt, batch, 3)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--memory-repeats", type=int, default=3)
    p.add_argument("--memory-child", choices=["ours", "diffusers"])
    args = p.parse_args()
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.batch)

    models = {name: build(name) for name in ("ours", "diffusers")}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    for name in models:
        train_steps(models[name], opts[name], args.batch, 1)  # warm-up
    speeds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            speeds[name].append(train_steps(models[name], opts[name], args.batch, args.steps))
    profiled = {name: profile_step(models[name], opts[name], args.batch) for name in models}
    modes = {"default malloc": {}, "freed memory returned": {"MALLOC_MMAP_THRESHOLD_": "131072"}}
    memory = {(name, mode): [] for name in models for mode in modes}
    for _ in range(args.memory_repeats):
        for mode, extra_env in modes.items():
            for name in models:
                command = [sys.executable, __file__, "--memory-child", name, "--batch", str(args.batch)]
                env = {**os.environ, **extra_env}
                out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                memory[name, mode].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])
    memory = {key: statistics.median(values) for key, values in memory.items()}
    med = {name: statistics.median(v) for name, v in speeds.items()}
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"batch {args.batch}, {args.rounds} alternating rounds of {args.steps} training steps each")
    for name in models:
        rounds = ", ".join(f"{s:.1f}" for s in speeds[name])
        print(f"{name:10s} params {params[name]:,}  images/s median {med[name]:6.1f} (rounds: {rounds})")
        for mode in modes:
            print(f"{'':10s} peak memory above baseline, {mode}: {memory[name, mode]:.0f} MiB")
        total, conv = profiled[name]
        print(f"{'':10s} profiled step {total:.2f} s, of which convolutions {conv:.2f} s ({conv / total:.0%})")
    paired = [a / b for a, b in zip(speeds["ours"], speeds["diffusers"], strict=True)]
    print(f"speed ratio ours/diffusers: {med['ours'] / med['diffusers']:.2f}x (target >= 1.5x); "
          f"per round: {', '.join(f'{r:.2f}' for r in paired)}")  # fmt: skip
    ceiling = profiled["diffusers"][0] / profiled["ours"][1]
    print(f"ceiling with the same convolutions (diffusers' step / our convolution time): {ceiling:.2f}x")
    for mode in modes:
        ratio = memory["ours", mode] / memory["diffusers", mode]
        print(f"memory ratio ours/diffusers, {mode}: {ratio:.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
