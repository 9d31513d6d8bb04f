"""Render the course as a static site: every lesson executed in FAST mode, as HTML with its images
inline, under site/ (git-ignored), with an index page in course order.

    python scripts/build_site.py [--no-execute] [--out site]

``make site`` runs it. With --no-execute the notebooks are rendered with the outputs they hold.
"""

from __future__ import annotations

import argparse
import html
import os
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent


def title_of(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def build(out: Path, execute: bool) -> list[Path]:
    if execute:
        os.environ.update(DDPM_PROFILE="fast", DDPM_OFFLINE="1", DDPM_WIDGETS="static")  # the kernels inherit these
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    entries, written = [], []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if execute:
            ExecutePreprocessor(timeout=600).preprocess(nb, {"metadata": {"path": str(path.parent)}})
        body, _ = exporter.from_notebook_node(nb)
        target = out / f"{path.stem}.html"
        target.write_text(body)
        written.append(target)
        entries.append((target.name, title_of(nb, path.stem)))
        print(f"wrote {target}")
    items = "\n".join(f'    <li><a href="{html.escape(name)}">{html.escape(title)}</a></li>' for name, title in entries)
    (out / "index.html").write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>ddpm-lessons</title></head><body>\n"
        "<h1>ddpm-lessons: Denoising Diffusion Probabilistic Models from first principles</h1>\n"
        "<p>Every lesson as it runs in the FAST profile on a laptop CPU. Run them yourself with "
        "<code>make lab</code>.</p>\n<ol>\n" + items + "\n</ol>\n</body></html>\n"
    )
    print(f"wrote {out / 'index.html'}")
    return written


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "site")
    p.add_argument("--no-execute", action="store_true")
    args = p.parse_args()
    build(args.out, execute=not args.no_execute)
