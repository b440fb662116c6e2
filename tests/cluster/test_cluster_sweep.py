"""The `ray` executor against the session's local Ray (2 CPUs): the same results as the `process`
executor, a crashed task retried, a failing run recorded beside the others, cancel."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pruning.core import models
from pruning.errors import UserError
from pruning.runs import cluster, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

pytestmark = pytest.mark.slow
HANG_STOPPER = 600.0  # only stops a hung test; no speed is judged

# Builders of test models that behave differently inside a Ray task than in the submitting process
# (which builds each model once to validate it): the submitter's pid is in the `.submitter` file.
PREAMBLE = """
import os
import time
from pathlib import Path
import torch
from torch import nn

HERE = Path(__file__)

def in_a_task():
    return os.getpid() != int(HERE.with_suffix(".submitter").read_text())

def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
"""
CRASHES_ONCE = """
def make():
    marker = HERE.with_suffix(".crashed")
    if in_a_task() and not marker.exists():
        marker.touch()
        os._exit(1)  # the worker process dies: Ray's to retry
    return net()
"""
RAISES = """
def make():
    if in_a_task():
        with open(HERE.with_suffix(".attempts"), "a") as f:
            f.write("attempt\\n")
        raise RuntimeError("exploded in the task")
    return net()
"""
GATED = """
class Gated(nn.Linear):
    def forward(self, x):
        if self.training:
            HERE.with_suffix(".started").touch()
            while not HERE.with_suffix(".release").exists():
                time.sleep(0.05)
        return super().forward(x)

def make():
    return Gated(64, 10)
"""


def model_file(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(PREAMBLE + body)
    path.with_suffix(".submitter").write_text(str(os.getpid()))
    return f"{path}:make"


def comparable(result: dict) -> dict:
    """A result without what differs from run to run (ids, wall-clock seconds, where it ran)."""
    skip = {"run_id", "seconds", "ray_node_id", "latency_ms"}
    return {k: v for k, v in result.items() if k not in skip}


def test_a_sweep_equals_the_process_executors_for_the_same_seeds(ray_session, tmp_path):
    base = RunConfig("mlp-digits", "magnitude", 0.5, finetune_epochs=1, seed=3, latency=False)
    configs = submit.sweep_configs(base, ["magnitude", "random"], [0.3, 0.7])
    store = Store(tmp_path / "lab")
    by_process = submit.submit(store, configs, "process", workers=2)
    by_ray = submit.submit(store, configs, "ray")
    process_records = submit.wait(store, by_process)
    ray_records = [store.get(i) for i in by_ray]
    assert [r.status for r in process_records + ray_records] == ["succeeded"] * 8
    for p, r in zip(process_records, ray_records):
        assert comparable(r.result) == comparable(p.result)
        assert r.result["ray_node_id"] == ray_session.get_runtime_context().get_node_id()
        assert store.layers([r.id]) == [{**row, "run_id": r.id} for row in store.layers([p.id])]


def test_a_crashed_task_is_retried_and_a_failing_run_recorded_beside_the_others(ray_session, tmp_path):
    crashes = model_file(tmp_path, "crashes", CRASHES_ONCE)
    raises = model_file(tmp_path, "raises", RAISES)
    base = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)
    configs = [
        base,
        base.replace(model=crashes, data="digits"),
        base.replace(model=raises, data="digits"),
        base.replace(sparsity=0.8),
    ]
    store = Store(tmp_path / "lab")
    records = [store.get(i) for i in submit.submit(store, configs, "ray")]
    assert [r.status for r in records] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert (tmp_path / "crashes.crashed").exists()  # it did crash once, then ran again
    assert "failed: RuntimeError: exploded in the task" in records[2].error
    # an exception is not retried: the model was built as often as one load builds it
    attempts = (tmp_path / "raises.attempts").read_text()
    (tmp_path / "raises.attempts").unlink()
    (tmp_path / "raises.submitter").write_text("0")  # this process, too, now fails as a task does
    with pytest.raises(UserError):
        models.load(raises)
    assert attempts == (tmp_path / "raises.attempts").read_text()
    assert records[2].result is None and store.layers([records[2].id]) == []
    assert [r.result["target_sparsity"] for r in records if r.result] == [0.5, 0.5, 0.8]


def test_cancelling_a_run_cancels_its_task_and_the_others_finish(ray_session, tmp_path):
    gated = model_file(tmp_path, "gated", GATED)
    configs = [
        RunConfig(gated, "magnitude", 0.5, data="digits", finetune_epochs=1, latency=False),
        RunConfig("mlp-digits", "magnitude", 0.5, latency=False),
    ]
    store = Store(tmp_path / "lab")
    ids: list[str] = []
    coordinator = threading.Thread(target=lambda: ids.extend(submit.submit(store, configs, "ray")))
    coordinator.start()
    started = tmp_path / "gated.started"
    running = lambda: [r.id for r in store.runs() if r.model == gated and r.status == "running"]
    for _ in range(int(HANG_STOPPER / 0.1)):
        if started.exists() and running():
            break
        threading.Event().wait(0.1)
    assert started.exists() and running(), "the gated run never started fine-tuning"
    (gated_id,) = running()
    store.request_cancel(gated_id)
    coordinator.join(HANG_STOPPER)
    assert not coordinator.is_alive()
    assert not (tmp_path / "gated.release").exists()  # the coordinator did not wait for the task
    (tmp_path / "gated.release").touch()
    records = [store.get(i) for i in ids]
    assert [r.status for r in records] == ["cancelled", "succeeded"]
    assert records[0].error == "cancelled by the user"


def test_progress_reaches_the_store_per_task_with_its_node(ray_session, tmp_path):
    store = Store(tmp_path / "lab")
    seen: list[tuple[str, float, str]] = []
    # long enough (seconds) for the coordinator, polling every 0.3 s, to read it mid-run
    config = RunConfig("mlp-digits", "magnitude", 0.5, finetune_epochs=30, latency=False)
    (run_id,) = submit.submit(store, [config], "ray", echo=lambda *event: seen.append(event))
    assert store.get(run_id).status == "succeeded"
    assert any(fraction < 1.0 for _, fraction, _ in seen)  # reports from the task while it ran
    assert seen[-1] == (run_id, 1.0, "succeeded")
    node = ray_session.get_runtime_context().get_node_id()
    assert store.get(run_id).message.endswith(f"(node {node[:8]})")
    assert cluster.resources(ray_session) == {"nodes": 1, "cpus": 2.0, "gpus": 0.0}


def _running_tasks() -> int:
    """Ray worker processes executing a run right now (Ray names them after the task)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            count += (entry / "cmdline").read_bytes().startswith(b"ray::run_task")
        except OSError:
            continue
    return count


def test_tasks_never_outnumber_the_cpus_even_while_one_times_latency(ray_session, tmp_path):
    # A task that waited in ray.get (for an actor's answer) lent its CPU to Ray, which started a third
    # task beside the two: every run of the sweep then went slower.
    base = RunConfig("mlp-digits", "magnitude", 0.5, finetune_epochs=3, latency=True)
    configs = submit.sweep_configs(base, ["magnitude", "random"], [0.3, 0.5, 0.7])
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _running_tasks())
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = submit.submit(Store(tmp_path / "lab"), configs, "ray")
    finally:
        done.set()
        watcher.join()
    records = [Store(tmp_path / "lab").get(i) for i in ids]
    assert [r.status for r in records] == ["succeeded"] * 6
    assert all(r.result["latency_ms"]["dense"] for r in records)  # each timed, taking its turn
    assert 1 <= peak[0] <= 2, f"{peak[0]} tasks ran at once on 2 CPUs"
