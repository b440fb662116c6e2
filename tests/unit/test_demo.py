"""The demo history (`pruning.runs.demo`, `python -m pruning demo`): what a first visitor loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pruning.core import methods
from pruning.runs import demo
from pruning.runs.store import Store


def test_the_demo_sweeps_three_methods_one_structured_at_six_levels_on_two_models() -> None:
    configs = demo.configs()
    assert len({c.model for c in configs}) == 2
    grid = {(c.model, c.method, c.sparsity) for c in configs}
    assert len(grid) == len(configs) == 2 * len(demo.METHODS) * len(demo.LEVELS)
    assert len(demo.METHODS) >= 3 and len(set(demo.LEVELS)) >= 6
    assert any(methods.get(m).granularity == "structured" for m in demo.METHODS)
    assert all(c.finetune_epochs >= 1 and c.latency and c.device == "cpu" for c in configs)


@pytest.mark.slow  # the whole demo: 36 fine-tuned runs and an analysis in two workers
def test_demo_command_fills_the_store_with_the_promised_history(tmp_path: Path, cli) -> None:
    store_root = tmp_path / "lab"
    done = cli("demo", "--store", str(store_root), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    with Store(store_root) as store:
        jobs = store.runs(kind=None, sweep_id=out["sweep_id"])
        runs = [r for r in jobs if r.kind == "run"]
        (analysis,) = [r for r in jobs if r.kind == "sensitivity"]
    assert {r.id for r in runs} == set(out["runs"]) and analysis.id == out["analysis"]
    assert all(r.status == "succeeded" for r in jobs), [(r.id, r.status, r.error) for r in jobs]
    assert {(r.model, r.method, r.config["sparsity"]) for r in runs} == {
        (c.model, c.method, c.sparsity) for c in demo.configs()
    }
    assert all(r.result["latency_ms"]["pruned"] and r.config["finetune_epochs"] == 1 for r in runs)
    structured = [r for r in runs if r.method == "l1-channel"]
    assert structured and all(r.result["pruned"]["removed"] for r in structured)
    assert analysis.model == demo.ANALYSIS[0] and analysis.result["levels"] == list(demo.ANALYSIS_LEVELS)
