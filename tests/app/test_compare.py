"""The Compare page: accuracy against every size measure, curves per method, frontier and dense marker."""

from __future__ import annotations

import pytest

from pruning.present import charts
from tests.app.helpers import array, figures, texts


def test_empty_store_explains_what_to_do(app, empty) -> None:
    at = app("compare")
    assert "Launch run" in at.info[0].value
    assert not figures(at)


@pytest.mark.parametrize("x", list(charts.X_AXES))
def test_every_size_measure_draws_a_curve_per_method(app, seeded, x) -> None:
    at = app("compare")
    at.selectbox(key="compare_x").set_value(x).run()
    assert not at.exception
    (figure,) = figures(at)
    names = [trace.get("name") for trace in figure["data"]]
    if x == "latency_ms":  # only one seeded run measured latency: the other three are left out, and said so
        assert "3 run(s) without a measured latency per batch (ms) are left out." in texts(at)
        assert sorted(names) == ["Pareto frontier", "dense model", "magnitude · ft 1"]
        (curve,) = (t for t in figure["data"] if t.get("name") == "magnitude · ft 1")
        assert curve["customdata"] == [r.id for r in seeded.runs(status="succeeded") if r.config["latency"]]
    else:
        assert {"magnitude", "random", "magnitude · ft 1", "Pareto frontier", "dense model"} <= set(names)
        assert "left out" not in texts(at)
    if x == "compression_ratio":
        assert figure["layout"]["xaxis"]["type"] == "log"


def test_before_and_after_fine_tuning(app, seeded) -> None:
    at = app("compare")
    at.radio(key="compare_accuracy").set_value("both").run()
    names = [trace.get("name") for trace in figures(at)[0]["data"]]
    assert "magnitude · ft 1" in names and "magnitude · ft 1 (before fine-tune)" in names
    after = next(t for t in figures(at)[0]["data"] if t.get("name") == "magnitude · ft 1")
    before = next(t for t in figures(at)[0]["data"] if t.get("name") == "magnitude · ft 1 (before fine-tune)")
    assert array(after["y"]) != array(before["y"])  # one epoch of fine-tuning at 90% sparsity changes it


def test_hover_shows_the_config(app, seeded) -> None:
    at = app("compare")
    trace = next(t for t in figures(at)[0]["data"] if t.get("name") == "random")
    assert all("method: random" in text and "sparsity: " in text for text in trace["hovertext"])
