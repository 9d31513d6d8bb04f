"""What every check shares: call the learner's function safely, compare with the reference, name the usual
mistake, print one PASS line.

Beyond the value, a check catches answers that match numerically but break the next cell: the wrong dtype
(float64 where the network is float32), a result on another device than its inputs, a shape that only
broadcast by luck, and an input changed in place. The checks build their inputs on the CPU, so a tensor
created without ``device=`` passes here and fails only where the inputs live on a GPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch


class CheckFailed(AssertionError):
    """The learner's answer differs from the reference; the message says how."""


def _close(a, b, tol: float = 1e-5) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))
    )


def _argument_names(fn: Callable, count: int) -> list[str]:
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        names = []
    return [names[i] if i < len(names) else f"argument {i + 1}" for i in range(count)]


def call(name: str, fn: Callable, *args):
    """Call the learner's ``fn(*args)``; fail with a hint if it changed a tensor argument in place or if
    two shapes did not broadcast (a per-image value of shape (B,) against a batch (B, C, H, W))."""
    before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in args]
    try:
        got = fn(*args)
    except RuntimeError as error:
        if "must match the size of tensor" in str(error) or "not broadcastable" in str(error):
            raise CheckFailed(
                f"{name}: two shapes do not fit together ({error}). A per-image value of shape (B,) needs "
                ".view(-1, 1, 1, 1) to multiply an image batch of shape (B, C, H, W)."
            ) from None
        raise
    for arg_name, arg, old in zip(_argument_names(fn, len(args)), args, before, strict=True):
        if old is not None and not (arg.shape == old.shape and torch.equal(arg.detach(), old)):
            raise CheckFailed(
                f"{name}: your function changed its input `{arg_name}` in place (an in-place operation such as "
                f"`{arg_name} += ...`, `{arg_name}[...] = ...` or a method ending in _). The caller still needs "
                "it: compute a new tensor instead."
            )
    return got


def judge(name: str, got, expected: torch.Tensor, mistakes: dict[str, torch.Tensor], default_hint: str) -> None:
    """Return quietly when ``got`` matches ``expected`` in type, shape, dtype, device and value; otherwise
    raise CheckFailed naming the problem, or the known mistake in ``mistakes`` (hint -> wrong value) that
    ``got`` matches."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name}: expected a torch.Tensor, got {type(got).__name__}. Did you forget `return`?")
    if got.shape != expected.shape:
        raise CheckFailed(
            f"{name}: wrong shape {tuple(got.shape)}, expected {tuple(expected.shape)}. "
            "Check how you index with t and broadcast over (B, C, H, W) (e.g. .view(-1, 1, 1, 1))."
        )
    if got.device != expected.device:
        raise CheckFailed(
            f"{name}: the result is on {got.device}, expected {expected.device}, where the inputs are. Create new "
            "tensors with device=x.device (or .to(x.device)), so the next cell finds them where its model is."
        )
    if not bool(torch.isfinite(got).all()):
        raise CheckFailed(f"{name}: your result contains NaN or inf. Look for a log or sqrt of a negative number.")
    matches = _close(got, expected)
    if matches and got.dtype != expected.dtype:
        raise CheckFailed(
            f"{name}: the values are right but the dtype is {got.dtype}, expected {expected.dtype}. "
            + (
                "The schedule's tensors are float64; take .float() (or .to(x.dtype)) before mixing them with "
                "images, or the float32 network in the next cell refuses the result."
                if got.dtype == torch.float64
                else "Convert with .to(dtype) where the inputs' dtype changed."
            )
        )
    if matches:
        return
    for hint, wrong in mistakes.items():
        if _close(got, wrong):
            raise CheckFailed(f"{name}: not yet. {hint}")
    diff = (got.double() - expected.double()).abs().max().item()
    raise CheckFailed(f"{name}: not yet (largest difference {diff:.3g}). {default_hint}")


def check_loss_tensor(name: str, loss, model_calls: int) -> None:
    """What every training-loss exercise must return: one number, as a tensor that carries its gradient, from one
    model call on the whole batch. Raises CheckFailed naming the first thing that is not so, and the fix."""
    if not isinstance(loss, torch.Tensor):
        raise CheckFailed(
            f"{name}: return the loss as a tensor, got {type(loss).__name__}. Did you forget `return`, or return "
            "loss.item()? Training needs the tensor, so that loss.backward() reaches the weights."
        )
    if loss.numel() != 1:
        raise CheckFailed(
            f"{name}: return one number (a 0-dimensional tensor), got shape {tuple(loss.shape)}. Average the squared "
            "error over the batch and the pixels with .mean()."
        )
    if not loss.requires_grad:
        raise CheckFailed(
            f"{name}: the loss has no gradient. Return the tensor (not .item()) and do not compute it under "
            "torch.no_grad(), so that loss.backward() reaches the weights."
        )
    if model_calls != 1:
        raise CheckFailed(f"{name}: call the model once on the whole batch (it was called {model_calls} times).")


def report_pass(message: str) -> None:
    print(f"PASS {message}")
