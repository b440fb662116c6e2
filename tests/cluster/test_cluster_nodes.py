"""A sweep on a two-node Ray cluster on this machine (127.0.0.1): a head and a second node joined to
it, each of 1 CPU, started with `ray start` and stopped by this test, in temp folders of their own
(so no other Ray on the machine is touched). The tasks run on both nodes; only the coordinator (the
command line's process) writes the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
HANG_STOPPER = 600.0  # only stops a hung command; no speed is judged


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, env: dict) -> None:
    ray = os.path.join(os.path.dirname(os.sys.executable), "ray")  # the virtual environment's, unresolved
    done = subprocess.run([ray, *args], env=env, capture_output=True, text=True, timeout=HANG_STOPPER)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def two_nodes(monkeypatch):
    # this cluster only: not the session's Ray (ray.init leaves its address in RAY_ADDRESS), and no
    # token authentication (a token left in ~/.ray by another cluster would lock the second node out)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    port = _free_port()
    folders = [tempfile.mkdtemp(prefix="rh", dir="/tmp"), tempfile.mkdtemp(prefix="rw", dir="/tmp")]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    node = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        _ray("start", "--head", "--port", str(port), "--temp-dir", folders[0], "--include-dashboard", "false",
             *node, env=env)  # fmt: skip
        _ray("start", "--address", f"127.0.0.1:{port}", "--temp-dir", folders[1], *node, env=env)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(folders)


def _stop(folders: list[str]) -> None:
    """End the processes of these two nodes only (found by their temp folders), by pid."""
    mine = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and any(folder in line for folder in folders):
            mine.append(int(entry.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in mine):
            time.sleep(0.2)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_runs_on_both_nodes_and_only_the_coordinator_writes_the_store(two_nodes, cli, store_dir):
    done = cli(
        "sweep", "--model", "mlp-digits", "--methods", "magnitude,random", "--sparsities", "0.3,0.7",
        "--finetune-epochs", "2", "--no-latency", "--executor", "ray", "--ray-address", two_nodes,
        "--cpus-per-run", "1", "--store", str(store_dir), "--json", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert [r["status"] for r in results] == ["succeeded"] * 4
    assert len({r["ray_node_id"] for r in results}) == 2  # both nodes ran tasks
    from pruning.runs.store import Store

    with Store(store_dir) as store:
        records = [store.get(r["run_id"]) for r in results]
    assert len({(r.pid, r.host) for r in records}) == 1  # one owner wrote them all: the coordinator
    inline = cli("run", "--model", "mlp-digits", "--method", "magnitude", "--sparsity", "0.3", "--no-latency",
                 "--finetune-epochs", "2", "--store", str(store_dir), "--json", "--quiet")  # fmt: skip
    assert set(json.loads(inline.stdout)) | {"ray_node_id"} == set(results[0])  # the same RunResult JSON
