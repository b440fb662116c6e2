"""RunResult: exactly DESIGN.md §3's JSON, read back unchanged, and the verdicts derived once."""

from __future__ import annotations

import copy
import json

import pytest

from pruning.runs.result import MASKED, OVERHEAD_BOUND, RunResult

REQUIRED = {
    "run_id", "status", "model", "method", "granularity", "scope", "target_sparsity", "sparsity",
    "dense", "pruned", "latency_ms", "layers",
}  # fmt: skip


def test_the_json_has_every_required_key_and_reads_back_unchanged(masked):
    d = json.loads(json.dumps(masked.to_dict()))
    assert REQUIRED <= set(d)
    assert set(d["dense"]) >= {"accuracy", "params", "flops", "size_bytes"}
    assert set(d["pruned"]) >= {"accuracy", "accuracy_before_finetune", "params", "nonzero_params", "flops"}
    assert set(d["pruned"]["size_bytes"]) == {"dense", "sparse", "gzip"}
    assert set(d["latency_ms"]) >= {"dense", "pruned", "batch_size"}
    assert {"name", "type", "params", "nonzero", "sparsity", "flops"} <= set(d["layers"][0])
    assert RunResult.from_dict(d).to_dict() == d


def test_ratios_are_derived_from_the_measured_counts(masked):
    d = masked.to_dict()
    assert d["compression_ratio"] == d["dense"]["nonzero_params"] / d["pruned"]["nonzero_params"]
    assert d["theoretical_speedup"] == d["dense"]["flops"] / d["pruned"]["flops"]


def test_verdicts(masked, removed):
    assert masked.verdict == MASKED and not masked.removed
    assert removed.removed and removed.latency_ms.speedup is None and removed.verdict == ""
    bound = removed.theoretical_speedup
    slow = copy.deepcopy(removed)
    slow.latency_ms.dense, slow.latency_ms.pruned = 1.0, 1.0 / (0.45 * bound)
    assert slow.overhead_bound and slow.verdict == OVERHEAD_BOUND
    assert slow.to_dict()["latency_ms"]["overhead_bound"] is True
    assert slow.to_dict()["latency_ms"]["speedup"] == pytest.approx(0.45 * bound)
    fast = copy.deepcopy(removed)
    fast.latency_ms.dense, fast.latency_ms.pruned = 1.0, 1.0 / (0.55 * bound)
    assert not fast.overhead_bound and fast.verdict == ""


def test_results_stored_by_an_older_version_still_read(masked):
    d = masked.to_dict()
    for key in ("seconds", "compression_ratio", "theoretical_speedup"):
        d.pop(key)
    d["latency_ms"] = {"dense": None, "pruned": None, "batch_size": 256, "speedup": None}
    for part in ("dense", "pruned"):
        d[part].pop("per_class_accuracy")
    old = RunResult.from_dict(d)
    assert old.pruned.accuracy == masked.pruned.accuracy and old.seconds is None
