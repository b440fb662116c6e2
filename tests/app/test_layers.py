"""The Layers page: the per-layer sparsity heatmap, one run's bars, and the sensitivity chart's builder."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pruning.core import models
from pruning.present import charts, views
from pruning.runs import sensitivity, submit
from tests.app.helpers import array, figures, shown, texts, wait_done
from tests.lab_folder import write_lab


def test_empty_store_explains_what_to_do(app, empty) -> None:
    at = app("layers")
    assert "Launch run" in at.info[0].value
    assert not figures(at)


def test_heatmap_rows_are_layers_in_model_order_on_a_fixed_scale(app, seeded) -> None:
    at = app("layers")
    heatmap, bars = figures(at)
    (trace,) = heatmap["data"]
    assert trace["type"] == "heatmap"
    assert array(trace["y"]) == ["fc1", "fc2", "fc3"]
    assert (trace["zmin"], trace["zmax"]) == (0, 1)
    succeeded = seeded.runs(status="succeeded")  # newest first, as the page lists them
    assert array(trace["x"]) == [views.run_label(r) for r in succeeded]
    columns = list(zip(*array(trace["z"])))
    for run, column in zip(succeeded, columns):
        assert list(column) == pytest.approx([layer["sparsity"] for layer in run.result["layers"]])
    assert {b["name"] for b in bars["data"]} == {"dense", "remaining (non-zero)"}


def test_one_run_bars_show_dense_and_remaining(app, seeded) -> None:
    at = app("layers")
    run = seeded.get(at.selectbox(key="layers_one").value)
    bars = figures(at)[1]["data"]
    dense = array(next(b for b in bars if b["name"] == "dense")["y"])
    remaining = array(next(b for b in bars if b["name"] != "dense")["y"])
    assert remaining == [layer["nonzero"] for layer in run.result["layers"]]
    assert all(r <= d for r, d in zip(remaining, dense))


def test_sensitivity_heatmap_builder() -> None:
    frame = pd.DataFrame(
        [
            {"layer": layer, "level": level, "accuracy_drop": drop}
            for layer, drops in (
                ("fc1", (0.0, 0.02, 0.3)),
                ("fc2", (0.0, 0.01, 0.05)),
                ("fc3", (0.01, 0.1, 0.6)),
            )
            for level, drop in zip((0.5, 0.8, 0.95), drops)
        ]
    )
    (trace,) = charts.sensitivity_heatmap(frame).to_dict()["data"]
    assert list(trace["y"]) == ["fc1", "fc2", "fc3"]
    assert list(trace["x"]) == ["0.50", "0.80", "0.95"]
    assert array(trace["z"])[2] == pytest.approx([0.01, 0.1, 0.6])
    assert trace["zmin"] == 0


def test_sensitivity_is_analysed_as_a_background_job_then_drawn(app, empty) -> None:
    config = submit.analysis_config("mlp-digits", "magnitude")
    at = app("layers")
    assert any("No sensitivity analysis of mlp-digits with magnitude" in shown(i.value) for i in at.info)
    at.button(key="analyse").click().run()
    job = submit.latest_analysis(empty, config)  # a job in the store: it survives reloads
    assert job is not None and job.kind == "sensitivity"
    deadline = time.monotonic() + 600  # stops a hung test only
    while not (job := empty.get(job.id)).done:
        assert time.monotonic() < deadline, "the sensitivity job never ended"
        time.sleep(0.5)
    assert job.status == "succeeded", job.error
    table = submit.cached_sensitivity(empty, config)
    (trace,) = figures(app("layers"))[0]["data"]  # the heatmap; the curves come next
    assert array(trace["y"]) == ["fc1", "fc2", "fc3"]
    assert len(array(trace["x"])) == len(sensitivity.DEFAULT_LEVELS)
    drops = array(trace["z"])
    assert drops[0] == pytest.approx(table.drops("fc1"))


def test_sensitivity_curves_are_drawn_next_to_the_heatmap(app, empty) -> None:
    table = sensitivity.analyse(submit.analysis_config("mlp-digits", "magnitude"), store=empty)
    heatmap, curves, allocation = figures(app("layers"))
    assert heatmap["data"][0]["type"] == "heatmap"
    (bars,) = allocation["data"]  # the allocation that the table gives the default target, per layer
    assert bars["name"] == "sensitivity" and array(bars["y"]) == pytest.approx(
        list(sensitivity.allocate(table, 0.5).values())
    )
    assert [t["name"] for t in curves["data"]] == ["fc1", "fc2", "fc3"]  # one line per layer, model order
    for trace in curves["data"]:
        assert array(trace["x"]) == pytest.approx(list(sensitivity.DEFAULT_LEVELS))
        assert array(trace["y"]) == pytest.approx(table.drops(trace["name"]))


def test_a_lab_model_is_listed_and_analysed_as_a_job(app, empty) -> None:
    write_lab(empty.root)  # lab.toml in the store folder
    at = app("layers")
    picker = at.selectbox(key="sensitivity_model")
    assert picker.options == [*models.SAMPLE_MODELS, "Tiny *net* (v1)", "bare"]
    assert picker.options == app().selectbox(key="model").options  # as the Prune page lists them
    picker.set_value("tiny").run()
    assert not at.exception and not at.error, texts(at)
    assert at.query_params["sensitivity_model"] == "tiny" and "model" not in at.query_params  # its own key
    assert any("No sensitivity analysis of tiny with magnitude yet" in i.value for i in at.info)
    assert at.code[0].value == "python -m pruning sensitivity --model tiny --method magnitude"
    at.button(key="analyse").click().run()
    job = submit.latest_analysis(empty, submit.analysis_config("tiny", "magnitude"))
    assert job is not None and job.kind == "sensitivity" and job.model == "tiny"
    (job,) = wait_done(empty, [job.id])  # a detached worker finds the same lab file
    assert job.status == "succeeded", job.error
    at.run()
    assert "Analysed tiny with magnitude" in texts(at)
    (trace,) = figures(at)[0]["data"]  # the heatmap: the lab model's two Linear layers
    assert array(trace["y"]) == ["0", "2"]
    table = submit.cached_sensitivity(empty, submit.analysis_config("tiny", "magnitude"))
    assert array(trace["z"])[0] == pytest.approx(table.drops("0"))


def pictured(at) -> list[str]:
    return [
        f["layout"]["title"]["text"] for f in figures(at) if "weights kept" in str(f["layout"].get("title"))
    ]


def test_pictures_of_a_run_and_of_the_preview(app, seeded) -> None:
    exported = next(r for r in seeded.runs(status="succeeded") if views.exported_model(r) is not None)
    at = app("layers", layers_one=views.run_label(exported))  # the URL picks the run
    assert at.selectbox(key="layers_one").value == exported.id
    (title,) = pictured(at)
    assert title.startswith("fc1: 300 x 64,")
    at.selectbox(key="pictures_layer").set_value("fc2").run()
    (title,) = pictured(at)
    assert title.startswith("fc2: 100 x 300,")
    other = next(r for r in seeded.runs(status="succeeded") if views.exported_model(r) is None)
    at.selectbox(key="layers_one").set_value(other.id).run()
    assert "This run kept no weights" in texts(at) and not pictured(at)

    at.radio(key="pictures_of").set_value("preview").run()  # the dashboard opened on Prune: at 0.5
    assert not at.exception
    (title,) = pictured(at)
    assert title.startswith("fc2: 100 x 300,")  # the layer chosen above stays chosen
    assert "mlp-digits · magnitude · 50% · global" in texts(at)


@pytest.mark.slow
def test_owl_allocation_is_drawn_per_layer_against_the_target(app, empty) -> None:
    from pruning.runs.config import RunConfig

    at = app("layers", sensitivity_model="charlm-shakespeare")
    assert not figures(at)  # nothing allocated until asked: no analysis, OWL off
    at.slider(key="allocation_target").set_value(0.6).run()
    at.toggle(key="allocation_owl").set_value(True).run()
    assert not at.exception and not at.error, texts(at)
    (chart,) = figures(at)
    (trace,) = chart["data"]
    expected = sensitivity.owl(RunConfig("charlm-shakespeare", "magnitude", 0.0, latency=False), 0.6)
    assert trace["name"] == "OWL" and array(trace["x"]) == list(expected)
    assert array(trace["y"]) == pytest.approx(list(expected.values()))
