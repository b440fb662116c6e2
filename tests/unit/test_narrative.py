"""The generated narrative: the headline run chosen from measured figures, worded without ever calling
a masked model faster or smaller as a plain file."""

from __future__ import annotations

import pandas as pd

from pruning.present import narrative

DENSE = {"metric_dense": 0.989, "bytes_dense": 400_000, "latency_dense_ms": 10.0}


def run(run_id: str, method: str, sparsity: float, metric: float, removed: bool, **extra) -> dict:
    file_bytes = 200_000 if removed else 400_000
    return {
        "run_id": run_id, "model": "cnn-digits", "method": method, "status": "succeeded",
        "target_sparsity": sparsity, "sparsity": sparsity, "metric": metric, "metric_name": "accuracy",
        "higher_is_better": True, "removed": removed, "bytes_file": file_bytes,
        "bytes_sparse": extra.pop("bytes_sparse", 150_000), "speedup": extra.pop("speedup", 1.0),
        "finetune_epochs": 3, "device": "cpu", **DENSE, **extra,
    }  # fmt: skip


def test_the_example_sentence_of_the_issue() -> None:
    runs = pd.DataFrame([run("a", "l1-channel", 0.5, 0.991, True, speedup=1.6, bytes_sparse=300_000)])
    (sentence, sweep) = narrative.story(runs)
    assert sentence == (
        "Removing 50% of cnn-digits' prunable weights (l1-channel: whole channels or neurons) made it "
        "1.6x faster on this CPU and 2.0x smaller on disk; accuracy moved from 98.9% to 99.1% after 3 "
        "epochs of fine-tuning."
    )
    assert sweep == "1 run of 1 method (l1-channel) at sparsity 50%."


def test_headline_is_the_smallest_kept_model_within_one_point_of_dense() -> None:
    runs = pd.DataFrame(
        [
            run("big", "l1-channel", 0.3, 0.990, True, bytes_sparse=300_000),  # kept as a 200 kB file
            run("small", "magnitude", 0.8, 0.980, False, bytes_sparse=90_000),  # 0.9 points down
            run("smaller", "magnitude", 0.9, 0.975, False, bytes_sparse=50_000),  # 1.4 points: too far
        ]
    )
    found = narrative.headline(runs)
    assert found.run_id == "small" and not found.removed
    assert found.size_ratio == found.sparse_ratio == 400_000 / 90_000 and found.file_ratio == 1.0
    assert round(found.metric_change, 3) == -0.009


def test_a_masked_headline_is_never_called_faster_or_smaller_on_disk() -> None:
    runs = pd.DataFrame(
        [run("m", "magnitude", 0.9, 0.985, False, speedup=1.37), run("r", "l1-channel", 0.5, 0.99, True)]
    )
    masked, removed, *_ = narrative.story(runs)
    assert "masked" in masked and "not made faster (timed at 1.37x the dense speed)" in masked
    assert "faster on" not in masked and "smaller on disk" not in masked
    assert "plain file is no smaller" in masked and "2.7x less space" in masked
    assert removed.startswith("With structure removed instead, removing 50%")
    assert "about as fast on this CPU (measured 1.00x)" in removed


def test_no_run_close_to_dense_is_said_plainly() -> None:
    runs = pd.DataFrame([run("x", "random", 0.9, 0.5, False)])
    assert narrative.headline(runs) is None
    assert narrative.story(runs)[0] == "No pruned run of cnn-digits stays within 1 point of the dense model."


def test_speed_is_worded_from_the_measured_ratio() -> None:
    assert narrative.speed_text(0.8, "cpu") == "1.2x slower on this CPU"
    assert narrative.speed_text(1.04, "auto") == "about as fast on the machine that ran it (measured 1.04x)"
    assert narrative.speed_text(None, "cpu") == "its speed was not measured"
