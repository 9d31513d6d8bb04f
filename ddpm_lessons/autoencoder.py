"""A small convolutional autoencoder for latent diffusion (lesson 08; Rombach et al. 2022 at toy scale).

The encoder maps a 28 x 28 digit to a 4 x 7 x 7 latent (196 numbers for 784 pixels, a factor of 4 per side,
Stable Diffusion's factor is 8); the decoder maps it back. Diffusion then runs on the latents. Each latent
channel is centred and scaled (`calibrate`, like Stable Diffusion's factor 0.18215, which brings its latents to
unit variance) so that its values fill [-1, 1] like image pixels, and everything the course built for images
(Eq. 4, the samplers' x0 clipping, the Trainer) applies to them unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.utils import TimeEstimate

CLIP_SIGMAS = 2.5  # latents are scaled so that +-2.5 standard deviations span [-1, 1]


@dataclass
class AutoencoderConfig:
    channels: int = 1  # image channels
    width: int = 32  # channels after the first convolution; doubled once
    latent_channels: int = 4  # channels of the 7 x 7 latent (Stable Diffusion: 4)


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(8, out_ch), nn.SiLU())


class Autoencoder(nn.Module):
    """encode: (B, C, 28, 28) in [-1, 1] -> (B, 4, 7, 7) in [-1, 1]; decode: the reverse."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = cfg = config or AutoencoderConfig()
        w = cfg.width
        self.encoder = nn.Sequential(
            _block(cfg.channels, w),
            nn.Conv2d(w, w, 4, stride=2, padding=1),  # 28 -> 14
            _block(w, 2 * w),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),  # 14 -> 7
            _block(2 * w, 2 * w),
            nn.Conv2d(2 * w, cfg.latent_channels, 3, padding=1),
            nn.Tanh(),
        )
        self.decoder = nn.Sequential(
            _block(cfg.latent_channels, 2 * w),
            _block(2 * w, 2 * w),
            nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1),  # 7 -> 14
            _block(2 * w, w),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1),  # 14 -> 28
            _block(w, w),
            nn.Conv2d(w, cfg.channels, 3, padding=1),
            nn.Tanh(),
        )

        # Per-channel statistics of the encoder's output on the training data (set by `calibrate`).
        self.register_buffer("latent_mean", torch.zeros(1, cfg.latent_channels, 1, 1))
        self.register_buffer("latent_scale", torch.ones(1, cfg.latent_channels, 1, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 28, 28) -> (B, 4, 7, 7): each channel centred, scaled to std 1 / CLIP_SIGMAS, clipped to [-1, 1]."""
        if x.ndim != 4 or x.shape[1:] != (self.config.channels, 28, 28):
            raise ValueError(f"Autoencoder.encode: expected (B, {self.config.channels}, 28, 28), got {tuple(x.shape)}")
        return ((self.encoder(x) - self.latent_mean) / self.latent_scale).clamp(-1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1:] != (self.config.latent_channels, 7, 7):
            raise ValueError(
                f"Autoencoder.decode: expected latents (B, {self.config.latent_channels}, 7, 7), got {tuple(z.shape)}"
            )
        return self.decoder(z * self.latent_scale + self.latent_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Set the latent scaling from ``images`` (N, C, 28, 28): Stable Diffusion's scaling factor, per channel.

        The raw latents of a trained encoder are small (here std 0.05 to 0.2 per channel): next to noise of std 1
        their signal would be gone after a few diffusion steps, and the schedule would be wasted. So each channel is
        centred and divided by CLIP_SIGMAS standard deviations, which puts it in [-1, 1] but for rare tails.
        """
        raw = torch.cat([self.encoder(c) for c in images.split(500)])  # (N, 4, 7, 7)
        self.latent_mean.copy_(raw.mean((0, 2, 3), keepdim=True))
        self.latent_scale.copy_(CLIP_SIGMAS * raw.std((0, 2, 3), keepdim=True).clamp(min=1e-4))


def train_autoencoder(
    images: torch.Tensor,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    config: AutoencoderConfig | None = None,
    log=print,
    device: str | torch.device | None = None,
) -> Autoencoder:
    """Train on images (N, C, 28, 28) in [-1, 1] with the mean squared reconstruction error (AdamW, cosine
    decay), then calibrate the latent scaling on the same images. Trains on ``device`` (None: the CPU; the same
    initial weights and batches on every device) and returns the model on the CPU. A run that will take over a
    minute first says how long (``utils.TimeEstimate``)."""
    device = torch.device("cpu" if device is None else device)
    torch.manual_seed(seed)
    model = Autoencoder(config).to(device)
    data = images.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed + 1)
    clock = TimeEstimate("autoencoder training", steps) if log else None
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = data[torch.randint(len(images), (batch_size,), generator=g).to(device)]
        loss = F.mse_loss(model.decoder(model.encoder(x)), x)  # the raw latents: scaling comes after
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if clock is not None:
            clock.tick()
        if log and (step % 500 == 0 or step == steps):
            log(f"autoencoder step {step}: reconstruction MSE {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    model = model.cpu().eval()
    model.calibrate(images)
    return model
