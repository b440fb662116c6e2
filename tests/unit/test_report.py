"""The HTML report: self-contained (plotly.js inline), honest labels, from Python and the CLI."""

from __future__ import annotations

import base64
import gzip
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
        failing = store.create_run(CONFIGS[0].replace(weights=str(root / "missing.safetensors")).to_dict())
        executors.execute(store, [failing])
        config = submit.analysis_config("mlp-digits", "magnitude")
        submit.submit_analysis(store, config, levels=(0.5, 0.9), executor="inline")
    return root


def _embedded_plotly(html: str) -> bytes:
    (packed,) = re.findall(r"<script type='application/octet-stream' id='plotly-js'>([^<]+)</script>", html)
    return gzip.decompress(base64.b64decode(packed))


def test_report_is_self_contained_small_and_honest(lab: Path, tmp_path: Path) -> None:
    with Store(lab) as store:
        records = store.runs()
        analyses = store.runs(kind="sensitivity")
    html = report.write(records, tmp_path / "out" / "report.html", analyses).read_text()
    assert _embedded_plotly(html) == report.PLOTLY_JS.read_bytes()  # plotly.js, once, gzipped
    assert html.count("id='plotly-js'") == 1 and "Plotly.newPlot" in html
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=[\"']?https?:", html)  # opens offline
    assert len(html.encode()) < 0.5 * report.PLOTLY_JS.stat().st_size  # smaller than plotly.js alone
    for record in records:
        assert record.id in html
    assert "masked: not faster" in html
    assert "missing.safetensors&#x27; does not exist" in html  # the failed run says why, without its folder
    assert str(lab) not in html and str(Path.home()) not in html and "/tmp/" not in html
    charts = re.findall(r"<div class='chart' data-name='([^']+)'>", html)
    assert charts == [f"mlp-digits-{c}" for c in ("sparsity", "size", "layers", "sensitivity")]
    assert html.count("saveChart(this, 'png')") == html.count("saveChart(this, 'svg')") == len(charts)
    assert "Zeroing 50% of mlp-digits&#x27; prunable weights (magnitude) leaves them masked" in html
    assert "it is not made faster;" in html and "faster on this CPU" not in html  # all masked
    assert "Pruning one layer alone to 90%" in html  # the analysis, in words


def test_paths_are_cut_to_file_names() -> None:
    text = "weights file /home/ana/models/cnn.safetensors does not exist (C:\\lab\\x.pt, 'rel/a.npz')"
    assert report.without_paths(text) == "weights file cnn.safetensors does not exist (x.pt, 'rel/a.npz')"


def test_model_names_and_errors_are_escaped(tmp_path: Path) -> None:
    with Store(tmp_path / "lab") as store:
        bad = store.create_run(
            {"model": "<img src=x onerror=alert(1)>", "method": "magnitude", "sparsity": 0.5}
        )
        store.finish(bad, "failed", error="<script>alert(1)</script>")
        html = report.render([store.get(bad)])
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.slow  # a CLI subprocess: Python and torch start-up
def test_cli_report(lab: Path, tmp_path: Path, cli) -> None:
    with Store(lab) as store:
        ids = [r.id for r in store.runs(status="succeeded")][:2]
    out = tmp_path / "r.html"
    done = cli("report", *ids, "--out", str(out), "--store", str(lab))
    assert done.returncode == 0, done.stderr
    assert all(i in out.read_text() for i in ids)
    everything = cli("report", "--all", "--out", str(out), "--store", str(lab))
    assert everything.returncode == 0, everything.stderr
    assert all(r.id in out.read_text() for r in Store(lab).runs(status="succeeded"))
    both = cli("report", ids[0], "--all", "--out", str(out), "--store", str(lab))
    assert both.returncode != 0 and "or --all for every succeeded run (not both)" in both.stderr
    missing = cli("report", "no-such-run", "--out", str(out), "--store", str(lab))
    assert missing.returncode != 0 and "no run 'no-such-run'" in missing.stderr


def test_the_headline_run_is_drawn_as_it_was_pruned(lab: Path, tmp_path: Path) -> None:
    from pruning.runs import pictures

    with Store(lab) as store:
        records = store.runs()
    (headline,) = report.headline_runs(records)
    pruned, missing = pictures.of_records([headline])
    assert not missing
    html = report.render(records, (), pruned)
    assert f"What was pruned in run {headline.id}" in html
    assert "pruned again from its config" in html  # the run kept no export: its one-shot masks
    for layer in headline.result["layers"]:  # each picture keeps what the run kept, layer by layer
        kept = 1 - layer["sparsity"]
        assert f"<h3>{layer['name']}: " in html and f"{kept:.1%} of the weights kept" in html
    charts = re.findall(r"<div class='chart' data-name='([^']+)'>", html)
    assert [c for c in charts if "-mask-" in c] == [
        f"mlp-digits-mask-{x['name']}" for x in headline.result["layers"]
    ]
