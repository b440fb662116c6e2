"""Executing runs: in process and in detached workers, with progress, cancellation and dead workers."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pruning import cli
from pruning.core.methods.unstructured import Magnitude
from pruning.runs import jobs
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

FAST = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)


@pytest.fixture
def store(store_dir):
    with Store(store_dir) as opened:
        yield opened


def wait_for(condition, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_submitted_runs_are_queued_with_their_config(store):
    configs = [FAST, FAST.replace(sparsity=0.8, layer_sparsity=(("fc1", 0.3),))]
    ids = jobs.submit(store, configs, sweep_id="sweep-1")
    records = [store.get(i) for i in ids]
    assert [r.status for r in records] == ["queued", "queued"]
    assert [RunConfig.from_dict(r.config) for r in records] == configs
    assert {r.sweep_id for r in records} == {"sweep-1"}


def test_execute_records_results_layers_and_computes_importance_once(store, monkeypatch):
    calls = []
    original = Magnitude.importance
    monkeypatch.setattr(Magnitude, "importance", lambda *a: calls.append(1) or original(*a))
    ids = jobs.submit(store, [FAST.replace(sparsity=s) for s in (0.3, 0.6, 0.9)])
    seen = []
    jobs.execute(store, ids, echo=lambda run_id, fraction, message: seen.append((run_id, fraction)))
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
    (run_id,) = jobs.submit(store, [RunConfig("nosuch", "magnitude", 0.5)])
    jobs.execute(store, [run_id])
    record = store.get(run_id)
    assert record.status == "failed" and record.error.startswith("unknown model 'nosuch'")
    assert "Traceback" not in record.error


def test_cancelled_runs_stop_or_never_start(store):
    first, second, third = jobs.submit(store, [FAST.replace(sparsity=s) for s in (0.3, 0.6, 0.9)])
    store.request_cancel(third)  # still queued: cancelled at once, never started

    def cancel_first(run_id, fraction, message):
        if run_id == first:
            store.request_cancel(first)

    jobs.execute(store, [first, second, third], echo=cancel_first)
    assert [store.get(i).status for i in (first, second, third)] == ["cancelled", "succeeded", "cancelled"]
    assert store.get(third).started is None


def test_a_worker_can_be_cancelled_and_a_killed_one_is_marked_failed(store, capsys):
    # two groups (different seeds) -> two detached workers, each fine-tuning long enough to be caught running
    slow = FAST.replace(finetune_epochs=400)
    cancelled, killed = jobs.submit(store, [slow, slow.replace(seed=1)])
    workers = jobs.spawn(store, [cancelled, killed], workers=2)
    assert len(workers) == 2
    try:
        wait_for(
            lambda: all(store.get(i).message.startswith("fine-tuning") for i in (cancelled, killed)),
            what="both workers to be fine-tuning",
        )
        assert cli.main(["cancel", cancelled, "--store", str(store.root)]) == 0
        assert f"cancellation requested for {cancelled}" in capsys.readouterr().out
        pid = store.get(killed).pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: store.get(cancelled).status == "cancelled", what="the cancelled run to stop")
        wait_for(lambda: [w.poll() for w in workers if w.pid == pid] != [None], what="the killed worker")
        assert store.get(killed).status == "running"  # nobody has looked yet
        assert store.reap() == [killed]
        record = store.get(killed)
        assert record.status == "failed" and f"worker process {pid} exited" in record.error
        assert store.get(cancelled).error == "cancelled by the user"
        # cancelling a finished run is refused with one line
        assert cli.main(["cancel", cancelled, "--store", str(store.root)]) == 2
        assert capsys.readouterr().err == f"error: run {cancelled} already cancelled; nothing to cancel\n"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
