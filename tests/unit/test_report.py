"""The HTML report: self-contained (plotly.js inline), honest labels, from Python and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pruning.present import report
from pruning.runs import executors, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

CONFIGS = [
    RunConfig(model="mlp-digits", method=method, sparsity=sparsity, latency=False)
    for method in ("magnitude", "random")
    for sparsity in (0.5, 0.9)
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "lab"
    with Store(root) as store:
        submit.submit(store, CONFIGS)
        # a run recorded before its weights file vanished: submit would refuse it up front
        failing = store.create_run(CONFIGS[0].replace(weights="missing.safetensors").to_dict())
        executors.execute(store, [failing])
    return root


def test_report_is_self_contained_and_honest(lab: Path, tmp_path: Path) -> None:
    with Store(lab) as store:
        records = store.runs()
    html = report.write(records, tmp_path / "out" / "report.html").read_text()
    assert html.count("<script") >= 3 and "Plotly.newPlot" in html
    assert not re.search(r"<(script|link)[^>]*(src|href)=[\"']?https?:", html)  # opens offline
    assert html.count("plotly.js v") == 1  # the library inlined once, not per chart
    for record in records:
        assert record.id in html
    assert "masked: not faster" in html
    assert "does not exist" in html  # the failed run says why


@pytest.mark.slow  # a CLI subprocess: Python and torch start-up
def test_cli_report(lab: Path, tmp_path: Path, cli) -> None:
    with Store(lab) as store:
        ids = [r.id for r in store.runs(status="succeeded")][:2]
    out = tmp_path / "r.html"
    done = cli("report", *ids, "--out", str(out), "--store", str(lab))
    assert done.returncode == 0, done.stderr
    assert all(i in out.read_text() for i in ids)
    missing = cli("report", "no-such-run", "--out", str(out), "--store", str(lab))
    assert missing.returncode != 0 and "no run 'no-such-run'" in missing.stderr
