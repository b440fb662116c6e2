"""What every benchmark module shares: one JSON line per figure, and interleaved timing.

A benchmark module in this package defines `main() -> None`, which measures and calls `emit` once
per figure. Figures compared with each other are timed in the same process, interleaved (`timed`).
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable

GOALS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


def emit(name: str, value: float, unit: str, goal: str | None = None) -> None:
    """Print {"name", "value", "unit", "goal", "ok"}; goal "<= 1.3", ">= 3", "== 1" or None (reference)."""
    ok = None
    if goal is not None:
        op, bound = goal.split()
        ok = GOALS[op](value, float(bound))
    print(json.dumps({"name": name, "value": value, "unit": unit, "goal": goal, "ok": ok}), flush=True)


def timed(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each call, round-robin `repeats` times so machine drift hits all alike."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return seconds
