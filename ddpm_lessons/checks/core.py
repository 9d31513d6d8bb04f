"""What every check shares: compare with the reference, name the usual mistake, print one PASS line."""

from __future__ import annotations

import torch


class CheckFailed(AssertionError):
    """The learner's answer differs from the reference; the message says how."""


def _close(a, b, tol: float = 1e-5) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))
    )


def _judge(name: str, got, expected: torch.Tensor, mistakes: dict[str, torch.Tensor], default_hint: str) -> None:
    """Print PASS, or raise CheckFailed naming the shape problem or the mistake that got matches."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name}: expected a torch.Tensor, got {type(got).__name__}. Did you forget `return`?")
    if got.shape != expected.shape:
        raise CheckFailed(
            f"{name}: wrong shape {tuple(got.shape)}, expected {tuple(expected.shape)}. "
            "Check how you index with t and broadcast over (B, C, H, W) (e.g. .view(-1, 1, 1, 1))."
        )
    if not bool(torch.isfinite(got).all()):
        raise CheckFailed(f"{name}: your result contains NaN or inf. Look for a log or sqrt of a negative number.")
    if _close(got, expected):
        return
    for hint, wrong in mistakes.items():
        if _close(got, wrong):
            raise CheckFailed(f"{name}: not yet. {hint}")
    diff = (got.double() - expected.double()).abs().max().item()
    raise CheckFailed(f"{name}: not yet (largest difference {diff:.3g}). {default_hint}")


def _pass(message: str) -> None:
    print(f"PASS {message}")
