"""Write the exercise notebooks from the solution notebooks: ``python -m ddpm_lessons.exercises``.

In a solution notebook each answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(one or more per code cell). The exercise version replaces each such block by
``# YOUR CODE HERE`` and ``raise NotImplementedError`` at the same indentation, clears every output,
and keeps only the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``: the check cells' PASS lines,
which nbval then expects from the learner's answers.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
_BLOCK = re.compile(r"^([ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*$", re.S | re.M)


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block of a cell's source by a stub."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced {BEGIN!r} / {END!r} markers in cell:\n{source}")
    return _BLOCK.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError", source)


def exercise_badge(badge: str, name: str) -> str:
    """The first cell of an exercise notebook: its Colab badge opens the exercise, and the solution is a link away."""
    return badge.replace(f"/notebooks/{name}", f"/exercises/{name}") + (
        f"\n\nThis is the exercise version: fill in each `# YOUR CODE HERE`. "
        f"The solutions are in [notebooks/{name}](../notebooks/{name})."
    )


def make_exercise(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The exercise version of the solution notebook ``name`` (e.g. "01_forward_diffusion.ipynb")."""
    nb = copy.deepcopy(solution)
    nb.cells[0].source = exercise_badge(nb.cells[0].source, name)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        has_solution = BEGIN in cell.source
        cell.source = strip_solutions(cell.source)
        cell.metadata.pop("execution", None)
        if has_solution or CHECK_MARK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        # A check cell keeps its PASS line and its execution count: nbval treats a cell with
        # outputs but no count as an error ("unrun reference cell has outputs").
    nb.metadata.setdefault("ddpm_lessons", {})["generated_from"] = "notebooks/ (do not edit: make exercises)"
    return nb


def exercise_text(path: Path) -> str:
    return nbformat.writes(make_exercise(nbformat.read(path, as_version=4), path.name)) + "\n"


def solution_notebooks(src: Path) -> list[Path]:
    return [p for p in sorted(Path(src).glob("*.ipynb")) if BEGIN in p.read_text()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=Path("notebooks"))
    p.add_argument("--dst", type=Path, default=Path("exercises"))
    p.add_argument("--check", action="store_true", help="only report exercise notebooks that are out of date")
    args = p.parse_args(argv)
    stale = []
    for path in solution_notebooks(args.src):
        target = args.dst / path.name
        text = exercise_text(path)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target}")
    if args.check and stale:
        print("out of date (run `make exercises`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
