"""Exports: a destination that cannot take the files is refused before anything is stored (one
`error:` line); a folder with files needs --overwrite; a full disk fails the run in one line and
leaves no half-written file under a final name."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pruning.runs.store import Store

RUN = [
    "run",
    "--model",
    "mlp-digits",
    "--method",
    "magnitude",
    "--sparsity",
    "0.5",
    "--no-latency",
    "--quiet",
]


def refused(cli, store_dir: Path, *args: str) -> str:
    answer = cli(*RUN, *args, "--store", str(store_dir))
    assert answer.returncode == 2, answer.stderr
    assert answer.stderr.startswith("error: ") and answer.stderr.count("\n") == 1, answer.stderr
    assert not store_dir.exists()  # nothing stored, not even an empty history
    return answer.stderr


@pytest.mark.slow
def test_a_destination_that_cannot_take_the_export_is_refused_before_anything_is_stored(
    cli, store_dir, tmp_path
):
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"keep me")
    assert "is not a folder" in refused(cli, store_dir, "--export", str(a_file))
    assert "is not a folder" in refused(cli, store_dir, "--export", "/dev/null")
    assert "cannot write to --export /proc/x" in refused(cli, store_dir, "--export", "/proc/x")
    assert "cannot write" in refused(cli, store_dir, "--export", str(a_file / "inside"))
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    line = refused(cli, store_dir, "--export", str(full))
    assert "is not empty" in line and "--overwrite" in line
    assert a_file.read_bytes() == b"keep me" and [p.name for p in full.iterdir()] == ["notes.txt"]
    assert not Path("/proc/x").exists()


@pytest.mark.slow
def test_overwrite_replaces_the_export_and_keeps_other_files(cli, store_dir, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "model.safetensors").write_bytes(b"an older export")
    answer = cli(*RUN, "--json", "--export", str(folder), "--overwrite", "--store", str(store_dir))
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)
    assert json.loads((folder / "run.json").read_text())["run_id"] == result["run_id"]
    assert (folder / "model.safetensors").read_bytes() != b"an older export"
    assert (folder / "notes.txt").read_text() == "mine"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.fixture
def small_disk(tmp_path: Path):
    point = tmp_path / "disk"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


@pytest.mark.slow
def test_a_full_disk_during_export_is_one_line_and_leaves_no_file_marked_complete(cli, store_dir, small_disk):
    stat = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 8192))  # 8 kB left
    target = small_disk / "out"
    answer = cli(*RUN, "--json", "--export", str(target), "--store", str(store_dir))
    assert answer.returncode == 1, answer.stderr
    assert "Traceback" not in answer.stderr + answer.stdout
    outcome = json.loads(answer.stdout)
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(f"no space left on the device of {target}")
    assert "\n" not in outcome["error"]
    with Store(store_dir) as store:
        (record,) = store.runs()
        assert (record.status, record.error) == ("failed", outcome["error"])
    left = sorted(p.name for p in target.rglob("*")) if target.exists() else []
    assert left == []  # no model.safetensors, no run.json, no staging folder
