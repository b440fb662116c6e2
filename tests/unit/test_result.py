"""RunResult: exactly DESIGN.md §3's JSON, read back unchanged, and the verdicts derived once."""

from __future__ import annotations

import copy
import json

import pytest

from pruning.core import latency
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


def _timed(result, dense: float, pruned: float, ratio: float, low: float, high: float):
    """`result` with a latency as `latency.compare` reports it (`Latency.record` keeps it)."""
    timed = copy.deepcopy(result)
    speedup = latency.Speedup(ratio, low, high)
    timed.latency_ms.record(latency.Timing({"dense": dense, "pruned": pruned}, {"pruned": speedup}, 12, 0.5))
    return timed


def test_the_speedup_is_the_median_ratio_with_its_interval_and_reads_back(removed):
    timed = _timed(removed, 2.0, 1.0, 1.9, 1.8, 1.96)  # the median ratio, not the ratio of medians
    lat = timed.to_dict()["latency_ms"]
    assert lat["speedup"] == 1.9 and lat["interval"] == [1.8, 1.96] and lat["rounds"] == 12
    assert lat["spread"] == pytest.approx(0.1 / 1.9)
    back = RunResult.from_dict(json.loads(json.dumps(timed.to_dict())))
    assert back.latency_ms.speedup == 1.9 and back.latency_ms.spread == pytest.approx(0.1 / 1.9)
    assert back.to_dict() == timed.to_dict()


def test_a_masked_run_is_as_fast_as_dense_unless_its_interval_excludes_one(masked):
    assert _timed(masked, 2.31, 1.0, 2.31, 0.7, 3.1).as_fast_as_dense  # noise: the interval covers 1
    assert not _timed(masked, 1.2, 1.0, 1.2, 1.1, 1.3).as_fast_as_dense
    assert not _timed(masked, 1.0, 1.2, 0.83, 0.8, 0.86).as_fast_as_dense  # measurably slower
    old = copy.deepcopy(masked)
    old.latency_ms.dense, old.latency_ms.pruned = 5.09, 1.0  # stored before intervals: no proof
    assert old.as_fast_as_dense and old.latency_ms.spread is None


def test_results_stored_before_intervals_keep_dense_over_pruned(removed):
    d = removed.to_dict()
    d["latency_ms"] = {
        "dense": 3.0,
        "pruned": 2.0,
        "batch_size": 256,
        "speedup": 1.5,
        "overhead_bound": False,
    }
    old = RunResult.from_dict(d)
    assert old.latency_ms.speedup == 1.5 and old.latency_ms.spread is None and old.latency_ms.rounds is None
    assert "spread" not in old.latency_ms.extra and old.to_dict()["latency_ms"]["interval"] is None
