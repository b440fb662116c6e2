"""Latency measured while no other job of the store computes: the timing gate's turns (gates in
threads take turns as processes do), a job that never waits for its own lock, and the executors'
runs pausing for, and taking, the gate."""

from __future__ import annotations

import threading

import pytest

from pruning.runs import executors
from pruning.runs.config import RunConfig
from pruning.runs.store import Store
from pruning.runs.timing_gate import TimingGate

HANG = 600  # hang-stopper only


def started(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_timer_waits_for_workers_to_pause_and_they_wait_until_it_is_done(tmp_path):
    with TimingGate(tmp_path) as worker, TimingGate(tmp_path) as timer:
        took = []
        taking = started(lambda: took.append(timer.take()))
        taking.join(0.5)
        assert taking.is_alive() and not took  # the worker holds the store: it has not paused yet
        paused = started(worker.checkpoint)
        taking.join(HANG)
        assert took == [True] and timer.quiet  # every other worker paused
        paused.join(0.5)
        assert paused.is_alive()  # the worker stays paused while the timer has the store
        timer.give_back()
        paused.join(HANG)
        assert not paused.is_alive() and not timer.alone


def test_a_job_never_waits_for_its_own_lock(tmp_path):
    with TimingGate(tmp_path) as gate:
        assert gate.take() is True  # its own shared hold is let go first
        gate.checkpoint()  # a no-op for the one timing
        assert gate.take() is True and gate.alone
        gate.give_back()
        assert not gate.alone and gate.take() is True
        gate.give_back()


def test_a_worker_that_never_reports_is_waited_for_no_longer_than_patience(tmp_path):
    with TimingGate(tmp_path), TimingGate(tmp_path, patience=0.2) as timer:
        assert timer.take() is False and timer.alone and not timer.quiet
        timer.give_back()


@pytest.mark.slow
def test_a_run_waits_while_another_job_times_and_takes_the_store_for_its_own_timing(tmp_path):
    config = RunConfig("mlp-digits", "magnitude", 0.5, latency=True)
    with Store(tmp_path / "lab") as store:
        run_id = store.create_run(config.to_dict())
        with TimingGate(store.root) as other:
            other.take()
            run = started(lambda: executors.execute(store, [run_id]))
            run.join(1.0)
            assert run.is_alive() and store.get(run_id).status == "queued"  # waits at the gate
            other.give_back()
            # the run reaches its timing and waits for this other worker to pause at a progress report
            deadline = threading.Event()
            while store.get(run_id).message != "timing dense vs pruned" and not deadline.wait(0.05):
                assert run.is_alive(), store.get(run_id).error
            paused = started(other.checkpoint)
            run.join(HANG)
            paused.join(HANG)
        record = store.get(run_id)
        assert record.status == "succeeded", record.error
        assert record.result["latency_ms"]["spread"] is not None
