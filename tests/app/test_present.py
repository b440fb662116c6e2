"""Presentation mode: every slide drawn from the history, read-only, reachable by URL and by toggle."""

from __future__ import annotations

import pytest

from pruning.runs import submit
from tests.app.helpers import figures, shown, texts

CONTROLS = (
    "selectbox", "multiselect", "slider", "select_slider", "text_input", "text_area", "number_input",
    "checkbox", "toggle", "radio", "color_picker", "date_input", "time_input", "chat_input",
)  # fmt: skip
NAVIGATION = {"present_prev", "present_next", "present_exit"}
SLIDES = ["The headline", "Accuracy against size", "Sparsity per layer", "Sensitivity per layer"]


@pytest.fixture
def history(seeded):
    """The seeded store (mlp-digits runs) plus a small sensitivity analysis of mlp-digits."""
    config = submit.analysis_config("mlp-digits", "magnitude", device="cpu")
    submit.submit_analysis(seeded, config, levels=(0.5, 0.9), executor="inline")
    return seeded


def _assert_read_only(at) -> None:
    for kind in CONTROLS:
        assert not at.get(kind), f"presentation mode shows a {kind}"
    assert {b.key for b in at.button} <= NAVIGATION
    assert not at.sidebar.get("subheader") and not at.sidebar.get("progress")  # no jobs panel


def test_presentation_mode_renders_every_slide_without_controls(app, history) -> None:
    at = app(None, present="1")
    seen = []
    while True:
        assert not at.exception, [e.message for e in at.exception]
        _assert_read_only(at)
        seen.append(shown(at.title[0].value))
        if at.button(key="present_next").disabled:
            break
        at.button(key="present_next").click().run()
    assert seen == [f"mlp-digits: {slide}" for slide in SLIDES]
    at.button(key="present_prev").click().run()
    assert shown(at.title[0].value) == "mlp-digits: Sparsity per layer"
    assert at.query_params["slide"] == "3"  # the URL follows the slide shown


def test_the_headline_slide_says_what_was_measured(app, history) -> None:
    at = app(None, present="1")
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {
        "Size: dense / pruned, sparse encoding (masked)",
        "Measured speedup (masked: not made faster)",
        "Test accuracy",
    }
    text = texts(at)
    assert "mlp-digits' prunable weights" in text and "masked" in text
    assert "faster on this CPU" not in text  # the seeded runs are masked: never called faster
    assert "Pruning one layer alone to 90%" in text  # the analysis, in words


def test_a_present_url_reproduces_the_view(app, history) -> None:
    navigated = app(None, present="1")
    for _ in range(2):
        navigated.button(key="present_next").click().run()
    opened = app(None, present="1", slide="3")  # a fresh session, as a copied link opens
    assert shown(opened.title[0].value) == shown(navigated.title[0].value) == "mlp-digits: Sparsity per layer"
    assert figures(opened) == figures(navigated)
    _assert_read_only(opened)


def test_the_sidebar_toggle_enters_presentation_mode_and_exit_leaves_it(app, history) -> None:
    at = app()
    at.sidebar.toggle(key="present_toggle").set_value(True).run()
    assert shown(at.title[0].value) == "mlp-digits: The headline"
    _assert_read_only(at)
    at.button(key="present_exit").click().run()
    assert "Jobs" in [h.value for h in at.sidebar.subheader]  # the sidebar is back
    assert shown(at.title[0].value) == "mlp-digits: The headline" and not at.sidebar.toggle[0].value
