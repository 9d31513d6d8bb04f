"""Time each code cell of a lesson, run as a plain Python script in the profile the machine picks:
``python scripts/time_cells.py notebooks/04_training_on_mnist.ipynb [...] [--log cells.log]``.

For a GPU machine that has PyTorch but no Jupyter (where the package is not installed, put the repository on
``PYTHONPATH``): the lesson's code cells run in order in one namespace, as a kernel would run them, and each
cell's wall time goes to the log, one line per cell, written as it finishes, so a run stopped by a time limit
still says how far it got. Figures are drawn off screen and not kept; the notebook is not changed. Without
IPython, ``IPython.display.display`` is replaced by a stand-in that shows nothing. A cell that raises is logged
with its error and the next cell runs; the exit status is 1 if any cell raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path


class _NoHandle:
    def update(self, *args, **kwargs) -> None:
        pass


def _stand_in_ipython() -> None:
    """An ``IPython`` module that matplotlib and ``viz.LossPlot`` can import where IPython is not installed."""
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        display = types.ModuleType("IPython.display")
        display.display = lambda *args, **kwargs: _NoHandle()
        display.Image = lambda *args, **kwargs: None
        ipython = types.ModuleType("IPython")
        ipython.display, ipython.get_ipython, ipython.version_info = display, lambda: None, (8, 0, 0)
        sys.modules["IPython"], sys.modules["IPython.display"] = ipython, display


def _wait_for_the_gpu() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(index, source) of each code cell, without its IPython magics and shell lines (``%...``, ``!...``)."""
    cells = json.loads(path.read_text())["cells"]
    out = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            out.append((i, "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))))
    return out


def run(path: Path, log) -> bool:
    """Run one notebook's code cells, logging each one's time; True if none raised."""
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    ok, start = True, time.perf_counter()
    log.write(f"== {path}\n")
    log.flush()
    for index, source in code_cells(path):
        began = time.perf_counter()
        try:
            exec(compile(source, f"{path.name}[{index}]", "exec", dont_inherit=True), namespace)
            _wait_for_the_gpu()  # its queued work belongs to this cell's time
            status = "ok"
        except Exception as error:  # later cells may not need this one: go on, and say so in the log
            status, ok = f"ERROR {type(error).__name__}: {str(error)[:300]}", False
        first = next((line for line in source.splitlines() if line.strip()), "")[:90]
        log.write(f"cell {index:3d} {time.perf_counter() - began:9.2f} s {status} | {first}\n")
        log.flush()
        plt.close("all")
    log.write(f"total {time.perf_counter() - start:.1f} s\n")
    log.flush()
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--log", type=Path, help="append the per-cell times to this file (default: standard output)")
    args = p.parse_args(argv)
    missing = [str(path) for path in args.notebooks if not path.is_file()]
    if missing:
        p.error(f"no such notebook: {', '.join(missing)}; give paths such as notebooks/04_training_on_mnist.ipynb")
    os.environ.setdefault("MPLBACKEND", "Agg")
    _stand_in_ipython()
    log = args.log.open("a") if args.log else sys.stdout
    try:
        results = [run(path, log) for path in args.notebooks]
    finally:
        if args.log:
            log.close()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
