"""Build data/shapes/: 300 small RGB images (32 x 32 PNG) of one coloured shape each, for lesson 09 and
`train --dataset folder` to run offline. Deterministic: the same files on every run (seed 0).

    python scripts/build_shapes_folder.py

Each image: a pale background of random tint, and one circle, square or triangle of random colour, size,
position (and, for triangles, rotation), drawn at 4x and downsampled for smooth edges.
"""

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "data" / "shapes"
N, SIZE, SCALE = 300, 32, 4


def draw(rng: random.Random) -> Image.Image:
    big = SIZE * SCALE
    background = tuple(rng.randint(215, 250) for _ in range(3))
    colour = tuple(rng.randint(20, 200) for _ in range(3))
    im = Image.new("RGB", (big, big), background)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.18, 0.34) * big  # half the shape's size
    cx, cy = rng.uniform(r + 4, big - r - 4), rng.uniform(r + 4, big - r - 4)
    kind = rng.choice(["circle", "square", "triangle"])
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        a = rng.uniform(0, 2 * math.pi)
        d.polygon([(cx + r * math.cos(a + k * 2 * math.pi / 3), cy + r * math.sin(a + k * 2 * math.pi / 3))
                   for k in range(3)], fill=colour)  # fmt: skip
    return im.resize((SIZE, SIZE), Image.LANCZOS), kind


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    rng = random.Random(0)
    for i in range(N):
        im, kind = draw(rng)
        im.save(OUT / f"{i:03d}_{kind}.png", optimize=True)
    total = sum(p.stat().st_size for p in OUT.glob("*.png"))
    print(f"wrote {N} images to {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
