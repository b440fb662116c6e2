"""Tidy tables from run records, and the four honest numbers, for pages, charts and reports.

The verdicts (masked, overhead-bound) come from `RunResult`; this module only words them.

Every place that summarises a run (dashboard pages, the HTML report) goes through
`honest_numbers`, so a masked model is never shown as smaller-on-the-wire-and-faster
in one place and honestly in another. Nothing here imports Streamlit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pruning.core.masks import validate_sparsity
from pruning.errors import UserError
from pruning.runs.result import RunResult
from pruning.runs.store import RunRecord

HONEST_TITLES: dict[str, str] = {
    "sparsity": "nominal sparsity",
    "removed": "parameters physically removed",
    "bytes": "bytes on disk (file / sparse / gzip)",
    "speedup": "latency speedup (measured vs FLOPs bound)",
}


def human_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def run_result(record: RunRecord) -> RunResult | None:
    """A succeeded run's typed result (None for a run without one, or another kind of job)."""
    if record.kind != "run" or record.status != "succeeded" or not record.result:
        return None
    return RunResult.from_dict(record.result)


def exported_model(record: RunRecord) -> Path | None:
    """The run's exported `model.safetensors`, if it exported one that still exists."""
    weights = ((record.result or {}).get("export") or {}).get("weights")
    return Path(weights) if weights and Path(weights).is_file() else None


def speedup_text(result: RunResult) -> str:
    """The measured speedup with its spread ("1.62x ±3% measured"), "≈1x (masked)" for a masked run
    whose interval does not exclude 1, or "not measured"."""
    latency = result.latency_ms
    if latency.speedup is None:
        return "not measured"
    if result.as_fast_as_dense:
        return "≈1x (masked)"
    spread = latency.spread
    if spread is None:  # stored before intervals were measured
        return f"{latency.speedup:.2f}x measured"
    shown = f"{spread:.0%}" if spread >= 0.01 else f"{spread:.1%}"  # ±0.4%, not ±0%
    return f"{latency.speedup:.2f}x ±{shown} measured"


def honest_numbers(result: RunResult) -> dict[str, str]:
    """The four numbers every run summary shows side by side, plus a `label` (the result's verdict)."""
    dense, pruned = result.dense, result.pruned
    removed = dense.params - pruned.params
    size = pruned.size_bytes
    return {
        "sparsity": f"{result.sparsity:.1%} (target {result.target_sparsity:.1%})",
        "removed": (
            f"{removed:,} of {dense.params:,} ({removed / max(dense.params, 1):.0%})"
            if pruned.removed
            else "none (masked: zeros stored)"
        ),
        "bytes": " / ".join(human_bytes(n) for n in (size.dense, size.sparse, size.gzip)),
        "speedup": f"{speedup_text(result)} vs {result.theoretical_speedup:.2f}x bound",
        "label": result.verdict,
    }


def _curve(method: str, config: Mapping[str, Any]) -> str:
    parts = [method]
    if config.get("schedule", "oneshot") != "oneshot":
        parts.append(str(config["schedule"]))
    if config.get("finetune_epochs"):
        parts.append(f"ft {config['finetune_epochs']}")
    return " · ".join(parts)


def config_text(config: Mapping[str, Any]) -> str:
    """A run's config on a few short lines (for hover boxes)."""
    shown = {k: v for k, v in config.items() if v not in (None, {}, (), []) and k != "export"}
    return "<br>".join(f"{k}: {v}" for k, v in shown.items())


def _result_row(result: RunResult) -> dict[str, Any]:
    dense, pruned, latency = result.dense, result.pruned, result.latency_ms
    return {
        "sparsity": result.sparsity,
        "accuracy_dense": dense.accuracy,
        "accuracy_before_finetune": pruned.accuracy_before_finetune,
        "accuracy": pruned.accuracy,
        "metric_name": result.metric,
        "higher_is_better": result.higher_is_better,
        "metric_dense": dense.metric,
        "metric_before_finetune": pruned.metric_before_finetune,
        "metric": pruned.metric,
        "params_dense": dense.params,
        "nonzero_dense": dense.nonzero_params,
        "params": pruned.params,
        "nonzero_params": pruned.nonzero_params,
        "params_removed": dense.params - pruned.params,
        "flops_dense": dense.flops,
        "flops": pruned.flops,
        "bytes_dense": dense.size_bytes,
        "bytes_file": pruned.size_bytes.dense,
        "bytes_sparse": pruned.size_bytes.sparse,
        "bytes_gzip": pruned.size_bytes.gzip,
        "latency_dense_ms": latency.dense,
        "latency_ms": latency.pruned,
        "speedup": latency.speedup,
        "theoretical_speedup": result.theoretical_speedup,
        "compression_ratio": result.compression_ratio,
        "removed": pruned.removed,
        "granularity": result.granularity,
        **{f"honest_{k}": v for k, v in honest_numbers(result).items()},
    }


COLUMN_TITLES = {
    "run_id": "run",
    "status": "status",
    "model": "model",
    "method": "method",
    "target_sparsity": "target sparsity",
    "sparsity": "achieved sparsity",
    "accuracy_dense": "dense accuracy",
    "accuracy_before_finetune": "accuracy before fine-tune",
    "accuracy": "accuracy after fine-tune",
    "metric_name": "metric",  # the task's: accuracy, perplexity (lower is better) or mse
    "metric_dense": "dense metric",
    "metric_before_finetune": "metric before fine-tune",
    "metric": "metric after fine-tune",
    **{f"honest_{k}": title for k, title in HONEST_TITLES.items()},
    "honest_label": "note",
    "created": "created",
}


def titled(columns: Iterable[str]) -> dict[str, str]:
    """{column: title} for a table of runs showing `columns` in that order."""
    return {c: COLUMN_TITLES[c] for c in columns}


RUN_COLUMNS = (
    "run_id status model method target_sparsity scope finetune_epochs schedule created progress message "
    "error curve hover sweep_id"
).split()


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run (newest first as given); result columns are NaN until a run succeeded."""
    rows = []
    for r in records:
        config = r.config
        row: dict[str, Any] = {
            "run_id": r.id,
            "status": r.status,
            "model": r.model,
            "method": r.method,
            "target_sparsity": config.get("sparsity"),
            "scope": config.get("scope"),
            "finetune_epochs": config.get("finetune_epochs", 0),
            "schedule": config.get("schedule", "oneshot"),
            "created": dt.datetime.fromtimestamp(r.created),
            "progress": r.progress,
            "message": r.message,
            "error": (r.error or "").splitlines()[0] if r.error else "",
            "curve": _curve(r.method, config),
            "hover": f"run {r.id}<br>{config_text(config)}",
            "sweep_id": r.sweep_id,
        }
        result = run_result(r)
        if result is not None:
            row.update(_result_row(result))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    return frame


def layers_frame(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`Store.layers` rows as a frame, with a `run` column (a label per run id, default the id)."""
    frame = pd.DataFrame(
        list(rows), columns=["run_id", "idx", "name", "type", "params", "nonzero", "sparsity"]
    )
    frame["run"] = frame["run_id"].map(lambda i: (labels or {}).get(i, i))
    return frame


def result_layers_frame(result: RunResult) -> pd.DataFrame:
    """One run's per-layer table (model order) with dense and remaining parameter counts."""
    frame = pd.DataFrame(result.layers)
    if "dense_params" not in frame:  # removed layers keep no dense count in old results
        frame["dense_params"] = frame["params"]
    return frame


def run_label(record: RunRecord) -> str:
    """Short column label for a run: method, target sparsity and the id's random suffix."""
    return f"{record.method} {record.config.get('sparsity', 0):.2f} · {record.id[-6:]}"


def config_diff(records: Sequence[RunRecord], only_differing: bool = False) -> pd.DataFrame:
    """Config fields as rows, runs as columns; optionally only the fields whose values differ."""
    table = pd.DataFrame(
        {r.id: {k: _cell(v) for k, v in r.config.items()} for r in records}, dtype=object
    ).fillna("-")
    if only_differing and len(records) > 1:
        table = table[table.nunique(axis=1) > 1]
    return table


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return "-" if value is None else str(value)


def parse_overrides(cells: Mapping[str, Any]) -> dict[str, float]:
    """Per-layer sparsity overrides typed into a table (layer -> text); blank cells mean 'no override'.
    Raises UserError naming the layer for anything that is not a number in [0, 1)."""
    overrides = {}
    for name, cell in cells.items():
        text = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(
                f"override for layer {name} is '{text}', not a number: type a sparsity in [0, 1) "
                "or clear the cell"
            ) from None
        overrides[name] = validate_sparsity(value, f"override for layer {name}")
    return overrides


OVERRIDE_COLUMNS = ["layer", "type", "weights", "override"]


def override_rows(layers: Mapping[str, Mapping[str, Any]], values: Mapping[str, float]) -> pd.DataFrame:
    """The per-layer overrides table: `preview.layers` rows (model order), each layer's override from
    `values` as text, blank where none (the inverse of `parse_overrides`)."""
    rows = [
        {"layer": n, "type": layer["type"], "weights": layer["params"], "override": _text(values.get(n))}
        for n, layer in layers.items()
    ]
    return pd.DataFrame(rows, columns=OVERRIDE_COLUMNS)


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def parse_levels(text: str) -> list[float]:
    """Sparsity levels typed as '0.5, 0.8, 0.9' (sorted, duplicates dropped)."""
    levels = set()
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise UserError(
                f"sparsity level '{part.strip()}' is not a number; use e.g. 0.5, 0.8, 0.9"
            ) from None
        levels.add(validate_sparsity(value, "each sparsity level"))
    if not levels:
        raise UserError("give at least one sparsity level, e.g. 0.5, 0.8, 0.9")
    return sorted(levels)
