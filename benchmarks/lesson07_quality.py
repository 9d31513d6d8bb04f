"""Lesson 07 at a larger sample than its FAST run: super-resolution (7x7 -> 28x28) against bicubic, and RePaint
inpainting against a mean-digit fill, on held-out bundled digits with the shipped models.

    python benchmarks/lesson07_quality.py [--sr-n 2000] [--sr-steps 50] [--sr-draws 2]
                                          [--inpaint-n 100] [--respaced 25] [--resample 4]

--sr-n 0 or --inpaint-n 0 skips that part.
"""

import argparse
import time

import torch

from ddpm_lessons.checkpoints import load_pretrained
from ddpm_lessons.data import load_mnist
from ddpm_lessons.inpainting import MASK_KINDS, hidden_rmse, make_mask, repaint
from ddpm_lessons.metrics import classify
from ddpm_lessons.samplers import respace, sample_ddim
from ddpm_lessons.superres import bicubic_upsample, conditioned, low_resolution, psnr
from ddpm_lessons.unet import NO_LABEL


def accuracy(images, labels):
    return (classify(images)[0] == labels).float().mean().item()


def super_resolution(x, y, steps, draws):
    model, schedule, record = load_pretrained(name="mnist_sr7")
    low = low_resolution(x, 7)
    c = bicubic_upsample(low, 28)
    samples = []
    for d in range(draws):
        samples.append(torch.cat([
            sample_ddim(conditioned(model, part), schedule, part.shape, steps=steps,
                        generator=torch.Generator().manual_seed(1000 * d + i))
            for i, part in enumerate(c.split(250))
        ]))  # fmt: skip
    rows = [("bicubic (baseline)", c), ("SR3, one sample", samples[0])]
    if draws > 1:
        rows.append((f"SR3, mean of {draws}", torch.stack(samples).mean(0)))
    print(f"super-resolution: n = {len(x)} held-out digits, 7x7 -> 28x28, DDIM-{steps}, model step {record['step']}")
    print(f"{'method':>22} {'PSNR (dB)':>10} {'accuracy':>9} {'consistency (dB)':>17}")
    for name, images in rows:
        consistency = psnr(low_resolution(images, 7), low).mean().item()
        print(f"{name:>22} {psnr(images, x).mean().item():>10.2f} {accuracy(images, y):>9.1%} {consistency:>17.1f}")


def inpainting(x, y, respaced, resample):
    model, schedule, record = load_pretrained()
    short_model, short = respace(model, schedule, respaced)
    mean_digit = load_mnist("train", source="bundled")[0].mean(0, keepdim=True)
    print(f"inpainting: n = {len(x)} held-out digits per mask, RePaint over {respaced} respaced steps, U = {resample}, "
          f"sigma^2 = beta_tilde, no label; model step {record['step']}")  # fmt: skip
    print(f"{'mask':>7} {'method':>16} {'accuracy':>9} {'hidden RMSE':>12}")
    for kind in MASK_KINDS:
        mask = make_mask(kind, len(x), generator=torch.Generator().manual_seed(0))
        filled = repaint(short_model, short, x, mask, resample=resample, y=torch.full((len(x),), NO_LABEL),
                         variance="beta_tilde", generator=torch.Generator().manual_seed(1))  # fmt: skip
        baseline = mask * x + (1 - mask) * mean_digit
        for name, images in (("RePaint", filled), ("mean-digit fill", baseline)):
            print(f"{kind:>7} {name:>16} {accuracy(images, y):>9.1%} {hidden_rmse(images, x, mask):>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sr-n", type=int, default=2000)
    parser.add_argument("--sr-steps", type=int, default=50)
    parser.add_argument("--sr-draws", type=int, default=2)
    parser.add_argument("--inpaint-n", type=int, default=100)
    parser.add_argument("--respaced", type=int, default=25)
    parser.add_argument("--resample", type=int, default=4)
    args = parser.parse_args()
    x, y = load_mnist("test", source="bundled")
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.sr_n > 0:  # 0 skips this part
        start = time.perf_counter()
        super_resolution(x[: args.sr_n], y[: args.sr_n], args.sr_steps, args.sr_draws)
        print(f"({(time.perf_counter() - start) / 60:.1f} min)")
    if args.inpaint_n > 0:
        start = time.perf_counter()
        inpainting(x[: args.inpaint_n], y[: args.inpaint_n], args.respaced, args.resample)
        print(f"({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
