"""The Prune page's live curve: drawn beside the preview while computed in the background, then whole,
with the slider's point, the dense reference and the cliff."""

from __future__ import annotations

import time

import pytest

from pruning.runs import curve
from pruning.runs.config import RunConfig
from tests.app.helpers import array, figures, texts


def title(figure: dict) -> str:
    return figure["layout"].get("title", {}).get("text", "")


def live(at) -> dict:
    (figure,) = [f for f in figures(at) if "vs sparsity" in title(f)]
    return figure


def wait_for_curve(config: RunConfig) -> curve.Curve:
    c = curve.start(config)
    deadline = time.monotonic() + 600  # stops a hung thread only
    while not c.done and time.monotonic() < deadline:
        time.sleep(0.1)
        curve.start(config)
    assert c.done and c.error is None, c.error
    return c


def test_live_curve_appears_and_completes(app, empty) -> None:
    curve.clear()
    at = app(sparsity="0.6")
    first = live(at)  # drawn at once, however few levels are done
    assert title(first).startswith("accuracy vs sparsity (")
    c = wait_for_curve(RunConfig("mlp-digits", "magnitude", 0.5))
    at.run()
    assert not at.exception
    figure = live(at)
    assert title(figure) == "accuracy vs sparsity (20 of 20 levels)"
    line, slider = figure["data"]
    assert array(line["y"]) == [p.metric for p in c.ordered()]
    assert array(slider["x"]) == pytest.approx([0.6], abs=0.01)  # the slider's preview
    assert any(shape["y0"] == c.dense for shape in figure["layout"]["shapes"])  # the dense reference
    cliff = curve.cliff(c)
    assert cliff is not None and f"first at {cliff.level:.0%}" in texts(at)
    assert any(a["text"].startswith("cliff") for a in figure["layout"]["annotations"])

    at.slider(key="sparsity").set_value(0.9).run()
    (_, slider) = live(at)["data"]
    assert array(slider["x"]) == pytest.approx([0.9], abs=0.01)


def test_a_fixed_sparsity_method_has_no_curve(app, empty) -> None:
    at = app(method="nm")
    assert "This method fixes its sparsity" in texts(at)
    assert not [f for f in figures(at) if "vs sparsity" in title(f)]
