"""``python -m ddpm_lessons doctor``: what is installed, which profile the lessons run and why, and how to
fix what is missing. Paths inside the course print relative to it, so the output reads the same everywhere."""

from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path

import torch


def run_doctor() -> int:
    """Print one line per check; return 0 when nothing needs fixing, else 1."""
    from ddpm_lessons import __version__
    from ddpm_lessons.checkpoints import (
        PRETRAINED_AUTOENCODER,
        PRETRAINED_LATENT_TEXT,
        PRETRAINED_MNIST,
        PRETRAINED_SR7,
    )
    from ddpm_lessons.data import BUNDLED_MNIST, DEBIAN_FASHION_MNIST
    from ddpm_lessons.metrics import CLASSIFIER_PATH
    from ddpm_lessons.utils import PROFILE_ENV, get_device, is_offline, profile_and_reason

    problems = 0

    def shown(path: Path) -> str:  # relative to the course, so the output says the same on every machine
        root = BUNDLED_MNIST.parent.parent
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def line(ok: bool | None, what: str, fix: str = "") -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "FIX ", None: "note"}[ok]
        problems += ok is False
        print(f"[{mark}] {what}" + (f"\n       -> {fix}" if fix and ok is not True else ""))

    py_ok = sys.version_info >= (3, 10)
    line(py_ok, f"Python {platform.python_version()}", "install Python 3.10 or newer")
    line(True, f"ddpm_lessons {__version__}, torch {torch.__version__}")
    device = get_device()
    line(
        True if device.type == "cuda" else None,
        f"device: {device}",
        "no CUDA GPU: training runs on this device; on Colab choose Runtime > Change runtime type > GPU",
    )
    line(
        BUNDLED_MNIST.exists(),
        f"bundled MNIST sample: {shown(BUNDLED_MNIST)}",
        "it ships with the repository: install from a clone (pip install -e .)",
    )
    line(
        CLASSIFIER_PATH.exists(),
        f"metrics classifier: {shown(CLASSIFIER_PATH)}",
        "python benchmarks/train_classifier.py",
    )
    for path, what in (
        (PRETRAINED_MNIST, "pretrained MNIST model (lessons 04-07, 10, 11, the demo)"),
        (PRETRAINED_SR7, "super-resolution model (lesson 07)"),
        (PRETRAINED_AUTOENCODER, "autoencoder (lesson 08)"),
        (PRETRAINED_LATENT_TEXT, "latent text model (lesson 08)"),
    ):
        line(
            path.exists(),
            f"{what}: {shown(path)}",
            "it ships with the repository: install from a clone; data/checkpoints/README.md says how to retrain it",
        )
    full = (BUNDLED_MNIST.parent / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    line(
        True if full else None,
        "full MNIST on disk" if full else "full MNIST not downloaded",
        "optional: load_mnist(source='torchvision') downloads it where the network allows",
    )
    fashion = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
    fashion_what = "Fashion-MNIST installed (Debian's dataset-fashion-mnist)" if fashion else "Fashion-MNIST missing"
    line(True if fashion else None, fashion_what, "optional: sudo apt-get install dataset-fashion-mnist")
    for module, extra in (
        ("matplotlib", "notebooks"),
        ("ipywidgets", "notebooks"),
        ("jupyterlab", "notebooks"),
    ):
        found = importlib.util.find_spec(module) is not None
        line(found, f"{module} {'installed' if found else 'missing'}", f'pip install -e ".[{extra}]"')
    profile, why = profile_and_reason()
    other = "full" if profile == "fast" else "fast"
    line(
        None,
        f"profile: {profile.upper()} ({why}); offline: {is_offline()}",
        f"to change: {PROFILE_ENV}={other} in the environment, or use_profile({other!r}) in a notebook",
    )
    print("all good" if problems == 0 else f"{problems} thing(s) to fix, see above")
    return 1 if problems else 0
