"""Prompts for digits, built from what each digit looks like (lesson 08).

Three properties are measured on every image (in [-1, 1], (N, 1, 28, 28); ink = pixels brighter than mid-grey):

- thickness: ink area / height of the ink's bounding box (a stroke's width, roughly);
- size: area of the ink's bounding box (MNIST scales every digit to fit 20 x 20, so wide digits are "large");
- slant: how far the top leans right of the bottom, -cov(col, row) / var(row) over the ink (0 = upright).

Each property is cut into thirds *within each digit class* on the training digits (a thick one is thick for
a one), and the outer thirds get words: thin / thick, small / large, upright / tilted. A prompt names the digit
and each outer-third property with probability 0.7, e.g. "a thick tilted seven", so the model also learns
prompts that leave things out.
"""

from __future__ import annotations

import torch

from ddpm_lessons.samplers import sample_ddim
from ddpm_lessons.text import DIGIT_WORDS, tokenize

PROPERTIES = ("thickness", "size", "slant")
WORDS = {"thickness": ("thin", "thick"), "size": ("small", "large"), "slant": ("upright", "tilted")}


def measure(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, 1, 28, 28) in [-1, 1] -> {"thickness", "size", "slant"}: (N,) float64 each."""
    ink = ((images.double()[:, 0] + 1) / 2).clamp(0, 1)  # (N, H, W) in [0, 1]
    on = ink > 0.5
    rows, cols = on.any(2), on.any(1)  # (N, H), (N, W): which rows / columns hold ink
    idx = torch.arange(ink.shape[1], dtype=torch.float64)

    def extent(occupied: torch.Tensor) -> torch.Tensor:
        first = torch.where(occupied, idx, torch.inf).amin(1)
        last = torch.where(occupied, idx, -torch.inf).amax(1)
        return (last - first + 1).clamp(min=1).nan_to_num(1.0)  # 1 for an empty image

    height, width = extent(rows), extent(cols)
    mass = ink.sum((1, 2)).clamp(min=1e-6)
    r = (ink * idx.view(1, -1, 1)).sum((1, 2)) / mass  # mean row
    c = (ink * idx.view(1, 1, -1)).sum((1, 2)) / mass  # mean column
    dr, dc = idx.view(1, -1, 1) - r.view(-1, 1, 1), idx.view(1, 1, -1) - c.view(-1, 1, 1)
    cov_rc = (ink * dr * dc).sum((1, 2)) / mass
    var_r = (ink * dr * dr).sum((1, 2)) / mass
    return {
        "thickness": on.sum((1, 2)).double() / height,
        "size": height * width,
        "slant": -cov_rc / var_r.clamp(min=1e-6),  # rows grow downwards: a top leaning right has cov < 0
    }


def thresholds(images: torch.Tensor, labels: torch.Tensor) -> dict[str, list[list[float]]]:
    """Per property and digit, the 1/3 and 2/3 quantiles on these (training) images: {"slant": [[q1, q2] x 10]}."""
    props = measure(images)
    out = {}
    for name in PROPERTIES:
        qs = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
        out[name] = [torch.quantile(props[name][labels == d], qs).tolist() for d in range(10)]
    return out


def thirds(images: torch.Tensor, labels: torch.Tensor, cuts: dict) -> dict[str, torch.Tensor]:
    """Which third of its digit's training distribution each image falls in: -1 low, 0 middle, +1 high."""
    props, labels = measure(images), torch.as_tensor(labels).long()
    out = {}
    for name in PROPERTIES:
        q = torch.tensor(cuts[name], dtype=torch.float64)[labels]  # (N, 2)
        v = props[name]
        out[name] = (v > q[:, 1]).long() - (v < q[:, 0]).long()
    return out


def build_prompts(
    images: torch.Tensor, labels: torch.Tensor, cuts: dict, keep: float = 0.7, seed: int = 0
) -> list[str]:
    """One prompt per image: "a [thin|thick] [small|large] [upright|tilted] <digit>", each outer-third word kept
    with probability ``keep``."""
    g = torch.Generator().manual_seed(seed)
    bins = thirds(images, labels, cuts)
    coins = torch.rand(len(labels), len(PROPERTIES), generator=g) < keep
    prompts = []
    for i, label in enumerate(torch.as_tensor(labels).tolist()):
        words = ["a"]
        for j, name in enumerate(PROPERTIES):
            b = int(bins[name][i])
            if b != 0 and coins[i, j]:
                words.append(WORDS[name][(b + 1) // 2])
        prompts.append(" ".join([*words, DIGIT_WORDS[label]]))
    return prompts


@torch.no_grad()
def generate(model, schedule, autoencoder, prompts: list[str], guidance: float = 2.0, steps: int = 20, seed: int = 0,
             device="cpu") -> torch.Tensor:  # fmt: skip
    """Digits for text prompts: DDIM with classifier-free guidance over the latents, then the decoder.
    Returns (len(prompts), 1, 28, 28) in [-1, 1] on the CPU."""
    tokens = tokenize(prompts).to(device)
    z = sample_ddim(model, schedule, (len(tokens), autoencoder.config.latent_channels, 7, 7), steps=steps, y=tokens,
                    guidance=guidance, generator=torch.Generator().manual_seed(seed), device=device)  # fmt: skip
    return autoencoder.decode(z.cpu())


def prompt_control(generate_fn, cuts: dict, per_word: int = 30, classifier=None) -> list[dict]:
    """Does the prompt control what it says? For each attribute word, ``generate_fn(prompts)`` draws digits for
    "a <word> <digit>" (every digit in turn); the property is measured on them and placed in its digit's thirds.

    Returns one row per word: the share of samples in the word's third ("hit", chance about 1/3), in the opposite
    third ("opposite"), read as the right digit by the classifier, and the measured values; then a row
    "no attribute" for "a <digit>" with the share in the low and high third of every property (and all values)."""
    from ddpm_lessons.metrics import classify

    digits = torch.arange(per_word) % 10
    rows = []
    for name in PROPERTIES:
        for third, word in zip((-1, 1), WORDS[name], strict=True):
            images = generate_fn([f"a {word} {DIGIT_WORDS[d]}" for d in digits])
            got = thirds(images, digits, cuts)[name]
            right = (classify(images, classifier)[0] == digits).float().mean().item()
            rows.append({"word": word, "property": name, "hit": (got == third).float().mean().item(),
                         "opposite": (got == -third).float().mean().item(), "digit_right": right,
                         "values": measure(images)[name]})  # fmt: skip
    plain = generate_fn([f"a {DIGIT_WORDS[d]}" for d in digits])
    bins = thirds(plain, digits, cuts)
    row = {"word": "no attribute", "digit_right": (classify(plain, classifier)[0] == digits).float().mean().item(),
           "values": measure(plain)}  # fmt: skip
    for name in PROPERTIES:
        row[f"{name}_low"], row[f"{name}_high"] = ((bins[name] == b).float().mean().item() for b in (-1, 1))
    return [*rows, row]
