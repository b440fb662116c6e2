"""Helpers for the AppTest tests: wait for runs, read what a page shows, decode its Plotly figures."""

from __future__ import annotations

import base64
import json
import re
import time

import numpy as np
from streamlit.testing.v1 import AppTest

from pruning.runs.store import RunRecord, Store


def wait_done(store: Store, ids: list[str], timeout: float = 600.0) -> list[RunRecord]:
    """Poll the store (reaping dead workers) until every run is done; the timeout only stops a hung
    worker (sized for a loaded 2-core machine), it never judges speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.reap()
        records = [store.get(i) for i in ids]
        if all(r.done for r in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"runs not done after {timeout:.0f} s: {[(r.id, r.status) for r in records]}")


def shown(markdown: str) -> str:
    """Markdown as the browser shows its text: backslash escapes (pages.shared.text.plain) removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at: AppTest) -> list[str]:
    """The page's error alerts as shown."""
    return [shown(e.value) for e in at.error]


def texts(at: AppTest) -> str:
    """Everything the page shows as text (markdown, captions, alerts, metrics), one string, as shown."""
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "error", "success", "warning")
        for e in at.get(kind)
    ]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    parts += [p.proto.text for p in at.get("progress")]
    return shown("\n".join(str(p) for p in parts))


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
