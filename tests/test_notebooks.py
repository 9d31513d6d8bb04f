"""The lessons and their exercise versions: in sync, small, installable on Colab, and self-checking.

`make test` also runs every solution notebook under `pytest --nbval-lax notebooks/`.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest

from ddpm_lessons import REPO_URL
from ddpm_lessons.exercises import BEGIN, CHECK_MARK, exercise_text, solution_notebooks, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WITH_EXERCISES = solution_notebooks(ROOT / "notebooks")


def test_there_are_lessons():
    assert [p.name[:2] for p in NOTEBOOKS][:4] == ["00", "01", "02", "03"]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_exercise_notebook_is_in_sync_with_its_solution(path):
    target = ROOT / "exercises" / path.name
    assert target.exists(), f"{target} is missing: run `make exercises`"
    assert target.read_text() == exercise_text(path), f"{target} is stale: run `make exercises`"


@pytest.mark.parametrize("path", [*NOTEBOOKS, *sorted((ROOT / "exercises").glob("*.ipynb"))], ids=lambda p: p.name)
def test_notebook_is_under_one_megabyte(path):
    assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_and_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert f"notebooks/{path.name}" in nb.cells[0].source and "colab-badge" in nb.cells[0].source
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "google.colab" in setup.source and f'REPO_URL = "{REPO_URL}"' in setup.source
    assert REPO_URL.split("github.com/")[1] in nb.cells[0].source


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_every_exercise_is_followed_by_a_stored_pass_line(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        if BEGIN in cell.source:
            check = cells[i + 1]
            assert CHECK_MARK in check.source and "checks.check_" in check.source, check.source
            text = "".join(o.get("text", "") for o in check.outputs if o.output_type == "stream")
            assert text.startswith("PASS "), f"{path.name}: the check after cell {i} has no stored PASS line"


def test_strip_solutions_keeps_indentation_and_code_around():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f)"
    assert (
        strip_solutions(source)
        == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nprint(f)"
    )
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_static_site_renders_every_lesson_in_order(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
    build_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_site)
    written = build_site.build(tmp_path, execute=False)  # `make site` executes them first
    assert [p.name for p in written] == [p.stem + ".html" for p in NOTEBOOKS]
    index = (tmp_path / "index.html").read_text()
    positions = [index.index(p.name) for p in written]
    assert positions == sorted(positions) and "Forward diffusion" in index
    assert "data:image/png;base64" in (tmp_path / "01_forward_diffusion.html").read_text()  # images inline


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_nbval_on_an_exercise_notebook_passes_exactly_when_the_answers_are_right(path, tmp_path):
    """What a learner runs: `pytest --nbval-lax exercises/NN.ipynb`, before and after answering."""
    import subprocess
    import sys

    exercise = nbformat.read(ROOT / "exercises" / path.name, as_version=4)
    solution = nbformat.read(path, as_version=4)
    answered = nbformat.from_dict(exercise)
    for cell, solved in zip(answered.cells, solution.cells, strict=True):
        if "# YOUR CODE HERE" in cell.source:
            cell.source = solved.source  # the learner writes the reference answer
    (tmp_path / "blank").mkdir()
    (tmp_path / "answered").mkdir()
    nbformat.write(exercise, tmp_path / "blank" / path.name)
    nbformat.write(answered, tmp_path / "answered" / path.name)
    env = {**os.environ, "DDPM_FAST": "1", "DDPM_OFFLINE": "1", "DDPM_WIDGETS": "static"}
    env.pop("MPLBACKEND", None)

    def nbval(folder):
        cmd = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider", str(folder / path.name)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)

    answered_run = nbval(tmp_path / "answered")
    assert answered_run.returncode == 0, answered_run.stdout[-3000:]
    # Before answering, exactly the check cells fail (nbval names code cells by their index), and
    # every other cell still runs.
    blank_run = nbval(tmp_path / "blank")
    code = [c for c in exercise.cells if c.cell_type == "code"]
    check_cells = {i for i, c in enumerate(code) if "checks.check_" in c.source}
    failed = {int(i) for i in re.findall(r"^FAILED .*::Cell (\d+)", blank_run.stdout, re.M)}
    assert check_cells and failed == check_cells, blank_run.stdout[-3000:]
    assert "NotImplementedError" in blank_run.stdout
