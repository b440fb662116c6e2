"""Fixtures for the dashboard's AppTest tests: an empty store, and a store seeded by running the engine.

The seeded store is built once per session (engine runs inline on mlp-digits), then copied for each
test, so a test may delete or cancel runs freely.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.runs import executors, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

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
        submit.submit(store, SEEDS[:1], artifacts=True)  # exports into its own folder, as dashboard runs do
        submit.submit(store, SEEDS[1:])
        # a run recorded before its weights file vanished (submit would refuse it up front): it fails
        failing = store.create_run(BASE.replace(weights=str(root / "missing.safetensors")).to_dict())
        executors.execute(store, [failing])
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
        # the timeout only stops a hung script: a page that runs in a second idle can take minutes
        # on a 2-core machine beside another CPU-heavy process
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=600)
        at.query_params.update(query)
        at.run()
        if page is not None:
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page
