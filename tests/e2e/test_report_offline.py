"""The HTML report in Debian's chromium with the network cut: it draws every chart, each chart
downloads as PNG and SVG that open offline, and it prints to PDF. Screenshots go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pruning.present import report
from pruning.runs import pictures, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store
from tests.e2e.conftest import ARTIFACTS, WAIT_MS

CONFIGS = [
    RunConfig(model="mlp-digits", method=method, sparsity=sparsity, latency=False)
    for method, sparsity in (("magnitude", 0.5), ("magnitude", 0.9), ("l1-channel", 0.5))
]


@pytest.fixture
def offline(browser):
    """A browser context where only file:// loads; every other request is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1300, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    blocked: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    yield context, blocked
    context.close()


def test_report_charts_pngs_svgs_and_pdf_work_offline(offline, tmp_path: Path) -> None:
    context, blocked = offline
    with Store(tmp_path / "lab") as store:
        submit.submit(store, CONFIGS)
        records = store.runs()
        pruned, _ = pictures.of_records(report.headline_runs(records))
        path = report.write(records, tmp_path / "report.html", (), pruned)
    page = context.new_page()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    charts = page.locator(".chart")
    # accuracy vs sparsity, vs compression, sparsity per layer, and the headline run's mask pictures
    masks = path.read_text().count("-mask-")
    assert masks >= 1 and charts.count() == 3 + masks + path.read_text().count("-channels'")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "report-offline.png", full_page=True)
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert chart.locator(".plot .main-svg").count() >= 1  # drawn by the inflated plotly.js
        for fmt in ("png", "svg"):
            with page.expect_download() as download:
                chart.get_by_role("button", name=f"Download {fmt.upper()}").click()
            saved = tmp_path / f"chart-{i}.{fmt}"
            download.value.save_as(saved)
            head = saved.read_bytes()[:200]
            assert head.startswith(b"\x89PNG") if fmt == "png" else b"<svg" in head
            image = context.new_page()
            image.goto(saved.as_uri())
            size = image.evaluate("() => { const i = document.images[0]; return i ? i.naturalWidth : 0; }")
            svg = image.locator("svg").count()
            assert size > 0 or (fmt == "svg" and svg == 1), f"{saved.name} does not render"
            if i == 0:
                image.screenshot(path=ARTIFACTS / f"report-offline-chart.{fmt}.png")
            image.close()
    pdf = report.print_pdf(context.new_page(), path, tmp_path / "report.pdf")  # chromium's print
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") >= 2
    assert blocked == []  # nothing tried to reach the network
