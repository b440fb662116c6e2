"""The Prune page: live preview, generic method controls, per-layer overrides, launching runs and sweeps."""

from __future__ import annotations

import re
import shlex

import pytest
import torch
from safetensors.torch import save

from pruning.core import methods, models
from pruning.runs import sensitivity, submit
from tests.app.helpers import array, errors, figures, shown, texts, wait_done


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_preview_follows_the_slider(app, empty) -> None:
    at = app()
    assert at.selectbox(key="model").value == "mlp-digits"
    assert at.selectbox(key="method").value == "magnitude"
    assert "50.0% (target 50.0%)" in texts(at)
    accuracy = metric(at, "accuracy (pruned)")
    bars = array(figures(at)[0]["data"][0]["y"])
    assert len(bars) == 3  # fc1, fc2, fc3

    at.slider(key="sparsity").set_value(0.9).run()
    assert "90.0% (target 90.0%)" in texts(at)
    assert metric(at, "accuracy (pruned)") != accuracy
    assert sum(array(figures(at)[0]["data"][0]["y"])) > sum(bars)
    assert "masked: not faster" in texts(at)


def test_link_reproduces_the_view(app, empty) -> None:
    at = app(model="cnn-digits", method="random", sparsity="0.7")
    assert (at.selectbox(key="model").value, at.selectbox(key="method").value) == ("cnn-digits", "random")
    assert at.slider(key="sparsity").value == pytest.approx(0.7)
    assert "70.0% (target 70.0%)" in texts(at)


# The default model is an MLP: a method it cannot serve says why and what to use instead.
NO_PREVIEW = {
    "bn-scale": "bn-scale ranks channels by their BatchNorm scale and this model has no BatchNorm layer; "
    "use l1-channel or taylor-channel",
}


@pytest.mark.parametrize("method_id", sorted(methods.METHODS))
def test_every_method_gets_its_controls(app, empty, method_id) -> None:
    method = methods.get(method_id)
    at = app(method=method_id)
    keys = {w.key for kind in ("number_input", "checkbox", "selectbox") for w in at.get(kind)}
    assert {f"option-{method_id}-{p.name}" for p in method.params} <= keys
    if method_id in NO_PREVIEW:
        assert errors(at) == [NO_PREVIEW[method_id]]
        assert not figures(at)
        return
    assert not at.error, [e.value for e in at.error]
    (bars,) = figures(at)[0]["data"]
    assert array(bars["x"]) == ["fc1", "fc2", "fc3"]
    assert all(0 < s < 1 for s in array(bars["y"]))  # every layer is pruned, none emptied
    assert achieved(at) == pytest.approx(0.5, abs=0.01)  # the slider's default


def test_bn_scale_previews_a_model_with_batchnorm(app, empty) -> None:
    at = app(model="cnn-digits", method="bn-scale")
    assert not at.error, [e.value for e in at.error]
    assert achieved(at) == pytest.approx(0.5, abs=0.05)  # whole channels: near the target, not on it


@pytest.mark.parametrize(
    "typed, message",
    [
        ("1.5", "override for layer fc1 must be a number in [0, 1), got 1.5"),
        ("-0.1", "got -0.1"),
        ("nan", "got nan"),
        ("lots", "'lots', not a number"),
    ],
)
def test_invalid_override_is_refused(app, empty, typed, message) -> None:
    at = app()
    at.session_state["overrides-mlp-digits"] = {
        "edited_rows": {0: {"override": typed}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    (overrides,) = (e for e in at.expander if e.label == "Per-layer overrides")
    beside_the_table = [shown(e.value) for e in overrides.error]
    assert any(message in e for e in beside_the_table), errors(at)
    assert all(b.disabled for b in at.button if b.label in ("Launch run", "Launch sweep"))
    # the preview stays, without the refused cell, and says so
    assert "An override is refused (see Per-layer overrides): this preview leaves it out." in texts(at)
    assert achieved(at) == pytest.approx(0.5, abs=0.01)


def test_override_applies_to_its_layer(app, empty) -> None:
    at = app()
    at.session_state["overrides-mlp-digits"] = {
        "edited_rows": {2: {"override": "0.25"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.error
    layer_sparsity = array(figures(at)[0]["data"][0]["y"])
    assert layer_sparsity[2] == pytest.approx(0.25, abs=0.01)


def test_launched_run_completes_in_the_background(app, empty) -> None:
    at = app()
    at.number_input(key="epochs").set_value(1)
    at.slider(key="sparsity").set_value(0.8)
    next(b for b in at.button if b.label == "Launch run").click().run()
    assert at.success, texts(at)
    (record,) = empty.runs()
    assert (record.model, record.method, record.config["sparsity"]) == ("mlp-digits", "magnitude", 0.8)
    assert record.config["finetune_epochs"] == 1

    (done,) = wait_done(empty, [record.id])
    assert done.status == "succeeded", done.error
    assert (empty.artifacts(done.id) / "model.safetensors").is_file()  # exported where Runs offers it
    at.run()
    assert f"{done.id}` — succeeded" in texts(at)  # in the sidebar's jobs panel


def test_sweep_launches_methods_times_levels(app, empty) -> None:
    at = app()
    at.number_input(key="epochs").set_value(0)
    at.checkbox(key="latency").uncheck()
    at.multiselect(key="sweep_methods").set_value(["magnitude", "random"])
    at.text_input(key="sweep_levels").set_value("0.3, 0.6")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    records = empty.runs()
    assert sorted((r.method, r.config["sparsity"]) for r in records) == [
        ("magnitude", 0.3),
        ("magnitude", 0.6),
        ("random", 0.3),
        ("random", 0.6),
    ]
    assert len({r.sweep_id for r in records}) == 1
    done = wait_done(empty, [r.id for r in records])
    assert {r.status for r in done} == {"succeeded"}, [r.error for r in done]


def test_bad_sweep_levels_are_refused(app, empty) -> None:
    at = app()
    at.text_input(key="sweep_levels").set_value("0.5, lots")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    assert any("'lots' is not a number" in e for e in errors(at))
    assert empty.runs() == []


def achieved(at) -> float:
    """The preview's achieved sparsity, as its 'nominal sparsity' box shows it ('80.0% (target 80.0%)')."""
    match = re.search(r"([\d.]+)% \(target", texts(at))
    assert match, texts(at)
    return float(match.group(1)) / 100


def test_allocate_from_sensitivity_fills_the_overrides(app, empty) -> None:
    table = sensitivity.analyse(submit.analysis_config("mlp-digits", "magnitude"), store=empty)
    at = app()
    at.slider(key="sparsity").set_value(0.8)
    at.session_state["overrides-mlp-digits"] = {  # typed earlier: the allocation replaces it
        "edited_rows": {0: {"override": "0.3"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    at.button(key="allocate").click().run()
    assert not at.exception and not at.error, texts(at)
    expected = sensitivity.allocate(table, 0.8)
    assert len(set(expected.values())) > 1  # per layer, not the slider's value everywhere
    (editor,) = at.data_editor
    shown = editor.value.set_index("layer")["override"]
    assert {name: float(shown[name]) for name in expected} == pytest.approx(expected)
    layer_sparsity = array(figures(at)[0]["data"][0]["y"])  # the preview uses them
    assert layer_sparsity == pytest.approx(list(expected.values()), abs=0.01)
    assert achieved(at) == pytest.approx(0.8, abs=0.01)

    # still editable before launching: a cell cleared on top of the allocation frees that layer only
    # (every layer overridden and one changed would miss the target, which is refused)
    at.session_state["overrides-mlp-digits"] = {
        "edited_rows": {2: {"override": ""}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    layer_sparsity = array(figures(at)[0]["data"][0]["y"])
    assert layer_sparsity[:2] == pytest.approx([expected["fc1"], expected["fc2"]], abs=0.01)
    assert achieved(at) == pytest.approx(0.8, abs=0.01)  # fc3 follows the slider to the target
    at.number_input(key="epochs").set_value(0)
    at.checkbox(key="latency").uncheck()
    next(b for b in at.button if b.label == "Launch run").click().run()
    (record,) = empty.runs()
    assert dict(record.config["layer_sparsity"]) == pytest.approx(
        {"fc1": expected["fc1"], "fc2": expected["fc2"]}
    )
    (done,) = wait_done(empty, [record.id])
    assert done.status == "succeeded", done.error
    assert done.result["sparsity"] == pytest.approx(achieved(at), abs=0.001)


def test_allocation_without_sensitivity_says_how_to_get_it(app, empty) -> None:
    at = app()
    assert at.button(key="allocate").disabled
    assert "No sensitivity analysis of mlp-digits with magnitude yet" in texts(at)
    assert at.button(key="prune_analyse").label == "Analyse in the background"
    at = app(method="l1-channel")
    assert "needs an unstructured method; l1-channel is structured" in texts(at)


def test_allocation_analyses_the_chosen_weights(app, empty) -> None:
    own = sensitivity.analyse(submit.analysis_config("mlp-digits", "magnitude"), store=empty)
    at = app()
    torch.manual_seed(0)
    untrained = {k: v.contiguous() for k, v in models.build("mlp-digits").state_dict().items()}
    at.file_uploader(key="up_w").set_value(("mine.safetensors", save(untrained), "application/octet-stream"))
    at.run()
    (kept,) = (empty.root / "uploads").glob("*/*")
    assert at.selectbox(key="pick_weights").value == str(kept)
    assert at.button(key="allocate").disabled  # the table of the model's own weights is not this one
    chosen = f"weights: mine.safetensors ({kept.parent.name[:8]}); data: the model's own (digits)"
    assert f"No sensitivity analysis of mlp-digits with magnitude yet — {chosen}" in shown(texts(at))
    command = ["python", "-m", "pruning", "sensitivity", "--model", "mlp-digits", "--method", "magnitude"]
    assert [c.value for c in at.code] == [shlex.join([*command, "--weights", str(kept)])]

    at.button(key="prune_analyse").click().run()
    config = submit.analysis_config("mlp-digits", "magnitude", weights=str(kept))
    job = submit.latest_analysis(empty, config)
    assert job is not None and job.kind == "sensitivity" and job.config["weights"] == str(kept)
    (job,) = wait_done(empty, [job.id])
    assert job.status == "succeeded", job.error
    at.slider(key="sparsity").set_value(0.8).run()
    assert f"Analysed mlp-digits with magnitude — {chosen}" in shown(texts(at))
    at.button(key="allocate").click().run()
    assert not at.exception and not at.error, texts(at)
    expected = sensitivity.allocate(submit.cached_sensitivity(empty, config), 0.8)
    from_own = sensitivity.allocate(own, 0.8)
    assert any(abs(expected[name] - from_own[name]) > 0.01 for name in expected)  # another table
    (editor,) = at.data_editor
    allocated = editor.value.set_index("layer")["override"]
    assert {name: float(allocated[name]) for name in expected} == pytest.approx(expected)


@pytest.mark.slow
def test_allocate_with_owl_fills_the_overrides_of_the_language_model(app, empty) -> None:
    from pruning.runs.config import RunConfig

    at = app(model="charlm-shakespeare")
    at.slider(key="sparsity").set_value(0.7).run()
    at.button(key="allocate_owl").click().run()
    assert not at.exception and not at.error, texts(at)
    expected = sensitivity.owl(RunConfig("charlm-shakespeare", "magnitude", 0.0, latency=False), 0.7)
    assert len(set(expected.values())) > 1  # per block, not the slider's value everywhere
    (editor,) = at.data_editor
    shown_values = editor.value.set_index("layer")["override"]
    assert {name: float(shown_values[name]) for name in expected} == pytest.approx(expected)
    assert achieved(at) == pytest.approx(0.7, abs=0.01)
    at = app(method="nm")  # a pattern that fixes the sparsity takes no per-layer levels
    assert "allocate_owl" not in [b.key for b in at.button]
