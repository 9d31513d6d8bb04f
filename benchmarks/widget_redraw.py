"""How long one slider move of the forward-diffusion explorer takes (target: well under 100 ms).

    python benchmarks/widget_redraw.py [--moves 50]

Measures the work a move triggers in the kernel: q_sample for the shown digits, updating the
artists, drawing them over the cached background and encoding the PNG the browser receives.
The first draw (the whole figure, no cache) is reported separately, and so is a schedule change,
which redraws the background.
"""

import argparse
import platform
import time

import torch

from ddpm_lessons.data import load_mnist
from ddpm_lessons.widgets import ForwardDiffusionExplorer

p = argparse.ArgumentParser()
p.add_argument("--moves", type=int, default=50)
args = p.parse_args()

x, y = load_mnist("test", source="bundled")
explorer = ForwardDiffusionExplorer(torch.stack([x[y == d][0] for d in range(6)]))
start = time.perf_counter()
png = explorer.png()
first = (time.perf_counter() - start) * 1000
move = explorer.redraw_ms(args.moves)
start = time.perf_counter()
explorer.update(kind="cosine")
explorer.png()
schedule_change = (time.perf_counter() - start) * 1000
print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads")
print(f"first full draw: {first:.0f} ms; PNG {len(png) / 1024:.0f} KiB")
print(f"t slider move: median {move:.1f} ms over {args.moves} moves (target well under 100 ms)")
print(f"schedule change (background redrawn): {schedule_change:.0f} ms")
