"""The live preview: the same numbers as a run, cached per model and method, safe across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pruning.errors import UserError
from pruning.runs import experiment, preview
from pruning.runs.config import RunConfig

MLP = RunConfig(model="mlp-digits", method="magnitude", sparsity=0.7, latency=False)
SAME = ("sparsity", "target_sparsity", "compression_ratio", "theoretical_speedup", "layers")


def test_preview_matches_a_run_without_fine_tuning() -> None:
    shown = preview.preview(MLP)
    run = experiment.run(MLP)
    assert {k: getattr(shown, k) for k in SAME} == {k: getattr(run, k) for k in SAME}
    for key in ("accuracy", "nonzero_params", "params", "size_bytes", "removed"):
        assert getattr(shown.pruned, key) == getattr(run.pruned, key)
    assert shown.latency_ms.pruned is None  # the preview never claims a speed


def test_preview_ignores_what_only_a_full_run_does() -> None:
    full = MLP.replace(finetune_epochs=5, latency=True, export="somewhere", schedule="iterative", steps=3)
    assert preview.preview(full) is preview.preview(MLP)


def test_the_dense_model_is_prepared_once_per_group(monkeypatch) -> None:
    preview.clear()
    calls = []
    real = preview.prepare
    monkeypatch.setattr(preview, "prepare", lambda *args: calls.append(args) or real(*args))
    levels = [0.1 * i for i in range(1, 10)]
    with ThreadPoolExecutor(4) as pool:  # sessions are served in threads
        threaded = list(pool.map(lambda s: preview.preview(MLP.replace(sparsity=s)), levels))
    assert len(calls) == 1
    preview.clear()
    sequential = [preview.preview(MLP.replace(sparsity=s)) for s in levels]
    for a, b in zip(threaded, sequential):
        assert (a.sparsity, a.pruned.accuracy, a.layers) == (
            b.sparsity,
            b.pruned.accuracy,
            b.layers,
        )
    assert [round(r.sparsity, 3) for r in threaded] == [round(s, 3) for s in levels]


def test_layer_overrides_and_errors() -> None:
    shown = preview.preview(MLP.replace(layer_sparsity=(("fc3", 0.0),)))
    assert shown.layers[2]["sparsity"] == 0.0
    assert preview.layers(MLP) == {
        "fc1": {"type": "Linear", "params": 64 * 300},
        "fc2": {"type": "Linear", "params": 300 * 100},
        "fc3": {"type": "Linear", "params": 100 * 10},
    }
    with pytest.raises(UserError, match="unknown layer"):
        preview.preview(MLP.replace(layer_sparsity=(("fc9", 0.5),)))
    with pytest.raises(UserError, match="unknown model"):
        preview.preview(MLP.replace(model="no-such-model"))


def test_a_slow_model_previews_on_as_many_samples_as_fit_the_time_budget(monkeypatch) -> None:
    preview.clear()
    monkeypatch.setattr(preview, "PREVIEW_SECONDS", 1e-9)  # as if one sample took forever
    shown = preview.preview(MLP.replace(sparsity=0.6))
    assert shown.config["eval_samples"] == preview.MIN_PREVIEW_SAMPLES
    prep, _ = preview.prepared(MLP)
    first = prep.data.evaluate(prep.model, prep.data.test, limit=preview.MIN_PREVIEW_SAMPLES)
    assert shown.dense.metric == first.metric  # the dense figure read the same samples
    monkeypatch.undo()
    preview.clear()
    assert preview.preview(MLP.replace(sparsity=0.6)).config["eval_samples"] is None  # fast: all 450
    preview.clear()


def test_the_warm_up_prepares_in_the_background_and_skips_what_fails(monkeypatch) -> None:
    monkeypatch.setattr(preview, "_warming", [])
    preview.clear()
    good = RunConfig("mlp-digits", "magnitude", 0.5)
    thread = preview.warm([RunConfig("no-such-model", "magnitude", 0.5), good])
    assert preview.warm([good]) is thread  # once per process
    thread.join(timeout=300)
    assert not thread.is_alive()
    prepared = []
    monkeypatch.setattr(
        preview, "prepare", lambda *a, **k: prepared.append(a) or pytest.fail("prepared again")
    )
    assert preview.preview(good).sparsity == pytest.approx(0.5, abs=0.01)  # from the warm cache
    assert not prepared
