"""Run summaries: the four honest numbers and their labels, tidy frames, and parsing typed input."""

from __future__ import annotations

import copy

import pytest

from pruning.core import latency
from pruning.errors import UserError
from pruning.present import views
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

MLP = RunConfig(model="mlp-digits", method="magnitude", sparsity=0.8, latency=False)


def test_masked_run_is_labelled_not_faster(masked) -> None:
    numbers = views.honest_numbers(masked)
    assert numbers["label"] == "masked: not faster"
    assert numbers["removed"].startswith("none")
    assert numbers["sparsity"] == "80.0% (target 80.0%)"
    file, sparse, gzip = numbers["bytes"].split(" / ")
    assert file == views.human_bytes(masked.dense.size_bytes)  # a masked file is as big as the dense one
    assert sparse != file
    assert numbers["speedup"] == f"not measured vs {masked.theoretical_speedup:.2f}x bound"


def test_removed_run_counts_what_left_and_flags_overhead(removed) -> None:
    assert removed.pruned.removed
    numbers = views.honest_numbers(removed)
    gone = removed.dense.params - removed.pruned.params
    assert numbers["removed"].startswith(f"{gone:,} of {removed.dense.params:,}")
    slow, fast = copy.deepcopy(removed), copy.deepcopy(removed)
    bound = removed.theoretical_speedup
    slow.latency_ms.dense, slow.latency_ms.pruned = 1.0, 1.0 / (0.4 * bound)
    fast.latency_ms.dense, fast.latency_ms.pruned = 1.0, 1.0 / (0.6 * bound)
    assert views.honest_numbers(slow)["label"] == "overhead-bound"
    assert views.honest_numbers(fast)["label"] == ""
    assert views.honest_numbers(fast)["speedup"].startswith(f"{0.6 * bound:.2f}x measured")


def test_runs_frame_keeps_unfinished_runs(tmp_path, masked) -> None:
    with Store(tmp_path) as store:
        done = store.create_run(MLP.to_dict())
        store.finish(done, "succeeded", result=masked.to_dict())
        failed = store.create_run(MLP.replace(sparsity=0.5).to_dict())
        store.finish(failed, "failed", error="boom\ntraceback")
        frame = views.runs_frame(store.runs()).set_index("run_id")
    assert frame.loc[done, "accuracy"] == masked.pruned.accuracy
    assert frame.loc[done, "honest_label"] == "masked: not faster"
    assert frame.loc[failed, "error"] == "boom"
    assert frame.loc[failed, ["accuracy", "nonzero_params"]].isna().all()
    assert views.runs_frame([]).empty


def test_config_diff_only_differing(tmp_path) -> None:
    with Store(tmp_path) as store:
        for sparsity in (0.5, 0.9):
            store.create_run(MLP.replace(sparsity=sparsity).to_dict())
        records = store.runs()
    assert len(views.config_diff(records)) == len(MLP.to_dict())
    assert list(views.config_diff(records, only_differing=True).index) == ["sparsity"]


def test_parse_overrides() -> None:
    assert views.parse_overrides({"fc1": "", "fc2": " 0.3 ", "fc3": None}) == {"fc2": 0.3}
    for typed in ("1", "1.5", "-0.2", "nan", "inf"):
        with pytest.raises(UserError, match=r"override for layer fc2 must be a number in \[0, 1\)"):
            views.parse_overrides({"fc2": typed})
    with pytest.raises(UserError, match="'half', not a number"):
        views.parse_overrides({"fc2": "half"})


def test_parse_levels() -> None:
    assert views.parse_levels("0.9, 0.5,0.5;0.7") == [0.5, 0.7, 0.9]
    for typed, message in (
        ("", "at least one"),
        ("0.5, x", "'x' is not a number"),
        ("0.5, 1.2", r"\[0, 1\)"),
    ):
        with pytest.raises(UserError, match=message):
            views.parse_levels(typed)


def _timed(result, ratio: float, low: float, high: float):
    timed = copy.deepcopy(result)
    speedup = latency.Speedup(ratio, low, high)
    timed.latency_ms.record(latency.Timing({"dense": ratio, "pruned": 1.0}, {"pruned": speedup}, 9, 0.2))
    return timed


def test_speedups_show_their_spread_and_a_masked_one_is_about_one(masked, removed) -> None:
    bound = f"{removed.theoretical_speedup:.2f}x bound"
    assert (
        views.honest_numbers(_timed(removed, 1.62, 1.58, 1.67))["speedup"] == f"1.62x ±3% measured vs {bound}"
    )
    assert views.honest_numbers(_timed(removed, 1.62, 1.615, 1.626))["speedup"].startswith(
        "1.62x ±0.4% measured"
    )
    # the Compare table's "2.31x" for a masked run: noise whose interval covers 1
    assert views.honest_numbers(_timed(masked, 2.31, 0.8, 3.0))["speedup"].startswith("≈1x (masked) vs")
    assert views.honest_numbers(_timed(masked, 1.12, 1.08, 1.15))["speedup"].startswith("1.12x ±4% measured")
    old = copy.deepcopy(masked)  # stored before intervals were measured
    old.latency_ms.dense, old.latency_ms.pruned = 5.09, 1.0
    assert views.speedup_text(old) == "≈1x (masked)"
    old_removed = copy.deepcopy(removed)
    old_removed.latency_ms.dense, old_removed.latency_ms.pruned = 3.0, 2.0
    assert views.speedup_text(old_removed) == "1.50x measured"
