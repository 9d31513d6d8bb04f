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
def test_an_exercise_notebook_opens_itself_on_colab_and_links_its_solution(path):
    badge = nbformat.read(ROOT / "exercises" / path.name, as_version=4).cells[0].source
    assert f"blob/main/exercises/{path.name}" in badge and "/notebooks/" not in badge.split(")](")[0]
    assert f"](../notebooks/{path.name})" in badge


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_first_code_cell_shows_the_profile(path):
    setup = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert setup.source.rstrip().endswith("show_profile()")
    printed = "".join(o.get("text", "") for o in setup.outputs if o.output_type == "stream")
    assert printed.startswith("profile FAST") and "no CUDA GPU is visible" in printed  # stored as on a laptop


# A stored output must read the same on every machine: no absolute path (/home/..., /tmp/..., C:\...), and
# nothing on stderr (a development machine's notices, warnings, progress bars).
_ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(\[=])(?:/[\w.-]+){2,}|\b[A-Z]:\\\w")


@pytest.mark.parametrize("path", [*NOTEBOOKS, *sorted((ROOT / "demo").glob("*.ipynb"))], ids=lambda p: p.name)
def test_stored_outputs_hold_no_absolute_path_and_nothing_on_stderr(path):
    problems = []
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                problems.append(f"cell {i} wrote to stderr: {out.text[:120]!r}")
            text = out.get("text", "") + "".join(out.get("data", {}).get("text/plain", ""))
            problems += [f"cell {i} shows the path {m.group(0).strip()!r}" for m in _ABSOLUTE_PATH.finditer(text)]
    assert not problems, "\n".join(problems)


def test_the_stored_output_check_finds_what_it_is_for():
    assert _ABSOLUTE_PATH.search("loaded /work/main/data/x.npz") and _ABSOLUTE_PATH.search("in C:\\Users")
    assert not _ABSOLUTE_PATH.search("see data/checkpoints/README.md, 3/4 of https://example.org/a/b")


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
def test_nbval_on_a_blank_exercise_notebook_fails_exactly_at_its_checks(path, tmp_path):
    """What a learner runs: `pytest --nbval-lax exercises/NN.ipynb`. Before answering, exactly the check
    cells fail and every other cell still runs. Answered, an exercise notebook is its solution notebook
    cell for cell (test_exercise_notebook_is_in_sync_with_its_solution), and `make notebooks` runs every
    solution under nbval, so "passes once answered" is checked there rather than run twice.

    The blank notebook runs up to its last check cell: the cells after it are the solution's cells (the sync
    test), already run by `make notebooks`, and a cell there that calls an unanswered stub can only fail with
    the stub's NotImplementedError. Stopping there keeps the test suite inside its time budget."""
    import subprocess
    import sys

    exercise = nbformat.read(ROOT / "exercises" / path.name, as_version=4)
    last_check = max(i for i, c in enumerate(exercise.cells) if c.cell_type == "code" and "checks.check_" in c.source)
    exercise.cells = exercise.cells[: last_check + 1]
    nbformat.write(exercise, tmp_path / path.name)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DDPM_OFFLINE": "1", "DDPM_WIDGETS": "static"}
    for name in ("MPLBACKEND", "DDPM_FAST", "DDPM_PROFILE"):  # a laptop's kernel: the profile follows the machine
        env.pop(name, None)
    cmd = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider", str(tmp_path / path.name)]
    blank_run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    code = [c for c in exercise.cells if c.cell_type == "code"]
    check_cells = {i for i, c in enumerate(code) if "checks.check_" in c.source}
    failed = {int(i) for i in re.findall(r"^FAILED .*::Cell (\d+)", blank_run.stdout, re.M)}
    assert check_cells and failed >= check_cells, blank_run.stdout[-3000:]  # every check cell fails...
    assert "NotImplementedError" in blank_run.stdout
    for i in failed - check_cells:  # ...and any other failure is a cell that called an unanswered stub
        assert "NotImplementedError" in _nbval_failure(blank_run.stdout, i), f"cell {i} failed for another reason"


def _nbval_failure(stdout: str, cell: int) -> str:
    """The part of nbval's report about one failing cell."""
    match = re.search(rf"_+ [^\n]*::Cell {cell} _+\n(.*?)(?=\n_{{5,}} |\n=+ short test summary)", stdout, re.S)
    return match.group(1) if match else ""


def test_time_cells_runs_a_lesson_as_a_script_and_logs_each_cell(tmp_path):
    """scripts/time_cells.py, the timer of the FULL profile on a GPU machine without Jupyter: one namespace for
    all cells, magics dropped, a failing cell logged and the next one run, exit status 1; and, with IPython
    missing, LossPlot's display and matplotlib still import."""
    import subprocess
    import sys

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a lesson"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport time\nvalue = 41"),
        nbformat.v4.new_code_cell(
            "from ddpm_lessons.viz import LossPlot\nplot = LossPlot(every=1)\nplot.update(1, 0.5)"
        ),
        nbformat.v4.new_code_cell("raise ValueError('planted')"),
        nbformat.v4.new_code_cell("time.sleep(0.3)\nprint('answer', value + 1)"),
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    log = tmp_path / "cells.log"
    block_ipython = "import sys; sys.modules['IPython'] = None; sys.argv = sys.argv[1:]; import runpy; "
    block_ipython += f"runpy.run_path({str(ROOT / 'scripts' / 'time_cells.py')!r}, run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", block_ipython, "time_cells.py", str(path), "--log", str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DDPM_PROFILE": "fast"},
    )
    assert done.returncode == 1, done.stderr
    assert "answer 42" in done.stdout
    lines = log.read_text().splitlines()
    assert lines[0] == f"== {path}" and lines[-1].startswith("total ")
    cells = [line.split() for line in lines[1:-1]]
    assert [c[1] for c in cells] == ["1", "2", "3", "4"]  # code cells only, by their index in the notebook
    assert [c[4] for c in cells] == ["ok", "ok", "ERROR", "ok"]
    assert "ValueError: planted" in lines[3]
    assert float(cells[3][2]) >= 0.3  # the sleeping cell's own time
    assert lines[1].endswith("| import time")  # the magic line dropped

    bad = subprocess.run(
        [sys.executable, "scripts/time_cells.py", "notebooks/no_such.ipynb"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "no such notebook: notebooks/no_such.ipynb" in bad.stderr


def test_the_gpu_checks_script_parses():
    """scripts/gpu_checks.sh runs only where a GPU is lent; here its shell syntax is checked."""
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_checks.sh")]).returncode == 0
