"""End to end in a real browser: preview, launch, watch a run succeed, compare it, survive reloads."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from pruning.runs.store import Store
from tests.e2e.conftest import Server, shot, start_dashboard, stop

pytestmark = pytest.mark.e2e
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def choose(page: Page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def launch_run(page: Page, home, epochs: int) -> str:
    """Launch a full run; its id is read from the store (the confirmation names no raw ids)."""
    epochs_box = page.get_by_label("Fine-tune epochs")
    epochs_box.fill(str(epochs))
    epochs_box.press("Enter")
    expect(epochs_box).to_have_value(str(epochs))
    with Store(home) as store:
        known = {r.id for r in store.runs()}
    page.get_by_role("button", name="Launch run").click()
    started = page.get_by_test_id("stAlertContentSuccess")
    expect(started).to_contain_text("Queued 1 run")
    with Store(home) as store:
        (run_id,) = [r.id for r in store.runs() if r.id not in known]
    assert not RUN_ID.search(started.inner_text())
    return run_id


def job_line(page: Page, run_id: str, status: str):
    """A run in the sidebar's jobs panel: a progress bar while active, a line once done."""
    sidebar = page.get_by_test_id("stSidebarUserContent")
    if status in ("queued", "running"):
        return sidebar.get_by_test_id("stProgress").filter(has_text=run_id).filter(has_text=status)
    return sidebar.get_by_test_id("stMarkdown").filter(has_text=run_id).filter(has_text=status)


def test_preview_run_compare_layers(page: Page, dashboard: Server) -> None:
    page.goto(dashboard.url)
    expect(page.get_by_role("heading", name="Prune")).to_be_visible()
    choose(page, "Model", "mlp-digits")
    choose(page, "Method", "magnitude")
    expect(page.get_by_text("50.0% (target 50.0%)")).to_be_visible()
    shot(page, "prune-preview-0.50")

    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    expect(page.get_by_text("60.0% (target 60.0%)")).to_be_visible()
    expect(page.get_by_text("50.0% (target 50.0%)")).to_have_count(0)
    shot(page, "prune-preview-0.60")

    run_id = launch_run(page, dashboard.home, epochs=1)
    expect(job_line(page, run_id, "succeeded")).to_be_visible(timeout=600_000)
    shot(page, "prune-run-succeeded")
    with Store(dashboard.home) as store:
        record = store.get(run_id)
    assert (record.status, record.config["sparsity"], record.config["finetune_epochs"]) == (
        "succeeded",
        0.6,
        1,
    )

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare")).to_be_visible()
    points = page.locator(".js-plotly-plot .scatterlayer .trace .points path")
    expect(points.first).to_be_attached()
    assert points.count() >= 3  # the run, its frontier marker and the dense model's star
    shot(page, "compare")

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Layers").click()
    expect(page.get_by_role("heading", name="Layers")).to_be_visible()
    expect(page.locator(".js-plotly-plot .heatmaplayer image").first).to_be_attached()
    expect(page.locator(".js-plotly-plot .barlayer .point").first).to_be_attached()
    shot(page, "layers")


def test_jobs_survive_a_reload_and_a_server_restart(page: Page, dashboard: Server, tmp_path) -> None:
    page.goto(f"{dashboard.url}/?model=mlp-digits&method=magnitude&sparsity=0.8")
    expect(page.get_by_text("80.0% (target 80.0%)")).to_be_visible()
    run_id = launch_run(page, dashboard.home, epochs=25)
    with Store(dashboard.home) as store:
        deadline = time.monotonic() + 600  # stops a hung test only
        while store.get(run_id).status == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get(run_id).status in ("running", "succeeded")  # a worker took it
    shot(page, "reload-before")

    page.reload()  # a new browser session: nothing of the old one is kept but the URL
    expect(job_line(page, run_id, "running").or_(job_line(page, run_id, "succeeded"))).to_be_visible()
    shot(page, "reload-after")

    stop(dashboard.process)  # the dashboard server goes away; the detached worker does not
    restarted = start_dashboard(dashboard.home, tmp_path / "restarted.log")
    try:
        page.goto(
            f"{restarted.url}/runs?runs={run_id}"
        )  # a deep link is the first page the new server serves
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(job_line(page, run_id, "succeeded")).to_be_visible(
            timeout=600_000
        )  # with the dashboard's sidebar
        # the jobs panel redraws the whole page when the run ends: its numbers and download appear
        expect(page.get_by_text("Download pruned model (safetensors)")).to_be_visible()
        shot(page, "restart-succeeded")
    finally:
        stop(restarted.process)
    with Store(dashboard.home) as store:
        assert store.get(run_id).status == "succeeded"
