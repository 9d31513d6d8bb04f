"""The recipes a user would otherwise pick for class-conditional MNIST, rebuilt from their published settings so that
`side_by_side.py` can train them for the same minutes on the same cores as the project's recipe.

Each recipe is a :class:`Recipe`: a network, one training step (batch, loss and optimiser as published) and the
sampler its authors use. Both are written here from the settings their authors publish, not from their code:

- **"teapearce"**: the Conditional_Diffusion_MNIST example by T. Pearce (2022). A small U-Net ("ContextUnet") with
  n_feat = 128 channels: a residual block of two 3x3 convolution + BatchNorm + GELU layers at 28 x 28, then two
  blocks of the same two layers without the residual, each followed by 2x max-pooling (128 channels at 14 x 14, 256
  at 7 x 7), average pooling to a 1 x 1 vector,
  a 7 x 7 transposed convolution back to 7 x 7, then two up-stages (2x transposed convolution and two residual
  blocks each, fed the skip connection). The time t / T and the one-hot class (negated; zeros when dropped) each
  pass through a two-layer GELU MLP; each up-stage's input is class embedding * features + time embedding. Linear
  betas from 1e-4 to 0.02 over T = 400, t drawn from 1..T, data in [0, 1], Adam at 1e-4 decayed linearly per epoch
  over 20 epochs of 60,000 images, batch 256, label dropout 0.1, no EMA. Sampling: all 400 ancestral DDPM steps
  with sigma_t^2 = beta_t and classifier-free guidance (1 + w) eps(x, c) - w eps(x), w in {0, 0.5, 2}.
- **"hf-course"**: the class-conditioned MNIST example of the Hugging Face diffusion-models course (unit 2).
  ``diffusers.UNet2DModel`` with channels (32, 64, 64), two ResNet layers per block, self-attention in the second and
  third down blocks and the first two up blocks; the class enters as a learned 4-dimensional embedding broadcast
  over the image and concatenated as 4 extra input channels (so the network is always conditioned: no guidance).
  ``DDPMScheduler`` with 1,000 steps and the squared-cosine betas ("squaredcos_cap_v2"), t drawn from 0..998, data
  in [-1, 1], eps-prediction, Adam at 1e-3 (constant), batch 128, 10 epochs, no EMA. Sampling: the scheduler's
  1,000 ancestral steps, the result clipped to [-1, 1].

Their data is full MNIST; here every recipe trains on the bundled 8,000 training digits (the same for all).
TeaPearce's per-epoch decay counts epochs of 60,000 images seen: in 10 minutes on a CPU it does not reach its first
decay. The HF course's rate is constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

RECIPES = ("teapearce", "hf-course")


# ---- T. Pearce's ContextUnet (layout from the published description above) ------------------------------------
class _ConvBNGELU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU())


class _ResidualConvBlock(nn.Module):
    """Two conv-BN-GELU layers; with ``residual`` the input (or the first layer's output when the channel count
    changes) is added back and the sum scaled by 1 / 1.414."""

    def __init__(self, c_in: int, c_out: int, residual: bool = False):
        super().__init__()
        self.first, self.second = _ConvBNGELU(c_in, c_out), _ConvBNGELU(c_out, c_out)
        self.residual, self.same = residual, c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        out = self.second(h)
        if not self.residual:
            return out
        return ((x if self.same else h) + out) / 1.414


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class ContextUnet(nn.Module):
    """x (B, 1, 28, 28) in the noised [0, 1] data space, t (B,) as t / T in (0, 1], labels (B,), keep (B,) 1 where the
    class is given and 0 where it is dropped. Returns the predicted noise (B, 1, 28, 28)."""

    def __init__(self, n_feat: int = 128, n_classes: int = 10):
        super().__init__()
        f = n_feat
        self.n_classes = n_classes
        self.stem = _ResidualConvBlock(1, f, residual=True)
        self.down1 = nn.Sequential(_ResidualConvBlock(f, f), nn.MaxPool2d(2))
        self.down2 = nn.Sequential(_ResidualConvBlock(f, 2 * f), nn.MaxPool2d(2))
        self.to_vec = nn.Sequential(nn.AvgPool2d(7), nn.GELU())
        self.time1, self.time2 = _mlp(1, 2 * f), _mlp(1, f)
        self.class1, self.class2 = _mlp(n_classes, 2 * f), _mlp(n_classes, f)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * f, 2 * f, 7, 7), nn.GroupNorm(8, 2 * f), nn.ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * f, f, 2, 2), _ResidualConvBlock(f, f), _ResidualConvBlock(f, f))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * f, f, 2, 2), _ResidualConvBlock(f, f), _ResidualConvBlock(f, f))
        self.head = nn.Sequential(
            nn.Conv2d(2 * f, f, 3, padding=1), nn.GroupNorm(8, f), nn.ReLU(), nn.Conv2d(f, 1, 3, padding=1)
        )

    def forward(self, x, t, labels, keep):
        stem = self.stem(x)
        d1 = self.down1(stem)
        d2 = self.down2(d1)
        c = -nn.functional.one_hot(labels, self.n_classes).float() * keep[:, None].float()  # zeros where dropped
        t = t.float().view(-1, 1)
        h = self.up0(self.to_vec(d2))
        h = self.up1(torch.cat([self.class1(c)[..., None, None] * h + self.time1(t)[..., None, None], d2], 1))
        h = self.up2(torch.cat([self.class2(c)[..., None, None] * h + self.time2(t)[..., None, None], d1], 1))
        return self.head(torch.cat([h, stem], 1))


# ---- the Hugging Face course's class-conditioned UNet2DModel -------------------------------------------------
class ClassChannelsUNet(nn.Module):
    """``diffusers.UNet2DModel`` fed the image and a learned class embedding broadcast as extra input channels."""

    def __init__(self, n_classes: int = 10, embedding: int = 4):
        super().__init__()
        from diffusers import UNet2DModel

        self.embed = nn.Embedding(n_classes, embedding)
        self.unet = UNet2DModel(
            sample_size=28, in_channels=1 + embedding, out_channels=1, layers_per_block=2,
            block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        )  # fmt: skip

    def forward(self, x, t, labels):
        B, _, H, W = x.shape
        channels = self.embed(labels)[..., None, None].expand(B, -1, H, W)
        return self.unet(torch.cat([x, channels], 1), t).sample


# ---- recipes ----------------------------------------------------------------------------------------------------
@dataclass
class Recipe:
    name: str
    network: nn.Module
    batch_size: int
    train_step: Callable[[torch.Tensor, torch.Tensor, float], float]  # (x in [-1, 1], labels, images seen) -> loss
    sample: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]  # (labels, w, gen) -> x in [-1, 1]
    guidance: tuple[float, ...]  # the weights its authors sample at (0 alone: no guidance)
    model_evaluations: int  # network calls per sample (a guided call on a doubled batch counts once)
    settings: dict


def _optimise(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One plain optimiser step on ``loss`` (neither recipe clips gradients or keeps an EMA); returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def pearce_betas(T: int = 400) -> torch.Tensor:
    """Linear betas from 1e-4 to 0.02 at indices 0..T (T + 1 values; training and sampling use t = 1..T)."""
    return torch.linspace(0, 1, T + 1) * (0.02 - 1e-4) + 1e-4


def pearce_step(x: torch.Tensor, eps: torch.Tensor, i: int, betas: torch.Tensor, z) -> torch.Tensor:
    """One ancestral step from t = i to i - 1 (Ho et al. 2020 Alg. 2, line 4, with sigma_i^2 = beta_i):
    (x - beta_i / sqrt(1 - alpha_bar_i) eps) / sqrt(alpha_i) + sqrt(beta_i) z, alpha_bar_i = alpha_0 ... alpha_i."""
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, 0)
    return (x - eps * betas[i] / (1 - alpha_bar[i]).sqrt()) / alphas[i].sqrt() + betas[i].sqrt() * z


def teapearce(seed: int = 0, n_feat: int = 128, T: int = 400) -> Recipe:
    """The published recipe; ``n_feat`` and ``T`` are there only so that tests can run it small."""
    torch.manual_seed(seed)
    batch, lr, epochs, epoch_images, drop = 256, 1e-4, 20, 60_000, 0.1
    net = ContextUnet(n_feat)
    betas = pearce_betas(T)
    alpha_bar = torch.cumprod(1 - betas, 0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)

    def train_step(x, labels, seen):
        net.train()
        for group in opt.param_groups:  # linear decay per epoch
            group["lr"] = lr * (1 - min(epochs - 1, int(seen // epoch_images)) / epochs)
        x01 = (x + 1) / 2
        t = torch.randint(1, T + 1, (len(x),), generator=gen)
        eps = torch.randn(x.shape, generator=gen)
        a = alpha_bar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x01 + (1 - a).sqrt() * eps
        keep = (torch.rand(len(x), generator=gen) >= drop).long()
        loss = ((net(xt, t / T, labels, keep) - eps) ** 2).mean()
        return _optimise(opt, loss)

    @torch.no_grad()
    def sample(labels, w, g):
        net.eval()
        n = len(labels)
        x = torch.randn((n, 1, 28, 28), generator=g)
        both = torch.cat([labels, labels])
        keep = torch.cat([torch.ones(n), torch.zeros(n)]).long()
        for i in range(T, 0, -1):
            t = torch.full((2 * n,), i / T)
            e = net(torch.cat([x, x]), t, both, keep)
            eps = (1 + w) * e[:n] - w * e[n:]
            z = torch.randn(x.shape, generator=g) if i > 1 else 0.0
            x = pearce_step(x, eps, i, betas, z)
        return x.clamp(0, 1) * 2 - 1

    settings = {"n_feat": n_feat, "T": T, "betas": "linear 1e-4..0.02", "batch": batch, "lr": lr,
                "lr_decay": "linear per epoch over 20 x 60,000 images", "label_dropout": drop, "ema": None,
                "sampler": "ancestral DDPM, 400 steps"}  # fmt: skip
    return Recipe("TeaPearce ContextUnet", net, batch, train_step, sample, (0.0, 0.5, 2.0), T, settings)


def hf_course(seed: int = 0, T: int = 1000) -> Recipe:
    """The published recipe; ``T`` is there only so that tests can run it small."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    net = ClassChannelsUNet()
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed + 1)

    def train_step(x, labels, seen):
        net.train()
        eps = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, T - 1, (len(x),), generator=gen)  # 0..998 at T = 1,000, as published
        loss = ((net(scheduler.add_noise(x, eps, t), t, labels) - eps) ** 2).mean()
        return _optimise(opt, loss)

    @torch.no_grad()
    def sample(labels, w, g):
        net.eval()
        scheduler.set_timesteps(T)
        x = torch.randn((len(labels), 1, 28, 28), generator=g)
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t, labels), t, x, generator=g).prev_sample
        return x.clamp(-1, 1)

    settings = {"channels": (32, 64, 64), "layers_per_block": 2, "attention": "14x14 and 7x7", "class": "4 channels",
                "T": T, "betas": "squaredcos_cap_v2", "batch": 128, "lr": 1e-3, "lr_decay": None, "ema": None,
                "sampler": "ancestral DDPM, 1,000 steps"}  # fmt: skip
    return Recipe("HF course UNet2DModel", net, 128, train_step, sample, (0.0,), T, settings)


BUILD = {"teapearce": teapearce, "hf-course": hf_course}
