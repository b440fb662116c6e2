"""The run history store: round trips, migrations, liveness, cancellation, concurrency."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruning.runs.store import SCHEMA_VERSION, Store, default_root

REPO = Path(__file__).resolve().parents[2]

CONFIG = {"model": "mlp", "method": "magnitude", "sparsity": 0.5, "seed": 1}
LAYERS = [
    {
        "name": "fc1",
        "type": "Linear",
        "params": 1000,
        "nonzero": 500,
        "sparsity": 0.5,
        "flops": 2000,
        "extra": "ignored",
    },
    {"name": "fc2", "type": "Linear", "params": 100, "nonzero": 100, "sparsity": 0.0, "flops": 200},
]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "lab") as opened:
        yield opened


def _sql(store: Store, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(store.db_path, timeout=10) as conn:
        conn.execute(sql, params)
    conn.close()


def test_round_trip(store: Store) -> None:
    run_id = store.create_run(CONFIG, sweep_id="sweep-1")
    queued = store.get(run_id)
    assert (queued.status, queued.model, queued.method, queued.sweep_id) == (
        "queued",
        "mlp",
        "magnitude",
        "sweep-1",
    )
    assert not queued.done

    assert store.mark_running(run_id, pid=os.getpid())
    store.set_progress(run_id, 0.4, "pruning fc1")
    running = store.get(run_id)
    assert (running.status, running.progress, running.message, running.pid) == (
        "running",
        0.4,
        "pruning fc1",
        os.getpid(),
    )
    assert running.heartbeat is not None and running.started is not None

    result = {"accuracy": 0.91, "baseline_accuracy": float("nan"), "layers": LAYERS}
    store.finish(run_id, "succeeded", result=result)
    done = store.get(run_id)
    assert done.status == "succeeded" and done.done
    assert done.progress == 1.0 and done.finished is not None and done.error is None
    assert done.config == CONFIG
    assert done.result["accuracy"] == 0.91 and done.result["layers"] == LAYERS
    assert math.isnan(done.result["baseline_accuracy"])

    rows = store.layers([run_id])
    assert [row["name"] for row in rows] == ["fc1", "fc2"]
    assert [row["idx"] for row in rows] == [0, 1]
    assert rows[0] == {
        "run_id": run_id,
        "idx": 0,
        "name": "fc1",
        "type": "Linear",
        "params": 1000,
        "nonzero": 500,
        "sparsity": 0.5,
        "flops": 2000,
    }
    assert [r.id for r in store.runs(status="succeeded")] == [run_id]


def test_finish_again_replaces_layer_rows(store: Store) -> None:
    run_id = store.create_run(CONFIG)
    store.finish(run_id, "succeeded", result={"layers": LAYERS})
    store.finish(run_id, "succeeded", result={"layers": LAYERS[1:]})
    assert [row["name"] for row in store.layers([run_id])] == ["fc2"]


def test_runs_newest_first_and_filters(store: Store) -> None:
    first = store.create_run(CONFIG)
    time.sleep(0.01)
    second = store.create_run({**CONFIG, "model": "cnn"})
    time.sleep(0.01)
    third = store.create_run(CONFIG)
    assert [r.id for r in store.runs()] == [third, second, first]
    assert [r.id for r in store.runs(model="mlp")] == [third, first]
    assert [r.id for r in store.runs(limit=1)] == [third]
    assert store.layers([third, first]) == []


def test_wal_mode_and_pragmas(store: Store) -> None:
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000


def test_migrates_a_first_schema_database(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "lab.db")
    conn.executescript("""
        CREATE TABLE runs(id TEXT PRIMARY KEY, created REAL, model TEXT, method TEXT, config TEXT,
                          status TEXT, error TEXT, result TEXT);
        INSERT INTO runs VALUES ('20240101-000000-abcdef', 1704067200.0, 'mlp', 'random',
                                 '{"model": "mlp", "method": "random"}', 'queued', NULL, NULL);
        PRAGMA user_version = 1;
    """)
    conn.close()

    with Store(root) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        old = store.get("20240101-000000-abcdef")
        assert old.config == {"model": "mlp", "method": "random"}
        assert (old.progress, old.cancel_requested, old.message, old.sweep_id) == (0.0, False, "", None)
        # new features work on the migrated row
        assert store.mark_running(old.id, pid=os.getpid())
        store.finish(old.id, "succeeded", result={"layers": LAYERS})
        assert len(store.layers([old.id])) == 2
        store.cache_put("curve", [1, 2, 3])
        assert store.cache_get("curve") == [1, 2, 3]

    with Store(root) as again:  # reopening an up-to-date database changes nothing
        assert again.get("20240101-000000-abcdef").status == "succeeded"


def test_reap_dead_pid_and_stale_heartbeat(store: Store) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    dead_run, alive_run, stale_run, queued_run = (store.create_run(CONFIG) for _ in range(4))
    store.mark_running(dead_run, pid=exited.pid)
    store.mark_running(alive_run, pid=os.getpid())
    store.mark_running(stale_run, pid=os.getpid())
    _sql(store, "UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 100, stale_run))

    assert sorted(store.reap(stale_after=30.0)) == sorted([dead_run, stale_run])
    assert store.get(dead_run).status == "failed"
    assert store.get(dead_run).error == f"worker process {exited.pid} exited without reporting"
    assert store.get(stale_run).error == "worker process died (no heartbeat)"
    assert store.get(alive_run).status == "running"
    assert store.get(queued_run).status == "queued"
    assert store.reap() == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_reap_treats_zombie_as_dead(store: Store) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 600  # stops a hung test only
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.time() < deadline, "child never became a zombie"
            time.sleep(0.02)
        run_id = store.create_run(CONFIG)
        store.mark_running(run_id, pid=zombie.pid)
        assert store.reap() == [run_id]
    finally:
        zombie.wait()


def test_request_cancel(store: Store) -> None:
    queued = store.create_run(CONFIG)
    store.request_cancel(queued)
    assert store.get(queued).status == "cancelled" and store.cancel_requested(queued)
    assert not store.mark_running(queued, pid=os.getpid())  # a worker arriving late must not run it
    assert store.get(queued).status == "cancelled"

    running = store.create_run(CONFIG)
    store.mark_running(running, pid=os.getpid())
    assert not store.cancel_requested(running)
    store.request_cancel(running)
    record = store.get(running)
    assert record.cancel_requested and record.status == "running"


WRITER = """
import sys
from pruning.runs.store import Store
with Store(sys.argv[1]) as store:
    for i in range(50):
        run_id = store.create_run({"model": "m", "method": sys.argv[2], "i": i})
        store.mark_running(run_id, pid=1)
        store.finish(run_id, "succeeded", result={"layers": [{"name": "a", "params": i}]})
"""


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    root = tmp_path / "shared"  # both writers create and migrate the database at the same time
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), name],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    errors = [writer.communicate(timeout=600)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    assert not any("locked" in error for error in errors)
    with Store(root) as store:
        runs = store.runs()
        assert len(runs) == 100 and len({r.id for r in runs}) == 100
        assert sorted(r.config["i"] for r in runs if r.method == "a") == list(range(50))
        assert {r.status for r in runs} == {"succeeded"}
        assert len(store.layers([r.id for r in runs])) == 100


def test_invalid_input_is_rejected(store: Store) -> None:
    run_id = store.create_run(CONFIG)
    with pytest.raises(ValueError):
        store.finish(run_id, "done")
    with pytest.raises(ValueError):
        store.finish(run_id, "running")
    with pytest.raises(ValueError):
        store.runs(status="bogus")
    with pytest.raises(ValueError):
        store.create_run({"model": "mlp"})
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")
    with pytest.raises(KeyError):
        store.set_progress("nope", 0.5, "x")
    with pytest.raises(KeyError):
        store.mark_running("nope", pid=os.getpid())
    assert store.layers([]) == []
    assert store.get(run_id).status == "queued"


def test_delete_removes_row_layers_and_artifacts(store: Store) -> None:
    run_id = store.create_run(CONFIG)
    keep = store.create_run(CONFIG)
    store.finish(run_id, "succeeded", result={"layers": LAYERS})
    store.finish(keep, "succeeded", result={"layers": LAYERS})
    folder = store.artifacts(run_id)
    assert folder == store.root / "runs" / run_id and folder.is_dir()
    (folder / "mask.pt").write_bytes(b"x")

    store.delete(run_id)
    assert not folder.exists()
    with pytest.raises(KeyError):
        store.get(run_id)
    assert store.layers([run_id]) == []
    assert len(store.layers([keep])) == 2
    store.delete(run_id)  # deleting twice is harmless


def test_cache_round_trip(store: Store) -> None:
    assert store.cache_get("missing") is None
    store.cache_put("sens", {"fc1": [0.9, float("nan")]})
    store.cache_put("sens", {"fc1": [0.8]})
    assert store.cache_get("sens") == {"fc1": [0.8]}


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRUNING_LAB_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home"
    monkeypatch.delenv("PRUNING_LAB_HOME")
    assert default_root() == Path("lab")
