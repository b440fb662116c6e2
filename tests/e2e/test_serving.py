"""Safe to serve, in a real browser: the README's command listens on this machine only, text from
outside (a model path, layer names, an error message) shows as written and makes the browser fetch
nothing, and with PRUNING_LAB_PASSWORD set no page or download works before the password."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from benchmarks.browser import free_port
from pruning.runs import submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store
from tests.e2e.conftest import REPO, SERVER_START_S, Server, shot, start_dashboard, stop

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
PAGES = {"": "Prune", "compare": "Compare", "layers": "Layers", "runs": "Runs"}


def readme_run_command() -> list[str]:
    """The README's run command, the part that starts the server (after the venv set-up)."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- run-command -->\s*```bash\n(.+?)\n```", readme, re.S).group(1)
    words = shlex.split(block.split("&&")[-1])
    assert words[:3] == [".venv/bin/streamlit", "run", "dashboard.py"], words
    return [str(Path(sys.executable).parent / "streamlit"), *words[1:]]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, read from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
                family = socket.AF_INET if width == 8 else socket.AF_INET6
                found.add(socket.inet_ntop(family, words))
    return found


def outward_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a UDP "connect" sends nothing: it only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
def readme_dashboard(tmp_path: Path) -> Iterator[Server]:
    """The dashboard started exactly as the README says (its port from the environment, so that it
    does not collide with another dashboard on this machine)."""
    port, home, log = free_port(), tmp_path / "lab", tmp_path / "streamlit.log"
    env = dict(os.environ, PRUNING_LAB_HOME=str(home), STREAMLIT_SERVER_PORT=str(port))
    env.pop("PRUNING_LAB_PASSWORD", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(readme_run_command(), cwd=REPO, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S  # stops a hung start only
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    yield Server(url, home, process, time.perf_counter())
    stop(process)


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        Recorder.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bait() -> Iterator[str]:
    """A tiny local HTTP server; yields a URL on it. Any request it gets is recorded."""
    Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/x.png"
    server.shutdown()
    server.server_close()


def seed(home: Path, evil: str) -> dict[str, str]:
    """One real exported run, plus a succeeded and a failed run whose model path, layer names and
    error carry `evil` (as a command-line user could record them)."""
    with Store(home) as store:
        (real,) = submit.submit(
            store, [RunConfig("mlp-digits", "magnitude", 0.5, latency=False)], artifacts=True
        )
        record = store.get(real)
        model = f"models/{evil}.py:build"
        result = dict(record.result, model=model)
        result["layers"] = [dict(layer, name=f"{layer['name']} {evil}") for layer in result["layers"]]
        config = dict(record.config, model=model, export=None)
        result["config"] = config
        result.pop("export", None)
        crafted = store.create_run(config)
        store.finish(crafted, "succeeded", result=result)
        failed = store.create_run(dict(config, sparsity=0.7))
        store.finish(failed, "failed", error=f"could not load {model}\nTraceback (most recent call last)")
    return {"real": real, "crafted": crafted, "failed": failed, "model": model}


def test_the_readme_command_serves_on_localhost_only(page: Page, readme_dashboard: Server) -> None:
    port = int(readme_dashboard.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"127.0.0.1"}
    outward = outward_address()
    if outward is not None:  # a machine with a network: the port is closed there
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, port), timeout=10).close()
    page.goto(readme_dashboard.url)
    expect(page.get_by_role("heading", name="Prune")).to_be_visible()
    expect(page.get_by_role("textbox", name="Password")).to_have_count(0)  # no password set: no login


def test_outside_text_shows_as_written_and_fetches_nothing(
    page: Page, readme_dashboard: Server, bait: str
) -> None:
    evil = f"![img]({bait}) <img src={bait}> **bold**"
    ids = seed(readme_dashboard.home, evil)
    page.goto(f"{readme_dashboard.url}/runs?runs={ids['crafted']}&runs={ids['failed']}")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text(f"could not load {ids['model']}", exact=True)).to_be_visible()
    expect(main.get_by_text(ids["model"]).first).to_be_visible()  # the run's heading, literally
    expect(page.get_by_text("Traceback")).to_have_count(0)
    shot(page, "serving-literal-runs")

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Layers").click()
    expect(page.get_by_role("heading", name="Layers")).to_be_visible()
    page.get_by_test_id("stSelectbox").filter(has_text="Model").first.click()
    page.get_by_role("option", name=ids["model"], exact=True).click()
    expect(page.locator(".js-plotly-plot .heatmaplayer image").first).to_be_attached()
    expect(page.locator(".js-plotly-plot .barlayer .point").first).to_be_attached()
    shot(page, "serving-literal-layers")

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare")).to_be_visible()
    expect(page.locator(".js-plotly-plot .scatterlayer .trace .points path").first).to_be_attached()
    expect(page.locator(f'img[src="{bait}"]')).to_have_count(0)
    assert Recorder.requests == []


def sign_in_form_only(page: Page, url: str, hidden: list[str]) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Pruning Lab")).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    for title in PAGES.values():
        expect(page.get_by_role("heading", name=title, exact=True)).to_have_count(0)
    expect(page.get_by_test_id("stDownloadButton")).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    for text in hidden:
        expect(page.get_by_text(text)).to_have_count(0)


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("PRUNING_LAB_PASSWORD", PASSWORD)
    server = start_dashboard(tmp_path / "lab", tmp_path / "streamlit.log")
    yield server
    stop(server.process)


def test_with_a_password_no_page_or_download_works_without_it(page: Page, guarded: Server, bait) -> None:
    ids = seed(guarded.home, "run")
    media = []
    produced = f"{guarded.url}/media/"  # where Streamlit serves what a page produced for download
    page.on("request", lambda r: media.append(r.url) if r.url.startswith(produced) else None)
    for path in PAGES:
        sign_in_form_only(page, f"{guarded.url}/{path}?runs={ids['real']}", [ids["real"]])
    page.get_by_label("Password", exact=True).fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong password.")).to_be_visible()
    sign_in_form_only(page, f"{guarded.url}/runs?runs={ids['real']}", [ids["real"]])
    shot(page, "serving-sign-in")
    assert media == []  # nothing was produced for download

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    download = page.get_by_role("button", name="Download pruned model (safetensors)")
    expect(download).to_be_visible()
    # Click once the page has finished running, as a person would see it: a click on an element of a
    # run still in progress (on a loaded machine) was lost with that run, and no download started.
    page.wait_for_function(
        "() => !document.querySelector('[data-stale=true]')"
        " && !document.querySelector('[data-testid=stStatusWidget]')",
        polling=100,
    )
    with page.expect_download() as event:
        download.click()
    with Store(guarded.home) as store:
        exported = Path(store.get(ids["real"]).result["export"]["weights"])
    assert Path(event.value.path()).read_bytes() == exported.read_bytes()
    shot(page, "serving-signed-in")
    assert media  # signed in, the downloads are produced (so the check before could fail)

    page.reload()  # a new browser session: signed out again
    sign_in_form_only(page, f"{guarded.url}/runs?runs={ids['real']}", [ids["real"]])
