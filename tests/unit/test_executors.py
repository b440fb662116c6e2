"""Executing jobs: in process and in detached workers, with progress, cancellation and dead workers.

Nothing here races a clock: a run that must be caught while running uses a model whose training
step announces itself in a file and then waits for a release file the test writes."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from pruning.cli import main as cli_main
from pruning.core.methods.unstructured import Magnitude
from pruning.runs import executors
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

FAST = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)
GATED_MODEL = '''
import time
from pathlib import Path
from torch import nn

class Gated(nn.Linear):
    """Linear(64, 10) whose training forward says it started, then waits for the release file."""

    def forward(self, x):
        if self.training:
            Path(__file__).with_suffix(".started").touch()
            while not Path(__file__).with_suffix(".release").exists():
                time.sleep(0.05)
        return super().forward(x)

def make():
    return Gated(64, 10)
'''


@pytest.fixture
def store(store_dir):
    with Store(store_dir) as opened:
        yield opened


def record(store: Store, configs: list[RunConfig]) -> list[str]:
    """Queue runs as a submitter would, without executing them."""
    return [store.create_run(c.to_dict()) for c in configs]


def wait_for(condition, what: str, timeout: float = 600.0):
    """Poll until `condition()` holds; the timeout only stops a hung test, it judges no speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def test_execute_records_results_layers_and_computes_importance_once(store, monkeypatch):
    calls = []
    original = Magnitude.importance
    monkeypatch.setattr(Magnitude, "importance", lambda *a: calls.append(1) or original(*a))
    ids = record(store, [FAST.replace(sparsity=s) for s in (0.3, 0.6, 0.9)])
    seen = []
    executors.execute(store, ids, echo=lambda run_id, fraction, message: seen.append((run_id, fraction)))
    assert len(calls) == 1
    records = [store.get(i) for i in ids]
    assert [r.status for r in records] == ["succeeded"] * 3
    assert [r.result["run_id"] for r in records] == ids
    assert [r.result["sparsity"] for r in records] == pytest.approx([0.3, 0.6, 0.9], abs=1e-3)
    assert all(r.progress == 1.0 and r.pid == os.getpid() for r in records)
    rows = store.layers([ids[2]])
    assert [r["name"] for r in rows] == ["fc1", "fc2", "fc3"]
    assert sum(r["nonzero"] for r in rows) == records[2].result["pruned"]["nonzero_params"]
    assert {run_id for run_id, _ in seen} == set(ids) and (ids[0], 1.0) in seen


def test_a_failing_run_is_recorded_with_its_one_line_reason(store):
    (run_id,) = record(store, [RunConfig("nosuch", "magnitude", 0.5)])
    executors.execute(store, [run_id])
    failed = store.get(run_id)
    assert failed.status == "failed" and failed.error.startswith("unknown model 'nosuch'")
    assert "Traceback" not in failed.error


def test_cancelled_runs_stop_or_never_start(store):
    first, second, third = record(store, [FAST.replace(sparsity=s) for s in (0.3, 0.6, 0.9)])
    store.request_cancel(third)  # still queued: cancelled at once, never started

    def cancel_first(run_id, fraction, message):
        if run_id == first:
            store.request_cancel(first)

    executors.execute(store, [first, second, third], echo=cancel_first)
    assert [store.get(i).status for i in (first, second, third)] == ["cancelled", "succeeded", "cancelled"]
    assert store.get(third).started is None


def test_a_sensitivity_job_records_its_table_and_can_be_cancelled(store):
    config = RunConfig("mlp-digits", "magnitude", 0.0, latency=False)
    done = store.create_run({**config.to_dict(), "levels": [0.5, 0.9]}, kind="sensitivity")
    stopped = store.create_run({**config.to_dict(), "levels": [0.3]}, kind="sensitivity")
    executors.execute(
        store, [done, stopped], echo=lambda job, f, m: job == stopped and store.request_cancel(stopped)
    )
    table = store.get(done).result
    assert store.get(done).status == "succeeded" and table["levels"] == [0.5, 0.9]
    assert len(table["rows"]) == 3 * 2 and store.layers([done]) == []  # a table, not a run's layers
    assert store.get(stopped).status == "cancelled"
    assert [r.id for r in store.runs()] == [] and len(store.runs(kind="sensitivity")) == 2


def test_a_worker_can_be_cancelled_and_a_killed_one_is_marked_failed(store, tmp_path, capsys):
    jobs = {}
    for name in ("cancelled", "killed"):  # two model files: two groups, two workers
        source = tmp_path / f"{name}.py"
        source.write_text(GATED_MODEL)
        config = RunConfig(
            f"{source}:make", "magnitude", 0.5, data="digits", finetune_epochs=1, latency=False
        )
        jobs[store.create_run(config.to_dict())] = config
    cancelled, killed = jobs
    workers = executors.spawn(store, jobs, workers=2)
    assert len(workers) == 2
    try:
        started = [tmp_path / f"{name}.started" for name in ("cancelled", "killed")]
        wait_for(lambda: all(p.exists() for p in started), what="both workers to be fine-tuning")
        assert [store.get(i).status for i in jobs] == ["running", "running"]
        assert cli_main(["cancel", cancelled, "--store", str(store.root)]) == 0
        assert f"cancellation requested for {cancelled}" in capsys.readouterr().out
        (tmp_path / "cancelled.release").touch()  # its next progress report sees the request
        pid = store.get(killed).pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: store.get(cancelled).status == "cancelled", what="the cancelled run to stop")
        # the worker's watcher reaps the killed process and records how it ended, as an out-of-memory kill
        wait_for(lambda: store.get(killed).done, what="the killed worker's run to be recorded")
        dead = store.get(killed)
        assert dead.status == "failed"
        assert dead.error.startswith(f"worker process {pid} exited without reporting: killed by SIGKILL")
        assert re.search(r"at a peak memory of [\d,]+ MiB$", dead.error), dead.error
        assert store.reap() == []  # nothing left for a reap
        assert store.get(cancelled).error == "cancelled by the user"
        # cancelling a finished run is refused with one line
        assert cli_main(["cancel", cancelled, "--store", str(store.root)]) == 2
        assert capsys.readouterr().err == f"error: run {cancelled} already cancelled; nothing to cancel\n"
    finally:
        for name in ("cancelled", "killed"):
            (tmp_path / f"{name}.release").touch()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


def test_workers_find_a_relative_store_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Store(Path("relative-lab")) as store:
        (run_id,) = record(store, [FAST])
        (worker,) = executors.spawn(store, {run_id: FAST})
        assert worker.wait(timeout=600) == 0
        assert store.get(run_id).status == "succeeded"


def test_ctrl_c_on_inline_runs_records_them_cancelled(store):
    first, second = record(store, [FAST, FAST.replace(sparsity=0.7)])

    def interrupt(job_id, fraction, message):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        executors.execute(store, [first, second], echo=interrupt)
    assert [store.get(i).status for i in (first, second)] == ["cancelled", "cancelled"]
    assert store.get(first).error == "interrupted (Ctrl-C)"
