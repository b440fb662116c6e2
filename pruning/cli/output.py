"""What the command line prints: a progress bar on standard error, results on standard output.

While a command runs, anything else that prints (a user's model or data file, a library) goes to
standard error (`own_stdout`), so standard output carries only what `say` writes: `--json` output
stays JSON whatever the user's code does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from pruning.present import views
from pruning.runs.result import RunResult

_stdout = sys.stdout  # where `say` writes: the real standard output while `own_stdout` is active


@contextlib.contextmanager
def own_stdout() -> Iterator[None]:
    """Send every other print to standard error while the block runs; `say` keeps standard output."""
    global _stdout
    real, _stdout = _stdout, sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _stdout = real


def say(*parts: Any, end: str = "\n") -> None:
    """A line of the command's own output, on standard output. When the reader has gone (`runs | head`),
    the command stops quietly, as `head` expects, instead of with a BrokenPipeError traceback."""
    try:
        print(*parts, end=end, file=_stdout, flush=True)
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no flush error at exit either
            os.dup2(os.open(os.devnull, os.O_WRONLY), _stdout.fileno())
        raise SystemExit(0) from None


class ProgressBar:
    """A one-line progress bar on standard error (standard output stays clean for --json)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.last = total, enabled, 0.0
        self.done: dict[str, float] = {}

    def __call__(self, job_id: str, fraction: float, message: str) -> None:
        self.done[job_id] = fraction
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and fraction < 1.0):
            return
        self.last = now
        overall = sum(self.done.values()) / max(self.total, 1)
        bar = "#" * int(30 * overall)
        sys.stderr.write(f"\r[{bar:<30}] {overall:6.1%} {job_id} {message[:40]:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def print_json(value: Any) -> None:
    say(json.dumps(value, indent=2, default=_json_default))


def print_result(result: RunResult) -> None:
    """A run's result in a few lines: the four honest numbers and the accuracy path."""
    d, p, lat = result.dense, result.pruned, result.latency_ms
    kind = "removed" if p.removed else "masked (zeros stored; not faster)"
    speed = views.speedup_text(result)
    say(
        f"{result.run_id}  {result.model}  {result.method}  sparsity {result.sparsity:.3f} "
        f"(target {result.target_sparsity:.3f}, {kind})"
    )
    say(
        f"  {result.metric:<9} {d.metric:.4f} dense -> {p.metric_before_finetune:.4f} pruned "
        f"-> {p.metric:.4f} fine-tuned"
    )
    say(
        f"  params    {d.params} dense, {p.params} present, {p.nonzero_params} non-zero "
        f"(compression {result.compression_ratio:.2f}x)"
    )
    say(
        f"  bytes     {p.size_bytes.dense} file, {p.size_bytes.sparse} sparse encoding, "
        f"{p.size_bytes.gzip} gzip (dense file {d.size_bytes})"
    )
    say(f"  speed     {speed} at batch {lat.batch_size}; FLOPs bound {result.theoretical_speedup:.2f}x")


def print_failure(outcome: dict[str, Any]) -> None:
    say(f"{outcome['run_id']}  {outcome['status']}: {outcome.get('error', '')}")
