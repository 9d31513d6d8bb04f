"""The package's layers: every module sits in the import-linter contract that `make lint` checks, and the
README's module table names the same modules, so neither can drift from the code."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent


def _contract_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    return [name.strip().removeprefix("ddpm_lessons.") for layer in layers for name in layer.split("|")]


def _package_modules() -> set[str]:
    package = ROOT / "ddpm_lessons"
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return modules | {p.name for p in package.iterdir() if (p / "__init__.py").exists()}


def test_every_module_is_in_exactly_one_layer():
    listed = _contract_modules()
    assert len(listed) == len(set(listed))
    assert set(listed) == _package_modules()


def test_the_readme_table_names_every_module():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## The package, bottom-up") : readme.index("Timesteps are 0-indexed in code")]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    named = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert set(named) == _package_modules()
