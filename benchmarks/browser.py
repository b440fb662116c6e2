"""The real dashboard in Debian's chromium, shared by the browser tests and the dashboard benchmarks.

`start_dashboard` runs `streamlit run dashboard.py` on a free port with a throwaway store
($PRUNING_LAB_HOME) and returns once the server is healthy; `launch` starts /usr/bin/chromium
through Playwright with the flags a closed network needs (never a browser download).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    started: float  # time.perf_counter() when the process was started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(home: Path, log: Path, timeout: float = 90.0) -> Server:
    """`streamlit run dashboard.py` on a free port with `home` as its store; returns once it is healthy."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "dashboard.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=dict(os.environ, PRUNING_LAB_HOME=str(home)), stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return Server(url, home, process, started)
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"streamlit did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def launch(playwright):
    """Headless Debian chromium (the caller checks that CHROMIUM exists, to fail with its own message)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
