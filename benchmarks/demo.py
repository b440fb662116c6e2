"""The stakeholder path, timed and pictured: `python -m pruning demo` from an empty store (goal: under two
minutes on a 2-core machine), the HTML report of its history (size; was 4.8 MB before plotly.js was
gzipped) and its PDF, then the README's screenshots of the Prune page with its live curve, presentation
mode and the report, taken in Debian's chromium with the network cut and written to docs/ (each under
300 kB).

`python -m benchmarks demo`; the screenshots are skipped, with a line saying so, without chromium.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.browser import CHROMIUM, launch, start_dashboard, stop
from benchmarks.common import emit

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
MAX_PNG_BYTES = 300_000
VIEWPORT = {"width": 1400, "height": 900}


def _pruning(*args: str) -> float:
    """`python -m pruning ARGS` as a user runs it; returns its wall-clock seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pruning", *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _save_png(png: bytes, out: Path) -> int:
    """Save a screenshot as a palette PNG (a screenshot of charts has few colours): well under 300 kB."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(out, optimize=True)
    return out.stat().st_size


def _only_files(route) -> None:
    url = route.request.url
    route.continue_() if url.startswith(("file:", "http://127.0.0.1")) else route.abort()


def prune_screenshot(page, url: str) -> None:
    """The Prune page of cnn-digits at 70% with its live curve complete: docs/prune-live-curve.png."""
    from benchmarks.live_curve import wait_complete

    page.set_viewport_size({"width": 1500, "height": 1300})
    page.goto(f"{url}/?model=cnn-digits&method=magnitude&sparsity=0.7")
    page.get_by_text("(target 70.0%)").wait_for(timeout=600_000)
    wait_complete(page)
    page.wait_for_timeout(1500)  # let the fade-in of the last elements finish
    page.get_by_role("heading", name="Live preview").evaluate("e => e.scrollIntoView({block: 'start'})")
    name = "prune-live-curve.png"
    emit(f"screenshot docs/{name}", _save_png(page.screenshot(), DOCS / name), "bytes", "<= 300000")
    page.set_viewport_size(VIEWPORT)


def screenshots(store: Path, report_html: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = start_dashboard(store, store.parent / "streamlit.log", timeout=600)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", _only_files)
            shots = {
                "presentation-headline.png": f"{server.url}/present?present=1&slide=1",
                "presentation-curve.png": f"{server.url}/present?present=1&slide=2",
            }
            for name, url in shots.items():
                page.goto(url)
                page.get_by_text(re.compile(r"^Slide \d+ of \d+")).first.wait_for(timeout=600_000)
                if "curve" in name:
                    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=600_000)
                page.wait_for_timeout(1500)  # let the fade-in of the last elements finish
                emit(
                    f"screenshot docs/{name}", _save_png(page.screenshot(), DOCS / name), "bytes", "<= 300000"
                )
            prune_screenshot(page, server.url)
            page.goto(report_html.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=600_000)
            page.locator(".story").first.scroll_into_view_if_needed()
            top = page.locator("h2").first.bounding_box()["y"]
            shot = page.screenshot(full_page=True, clip={"x": 0, "y": top - 10, **VIEWPORT, "height": 1500})
            emit("screenshot docs/report.png", _save_png(shot, DOCS / "report.png"), "bytes", "<= 300000")
            browser.close()
    finally:
        stop(server.process)


def main() -> None:
    emit("load average (1 min) before the demo, 2-core machine", os.getloadavg()[0], "processes")
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "lab"
        seconds = _pruning("demo", "--store", str(store), "--quiet", "--json")
        emit(
            "python -m pruning demo: 36 fine-tuned runs and an analysis, from an empty store",
            seconds,
            "s",
            "<= 120",
        )
        report_html, report_pdf = Path(folder) / "report.html", Path(folder) / "report.pdf"
        pdf = Path(CHROMIUM).is_file()
        _pruning(
            "report",
            "--all",
            "--store",
            str(store),
            "--out",
            str(report_html),
            *(["--pdf", str(report_pdf)] if pdf else []),
        )
        emit(
            "HTML report of the demo history (36 runs, plotly.js embedded once)",
            report_html.stat().st_size / 1e6,
            "MB",
            "<= 4.8",
        )
        if not pdf:
            print(f"# no chromium at {CHROMIUM}: no PDF and no screenshots", flush=True)
            return
        emit("PDF of that report (chromium print)", report_pdf.stat().st_size / 1e6, "MB")
        screenshots(store, report_html)
