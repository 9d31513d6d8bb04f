"""`make lab`, the README's first command, starts JupyterLab on the first exercise notebook, as root (a
container, many cloud VMs) and as a normal user, and prints the address to open."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ddpm-lessons-lab-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_make_lab(tmp_path: Path, prefix: list[str]) -> tuple[str, int]:
    """Start `make lab` (headless), wait for its address, fetch the exercise notebook through it, stop it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_DATA_HOME=str(home / "share"), XDG_RUNTIME_DIR=str(home / "run"))  # fmt: skip
    port = _free_port()
    lab_args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={TOKEN}"
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        os.chmod(log_path, 0o666)
        server = subprocess.Popen([*prefix, "make", "-s", "lab", f"LAB_ARGS={lab_args}"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline, url = time.time() + 90, f"http://127.0.0.1:{port}/lab/tree/exercises/00_start_here.ipynb"
        while url not in log_path.read_text():
            assert server.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        api = f"http://127.0.0.1:{port}/api/contents/exercises/00_start_here.ipynb?content=0&token={TOKEN}"
        for _ in range(40):
            try:
                with urllib.request.urlopen(api, timeout=5) as response:
                    return log_path.read_text(), response.status
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the server printed its address but did not answer:\n" + log_path.read_text()[-3000:])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_opens_the_first_exercise_and_prints_its_address(tmp_path):
    out, status = _run_make_lab(tmp_path, [])
    assert status == 200
    assert "If no browser opens, open the http://127.0.0.1:... address printed below." in out
    assert re.search(r"http://127\.0\.0\.1:\d+/lab/tree/exercises/00_start_here\.ipynb\?token=", out)
    assert "Running as root is not recommended" not in out


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_make_lab_and_demo_ask_for_allow_root_only_as_root(tmp_path):
    """As a normal user Jupyter starts without --allow-root (and warns about it, so it is left out). The
    user here cannot run root's .venv, so this checks the command that `make lab` would run."""
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for target, opens in (("lab", "exercises/00_start_here.ipynb"), ("demo", "demo/instructor_demo.ipynb")):
        commands = {}
        for who, prefix in (("root", []), ("normal user", as_nobody)):
            dry_run = subprocess.run([*prefix, "make", "-n", "-s", target], cwd=ROOT, capture_output=True, text=True)
            commands[who] = next(line for line in dry_run.stdout.splitlines() if "jupyter lab" in line)
        assert "--allow-root" in commands["root"] and "--allow-root" not in commands["normal user"], commands
        assert all(f"default_url=/lab/tree/{opens}" in command for command in commands.values())
