# Two commands do everything on a fresh clone: `make lab` (the course) and `make test` (every test).
# Both create .venv and install the package with its extras the first time, then reuse it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The tests see a CPU-only machine (CUDA_VISIBLE_DEVICES=) with no profile variable set, as a laptop
# student does, so the profile follows the machine to FAST; no network access; widgets draw one static figure.
TEST_ENV := env -u DDPM_FAST -u DDPM_PROFILE CUDA_VISIBLE_DEVICES= DDPM_OFFLINE=1 DDPM_WIDGETS=static
# The lessons train into temporary folders, which each test run would leave behind (30 MB for lesson 08 alone):
# the tests get a temporary folder of their own (TMPDIR), removed when they end: passed, failed or interrupted.
IN_TMPDIR := tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && trap 'exit 130' INT && trap 'exit 143' TERM && \
	TMPDIR=$$tmp
# Jupyter refuses to start as root without --allow-root, and containers and many cloud VMs work as root.
# LAB_ARGS passes more options, e.g. `make lab LAB_ARGS="--port 8890 --no-browser"`.
JUPYTER_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

.PHONY: setup browser-deps test lint unit notebooks exercises lab demo site clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (ddpm-lessons)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# The browser test needs Chromium: install Debian's where we can (root with apt-get), else it skips.
browser-deps:
	@command -v chromium > /dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null && \
		{ apt-get update -qq && apt-get install -y -qq chromium > /dev/null; } || \
		echo "chromium not installed: tests/test_browser.py will be skipped"; }

unit: setup browser-deps
	$(IN_TMPDIR) $(TEST_ENV) $(BIN)/pytest tests

# Runs every solution notebook; compares the output of the cells marked # NBVAL_CHECK_OUTPUT.
notebooks: setup
	$(IN_TMPDIR) $(TEST_ENV) $(BIN)/pytest --nbval-lax -p no:cacheprovider notebooks

# Writes exercises/ from the solution notebooks (tests fail when they drift apart).
exercises: setup
	$(BIN)/python -m ddpm_lessons.exercises

test: lint unit notebooks

# Opens the first exercise notebook; the solutions are one click away in notebooks/.
lab: setup
	@echo "Starting JupyterLab on exercises/00_start_here.ipynb. If no browser opens, open the" \
		"http://127.0.0.1:... address printed below."
	$(BIN)/jupyter lab $(JUPYTER_ARGS) --LabApp.default_url=/lab/tree/exercises/00_start_here.ipynb

# The instructor demo: forward-diffusion explorer and reverse-chain scrubber, code collapsed, offline.
demo: setup
	@echo "Starting the demo. If no browser opens, open the http://127.0.0.1:... address printed below."
	$(BIN)/jupyter lab $(JUPYTER_ARGS) --LabApp.default_url=/lab/tree/demo/instructor_demo.ipynb

# The course as static HTML under site/ (every lesson executed in FAST mode), index in course order.
site: setup
	$(BIN)/python scripts/build_site.py

clean-venv:
	rm -rf $(VENV)
