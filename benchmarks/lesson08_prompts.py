"""Lesson 08 at a larger sample: does the prompt control what it says? The shipped autoencoder and latent
text model, DDIM-20 with guidance w, `per_word` digits for each attribute word (every digit in turn).

    python benchmarks/lesson08_prompts.py [--per-word 300] [--guidance 2]
"""

import argparse
import time

import torch

from ddpm_lessons.checkpoints import PRETRAINED_LATENT_TEXT, load_autoencoder, load_model
from ddpm_lessons.prompts import PROPERTIES, generate, prompt_control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-word", type=int, default=300)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    ae, ae_record = load_autoencoder()
    model, schedule, record = load_model(PRETRAINED_LATENT_TEXT)
    start = time.perf_counter()

    def draw(prompts):
        return generate(model, schedule, ae, prompts, args.guidance, args.steps, seed=1)

    rows = prompt_control(draw, ae_record["prompt_thresholds"], per_word=args.per_word)
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}; model step {record['step']}")
    print(f"n = {args.per_word} per row (every digit), DDIM-{args.steps}, guidance w = {args.guidance}")
    print(f"{'prompt word':>12} {'property':>10} {'in its third':>13} {'in the opposite':>16} {'digit right':>12}")
    for r in rows[:-1]:
        print(f"{r['word']:>12} {r['property']:>10} {r['hit']:>13.1%} {r['opposite']:>16.1%} {r['digit_right']:>12.1%}")
    plain = rows[-1]
    shares = ", ".join(f"{n} low/high {plain[n + '_low']:.1%}/{plain[n + '_high']:.1%}" for n in PROPERTIES)
    print(f"{'no attribute':>12}: {shares}; digit right {plain['digit_right']:.1%}")
    print(f"({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
