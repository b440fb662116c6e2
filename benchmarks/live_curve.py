"""The Prune page's live curve, measured in Debian's chromium against a real `streamlit run dashboard.py`.

Run: `python -m benchmarks live_curve`. A throwaway store ($PRUNING_LAB_HOME).

- live_curve/<model>: from choosing another method (magnitude -> random) to the complete 20-level
  curve drawn in the browser (its title says "20 of 20 levels" and its points changed). The model is
  loaded before (its first curve completed), so this is the change a user makes on a warm server.
- preview_latency_during_curve/<model>: slider steps taken right after that change, while the curve
  computes in the background: from the key press to the preview's text showing the new sparsity
  (median of STEPS). The curve must not hold the slider up: the single-point goal stays <= 1 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.browser import launch, start_dashboard, stop
from benchmarks.common import emit
from pruning.core.models import SAMPLE_MODELS
from pruning.runs.curve import LEVELS

STEPS = 3
CURVE = (
    "() => { const e = [...document.querySelectorAll('.js-plotly-plot')].find("
    "p => p.layout && p.layout.title && String(p.layout.title.text).includes('vs sparsity'));"
    " return e ? JSON.stringify([e.layout.title.text, e.data[0].y]) : null; }"
)
COMPLETE = f"({len(LEVELS)} of {len(LEVELS)} levels)"


def wait_complete(page, other_than: str | None = None, timeout_ms: int = 300_000) -> str:
    """The complete curve's [title, y] once drawn (and different from `other_than`)."""
    page.wait_for_function(
        f"([done, before]) => {{ const c = ({CURVE})(); return c && c.includes(done) && c !== before; }}",
        arg=[COMPLETE, other_than],
        timeout=timeout_ms,
        polling=50,
    )
    return page.evaluate(CURVE)


def measure(page, url: str, model: str) -> tuple[float, list[float]]:
    page.goto(f"{url}/?model={model}&method=magnitude&sparsity=0.5")
    page.get_by_text("(target 50.0%)").wait_for(timeout=300_000)
    before = wait_complete(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Method").first.click()
    start = time.perf_counter()
    page.get_by_role("option", name="random", exact=True).click()
    page.get_by_text("(target 50.0%)").wait_for(timeout=300_000)
    steps, slider = [], page.get_by_role("slider")
    for step in range(1, STEPS + 1):  # while the curve computes
        slider.focus()
        pressed = time.perf_counter()
        slider.press("ArrowRight")
        page.get_by_text(f"(target {50 + step}.0%)").wait_for(timeout=60_000)
        steps.append(time.perf_counter() - pressed)
    wait_complete(page, before)
    return time.perf_counter() - start, steps


def main() -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = launch(playwright)
        server = start_dashboard(Path(tmp) / "lab", Path(tmp) / "streamlit.log", 300)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for model in SAMPLE_MODELS:
                seconds, steps = measure(page, server.url, model)
                goal = "<= 3" if model == "cnn-digits" else None
                emit(f"dashboard/live_curve/{model}", round(seconds, 3), "s", goal)
                emit(
                    f"dashboard/preview_latency_during_curve/{model}",
                    round(statistics.median(steps), 3),
                    "s",
                    "<= 1",
                )
        finally:
            stop(server.process)
            browser.close()


if __name__ == "__main__":
    main()
