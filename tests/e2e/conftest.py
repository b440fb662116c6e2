"""Browser tests: the real dashboard (`streamlit run dashboard.py`) driven by Playwright in Debian's chromium.

The server runs with a throwaway store ($PRUNING_LAB_HOME); the browser is /usr/bin/chromium and never a
download. A missing browser is a failure with a message that says how to install it, not a skip.
Screenshots go to test-artifacts/ (kept as test artifacts, ignored by git).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, Server, launch, stop
from benchmarks.browser import start_dashboard as _start_dashboard

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
# Waits only stop a hung test, never judge speed: a cold server imports PyTorch before drawing a page,
# which takes minutes on a 2-core machine beside another CPU-heavy process.
SERVER_START_S = 600
WAIT_MS = 300_000


def start_dashboard(home: Path, log: Path, timeout: float = SERVER_START_S) -> Server:
    """The real dashboard on a free port (benchmarks.browser), with a start-up wait sized for a loaded
    machine; the browser tests restart it through this too."""
    return _start_dashboard(home, log, timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is slow: it starts a real server, a browser and real runs."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Debian's chromium is missing at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(the browser tests use it and never download a browser)",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Server]:
    ARTIFACTS.mkdir(exist_ok=True)
    server = start_dashboard(tmp_path / "lab", tmp_path / "streamlit.log")
    yield server
    stop(server.process)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-last.png", full_page=True)
    context.close()


def shot(page, name: str) -> None:
    """Keep a screenshot as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
