"""Safe to serve, in the pages: launch quotas, text from outside shown as written, destructive actions
confirmed, and the optional password in front of every page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from tests.app.helpers import errors, shown, texts

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:9/x.png"  # nothing listens there; the browser test serves one for real
EVIL = f"![img]({URL}) <img src={URL}> **bold** :red[red]"


def launch_refused(at: AppTest, button: str) -> list[str]:
    next(b for b in at.button if b.label == button).click().run()
    assert not at.exception, [e.message for e in at.exception]
    return errors(at)


@pytest.mark.slow
def test_a_sweep_over_the_levels_quota_queues_nothing(app, empty) -> None:
    at = app()
    at.text_input(key="sweep_levels").set_value(", ".join(f"{i / 100:.2f}" for i in range(1, 22)))
    (error,) = launch_refused(at, "Launch sweep")
    assert error == (
        "Refused, nothing was queued: 21 sparsity levels is over the limit of 20 per sweep; type fewer "
        "levels (the operator can raise PRUNING_LAB_MAX_LEVELS)"
    )
    assert empty.runs(kind=None) == []


@pytest.mark.slow
def test_a_sweep_over_the_runs_quota_queues_nothing(app, empty, monkeypatch) -> None:
    monkeypatch.setenv("PRUNING_LAB_MAX_RUNS", "3")
    at = app()
    at.number_input(key="epochs").set_value(0)
    at.multiselect(key="sweep_methods").set_value(["magnitude", "random"])
    at.text_input(key="sweep_levels").set_value("0.3, 0.6")  # 2 methods x 2 levels = 4 runs
    (error,) = launch_refused(at, "Launch sweep")
    refused = "Refused, nothing was queued: this launch would queue 4 runs, over the limit of 3 per launch"
    assert error.startswith(refused)
    assert empty.runs(kind=None) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "widgets, message",
    [
        ({"epochs": 101}, "101 fine-tune epochs is over the limit of 100 per run"),
        ({"schedule": "iterative", "steps-iterative": 21}, "21 pruning steps is over the limit of 20"),
    ],
)
def test_a_run_over_the_epochs_or_steps_quota_queues_nothing(app, empty, widgets, message) -> None:
    at = app()
    for key, value in widgets.items():
        (at.selectbox if key == "schedule" else at.number_input)(key=key).set_value(value)
        at.run()
    (error,) = launch_refused(at, "Launch run")
    assert error.startswith(f"Refused, nothing was queued: {message}")
    assert empty.runs(kind=None) == []


def rendered(at: AppTest) -> str:
    """The HTML that every Markdown-bearing element of the page (main and sidebar) renders to, raw HTML
    passed through: stricter than Streamlit, which drops raw HTML."""
    md = MarkdownIt("commonmark", {"html": True})
    kinds = ("markdown", "caption", "info", "error", "success", "warning")
    sources = [e.value for kind in kinds for e in at.get(kind)]
    sources += [p.proto.text for p in at.get("progress")]
    return "\n".join(md.render(str(s)) for s in sources)


def test_model_paths_errors_and_progress_messages_show_as_written(app, seeded) -> None:
    model = f"models/{EVIL}.py:build"
    failed = seeded.create_run({"model": model, "method": "magnitude", "sparsity": 0.5})
    seeded.finish(
        failed,
        "failed",
        error=f'could not load {model}\nTraceback (most recent call last):\n  File "/srv/lab/x.py"',
    )
    active = seeded.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5})
    seeded.mark_running(active, pid=os.getpid())
    seeded.set_progress(active, 0.3, f"pruning layer {EVIL}")
    at = app("runs")
    at.multiselect(key="runs").set_value([failed, active]).run()
    html = rendered(at)
    assert "<img" not in html and "<a " not in html and "<strong>bold" not in html, html
    shown_text = texts(at)
    assert f"could not load {model}" in shown_text  # the error's first line, literally
    assert f"pruning layer {EVIL}" in shown_text  # in the page and in the sidebar
    assert model in shown_text  # the run's heading
    assert "/srv/lab" not in shown_text and "Traceback" not in shown_text  # no traceback for visitors


def test_keep_forgets_a_cancel_question(app, seeded) -> None:
    queued = seeded.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.3})
    at = app("runs", runs=queued)
    at.button(key="cancel_selected").click().run()
    assert "Cancel 1 active run(s)? Their work so far is lost" in texts(at)
    at.button(key="cancel_selected-keep").click().run()
    assert seeded.get(queued).status == "queued"
    assert [b.key for b in at.button if b.key and b.key.startswith("cancel_selected")] == ["cancel_selected"]


def gated(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=600)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def assert_only_the_sign_in_form(at: AppTest, run_id: str) -> None:
    assert [t.value for t in at.title] == ["Pruning Lab"]
    assert [w.label for w in at.text_input] == ["Password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.get("download_button") and not at.dataframe and not at.sidebar.subheader
    assert run_id not in texts(at)


@pytest.mark.parametrize("page", [None, "compare", "layers", "runs"])
def test_with_a_password_no_page_shows_anything_before_it(app, seeded, monkeypatch, page) -> None:
    monkeypatch.setenv("PRUNING_LAB_PASSWORD", "correct horse")
    run_id = seeded.runs(status="succeeded")[0].id
    at = gated(page, runs=run_id)
    assert_only_the_sign_in_form(at, run_id)
    at.text_input(key="sign_in_password").set_value("wrong horse")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert errors(at) == ["Wrong password. Ask whoever runs this dashboard for it."]
    assert_only_the_sign_in_form(at, run_id)


def test_the_password_opens_the_page_asked_for(seeded, monkeypatch) -> None:
    monkeypatch.setenv("PRUNING_LAB_PASSWORD", "correct horse")
    exported = next(r for r in seeded.runs(status="succeeded") if r.config.get("export"))
    at = gated("runs", runs=exported.id)
    at.text_input(key="sign_in_password").set_value("correct horse")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Runs"
    assert "Jobs" in [h.value for h in at.sidebar.subheader]
    labels = [b.label for b in at.get("download_button")]
    assert "Download pruned model (safetensors)" in labels and "Download CSV" in labels
    assert shown(exported.id) in texts(at)


@pytest.mark.parametrize("password, warned", [(None, True), ("pw", False)])
def test_serving_beyond_localhost_without_a_password_warns(app, empty, monkeypatch, password, warned) -> None:
    import streamlit

    real = streamlit.get_option
    monkeypatch.setattr(
        streamlit, "get_option", lambda key: "0.0.0.0" if key == "server.address" else real(key)
    )
    if password:
        monkeypatch.setenv("PRUNING_LAB_PASSWORD", password)
        at = gated()
        at.text_input(key="sign_in_password").set_value(password)
        next(b for b in at.button if b.label == "Sign in").click().run()
    else:
        at = app()
    assert at.title[0].value == "Prune"
    warnings = [shown(w.value) for w in at.sidebar.warning]
    assert any("Served beyond this machine without a password" in w for w in warnings) is warned


def test_on_localhost_there_is_no_warning(app, empty) -> None:
    assert not app().sidebar.warning
