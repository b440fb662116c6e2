"""No orphan, no limbo: whatever moment a worker or an inline sweep is killed with SIGKILL, one reap
leaves no `queued` or `running` job without a live owner and loses no acknowledged run; workers find
their jobs in the store; a run past its time limit, or cancelled but stuck, is stopped (SIGTERM,
then SIGKILL) and recorded as such."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruning.runs import executors, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

REPO = Path(__file__).resolve().parents[2]
FAST = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)
SWEEP = [FAST.replace(method=m, sparsity=s) for m in ("magnitude", "random") for s in (0.3, 0.6, 0.9)]
STUCK_MODEL = '''
import signal, time
from pathlib import Path
from torch import nn

IGNORE_SIGTERM = {ignore}

class Stuck(nn.Linear):
    """Linear(64, 10) whose training forward says it started, then hangs (deaf to SIGTERM if asked)."""

    def forward(self, x):
        if self.training:
            if IGNORE_SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            Path(__file__).with_suffix(".started").touch()
            while True:
                time.sleep(0.05)
        return super().forward(x)

def make():
    return Stuck(64, 10)
'''


def wait_for(condition, what: str, timeout: float = 600.0):
    """Poll until `condition()` holds; the timeout only stops a hung test, it judges no speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_no_limbo(root: Path, acknowledged: set[str]) -> None:
    with Store(root) as store:
        store.reap()
        records = store.runs(kind=None)
    assert acknowledged <= {r.id for r in records}
    assert not [r for r in records if not r.done], [(r.id, r.status) for r in records]
    for r in records:
        assert (
            r.status == "succeeded"
            or r.error
            and (
                r.error.startswith("orphaned: the process that owned it")
                or "exited without reporting" in r.error
            )
        ), (r.status, r.error)
    with sqlite3.connect(root / "lab.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_workers_leave_no_job_in_limbo(store_dir, seed):
    ids = submit.submit(store_dir, SWEEP, executor="process", workers=2)
    time.sleep(random.Random(seed).uniform(0.0, 3.0))  # a random point of their work
    with Store(store_dir) as store:
        workers = {r.pid for r in store.runs() if not r.done and r.pid != os.getpid()}
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the killed workers to end")
    assert_no_limbo(store_dir, set(ids))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_a_killed_inline_sweep_leaves_no_job_in_limbo(store_dir, seed):
    command = [sys.executable, "-m", "pruning", "sweep", "--model", "mlp-digits", "--methods",
               "magnitude,random", "--sparsities", "0.3,0.6,0.9", "--no-latency", "--quiet",
               "--store", str(store_dir)]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def recorded() -> set[str]:
            if not (store_dir / "lab.db").exists():
                return set()
            try:
                with sqlite3.connect(f"file:{store_dir / 'lab.db'}?mode=ro", uri=True) as conn:
                    found = {row[0] for row in conn.execute("SELECT id FROM runs")}
                conn.close()
                return found
            except sqlite3.Error:  # the table is being created
                return set()

        acknowledged = wait_for(recorded, what="the sweep to record its runs")
        time.sleep(random.Random(seed).uniform(0.0, 3.0))
        sweep.kill()
    finally:
        sweep.wait(timeout=600)
    assert_no_limbo(store_dir, acknowledged)


def test_a_worker_finds_its_jobs_in_the_store_however_many(store_dir):
    with Store(store_dir) as store:
        jobs = [(f"job-{n:05d}", {"model": "m", "method": "magnitude"}) for n in range(20000)]
        store.create_runs(jobs)
        store.hand_to([job for job, _ in jobs], "worker-a")
        assert store.adopt("worker-a", os.getpid()) == [job for job, _ in jobs]
        assert store.adopt("worker-b", os.getpid()) == []
        store.heartbeat(*[job for job, _ in jobs])  # more ids than SQLite takes in one statement


@pytest.mark.slow
def test_a_worker_takes_no_run_id_on_its_command_line(store_dir):
    with Store(store_dir) as store:
        run_id = store.create_run(FAST.to_dict())
        (worker,) = executors.spawn(store, {run_id: FAST})
        assert run_id not in worker.args and "--worker" in worker.args
        assert worker.wait(timeout=600) == 0  # a hang-stopper
        assert store.get(run_id).status == "succeeded"


def stuck_job(store: Store, tmp_path: Path, ignore_sigterm: bool, limit: float | None):
    source = tmp_path / "stuck.py"
    source.write_text(STUCK_MODEL.format(ignore=ignore_sigterm))
    config = RunConfig(f"{source}:make", "magnitude", 0.5, data="digits", finetune_epochs=1, latency=False)
    run_id = store.create_run(config.to_dict(), time_limit=limit)
    (worker,) = executors.spawn(store, {run_id: config})
    wait_for(lambda: source.with_suffix(".started").exists(), what="the run to hang in training")
    return run_id, worker


@pytest.mark.slow
def test_a_run_past_its_time_limit_is_stopped_and_recorded_timed_out(store_dir, tmp_path):
    with Store(store_dir) as store:
        run_id, worker = stuck_job(store, tmp_path, ignore_sigterm=False, limit=0.5)
        try:
            wait_for(lambda: store.reap(grace=600) or store.get(run_id).done, what="the reap")
            assert worker.wait(timeout=600) == 0  # SIGTERM abandoned the job; the worker ended normally
        finally:
            worker.kill()
        record = store.get(run_id)
        assert record.status == "failed"
        assert record.error == "timed out: still running after its time limit of 0.5 s"


@pytest.mark.slow
def test_a_cancelled_run_that_ignores_sigterm_is_killed_and_recorded_cancelled(store_dir, tmp_path):
    with Store(store_dir) as store:
        run_id, worker = stuck_job(store, tmp_path, ignore_sigterm=True, limit=None)
        try:
            store.request_cancel(run_id)
            wait_for(lambda: store.reap(grace=0) is not None and worker.poll() is not None, what="the kill")
            # the worker's watcher outlives the job process it ran and exits as a shell does: 128 + 9
            assert worker.returncode == 128 + signal.SIGKILL
        finally:
            worker.kill()
        record = store.get(run_id)
        assert (record.status, record.error) == (
            "cancelled",
            "cancelled by the user (the worker was stopped)",
        )
