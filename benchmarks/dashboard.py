"""Dashboard benchmarks, measured in Debian's chromium against a real `streamlit run dashboard.py`.

Run: `python -m benchmarks dashboard`. Each server gets a throwaway store ($PRUNING_LAB_HOME).

- cold_start: from starting `streamlit run dashboard.py` to the Prune page's title drawn in the
  browser (median of 3 fresh servers); cold_start_to_preview: to its first live preview numbers;
  cold_start_to_preview_after_answer: the same, counted from the server's first healthy answer
  (goal <= 5 s: the browser asks at once, so the first visitor's page does all the loading).
- page_drawn/<page>: a new tab opened on each page of a warm server whose store holds a small sweep
  (mlp-digits, 2 methods x 3 levels, no fine-tuning): from `goto` to the page's content drawn (its
  chart, table or numbers visible, no element stale, the script finished); median of 3 tabs.
  page_drawn/bare_streamlit: the same for a bare Streamlit page (a title, one small Plotly chart and
  a three-row table) on its own server: the floor that Streamlit's own front end sets in this browser.
- preview_latency/<model>: from a slider step (a key press on the focused slider, i.e. a released
  slider) to the preview's sparsity text and per-layer chart both showing the new value; median of
  8 steps per sample model with `magnitude`, after the model was loaded once. The worst step is
  printed as a reference figure.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.browser import REPO, free_port, launch, start_dashboard, stop
from benchmarks.common import emit
from pruning.core.models import SAMPLE_MODELS

COLD_STARTS = 3
STEPS = 8
CHART_Y = "() => JSON.stringify(document.querySelector('.js-plotly-plot').data[0].y)"


def cold_start(browser, folder: Path) -> tuple[float, float, float]:
    """Seconds from process start to the first drawn page and to the first live preview, and from the
    server's first answer to that preview."""
    server = start_dashboard(folder / "lab", folder / "streamlit.log")
    answered = time.perf_counter()
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.get_by_role("heading", name="Prune").wait_for(timeout=120_000)
        drawn = time.perf_counter() - server.started
        page.get_by_text("(target 50.0%)").wait_for(timeout=120_000)
        preview = time.perf_counter()
        page.close()
        return drawn, preview - server.started, preview - answered
    finally:
        stop(server.process)


# What each page draws once it is complete (a new tab on a store that holds a sweep).
PAGES = {
    "prune": ("", "Prune", "text=(target 50.0%)"),
    "compare": ("compare", "Compare", ".js-plotly-plot"),
    "layers": ("layers", "Layers", ".js-plotly-plot"),
    "runs": ("runs", "Runs", "[data-testid=stDataFrame]"),
    "present": ("present?present=1", None, "[data-testid=stMetric]"),
}
DONE = (
    "() => !document.querySelector('[data-stale=true]')"
    " && !document.querySelector('[data-testid=stStatusWidget]')"
)


def page_drawn(browser, url: str, path: str, heading: str | None, content: str) -> float:
    """Seconds from opening a new tab on the page to its content drawn."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        start = time.perf_counter()
        page.goto(f"{url}/{path}")
        if heading:
            page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
        page.locator(content).first.wait_for(timeout=120_000)
        page.wait_for_function(DONE, timeout=120_000, polling=50)
        return time.perf_counter() - start
    finally:
        page.close()


BARE = """
import plotly.graph_objects as go
import streamlit as st

st.title("Bare")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])))
st.dataframe({"a": [1, 2, 3]})
"""


def bare_floor(browser, folder: Path) -> float:
    """Median seconds for a new tab of a bare Streamlit page to draw its chart and table."""
    script = folder / "bare.py"
    script.write_text(BARE)
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    with open(folder / "bare.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        page_drawn(browser, url, "", "Bare", ".js-plotly-plot")  # the server's first run
        return statistics.median(page_drawn(browser, url, "", "Bare", ".js-plotly-plot") for _ in range(3))
    finally:
        stop(process)


def seed(home: Path) -> None:
    command = [
        sys.executable, "-m", "pruning", "sweep", "--store", str(home), "--model", "mlp-digits",
        "--methods", "magnitude,random", "--sparsities", "0.5,0.7,0.9", "--no-latency", "--quiet",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)


def preview_steps(page, url: str, model: str) -> list[float]:
    """Seconds per slider step until both the text and the chart show the new sparsity."""
    page.goto(f"{url}/?model={model}&method=magnitude&sparsity=0.5")
    page.get_by_text("(target 50.0%)").wait_for(timeout=180_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    slider = page.get_by_role("slider")
    seconds = []
    for step in range(1, STEPS + 1):
        before = page.evaluate(CHART_Y)
        slider.focus()
        start = time.perf_counter()
        slider.press("ArrowRight")
        page.get_by_text(f"(target {50 + step}.0%)").wait_for(timeout=30_000)
        page.wait_for_function(f"b => ({CHART_Y[6:]}) !== b", arg=before, timeout=30_000)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = launch(playwright)
        starts = [cold_start(browser, Path(tempfile.mkdtemp(dir=tmp))) for _ in range(COLD_STARTS)]
        emit("dashboard/cold_start", round(statistics.median(s[0] for s in starts), 3), "s")
        emit("dashboard/cold_start_to_preview", round(statistics.median(s[1] for s in starts), 3), "s")
        after = round(statistics.median(s[2] for s in starts), 3)
        emit("dashboard/cold_start_to_preview_after_answer", after, "s", "<= 5")

        seed(Path(tmp) / "lab")
        server = start_dashboard(Path(tmp) / "lab", Path(tmp) / "streamlit.log")
        try:
            page_drawn(browser, server.url, "", "Prune", "text=(target 50.0%)")  # the server warms up
            for name, (path, heading, content) in PAGES.items():
                seconds = [page_drawn(browser, server.url, path, heading, content) for _ in range(3)]
                emit(f"dashboard/page_drawn/{name}", round(statistics.median(seconds), 3), "s", "<= 2")
            floor = bare_floor(browser, Path(tmp))
            emit("dashboard/page_drawn/bare_streamlit", round(floor, 3), "s")
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for model in SAMPLE_MODELS:
                seconds = preview_steps(page, server.url, model)
                emit(f"dashboard/preview_latency/{model}", round(statistics.median(seconds), 3), "s", "<= 1")
                emit(f"dashboard/preview_latency_worst/{model}", round(max(seconds), 3), "s")
        finally:
            stop(server.process)
            browser.close()


if __name__ == "__main__":
    main()
