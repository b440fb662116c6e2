"""A run history that survives damage: a corrupt, foreign, directory or read-only `lab.db` is one
`error:` line with the path and what to do; one bad row hides no other; `doctor` checks a store and
salvages the readable rows of a damaged one into a new store, keeping the old file; 8 processes
writing at once lose nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pruning.runs.store import Store

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5}


def one_error_line(answer: subprocess.CompletedProcess) -> str:
    assert answer.returncode == 2, answer.stderr
    assert answer.stderr.startswith("error: ") and answer.stderr.count("\n") == 1, answer.stderr
    assert "Traceback" not in answer.stderr
    return answer.stderr


def filled(root: Path, runs: int = 30, layers: int = 0) -> list[str]:
    """A store with `runs` finished runs (created first: their rows sit on the first pages), then
    `layers` per-layer rows of one more run (they fill the pages after them)."""
    with Store(root) as store:
        ids = [store.create_run({**CONFIG, "seed": i}) for i in range(runs)]
        for run_id in ids:
            store.finish(run_id, "succeeded", result={"layers": []})
        if layers:
            big = store.create_run(CONFIG)
            store.finish(big, "failed", error="x")
            rows = [{"name": f"layer{i}-" + "x" * 200, "params": i} for i in range(layers)]
            store.finish(big, "succeeded", result={"layers": rows})
    return ids


@pytest.mark.parametrize("damage", ["garbage bytes", "a foreign SQLite database", "a folder named lab.db"])
def test_an_unusable_lab_db_is_one_line_that_says_what_to_do(damage, cli, tmp_path):
    root = tmp_path / "lab"
    root.mkdir()
    db = root / "lab.db"
    if damage == "garbage bytes":
        db.write_bytes(os.urandom(8192))
        expected = ["damaged or not a Pruning Lab database", f"python -m pruning doctor --store {root}"]
    elif damage == "a foreign SQLite database":
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE songs(title TEXT)")
        conn.close()
        expected = ["another program", "songs", "choose another --store"]
    else:
        db.mkdir()
        expected = ["is a folder", "move it away"]
    before = sorted(p.name for p in root.iterdir())
    for command in (["runs"], ["show", "20240101-000000-abcdef"], ["cancel", "20240101-000000-abcdef"]):
        line = one_error_line(cli(*command, "--store", str(root)))
        assert str(db) in line and all(part in line for part in expected), line
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written beside it
    if damage == "a foreign SQLite database":  # the other program's database was not migrated
        with sqlite3.connect(db) as conn:
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["songs"]
        conn.close()


@pytest.fixture
def read_only_mount(tmp_path: Path):
    """A tmpfs that is remounted read-only (root ignores file modes, so chmod proves nothing)."""
    point = tmp_path / "mnt"
    point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)]
    mounted = subprocess.run(command, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_a_read_only_store_is_one_line(read_only_mount, cli):
    filled(read_only_mount / "lab", runs=2)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    line = one_error_line(cli("runs", "--store", str(read_only_mount / "lab")))
    assert "is read-only" in line and "writable" in line, line


def test_one_row_with_broken_json_hides_no_other(cli, tmp_path):
    root = tmp_path / "lab"
    ids = filled(root, runs=3)
    with sqlite3.connect(root / "lab.db") as conn:
        conn.execute("UPDATE runs SET config = '{broken', result = 'nan]' WHERE id = ?", (ids[1],))
    conn.close()
    answer = cli("runs", "--json", "--store", str(root))
    assert answer.returncode == 0, answer.stderr
    rows = {row["run_id"]: row for row in json.loads(answer.stdout)}
    assert set(rows) == set(ids)
    assert "cannot be read (broken JSON)" in rows[ids[1]]["error"]
    assert rows[ids[0]]["error"] is None and rows[ids[0]]["target_sparsity"] == 0.5
    shown = cli("show", ids[1], "--json", "--store", str(root))
    assert shown.returncode == 0 and "broken JSON" in json.loads(shown.stdout)["error"]
    doctor = cli("doctor", "--store", str(root))
    assert doctor.returncode == 0, doctor.stderr
    assert "ok (3 runs" in doctor.stdout and "1 runs have unreadable stored JSON" in doctor.stdout


def test_doctor_salvages_the_readable_runs_and_keeps_the_damaged_file(cli, tmp_path):
    root = tmp_path / "lab"
    ids = filled(root, runs=30, layers=3000)
    db = root / "lab.db"
    data = bytearray(db.read_bytes())
    page = 4096
    data[-4 * page :] = os.urandom(4 * page)  # the last pages: per-layer rows, not the runs
    db.write_bytes(bytes(data))

    answer = cli("doctor", "--json", "--store", str(root))
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["healthy"] is False and report["damaged"]
    kept = Path(report["kept"])
    assert kept.read_bytes() == bytes(data)  # the damaged file is kept as it was
    listed = json.loads(cli("runs", "--json", "--store", str(root)).stdout)
    assert set(ids) <= {row["run_id"] for row in listed}  # every run on a readable page came back
    assert report["runs"] == len(listed)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    again = cli("doctor", "--store", str(root))
    assert again.returncode == 0 and f"ok ({len(listed)} runs" in again.stdout


def test_doctor_on_garbage_starts_an_empty_store_and_keeps_the_file(cli, tmp_path):
    root = tmp_path / "lab"
    root.mkdir()
    garbage = os.urandom(10000)
    (root / "lab.db").write_bytes(garbage)
    answer = cli("doctor", "--store", str(root))
    assert answer.returncode == 0, answer.stderr
    assert "was damaged" in answer.stdout and "salvaged 0 runs" in answer.stdout
    (kept,) = root.glob("lab.db.damaged-*")
    assert kept.read_bytes() == garbage
    assert json.loads(cli("runs", "--json", "--store", str(root)).stdout) == []


def test_doctor_refuses_a_folder_and_a_missing_store_in_one_line(cli, tmp_path):
    (tmp_path / "dir" / "lab.db").mkdir(parents=True)
    assert "is a folder" in one_error_line(cli("doctor", "--store", str(tmp_path / "dir")))
    assert "no run history" in one_error_line(cli("doctor", "--store", str(tmp_path / "none")))
    assert not (tmp_path / "none").exists()


WRITER = """
import sys
from pruning.runs.store import Store
with Store(sys.argv[1]) as store:
    for i in range(int(sys.argv[3])):
        run_id = store.create_run({"model": "m", "method": sys.argv[2], "i": i})
        store.mark_running(run_id, pid=1)
        store.finish(run_id, "succeeded", result={"layers": [{"name": "a", "params": i}]})
        print(run_id, flush=True)  # acknowledged: the store said it was written
"""


@pytest.mark.slow
def test_eight_processes_writing_at_once_lose_nothing(tmp_path):
    root, writes = tmp_path / "shared", 200
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), f"w{n}", str(writes)], env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(8)
    ]  # fmt: skip
    answers = [writer.communicate(timeout=600) for writer in writers]  # a hang-stopper, not a speed test
    assert [writer.returncode for writer in writers] == [0] * 8, [err for _, err in answers]
    acknowledged = {line for out, _ in answers for line in out.split()}
    assert len(acknowledged) == 8 * writes
    with Store(root) as store:
        runs = store.runs()
        assert {r.id for r in runs} == acknowledged and {r.status for r in runs} == {"succeeded"}
        assert len(store.layers([r.id for r in runs])) == 8 * writes
    with sqlite3.connect(root / "lab.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
