"""Fixtures for the dashboard's AppTest tests: an empty store, and a store seeded by running the engine.

The seeded store is built once per session (engine runs inline on mlp-digits), then copied for each
test, so a test may delete or cancel runs freely.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pruning import jobs
from pruning.config import RunConfig
from pruning.store import RunRecord, Store, new_run_id

ROOT = Path(__file__).resolve().parents[2]
BASE = RunConfig(model="mlp-digits", method="magnitude", sparsity=0.5, latency=False)
SEEDS = [
    BASE,
    BASE.replace(sparsity=0.9, finetune_epochs=1, latency=True),
    BASE.replace(method="random", sparsity=0.5),
    BASE.replace(method="random", sparsity=0.9),
]


@pytest.fixture(scope="session")
def seeded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeded") / "lab"
    with Store(root) as store:
        ids = jobs.submit(store, SEEDS[1:])
        exported = new_run_id()  # the first run exports into its own folder, as dashboard runs do
        config = SEEDS[0].replace(export=str(store.artifacts(exported)))
        ids.insert(0, store.create_run(config.to_dict(), run_id=exported))
        ids += jobs.submit(store, [BASE.replace(weights=str(root / "missing.safetensors"))])  # fails
        jobs.execute(store, ids)
    return root


@pytest.fixture
def seeded(seeded_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    root = tmp_path / "lab"
    shutil.copytree(seeded_root, root)
    monkeypatch.setenv("PRUNING_LAB_HOME", str(root))
    with Store(root) as store:
        yield store


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("PRUNING_LAB_HOME", str(tmp_path / "lab"))
    with Store(tmp_path / "lab") as store:
        yield store


@pytest.fixture
def app() -> Callable[[str | None], AppTest]:
    """The dashboard, run once and switched to a page (None: the default page, Prune)."""

    def open_page(page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
        at.query_params.update(query)
        at.run()
        if page is not None:
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


def wait_done(store: Store, ids: list[str], timeout: float = 180.0) -> list[RunRecord]:
    """Poll the store (reaping dead workers) until every run is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.reap()
        records = [store.get(i) for i in ids]
        if all(r.done for r in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"runs not done after {timeout:.0f} s: {[(r.id, r.status) for r in records]}")


def texts(at: AppTest) -> str:
    """Everything the page shows as text (markdown, captions, alerts, metrics), one string."""
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "error", "success", "warning")
        for e in at.get(kind)
    ]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    parts += [p.proto.text for p in at.get("progress")]
    return "\n".join(str(p) for p in parts)


def figures(at: AppTest) -> list[dict]:
    """The page's Plotly figures as dicts (as sent to the browser)."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value: list | dict) -> list:
    """A Plotly data array: a plain list, or plotly's typed-array form {"dtype", "bdata"[, "shape"]}."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            flat = flat.reshape([int(n) for n in str(shape).split(",")])
        return flat.tolist()
    return list(value)
