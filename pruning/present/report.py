"""A self-contained HTML report of runs: the honest numbers, configs and charts, readable offline.

plotly.js is inlined once (no CDN), so the file opens on a machine with no internet.
Used by `python -m pruning report RUN_ID.. --out report.html` and the dashboard's Runs page.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.io as pio

from pruning.present import charts, views
from pruning.runs.store import RunRecord

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.label { font-weight: bold; color: #a33; }
.note { color: #555; font-size: 0.9rem; }
"""
SUMMARY_COLUMNS = views.titled(
    "run_id status model method honest_sparsity honest_removed honest_bytes honest_speedup honest_label "
    "accuracy_dense accuracy_before_finetune accuracy "
    "metric_name metric_dense metric_before_finetune metric".split()
)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.4f}")


def render(records: Sequence[RunRecord]) -> str:
    """The report as one HTML string."""
    runs = views.runs_frame(records)
    parts = [
        f"<h1>Pruning Lab report</h1><p class='note'>{len(records)} run(s), generated "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}. Masked runs store zeros: they are not smaller as a plain "
        "file and not faster; only physically removed structure is.</p>",
        "<h2>Summary</h2>",
        _table(runs.reindex(columns=list(SUMMARY_COLUMNS)).rename(columns=SUMMARY_COLUMNS)),
    ]
    include_js: bool | str = True  # the first figure carries plotly.js, inline
    succeeded = runs[runs["status"] == "succeeded"] if not runs.empty else runs
    for model, group in succeeded.groupby("model", sort=True):
        parts.append(f"<h2>{html.escape(str(model))}</h2>")
        for x in ("nonzero_params", "compression_ratio"):
            fig = charts.accuracy_vs_size(group, x=x, accuracy="both")
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=include_js))
            include_js = False
        ids = group["run_id"].tolist()
        labels = {r.id: views.run_label(r) for r in records if r.id in ids}
        rows = [
            {"run_id": r.id, "idx": i, **layer}
            for r in records
            if r.id in ids
            for i, layer in enumerate(views.run_result(r).layers)
        ]
        fig = charts.layer_heatmap(views.layers_frame(rows, labels))
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=include_js))
    failed = [r for r in records if r.status != "succeeded"]
    if failed:
        parts.append("<h2>Runs without results</h2><ul>")
        parts += [f"<li>{r.id}: {r.status} {html.escape(r.error or r.message or '')}</li>" for r in failed]
        parts.append("</ul>")
    parts += ["<h2>Configurations</h2>", views.config_diff(records).to_html(escape=True)]
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Pruning Lab report</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def write(records: Sequence[RunRecord], out: str | Path) -> Path:
    """Write the report for `records` to `out` and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(records), encoding="utf-8")
    return out
