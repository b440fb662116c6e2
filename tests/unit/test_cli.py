"""The command line end to end, as a subprocess from the repository root (DESIGN.md §3).

Every command pays Python's and torch's start-up (~2.5 s of CPU), so the commands of this file run
once, a few side by side, in one module fixture; each test then checks one of the answers.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pruning.cli import main as cli_main
from pruning.core import masks, models
from pruning.runs.store import Store

pytestmark = pytest.mark.slow  # the module fixture runs ~20 CLI commands: about a minute on 2 cores

RUN = ["run", "--model", "mlp-digits", "--method", "magnitude", "--quiet"]
SWEEP = ["sweep", "--model", "mlp-digits", "--methods", "magnitude,random", "--sparsities", "0.3,0.7"]


def runs_in(store: Path) -> int:
    """How many runs a store folder holds (0 when nothing was written at all)."""
    if not (store / "lab.db").exists():
        return 0
    with sqlite3.connect(store / "lab.db") as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


@dataclass
class Session:
    root: Path
    answers: dict[str, subprocess.CompletedProcess]
    queued: str  # a run that was queued, then cancelled from the command line
    killed: tuple[str, int]  # a running run and the pid of its worker, killed with SIGKILL
    fragments: dict[str, str]  # bad input -> what its error line must say


def _killed_run(store: Path) -> tuple[str, int]:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with Store(store) as opened:
        run_id = opened.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5})
        assert opened.mark_running(run_id, worker.pid)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    return run_id, worker.pid


@pytest.fixture(scope="module")
def session(tmp_path_factory, cli) -> Session:
    root = tmp_path_factory.mktemp("cli")
    with Store(root / "queued") as opened:
        queued = opened.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5})
    killed = _killed_run(root / "killed")
    commands = {
        "run": [*RUN, "--sparsity", "0.5", "--json", "--export", str(root / "export"),
                "--store", str(root / "lab")],
        "sweep": [*SWEEP, "--executor", "process", "--workers", "2", "--no-latency", "--quiet", "--json",
                  "--store", str(root / "sweep")],
        "models": ["models", "--json"],
        "methods": ["methods", "--json"],
        "cancel": ["cancel", queued, "--store", str(root / "queued")],
        "reap": ["runs", "--json", "--store", str(root / "killed")],
    }  # fmt: skip
    cases = _bad_inputs(root)
    assert list(cases) == BAD_INPUTS
    for name, (args, _) in cases.items():
        commands[name] = [*args, "--store", str(root / name.replace(" ", "-"))]
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = dict(zip(commands, pool.map(lambda args: cli(*args), commands.values())))
        if answers["run"].returncode == 0:  # then look the run up again
            run_id = json.loads(answers["run"].stdout)["run_id"]
            store = ["--store", str(root / "lab")]
            later = {"runs": ["runs", "--json", *store], "show": ["show", run_id, "--json", *store]}
            answers.update(zip(later, pool.map(lambda args: cli(*args), later.values())))
    return Session(root, answers, queued, killed, {name: fragment for name, (_, fragment) in cases.items()})


def answer(session: Session, name: str) -> subprocess.CompletedProcess:
    proc = session.answers[name]
    assert proc.returncode == 0, proc.stderr
    return proc


def test_models_json(session):
    rows = {r["id"]: r for r in json.loads(answer(session, "models").stdout)}
    assert {"mlp-digits", "cnn-digits", "resnet-mnist1d", "tinyformer-mnist1d"} <= set(rows)
    assert rows["mlp-digits"]["dataset"] == "digits"
    assert rows["mlp-digits"]["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def test_methods_json(session):
    rows = {r["id"]: r for r in json.loads(answer(session, "methods").stdout)}
    assert {"random", "magnitude", "taylor"} <= set(rows)
    assert rows["taylor"]["needs_data"] is True
    assert [p["name"] for p in rows["taylor"]["params"]] == ["batches"]


def test_run_json_has_every_required_key_with_sane_values(session):
    result = json.loads(answer(session, "run").stdout)
    for key in ("run_id", "status", "model", "method", "granularity", "scope", "target_sparsity", "sparsity"):
        assert key in result, key
    assert (result["status"], result["model"], result["method"]) == ("succeeded", "mlp-digits", "magnitude")
    assert (result["granularity"], result["scope"], result["target_sparsity"]) == (
        "unstructured",
        "global",
        0.5,
    )
    assert result["sparsity"] == pytest.approx(0.5, abs=1e-3)

    dense, pruned = result["dense"], result["pruned"]
    assert set(dense) >= {"accuracy", "params", "flops", "size_bytes"}
    assert set(pruned) >= {
        "accuracy",
        "accuracy_before_finetune",
        "params",
        "nonzero_params",
        "flops",
        "size_bytes",
        "removed",
    }
    assert dense["accuracy"] == pytest.approx(0.9756, abs=1e-3) and 0.9 < pruned["accuracy"] <= 1.0
    assert pruned["params"] == dense["params"] == 50610 and pruned["removed"] is False
    assert pruned["nonzero_params"] == dense["params"] - round(0.5 * 50200) < pruned["params"]
    assert 0 < pruned["flops"] < dense["flops"]
    sizes = pruned["size_bytes"]
    assert set(sizes) == {"dense", "sparse", "gzip"}
    assert sizes["dense"] == dense["size_bytes"] and sizes["sparse"] < sizes["dense"]

    latency = result["latency_ms"]
    assert latency["dense"] > 0 and latency["pruned"] > 0 and latency["batch_size"] == 256

    assert [row["name"] for row in result["layers"]] == ["fc1", "fc2", "fc3"]
    for row in result["layers"]:
        assert set(row) >= {"name", "type", "params", "nonzero", "sparsity", "flops"}
        assert row["type"] == "Linear" and 0 < row["sparsity"] < 1


def test_runs_and_show_find_the_run(session):
    result = json.loads(answer(session, "run").stdout)
    (row,) = json.loads(answer(session, "runs").stdout)
    assert row["run_id"] == result["run_id"]
    assert (row["status"], row["model"], row["method"], row["target_sparsity"]) == (
        "succeeded",
        "mlp-digits",
        "magnitude",
        0.5,
    )
    again = json.loads(answer(session, "show").stdout)
    assert again["run_id"] == result["run_id"] and again["layers"] == result["layers"]
    assert again["pruned"] == result["pruned"]


def test_export_writes_a_plain_state_dict_and_the_result(session):
    result, out = json.loads(answer(session, "run").stdout), session.root / "export"
    state = load_file(out / "model.safetensors")
    fresh = models.build("mlp-digits")
    assert sorted(state) == sorted(fresh.state_dict())  # no _orig / _mask keys
    fresh.load_state_dict(state)  # strict
    layers = masks.prunable_layers(fresh)
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    assert zeros == round(0.5 * 50200)
    assert sum(int(torch.count_nonzero(t)) for t in state.values()) == result["pruned"]["nonzero_params"]
    saved = json.loads((out / "run.json").read_text())
    assert saved["run_id"] == result["run_id"] and saved["sparsity"] == result["sparsity"]
    assert saved["layers"] == result["layers"]


class Payload:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


BAD_INPUTS = [
    "unknown model",
    "unknown method",
    "unknown dataset",
    "sparsity 1",
    "sparsity nan",
    "missing weights",
    "garbage safetensors",
    "pickled object",
    "mismatched weights",
    "non-finite weights",
    "no prunable layers",
    "sweep bad level",
]


def _bad_inputs(files: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a fragment the one-line error must contain)."""
    state = models.build("mlp-digits").state_dict()
    (files / "garbage.safetensors").write_bytes(os.urandom(512))
    torch.save({"fc1.weight": Payload(files / "pwned")}, files / "evil.pt")
    other = dict(state, extra=torch.zeros(1))
    other["fc2.weight"] = torch.zeros(5, 5)
    del other["fc1.bias"]
    save_file(other, files / "other.safetensors")
    nan = {k: v.clone() for k, v in state.items()}
    nan["fc3.weight"][0, 0] = float("nan")
    save_file(nan, files / "nan.safetensors")
    (files / "flat.py").write_text("from torch import nn\ndef make():\n    return nn.Sequential(nn.ReLU())\n")
    weights = [*RUN, "--sparsity", "0.5", "--weights"]
    flat = ["run", "--model", f"{files / 'flat.py'}:make", "--method", "magnitude", "--sparsity", "0.5"]
    sweep = ["sweep", "--model", "mlp-digits", "--methods", "magnitude", "--sparsities", "0.5,1.5"]
    level = "sparsity must be a number in [0, 1)"
    return {
        "unknown model": (
            ["run", "--model", "nosuch", "--method", "magnitude", "--sparsity", "0.5"],
            "unknown model 'nosuch'",
        ),
        "unknown method": (
            ["run", "--model", "mlp-digits", "--method", "nosuch", "--sparsity", "0.5"],
            "unknown method 'nosuch'",
        ),
        "unknown dataset": ([*RUN, "--sparsity", "0.5", "--data", "nosuch"], "unknown dataset 'nosuch'"),
        "sparsity 1": ([*RUN, "--sparsity", "1"], level),
        "sparsity nan": ([*RUN, "--sparsity", "nan"], level),
        "missing weights": ([*weights, str(files / "absent.safetensors")], "does not exist"),
        "garbage safetensors": ([*weights, str(files / "garbage.safetensors")], "not a valid safetensors"),
        "pickled object": ([*weights, str(files / "evil.pt")], "weights-only load refuses"),
        "mismatched weights": (
            [*weights, str(files / "other.safetensors")],
            "missing: fc1.bias; unexpected: extra; shape mismatch: fc2.weight (5, 5)",
        ),
        "non-finite weights": ([*weights, str(files / "nan.safetensors")], "infinite values in: fc3.weight"),
        "no prunable layers": ([*flat, "--data", "digits"], "no prunable layers"),
        "sweep bad level": (sweep, level),
    }


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_one_error_line_and_nothing_is_stored(session, name):
    proc, fragment = session.answers[name], session.fragments[name]
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0]
    assert proc.stdout == ""
    assert runs_in(session.root / name.replace(" ", "-")) == 0
    assert not (session.root / "pwned").exists()


def test_sweep_with_two_worker_processes(session):
    results = json.loads(answer(session, "sweep").stdout)
    assert isinstance(results, list) and len(results) == 4
    assert [(r["method"], r["target_sparsity"]) for r in results] == [
        ("magnitude", 0.3),
        ("magnitude", 0.7),
        ("random", 0.3),
        ("random", 0.7),
    ]
    assert all(r["status"] == "succeeded" for r in results)
    assert [r["sparsity"] for r in results] == pytest.approx([0.3, 0.7, 0.3, 0.7], abs=1e-3)
    with Store(session.root / "sweep") as opened:
        records = [opened.get(r["run_id"]) for r in results]
    assert len({r.pid for r in records}) == 2  # two groups (methods), two worker processes
    assert len({r.sweep_id for r in records}) == 1 and records[0].sweep_id


def test_cancel_a_queued_run(session):
    assert answer(session, "cancel").stdout.strip() == f"cancellation requested for {session.queued}"
    with Store(session.root / "queued") as opened:
        assert opened.get(session.queued).status == "cancelled"


def test_show_of_an_unknown_run(store_dir, capsys):
    assert cli_main(["show", "no-such-run", "--store", str(store_dir)]) != 0  # in process: saves a start-up
    err = capsys.readouterr().err
    assert err.startswith("error: no run 'no-such-run'") and err.count("\n") == 1


def test_a_killed_worker_is_reported_failed_by_runs(session):
    run_id, pid = session.killed
    (row,) = json.loads(answer(session, "reap").stdout)
    assert (row["run_id"], row["status"]) == (run_id, "failed")
    assert f"worker process {pid} exited" in row["error"]


@pytest.mark.parametrize("where", ["before the command", "after the command"])
def test_debug_shows_the_traceback_wherever_it_is_given(store_dir, capsys, where):
    args = [
        "run",
        "--model",
        "nosuch",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--store",
        str(store_dir),
    ]
    assert cli_main(args) == 2
    quiet = capsys.readouterr().err
    assert quiet.startswith("error: unknown model 'nosuch': use one of mlp-digits") and quiet.count("\n") == 1
    assert cli_main(["--debug", *args] if where == "before the command" else [*args, "--debug"]) == 2
    loud = capsys.readouterr().err
    assert "Traceback (most recent call last)" in loud and loud.endswith(quiet)


def test_a_model_file_that_prints_cannot_corrupt_json_output(tmp_path, capsys):
    source = tmp_path / "chatty.py"
    source.write_text(
        "from torch import nn\nprint('importing chatty')\n"
        "def make():\n    print('number of parameters: 650')\n    return nn.Linear(64, 10)\n"
    )
    args = ["run", "--model", f"{source}:make", "--data", "digits", "--method", "magnitude"]
    assert cli_main([*args, "--sparsity", "0.5", "--json", "--quiet", "--store", str(tmp_path / "lab")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "succeeded"
    assert "importing chatty" in captured.err and "number of parameters: 650" in captured.err
