"""Execute lessons in place, as a student's CPU-only laptop would, so their stored outputs are what a
student sees: ``python scripts/run_notebooks.py notebooks/04_training_on_mnist.ipynb [...]``, then
``make exercises``. No profile or offline variable is set and CUDA is hidden, so the profile follows the
machine to FAST, where no lesson downloads anything; widgets draw one static figure (their live version is
not stored). Prints each notebook's wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

STUDENT_ENV = {"CUDA_VISIBLE_DEVICES": "", "DDPM_WIDGETS": "static"}


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, record_timing=False, resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    path.write_text(nbformat.writes(nb) + "\n")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    args = p.parse_args(argv)
    for name in ("DDPM_FAST", "DDPM_PROFILE", "DDPM_OFFLINE", "MPLBACKEND"):
        os.environ.pop(name, None)  # the kernels inherit this environment
    os.environ.update(STUDENT_ENV)
    for path in args.notebooks:
        print(f"{path}: {run(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
