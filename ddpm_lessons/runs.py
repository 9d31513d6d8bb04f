"""What a training run needs to stop and continue exactly: its resumable state, its log, and a clean stop on
SIGINT/SIGTERM (Ctrl-C, a Colab disconnect, a job scheduler).

- :func:`capture_state` / :func:`restore_state`: the model, its EMA, the optimiser, the gradient scaler, the
  step and every random-number state, as a dict of tensors and plain values that ``checkpoints`` writes and
  reads (``torch.load(weights_only=True)``). Restoring it makes the next step the one an uninterrupted run
  would have taken.
- :class:`RunLog`: ``log.jsonl``, one JSON line per logged step; lines after the checkpoint a run resumes from
  are dropped, so the log never holds steps that were redone.
- :class:`StopOnSignal`: while active, SIGINT/SIGTERM set a flag instead of killing the process, so the loop
  can finish its step and write a checkpoint.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import torch


def capture_state(model, ema_model, optimizer, scaler, generators: dict[str, torch.Generator], step: int,
                  device: torch.device) -> dict:  # fmt: skip
    """The whole training state at ``step``; ``generators``: name -> the run's own torch.Generators."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "ema": ema_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_torch": torch.get_rng_state(),  # dropout
        **{f"rng_{name}": g.get_state() for name, g in generators.items()},
    }
    if device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_state(state: dict, model, ema_model, optimizer, scaler, generators: dict[str, torch.Generator],
                  device: torch.device) -> int:  # fmt: skip
    """Put a captured state back in place; returns its step. The optimizer keeps its own implementation (fused or
    not: a state saved by one resumes in the other) and its own betas (as with the learning rate, what the resumed
    run is told wins), and a gradient scaler saved while off (bfloat16 or float32) leaves an enabled one at its
    initial scale."""
    model.load_state_dict(state["model"])
    ema_model.load_state_dict(state["ema"])
    saved = state["optimizer"]
    own = {"fused": optimizer.defaults.get("fused"), "betas": optimizer.defaults["betas"]}  # not the saved run's
    optimizer.load_state_dict({**saved, "param_groups": [{**g, **own} for g in saved["param_groups"]]})
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    for name, g in generators.items():
        g.set_state(state[f"rng_{name}"])
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return int(state["step"])


class RunLog:
    """``log.jsonl`` of a run: one JSON object per logged step, with at least a "step" key."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line] if self.path.exists() else []

    def truncate_after(self, step: int) -> None:
        """Drop lines written after ``step`` (the run died after them and will redo those steps)."""
        if self.path.exists():
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.read() if r["step"] <= step))


class StopOnSignal:
    """``with StopOnSignal() as stop:`` SIGINT and SIGTERM set ``stop.name`` ("SIGINT", "SIGTERM") instead of
    ending the process; the previous handlers come back on exit. Outside the main thread (where Python allows
    no signal handlers) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
