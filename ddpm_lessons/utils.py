"""Small helpers every lesson uses: seeding, device choice, the FAST/FULL profile and time estimates.

The profile follows the machine: FULL (train for real) where a CUDA GPU is visible, FAST (seconds on a
laptop CPU, shipped models where quality matters) everywhere else. A choice overrides it, in this order:
``use_profile("full")`` in a notebook (or ``DDPM_PROFILE=full`` in the environment), then the older
``DDPM_FAST=1`` / ``DDPM_FAST=0``.
"""

from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

PROFILE_ENV = "DDPM_PROFILE"  # fast | full | auto (unset: auto, FULL on a CUDA GPU, FAST elsewhere)
FAST_ENV = "DDPM_FAST"  # DDPM_FAST=1 chooses FAST, DDPM_FAST=0 chooses FULL (kept for older scripts)
OFFLINE_ENV = "DDPM_OFFLINE"  # DDPM_OFFLINE=1: never try a download, use what is on disk
PROFILES = ("fast", "full", "auto")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _check_profile_name(name: str, where: str) -> str:
    value = name.strip().lower()
    if value not in PROFILES:
        raise ValueError(f"{where}: unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    return value


def profile_and_reason() -> tuple[str, str]:
    """("fast" or "full", why): an explicit choice first, then the machine."""
    chosen = os.environ.get(PROFILE_ENV, "").strip()
    if chosen and _check_profile_name(chosen, PROFILE_ENV) != "auto":
        return chosen.lower(), f"chosen ({PROFILE_ENV}={chosen})"
    legacy = "" if chosen else os.environ.get(FAST_ENV, "").strip().lower()  # DDPM_PROFILE=auto: the machine
    if legacy in _TRUE:
        return "fast", f"chosen ({FAST_ENV}={legacy})"
    if legacy in _FALSE and legacy:
        return "full", f"chosen ({FAST_ENV}={legacy})"
    if torch.cuda.is_available():
        return "full", f"a CUDA GPU is visible ({torch.cuda.get_device_name(0)})"
    return "fast", "no CUDA GPU is visible"


def use_profile(name: str) -> str:
    """Choose the profile for this process and the commands it starts: "fast", "full" or "auto".

    In a notebook, call it and re-run the cells below; it sets DDPM_PROFILE, which wins over DDPM_FAST.
    """
    os.environ[PROFILE_ENV] = _check_profile_name(name, "use_profile")
    return profile_and_reason()[0]


def is_fast() -> bool:
    """True in the FAST profile: lessons then train for seconds, not minutes."""
    return profile_and_reason()[0] == "fast"


def is_offline() -> bool:
    """True when DDPM_OFFLINE=1 is set: data loaders use only what is on disk."""
    return _env_flag(OFFLINE_ENV)


def fast_or_full(fast, full):
    """Return ``fast`` in the FAST profile and ``full`` otherwise, e.g. steps = fast_or_full(200, 20_000)."""
    return fast if is_fast() else full


def show_profile() -> None:
    """Print the profile in use, why, and how to change it (the first code cell of every lesson calls it)."""
    name, why = profile_and_reason()
    other = "full" if name == "fast" else "fast"
    what = {
        "fast": "FAST: every cell runs in seconds on a CPU; lessons load shipped models where quality matters",
        "full": "FULL: lessons train and sample for real (a GPU's work); long cells first say how long they will take",
    }[name]
    change = f"use_profile({other!r}) and re-run the cells below, or start Jupyter with {PROFILE_ENV}={other}"
    print(f"profile {what}.\n  why: {why}.\n  to change: {change}.")


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


def format_duration(seconds: float) -> str:
    """60 -> "1 min", 5400 -> "1.5 h": the rough size of a wait."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def time_call(fn, *args, repeats: int = 2, **kwargs) -> float:
    """Seconds one ``fn(*args, **kwargs)`` takes on this device: the mean of ``repeats`` calls after one
    warm-up call, without gradients (e.g. one network call on a batch, to size a sampling loop)."""
    with torch.no_grad():
        fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def say_how_long(
    what: str, seconds_per_unit: float, units: int, unit: str = "network call", threshold_s: float = 60.0
) -> float:
    """Print, before a long job, how long it will take on this device: ``units`` times a measured
    ``seconds_per_unit`` (from :func:`time_call`). Silent for jobs under ``threshold_s``. Returns the seconds."""
    total = seconds_per_unit * units
    if total > threshold_s:
        rate = f"{seconds_per_unit:.3g} s per {unit}, measured here"
        print(f"{what}: about {format_duration(total)} on this device for {units} {unit}s ({rate})", flush=True)
    return total


class TimeEstimate:
    """Says once, early, how long a long job will take on this device, from its own first units.

    A loop calls :meth:`tick` after each unit (a training step, a network call). After ``probe`` units
    it projects the whole job from their median time and, where it takes more than ``threshold_s``
    seconds, prints one line: what, the projected time, and the measured rate behind it. Short jobs print
    nothing. The first unit is left out where there are more (it pays the one-off start-up cost), and the
    median, not the mean, keeps one unit slowed by another program from inflating the projection.
    """

    def __init__(self, what: str, total: int, unit: str = "step", probe: int = 5, threshold_s: float = 60.0):
        self.what, self.total, self.unit, self.probe, self.threshold_s = what, total, unit, probe, threshold_s
        self.done, self.said, self.projected_s = 0, False, None
        self._marks = [time.perf_counter()]

    def tick(self) -> None:
        self.done += 1
        if self.said:
            return
        self._marks.append(time.perf_counter())
        if self.done < min(self.probe, self.total):
            return
        steps = np.diff(self._marks)
        per_unit = float(np.median(steps[1:]) if len(steps) > 1 else steps[0])
        self.projected_s = per_unit * self.total
        self.said = True
        if self.projected_s > self.threshold_s:
            about = format_duration(self.projected_s)
            rate = f"{per_unit:.3g} s per {self.unit}, measured over the first {self.done}"
            print(f"{self.what}: about {about} on this device for {self.total} {self.unit}s ({rate})", flush=True)


def _interactive() -> bool:
    """A terminal or a Jupyter kernel, where a redrawn progress bar reads well."""
    import sys

    if "IPython" in sys.modules:  # a Jupyter kernel's shell, not just IPython importable
        shell = sys.modules["IPython"].get_ipython()
        if type(shell).__name__ == "ZMQInteractiveShell":
            return True
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class PlainProgress:
    """tqdm's interface (iterate, update, set_postfix, close) writing one plain line per tenth of the job to
    stderr: what a log file, ``nohup`` output or a CI log can hold, where a redrawn bar leaves one line of
    thousands of carriage returns."""

    def __init__(self, iterable=None, total: int | None = None, desc: str = "", initial: int = 0, parts: int = 10):
        import sys

        self.iterable, self.desc, self.n, self.postfix = iterable, desc, initial, ""
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.start_n, self.start_time, self.parts, self.stream = initial, time.perf_counter(), parts, sys.stderr
        self.next_report, self.last_reported = self._after(initial), initial

    def _after(self, n: int) -> int:
        step = max(1, self.total // self.parts) if self.total else 100  # an open count: a line every 100
        return (n // step + 1) * step

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.n >= self.next_report or (self.total and self.n >= self.total):
            self._report()
            self.next_report = self._after(self.n)

    def _report(self) -> None:
        elapsed = time.perf_counter() - self.start_time
        done = self.n - self.start_n
        line = f"{self.desc}: {self.n}" + (f"/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else "")
        line += f", {format_duration(elapsed)}"
        if self.total and done and self.n < self.total:
            line += f", about {format_duration(elapsed / done * (self.total - self.n))} left"
        print(line + (f", {self.postfix}" if self.postfix else ""), file=self.stream, flush=True)
        self.last_reported = self.n

    def close(self) -> None:
        if self.n != self.last_reported:
            self._report()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable=None, *, total: int | None = None, desc: str = "", disable: bool = False, initial: int = 0,
             transient: bool = False):  # fmt: skip
    """A progress bar that suits where the output goes: tqdm's bar in a terminal or a notebook; plain lines
    (:class:`PlainProgress`) in a log file; nothing where ``disable``, and nothing for a ``transient`` bar
    (an inner loop, such as one batch's sampling steps) outside a terminal."""
    from tqdm.auto import tqdm

    if disable or (transient and not _interactive()):
        return tqdm(iterable, total=total, disable=True)
    if _interactive():
        return tqdm(iterable, total=total, desc=desc, initial=initial, leave=not transient, smoothing=0.1)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial)
