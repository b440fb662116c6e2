"""Options a run cannot honour are one `error:` line before anything is stored: a seed beyond 32
bits, a step count beyond MAX_STEPS, a bool option that is neither true nor false, a sparsity an
N:M pattern cannot reach; `report --out` on a folder; and `runs | head` ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pruning.cli import main
from pruning.runs.store import Store

REPO = Path(__file__).resolve().parents[2]
RUN = ["run", "--model", "mlp-digits", "--no-latency", "--quiet"]


def refused(store: Path, capsys, *argv: str) -> str:
    code = main([*argv, "--store", str(store)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert not store.exists()
    return lines[0]


def test_a_seed_beyond_32_bits_is_refused(store_dir, capsys):
    argv = [*RUN, "--method", "magnitude", "--sparsity", "0.5", "--seed", str(2**70)]
    assert refused(store_dir, capsys, *argv) == f"error: seed must be at most 4294967295, got {2**70}"


def test_a_step_count_beyond_the_bound_is_refused(store_dir, capsys):
    argv = [*RUN, "--method", "magnitude", "--sparsity", "0.5", "--schedule", "iterative"]
    assert refused(store_dir, capsys, *argv, "--steps", "1000000000") == (
        "error: steps must be at most 1000, got 1000000000"
    )


def test_a_bool_option_that_is_not_true_or_false_is_refused(store_dir, capsys):
    argv = [*RUN, "--method", "l1-channel", "--sparsity", "0.5", "--option", "heads=xyz"]
    assert (
        refused(store_dir, capsys, *argv) == "error: option heads must be a bool (true or false), got 'xyz'"
    )


def test_nm_refuses_a_sparsity_its_pattern_cannot_reach(store_dir, capsys):
    assert refused(store_dir, capsys, *RUN, "--method", "nm", "--sparsity", "0.9") == (
        "error: N:M 2:4 prunes exactly 0.5 of every layer that fits the pattern, so it cannot aim for "
        "sparsity 0.9: pass --sparsity 0.5, or other n and m (--option n=N --option m=M)"
    )


def test_report_out_on_a_folder_is_refused(store_dir, capsys, tmp_path):
    assert refused(store_dir, capsys, "report", "some-run", "--out", str(tmp_path)) == (
        f"error: --out '{tmp_path}' is a folder; give the report a file name, e.g. {tmp_path / 'report.html'}"
    )


@pytest.mark.slow
def test_runs_into_a_closed_pipe_ends_quietly(store_dir):
    with Store(store_dir) as store:
        store.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5})
    command = [sys.executable, "-m", "pruning", "runs", "--store", str(store_dir)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader has gone, as `head` does after its lines
    stderr = process.communicate(timeout=600)[1].decode()
    assert (process.returncode, stderr) == (0, "")
