"""The widgets in a real front end: JupyterLab in headless Chromium, driven by Playwright.

Runs the instructor demo (`make demo`: lesson 01's explorer and the reverse-chain scrubber) in
JupyterLab, moves t sliders with the keyboard, and checks from the page and from screenshots that the
pictures and markers were redrawn, the readout moved and no error appeared. Screenshots go to artifacts/browser/
(git-ignored). `make test` installs Debian's chromium where it can (as root, with apt-get); the test
skips, saying why, where no Chromium is found.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free loopback port, with every Jupyter/IPython folder under tmp_path."""
    env = {**os.environ, "DDPM_PROFILE": "fast", "DDPM_OFFLINE": "1"}
    env.pop("DDPM_WIDGETS", None)  # the real, interactive explorer
    env.pop("MPLBACKEND", None)
    for name, sub in [("HOME", "home"), ("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTER_DATA_DIR", "data"),
                      ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl"), ("XDG_CACHE_HOME", "cache"),
                      ("XDG_CONFIG_HOME", "xdg")]:  # fmt: skip
        env[name] = str(tmp_path / sub)
    settings = tmp_path / "cfg" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    served = tmp_path / "served"  # a copy, so that JupyterLab's autosave never touches the repository
    served.mkdir()
    shutil.copy(ROOT / "demo" / "instructor_demo.ipynb", served)
    port, token = _free_port(), "ddpm-lessons-test"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}"]  # fmt: skip
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                _get_json(f"{base}/api?token={token}")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "server.log").read_text()[-2000:])
                time.sleep(0.3)
        yield base, token
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_for_idle_kernels(base: str, token: str, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        sessions = _get_json(f"{base}/api/sessions?token={token}")
        if sessions and all(s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        assert time.time() < deadline, what
        time.sleep(0.3)


def _open_and_run_all(page, base: str, token: str, notebook: str) -> None:
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    _wait_for_idle_kernels(base, token, "the kernel never became idle")  # the kernel itself, not the page's dot
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def _error_outputs(page) -> int:
    return page.locator(
        "[data-mime-type='application/vnd.jupyter.stderr'], [data-mime-type='application/vnd.jupyter.error']"
    ).count()


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def _changed(before, after, rows: tuple[float, float], cols: tuple[float, float]) -> bool:
    """Did the screenshot change inside the box given as fractions of its height and width?"""
    h, w = min(before.shape[0], after.shape[0]), min(before.shape[1], after.shape[1])
    box = (slice(int(rows[0] * h), int(rows[1] * h)), slice(int(cols[0] * w), int(cols[1] * w)))
    return int((abs(before[box] - after[box]) > 8).sum()) > 50


def _press(page, handle, key: str, times: int) -> None:
    handle.click()
    for _ in range(times):
        page.keyboard.press(key)


def test_instructor_demo_runs_and_both_widgets_follow_their_sliders(jupyterlab):
    """`make demo`'s notebook: the explorer's images and alpha_bar marker, and the scrubber's chain and SNR
    marker, change on screen when their t sliders move."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _open_and_run_all(page, base, token, "instructor_demo.ipynb")
        images = page.locator("img.widget-image")
        images.nth(1).wait_for(timeout=180_000)  # both widgets are on the page
        _wait_for_idle_kernels(base, token, "the demo's cells did not finish", timeout=180)
        code_hidden = page.locator(".jp-Cell .jp-InputArea.lm-mod-hidden, .jp-Cell .jp-Placeholder").count()
        handles = page.locator(".widget-slider .noUi-handle")  # explorer t, final beta; scrubber t, guidance
        shots, readouts = {}, {}
        for name, index, handle_index, key, presses in (
            ("explorer", 0, 0, "ArrowRight", 40),
            ("scrubber", 1, 2, "Home", 1),
        ):
            image = images.nth(index)
            image.scroll_into_view_if_needed()
            readout = page.locator(".widget-slider .widget-readout").nth(handle_index)
            before_t = int(readout.inner_text())
            before_src, before = (
                image.get_attribute("src"),
                image.screenshot(path=str(ARTIFACTS / f"demo_{name}_before.png")),
            )
            _press(page, handles.nth(handle_index), key, presses)  # Home: t = 0, the end of the chain
            page.wait_for_function(
                "([i, src]) => document.querySelectorAll('img.widget-image')[i].src !== src",
                arg=[index, before_src],
                timeout=30_000,
            )
            _wait_for_idle_kernels(base, token, f"the kernel stayed busy after the {name} slider moved")
            page.wait_for_timeout(500)
            readouts[name] = (before_t, int(readout.inner_text()))
            shots[name] = (_pixels(before), _pixels(image.screenshot(path=str(ARTIFACTS / f"demo_{name}_after.png"))))
        errors = _error_outputs(page)
        browser.close()
    assert readouts["explorer"] == (250, 290) and readouts["scrubber"] == (999, 0)  # the keys moved t
    before, after = shots["explorer"]
    assert _changed(before, after, rows=(0.1, 0.45), cols=(0.0, 1.0))  # the noisy digits
    assert _changed(before, after, rows=(0.55, 1.0), cols=(0.0, 0.33))  # the alpha_bar marker
    before, after = shots["scrubber"]
    assert _changed(before, after, rows=(0.1, 0.5), cols=(0.0, 0.66))  # the chain x_t
    assert _changed(before, after, rows=(0.1, 0.9), cols=(0.7, 1.0))  # the SNR marker
    assert code_hidden >= 3  # the demo shows no code: every code cell's input is collapsed
    assert errors == 0
