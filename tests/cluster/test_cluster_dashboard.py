"""The Prune page's sweep launcher on a Ray cluster: a refused address queues nothing; a sweep
launched on the session's Ray runs through a detached coordinator and shows its nodes' CPUs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.runs.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HANG_STOPPER = 600.0  # only stops a hung script or run; no speed is judged


def prune_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str) -> AppTest:
    monkeypatch.setenv("PRUNING_LAB_HOME", str(tmp_path / "lab"))
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=HANG_STOPPER)
    at.run()
    at.number_input(key="epochs").set_value(0)
    at.checkbox(key="latency").uncheck()
    at.text_input(key="sweep_levels").set_value("0.3, 0.6")
    at.radio(key="where").set_value("Ray cluster (address)").run()
    at.text_input(key="ray_address").set_value(address).run()
    return at


def test_a_bad_address_is_refused_and_nothing_is_queued(tmp_path, monkeypatch):
    at = prune_page(tmp_path, monkeypatch, "nowhere")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    refused = "--ray-address must be auto, ray://HOST:PORT or HOST:PORT, got 'nowhere'"
    assert any(refused in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert not (tmp_path / "lab" / "lab.db").exists() or Store(tmp_path / "lab").runs() == []


def test_a_sweep_launched_on_the_cluster_runs_there(ray_session, tmp_path, monkeypatch):
    address = ray_session.get_runtime_context().gcs_address
    at = prune_page(tmp_path, monkeypatch, address)
    next(b for b in at.button if b.label == "Connect").click().run()
    assert any("2 CPUs, 0 GPUs" in c.value for c in at.caption), [c.value for c in at.caption]
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    store = Store(tmp_path / "lab")
    deadline = time.monotonic() + HANG_STOPPER
    while time.monotonic() < deadline and not all(r.done for r in store.runs()):
        time.sleep(0.2)
    records = store.runs()
    assert len(records) == 2 and {r.status for r in records} == {"succeeded"}, [r.error for r in records]
    node = ray_session.get_runtime_context().get_node_id()
    assert {r.result["ray_node_id"] for r in records} == {node}
