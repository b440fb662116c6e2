"""A self-contained HTML report of runs: the narrative, the honest numbers, curves, pictures of what the
headline run pruned, and configs, offline.

plotly.js is embedded once, gzipped (1.5 MB instead of 4.8 MB; the browser inflates it with its own
`DecompressionStream`), so the file opens on a machine with no internet. Every chart has PNG and SVG
buttons (Plotly's image export, done by the browser) and the page prints to PDF (`window.print`, or
`pdf` below with the system chromium). No local file path is written: paths in configs and errors
are cut to their file names. Used by `python -m pruning report` and the dashboard's Runs page.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly
import plotly.graph_objects as go
import plotly.io as pio

from pruning.errors import UserError
from pruning.present import charts, narrative, pictures, views
from pruning.runs.pictures import Pruned
from pruning.runs.store import RunRecord

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.label { font-weight: bold; color: #a33; }
.note { color: #555; font-size: 0.9rem; }
.story { font-size: 1.05rem; line-height: 1.5; max-width: 60rem; }
.chart { margin: 1rem 0 2rem; break-inside: avoid; }
.chart h3 { margin-bottom: 0; }
.buttons button { margin-right: 0.5rem; }
.wide { overflow-x: auto; }
@media print { .buttons, .print { display: none; } body { margin: 0; max-width: none; } }
"""
# Inflates plotly.js, then draws every chart from its JSON; `document.body.dataset.ready` says when.
LOADER = """
async function inflate(id) {
  const text = document.getElementById(id).textContent.trim();
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}
function saveChart(button, format) {
  const chart = button.closest(".chart");
  const plot = chart.querySelector(".plot");
  Plotly.downloadImage(plot, {format: format, filename: chart.dataset.name,
                              width: plot.offsetWidth, height: plot.offsetHeight});
}
window.reportReady = (async () => {
  const code = await inflate("plotly-js");
  const script = document.createElement("script");
  script.textContent = code;
  document.head.appendChild(script);
  for (const chart of document.querySelectorAll(".chart")) {
    const figure = JSON.parse(chart.querySelector("script.figure").textContent);
    const options = {displaylogo: false, responsive: true,
                     toImageButtonOptions: {format: "png", filename: chart.dataset.name, scale: 2}};
    await Plotly.newPlot(chart.querySelector(".plot"), figure.data, figure.layout, options);
  }
  document.body.dataset.ready = "1";
})();
"""
SUMMARY_COLUMNS = views.titled(
    "run_id status model method honest_sparsity honest_removed honest_bytes honest_speedup honest_label "
    "accuracy_dense accuracy_before_finetune accuracy "
    "metric_name metric_dense metric_before_finetune metric".split()
)
PICTURE_SIDE = 64  # the report's mask pictures are downsampled to this many pixels a side
PICTURE_LAYERS = 6  # the largest layers of the headline run are drawn
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][^\s\\/'\"`,;:()]+)+[\\/]?")


def without_paths(text: str) -> str:
    """`text` with every absolute file path cut to its last part (a report must not tell where files
    were on the machine that made it)."""
    return _PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1] or "/", text)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.4f}")


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "chart"


def _chart(figure: go.Figure, title: str, name: str) -> str:
    """A chart: its title, a div that the loader draws into, its JSON and the download buttons."""
    figure = charts.legible(figure)
    figure.update_layout(template="plotly_white", title=None)
    data = pio.to_json(figure, validate=False).replace("</", "<\\/")  # no early </script>
    return (
        f"<div class='chart' data-name='{_name(name)}'><h3>{html.escape(title)}</h3>"
        "<div class='buttons'><button onclick=\"saveChart(this, 'png')\">Download PNG</button>"
        "<button onclick=\"saveChart(this, 'svg')\">Download SVG</button></div>"
        f"<div class='plot'></div><script type='application/json' class='figure'>{data}</script></div>"
    )


def _headline(found: narrative.Headline | None) -> str:
    if found is None:
        return ""
    kept = "plain file" if found.removed else "sparse encoding (masked: the plain file is no smaller)"
    speed = "not measured" if found.speedup is None else f"{found.speedup:.2f}x measured"
    if not found.removed:
        speed += " (masked: not made faster)"
    rows = [
        ("run", f"{found.method} at {found.sparsity:.1%} sparsity ({found.run_id})"),
        ("size, dense / pruned", f"{found.size_ratio:.2f}x smaller ({kept})"),
        ("latency, dense / pruned", speed),
        (
            f"test {found.metric_name}",
            f"{narrative.metric_text(found.metric_name, found.metric_dense)} dense, "
            f"{narrative.metric_text(found.metric_name, found.metric)} pruned "
            f"({narrative.change_text(found.metric_name, found.metric_change)})",
        ),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<p>Dense against the smallest run within 1 point of dense:</p><table>{cells}</table>"


def headline_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The run each model's headline is about (what the report draws as mask pictures)."""
    runs = narrative.frame(records)
    chosen = [narrative.headline(group) for _, group in runs.groupby("model", sort=True)] if len(runs) else []
    ids = {h.run_id for h in chosen if h is not None}
    return [r for r in records if r.id in ids]


def _pictures(model: str, run_id: str, found: tuple[Pruned, str]) -> list[str]:
    """Mask pictures of the largest layers of a run, and its kept channels when structure was removed."""
    pruned, source = found
    largest = sorted(pruned.weights, key=lambda n: pruned.weights[n].size, reverse=True)[:PICTURE_LAYERS]
    shown = [n for n in pruned.weights if n in largest]  # in model order
    parts = [
        f"<h3>What was pruned in run {html.escape(run_id)}</h3><p class='note'>From "
        f"{html.escape(source)}; the {len(shown)} largest of {len(pruned.weights)} prunable layers, kept "
        "weights light, removed dark.</p>"
    ]
    for name in shown:
        image = pictures.picture(name, pruned.weights[name], PICTURE_SIDE)
        image = pictures.Picture(image.name, image.shape, image.image.round(2), image.factor, image.kept)
        parts.append(_chart(pictures.mask_figure(image), image.title, f"{model}-mask-{name}"))
    if pruned.removed:
        shapes = {n: w.shape for n, w in pruned.weights.items()}
        frame = pictures.channels_frame(pruned.dense_shapes, shapes, pruned.heads)
        figure = pictures.channels_figure(frame, "output channels")
        parts.append(_chart(figure, "Output channels kept and removed per layer", f"{model}-channels"))
    return parts


def _model_section(
    model: str,
    records: Sequence[RunRecord],
    runs: pd.DataFrame,
    analysis: Mapping[str, Any] | None,
    pruned: Mapping[str, tuple[Pruned, str]],
) -> list[str]:
    metric = (analysis or {}).get("metric", "accuracy")
    story = narrative.story(runs, (analysis or {}).get("rows", []), metric)
    parts = [f"<h2>{html.escape(model)}</h2>"]
    parts += [f"<p class='story'>{html.escape(without_paths(s))}</p>" for s in story]
    found = narrative.headline(runs)
    parts.append(_headline(found))
    parts.append(_chart(charts.accuracy_vs_sparsity(runs), "Accuracy against sparsity", f"{model}-sparsity"))
    size = charts.accuracy_vs_size(runs, x="compression_ratio", accuracy="both")
    parts.append(_chart(size, "Accuracy against compression (before and after fine-tuning)", f"{model}-size"))
    mine = sorted(
        (r for r in records if r.model == model and r.id in set(runs["run_id"])),
        key=lambda r: (r.method, r.config.get("sparsity", 0)),
    )
    labels = {r.id: views.run_label(r) for r in mine}
    rows = [
        {"run_id": r.id, "idx": i, **layer}
        for r in mine
        for i, layer in enumerate(views.run_result(r).layers)
    ]
    heatmap = charts.layer_heatmap(views.layers_frame(rows, labels))
    parts.append(_chart(heatmap, "Sparsity per layer", f"{model}-layers"))
    if analysis and analysis.get("rows"):
        table = pd.DataFrame(analysis["rows"])
        sens = charts.sensitivity_heatmap(table, metric)
        parts.append(_chart(sens, "Sensitivity: one layer pruned alone", f"{model}-sensitivity"))
    if found is not None and found.run_id in pruned:
        parts += _pictures(model, found.run_id, pruned[found.run_id])
    return parts


def _config_cell(value: str) -> str:
    return without_paths(value)


def render(
    records: Sequence[RunRecord],
    analyses: Sequence[RunRecord] = (),
    pruned: Mapping[str, tuple[Pruned, str]] | None = None,
) -> str:
    """The report as one HTML string. `analyses`: sensitivity jobs; the newest succeeded one of each
    reported model is shown with it. `pruned`: run id -> (its pruned weights, where they come from),
    drawn as mask pictures for the model's headline run (`headline_runs`)."""
    runs_only = [r for r in records if r.kind == "run"]
    runs = views.runs_frame(runs_only)
    succeeded = narrative.frame(runs_only)
    newest = {}
    for job in sorted(analyses, key=lambda j: j.created, reverse=True):
        if job.kind == "sensitivity" and job.status == "succeeded" and job.result:
            newest.setdefault(job.model, job.result)
    parts = [
        f"<h1>Pruning Lab report</h1><p class='note'>{len(runs_only)} run(s), generated "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}. Masked runs store zeros: they are not smaller as a plain "
        "file and not faster; only physically removed structure is. "
        "<button class='print' onclick='window.print()'>Save as PDF</button></p>"
    ]
    if not succeeded.empty:
        for model, group in succeeded.groupby("model", sort=True):
            parts += _model_section(str(model), runs_only, group, newest.get(model), pruned or {})
    summary = runs.reindex(columns=list(SUMMARY_COLUMNS)).rename(columns=SUMMARY_COLUMNS)
    parts += ["<h2>Summary</h2>", f"<div class='wide'>{_table(summary)}</div>"]
    failed = [r for r in runs_only if r.status != "succeeded"]
    if failed:
        parts.append("<h2>Runs without results</h2><ul>")
        for r in failed:
            why = html.escape(without_paths(r.error or r.message or ""))
            parts.append(f"<li>{html.escape(r.id)}: {r.status} {why}</li>")
        parts.append("</ul>")
    configs = views.config_diff(runs_only).drop(index=["export"], errors="ignore").map(_config_cell)
    parts += ["<h2>Configurations</h2>", f"<div class='wide'>{configs.to_html(escape=True)}</div>"]
    plotly_js = base64.b64encode(gzip.compress(PLOTLY_JS.read_bytes(), 9, mtime=0)).decode()
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Pruning Lab report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}"
        f"<script type='application/octet-stream' id='plotly-js'>{plotly_js}</script>"
        f"<script>{LOADER}</script></body></html>"
    )


def write(
    records: Sequence[RunRecord],
    out: str | Path,
    analyses: Sequence[RunRecord] = (),
    pruned: Mapping[str, tuple[Pruned, str]] | None = None,
) -> Path:
    """Write the report for `records` (and their models' `analyses`) to `out`; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(records, analyses, pruned), encoding="utf-8")
    return out


CHROMIUM = "/usr/bin/chromium"


def pdf(report_html: str | Path, out: str | Path, chromium: str = CHROMIUM) -> Path:
    """Print a written report to PDF with the system chromium (Playwright drives it; never a browser
    download), once every chart is drawn; nothing but the file itself is fetched."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("a PDF needs Playwright: pip install -r requirements-dev.txt") from None
    if not Path(chromium).is_file():
        raise UserError(f"a PDF needs chromium at {chromium}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            return print_pdf(page, report_html, out)
        finally:
            browser.close()


def print_pdf(page: Any, report_html: str | Path, out: str | Path) -> Path:
    """Open a written report in a Playwright `page` of chromium, wait for its charts, print it to `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.goto(Path(report_html).resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
    page.emulate_media(media="print")
    page.pdf(path=str(out), format="A4", print_background=True, scale=0.7)
    return out
