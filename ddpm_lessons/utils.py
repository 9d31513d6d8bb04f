"""Small helpers every lesson uses: seeding, device choice and the FAST/FULL profile switch."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

FAST_ENV = "DDPM_FAST"  # DDPM_FAST=1: the CPU-sized profile that CI and laptops run
OFFLINE_ENV = "DDPM_OFFLINE"  # DDPM_OFFLINE=1: never try a download, use what is on disk


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def is_fast() -> bool:
    """True when DDPM_FAST=1 is set: lessons then train for seconds, not minutes."""
    return _env_flag(FAST_ENV)


def is_offline() -> bool:
    """True when DDPM_OFFLINE=1 is set: data loaders use only what is on disk."""
    return _env_flag(OFFLINE_ENV)


def fast_or_full(fast, full):
    """Return ``fast`` in the FAST profile and ``full`` otherwise, e.g. steps = fast_or_full(200, 20_000)."""
    return fast if is_fast() else full


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch.Generator seeded the same for samplers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The best device here: ``prefer`` if given, else CUDA, then Apple's MPS, then the CPU."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
