"""Train lesson 08's two shipped models on the bundled digits, on a CPU in about half an hour (7.2 minutes for
the autoencoder and 20 minutes for the latent model on the 2-core machine, data/checkpoints/README.md):

1. the autoencoder (28 x 28 digit <-> 4 x 7 x 7 latent), written to data/checkpoints/digits_autoencoder.safetensors;
2. a text-conditioned diffusion model on its latents, with prompts built from each digit's label and measured
   thickness, size and slant (ddpm_lessons.prompts), trained by the package's Trainer with prompt dropout
   0.1 (for classifier-free guidance), written to data/checkpoints/latent_text.safetensors.

    python scripts/train_latent_text.py [--ae-steps 1500] [--steps 2500] [--out runs/latent_text]

The diffusion run is resumable (--resume); the autoencoder is retrained unless --reuse-autoencoder is given.
"""

import argparse
import shutil
import time

import torch

from ddpm_lessons.autoencoder import train_autoencoder
from ddpm_lessons.checkpoints import PRETRAINED_AUTOENCODER, PRETRAINED_LATENT_TEXT, load_autoencoder, save_autoencoder
from ddpm_lessons.data import load_mnist
from ddpm_lessons.metrics import conditional_accuracy
from ddpm_lessons.prompts import build_prompts, thresholds
from ddpm_lessons.text import tokenize
from ddpm_lessons.training import TrainConfig, Trainer
from ddpm_lessons.unet import UNetConfig

AUTOENCODER, LATENT_TEXT = PRETRAINED_AUTOENCODER, PRETRAINED_LATENT_TEXT
LATENT_CONFIG = UNetConfig(image_size=7, in_channels=4, base_channels=64, channel_mults=(1,), num_res_blocks=2,
                           attention_resolutions=(7,), dropout=0.1, text_conditioning=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae-steps", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--out", default="runs/latent_text")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--reuse-autoencoder", action="store_true")
    args = parser.parse_args()

    x, y = load_mnist("train", source="bundled")
    x_test, y_test = load_mnist("test", source="bundled")
    cuts = thresholds(x, y)
    if args.reuse_autoencoder:
        ae, _ = load_autoencoder(AUTOENCODER)
    else:
        start = time.perf_counter()
        ae = train_autoencoder(x, steps=args.ae_steps, batch_size=64)
        with torch.no_grad():
            recon = torch.cat([ae(c) for c in x_test.split(500)])
        mse = torch.mean((recon - x_test) ** 2).item()
        acc = conditional_accuracy(recon, y_test)
        minutes = (time.perf_counter() - start) / 60
        print(f"autoencoder: test MSE {mse:.4f}, classifier accuracy on reconstructions {acc:.1%}, {minutes:.1f} min")
        record = {"steps": args.ae_steps, "test_mse": mse, "test_accuracy_of_reconstructions": acc,
                  "prompt_thresholds": cuts}  # fmt: skip
        save_autoencoder(AUTOENCODER, ae, record)
    with torch.no_grad():
        latents = torch.cat([ae.encode(c) for c in x.split(500)])  # (N, 4, 7, 7) in [-1, 1]
    tokens = tokenize(build_prompts(x, y, cuts))
    recipe = TrainConfig(steps=args.steps, batch_size=128, lr=1e-3, warmup_steps=200, ema_decay=0.999,
                         label_dropout=0.1, checkpoint_every=500, seed=0)  # fmt: skip
    trainer = Trainer(LATENT_CONFIG, recipe, latents, args.out, labels=tokens, resume=args.resume)
    trainer.train()
    shutil.copy(f"{args.out}/model.safetensors", LATENT_TEXT)
    shutil.copy(f"{args.out}/model.json", LATENT_TEXT.with_suffix(".json"))
    print(f"wrote {AUTOENCODER} and {LATENT_TEXT} (step {trainer.step})")


if __name__ == "__main__":
    main()
