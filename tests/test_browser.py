"""The slider explorer in a real front end: JupyterLab in headless Chromium, driven by Playwright.

Runs lesson 01 in JupyterLab, moves the t slider with the keyboard, and checks from the page that the
picture was redrawn, the readout moved and no error appeared. Screenshots go to artifacts/browser/
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
    env = {**os.environ, "DDPM_FAST": "1", "DDPM_OFFLINE": "1"}
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
    shutil.copy(ROOT / "notebooks" / "01_forward_diffusion.ipynb", served)
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


def test_explorer_slider_redraws_in_jupyterlab(jupyterlab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/01_forward_diffusion.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        deadline = time.time() + 60  # wait for the kernel itself, not only the page's indicator
        while not any(
            s["kernel"]["execution_state"] == "idle" for s in _get_json(f"{base}/api/sessions?token={token}")
        ):
            assert time.time() < deadline, "the kernel never became idle"
            time.sleep(0.3)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        image = page.locator("img.widget-image").first
        image.wait_for(timeout=180_000)
        image.scroll_into_view_if_needed()
        readout = page.locator(".widget-slider .widget-readout").first
        before_src, before_t = image.get_attribute("src"), int(readout.inner_text())
        page.screenshot(path=str(ARTIFACTS / "explorer_before.png"))

        page.locator(".widget-slider .noUi-handle").first.click()
        for _ in range(25):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "src => document.querySelector('img.widget-image').src !== src", arg=before_src, timeout=30_000
        )
        after_t = int(readout.inner_text())
        deadline = time.time() + 60  # let the kernel catch up with every key press before the screenshot
        while not all(
            s["kernel"]["execution_state"] == "idle" for s in _get_json(f"{base}/api/sessions?token={token}")
        ):
            assert time.time() < deadline, "the kernel stayed busy after the slider moved"
            time.sleep(0.3)
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "explorer_after.png"))
        errors = page.locator(
            "[data-mime-type='application/vnd.jupyter.stderr'], [data-mime-type='application/vnd.jupyter.error']"
        ).count()
        browser.close()
    assert after_t == before_t + 25  # the keyboard moved t, and the picture was redrawn (waited for above)
    assert errors == 0  # no cell wrote an error or to stderr
