"""The entry point: navigation over the four pages and the sidebar's jobs list."""

from __future__ import annotations

import os

import pytest

from tests.app.helpers import shown, texts

PAGES = {"prune": "Prune", "compare": "Compare", "layers": "Layers", "runs": "Runs"}


@pytest.mark.parametrize("store", ["empty", "seeded"])
def test_every_page_renders(app, store, request) -> None:
    request.getfixturevalue(store)
    assert app().title[0].value == "Prune"  # the default page
    for page, title in PAGES.items():
        at = app(page)
        assert at.title[0].value == title
        assert "Jobs" in [h.value for h in at.sidebar.subheader]  # dashboard.py's sidebar, on every page


def test_sidebar_lists_active_jobs_with_progress(app, empty) -> None:
    run_id = empty.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.7})
    empty.mark_running(run_id, pid=os.getpid())
    empty.set_progress(run_id, 0.4, "fine-tuning epoch 2/5")
    at = app("compare")  # the sidebar is on every page
    (bar,) = at.sidebar.get("progress")
    assert bar.value == 40
    assert run_id in bar.proto.text and "fine-tuning epoch 2/5" in shown(bar.proto.text)


def test_empty_sidebar_says_so(app, empty) -> None:
    at = app()
    assert "No active jobs." in texts(at)


def test_sidebar_cancel_button_cancels_a_job(app, empty) -> None:
    run_id = empty.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5})
    at = app()
    at.sidebar.button(key=f"cancel-{run_id}").click().run()
    assert empty.get(run_id).status == "queued"  # the first click only asks
    at.sidebar.button(key=f"cancel-{run_id}-yes").click().run()
    assert empty.get(run_id).status == "cancelled"
    assert f"{run_id}` — cancelled" in texts(at)  # now among the finished runs


def test_a_sensitivity_analysis_is_a_job_in_the_sidebar_that_survives_a_reload(app, empty) -> None:
    config = {"model": "mlp-digits", "method": "magnitude", "sparsity": 0.0, "options": {}, "levels": [0.5]}
    job_id = empty.create_run(config, kind="sensitivity")
    empty.mark_running(job_id, pid=os.getpid())
    empty.set_progress(job_id, 0.5, "layer fc2")
    at = app("layers")  # a fresh session: what it shows comes from the store
    (bar,) = at.sidebar.get("progress")
    assert bar.value == 50 and "sensitivity · mlp-digits · magnitude" in shown(bar.proto.text)
    assert any(
        "Analysing mlp-digits with magnitude: layer fc2" in shown(p.proto.text)
        for p in at.main.get("progress")
    )
    at.sidebar.button(key=f"cancel-{job_id}").click().run()
    at.sidebar.button(key=f"cancel-{job_id}-yes").click().run()
    assert empty.get(job_id).cancel_requested


def test_a_sweep_is_one_job_in_the_sidebar_with_one_progress_bar_and_one_cancel(app, empty) -> None:
    sweep = "sweep-1"
    ids = [f"20260101-000000-{i:06x}" for i in range(15)]
    empty.create_runs(
        [(i, {"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5}) for i in ids], sweep
    )
    empty.mark_running(ids[0], pid=os.getpid())
    empty.set_progress(ids[0], 0.5, "fine-tuning epoch 1/2")
    empty.finish(ids[1], "succeeded")
    at = app()
    (bar,) = at.sidebar.get("progress")
    assert bar.value == round(100 * 1.5 / 15)  # one done, one half-way, thirteen queued
    assert "Sweep · mlp-digits · magnitude · 15 jobs: 13 queued, 1 running, 1 succeeded" in shown(
        bar.proto.text
    )
    cancels = [b for b in at.sidebar.button if b.key.startswith("cancel-")]
    assert [b.key for b in cancels] == [f"cancel-sweep-{sweep}"]
    cancels[0].click().run()
    at.sidebar.button(key=f"cancel-sweep-{sweep}-yes").click().run()
    assert all(empty.get(i).cancel_requested for i in ids if i != ids[1])
    assert empty.get(ids[2]).status == "cancelled" and empty.get(ids[1]).status == "succeeded"


def test_first_visit_explains_and_loads_the_demo_as_one_job(app, empty, monkeypatch) -> None:
    from pruning.runs import demo, executors

    monkeypatch.setattr(executors, "spawn", lambda *args, **kwargs: [])  # queue only: no workers here
    at = app()
    text = texts(at)
    assert "**Pruning** removes the weights of a trained network" in text
    assert "four numbers" in text and "What to do first:" in text
    at.button(key="load_demo").click().run()
    assert not at.exception, [e.message for e in at.exception]
    jobs = empty.runs(kind=None)
    assert len(jobs) == len(demo.configs()) + 1 and len({j.sweep_id for j in jobs}) == 1
    (bar,) = at.sidebar.get("progress")
    assert (
        f"Demo history · cnn-digits, mlp-digits · l1-channel, magnitude, random · {len(jobs)} jobs"
        in shown(bar.proto.text)
    )
    assert "Load the demo history" not in [b.label for b in at.button]  # the history is no longer empty
