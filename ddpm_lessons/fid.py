"""Frechet distance for any images, not only digits: FID with Inception features where the weights can be
had, and a fallback that needs no pretrained network where they cannot.

- ``"fid-inception"``: the Inception network behind published FID numbers (Heusel et al. 2017), as ported by
  the maintained ``pytorch-fid`` package (``pip install pytorch-fid``, or ``pip install -e ".[fid]"``; its weights
  download once, about 100 MB): the 2,048 pooled features of images resized to 299 x 299. This is the network
  denoising-diffusion-pytorch's ``calculate_fid`` uses, so a number measured with it means what a paper's does
  (at the same sample count and reference set).
- ``"inception"``: torchvision's Inception-v3 (ImageNet weights, downloaded once, about 100 MB), the same
  architecture with other weights: its distances compare within this course only.
- ``"random"``: a fixed, randomly initialised convolutional network (seeded, so every machine computes the same
  features). Random features separate image statistics surprisingly well, but their scale means nothing on its
  own; read them only beside the real-vs-real floor at the same sample count, as every distance in this course.
- ``"auto"``: the first that can be had of fid-inception, inception and random, with a notice that names it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.eps_model import model_device
from ddpm_lessons.metrics import frechet_with_floor
from ddpm_lessons.utils import is_offline

FEATURE_KINDS = ("auto", "fid-inception", "inception", "random")


class RandomFeatures(nn.Module):
    """Four stride-2 convolutions with fixed random weights (seed 0) and global average pooling: (N, C, H, W)
    in [-1, 1] -> (N, 256). Images are resized to 64 x 64 first, so any size gives comparable features."""

    def __init__(self, channels: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        widths = [channels, 32, 64, 128, 256]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        with torch.no_grad():
            for conv in self.convs:  # He-normal weights drawn from our own generator: the same on every machine
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean((2, 3))  # (N, 256)


def _inception(weights: str | None = "DEFAULT") -> nn.Module:
    """torchvision's Inception-v3 with its classifier removed: (N, 3, 299, 299) -> (N, 2048)."""
    from torchvision.models import inception_v3

    model = inception_v3(weights=weights, aux_logits=True, init_weights=weights is None)
    model.fc = nn.Identity()
    return model.eval()


class _PooledFeatures(nn.Module):
    """pytorch-fid's InceptionV3 returns a list of feature maps; keep the pooled (N, 2048)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0].flatten(1)


def _fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception: (N, 3, H, W) in [0, 1] -> (N, 2048); it resizes and normalises itself."""
    from pytorch_fid.inception import InceptionV3

    return _PooledFeatures(InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])).eval()


def feature_extractor(kind: str = "auto", channels: int = 3) -> tuple[nn.Module, str]:
    """The network for ``kind`` and the kind actually used ("auto" resolves to one of the others)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
    if kind == "fid-inception" or (kind == "auto" and not is_offline()):
        try:
            return _fid_inception(), "fid-inception"
        except Exception as err:  # not installed, no network, no cache: any failure to get the network
            why = "pytorch-fid is not installed" if isinstance(err, ImportError) else type(err).__name__
            if kind == "fid-inception":
                raise RuntimeError(
                    f"the FID Inception could not be loaded ({why}): pip install pytorch-fid, where the network "
                    "allows its weights to download once (about 100 MB), e.g. on Colab. Offline use kind='random'."
                ) from err
            print(f"FID: the standard FID Inception is unavailable ({why}; pip install pytorch-fid), trying others")
    if kind in ("auto", "inception"):
        if kind == "auto" and is_offline():
            print("FID: offline (DDPM_OFFLINE is set), using random features; compare them with their floor only")
            return RandomFeatures(channels).eval(), "random"
        try:
            return _inception(), "inception"
        except Exception as err:  # no network, no cache, a proxy: any failure to get the weights
            if kind == "inception":
                raise RuntimeError(
                    f"Inception-v3 weights could not be loaded ({type(err).__name__}: {err}); they download once "
                    "(about 100 MB) where the network allows, e.g. on Colab. Use kind='random' offline."
                ) from err
            print(f"FID: Inception weights unavailable ({type(err).__name__}), using random features instead")
    return RandomFeatures(channels).eval(), "random"


@torch.no_grad()
def image_features(
    images: torch.Tensor,
    extractor: nn.Module,
    kind: str,
    batch_size: int = 100,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, D) features, on the CPU. Grey images are repeated to 3 channels for
    Inception. The extractor runs where its weights are, or is moved to ``device`` when given (a GPU makes
    Inception's 299 x 299 passes fast)."""
    if images.ndim != 4:
        raise ValueError(f"image_features needs images of shape (N, C, H, W), got {tuple(images.shape)}")
    if device is None:
        device = model_device(extractor) or torch.device("cpu")
    else:
        extractor = extractor.to(device)
    feats = []
    for chunk in images.float().split(batch_size):
        chunk = chunk.to(device)
        if kind == "fid-inception":
            chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            chunk = (chunk + 1) / 2  # pytorch-fid takes [0, 1], resizes to 299 x 299 and normalises itself
        elif kind == "inception":
            chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            chunk = F.interpolate(chunk, size=(299, 299), mode="bilinear", align_corners=False)
            mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)  # ImageNet's, for [0, 1]
            std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
            chunk = ((chunk + 1) / 2 - mean) / std
        feats.append(extractor(chunk).double().cpu())
    return torch.cat(feats)


def frechet_distance_images(
    samples: torch.Tensor,
    real: torch.Tensor,
    kind: str = "auto",
    seed: int = 0,
    draws: int = 10,
    device: str | torch.device = "cpu",
) -> dict[str, float | int | str]:
    """The Frechet distance of ``samples`` to ``real`` images and its floor: the same distance between two
    disjoint sets of real images, of n = len(samples) each (so ``real`` needs at least 2n images).

    One split of the real images is a noisy floor, and with a few hundred images the distance to one
    reference set is noisy too. So each of ``draws`` random splits (seeds seed, seed + 1, ...) gives a
    reference set of n and a second set of n; the distance is the mean distance of the samples to the
    reference sets, the floor the mean distance of the second sets to them, each with its standard deviation,
    and the ratio divides the two means (:func:`metrics.frechet_with_floor`, the same keys as
    :func:`metrics.evaluate_samples`). Every image's features are computed once.

    samples, real: (N, C, H, W) in [-1, 1], same C, H, W; the features are computed on ``device``. Returns n,
    features (the kind used),
    frechet_distance, frechet_distance_sd, frechet_distance_real_vs_real (the floor),
    frechet_distance_real_vs_real_sd, floor_draws and frechet_ratio.
    """
    n = len(samples)
    if samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and real images {tuple(real.shape[1:])} differ in shape")
    if n < 2 or len(real) < 2 * n:
        raise ValueError(
            f"need at least 2 samples and twice as many real images ({2 * n}) for the distance and its floor, "
            f"got {n} samples and {len(real)} real images; draw fewer samples or add images"
        )
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    splits = [torch.randperm(len(real), generator=torch.Generator().manual_seed(seed + k)) for k in range(draws)]
    used_images = torch.cat([order[: 2 * n] for order in splits]).unique()  # features only for images drawn
    extractor, used = feature_extractor(kind, channels=samples.shape[1])
    f_samples = image_features(samples, extractor, used, device=device)
    f_real = torch.zeros(len(real), f_samples.shape[1], dtype=f_samples.dtype)
    f_real[used_images] = image_features(real[used_images], extractor, used, device=device)
    pairs = [(f_real[order[:n]], f_real[order[n : 2 * n]]) for order in splits]  # (reference, other real)
    return {"n": n, "features": used, **frechet_with_floor(f_samples, pairs)}
