"""Warm the sample models in the background once the server has drawn its first page: each one's
default live preview (magnitude, global, 50%) is prepared in order, so that the first switch to another
sample model does not wait for its load. Started after the first page ran, not before: on two cores a
thread importing torch beside the first page's own imports made that page slower, not faster."""

from __future__ import annotations

import threading

_started = threading.Event()


def start() -> None:
    """Start the warm-up thread (once per process)."""
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_run, daemon=True, name="dashboard-warm-up").start()


def _run() -> None:
    from pruning.core import methods, models
    from pruning.runs import preview
    from pruning.runs.config import RunConfig

    options = tuple(sorted(methods.get("magnitude").options({}).items()))
    preview.warm([RunConfig(m, "magnitude", 0.5, options=options) for m in models.SAMPLE_MODELS])
