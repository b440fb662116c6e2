"""The live curve: the task's metric against sparsity at LEVELS, one one-shot preview per level, computed
in a background thread so that the dashboard's slider never waits for it.

Every point *is* `preview.preview` at that level (same cache, same cached dense model and importance
scores), so a point on the curve and the one-point preview at the same level cannot disagree; a level
the slider already visited costs nothing. Levels are computed coarse first (every fourth, then the
halves, then the rest), so a partly computed curve already has its shape.

A curve nobody has asked for in ABANDON_SECONDS stops after its current level: a page that moved on to
another model or method leaves no thread pruning for it.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from pruning.errors import UserError
from pruning.runs import experiment, preview
from pruning.runs.config import RunConfig
from pruning.runs.result import RunResult

LEVELS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.98,)  # 20 levels
ABANDON_SECONDS = 15.0
MAX_CURVES = 16
ACCURACY_CLIFF = 0.01  # one point of accuracy (or of any higher-is-better metric in [0, 1])
RELATIVE_CLIFF = 0.10  # 10% of perplexity (or of any lower-is-better metric)


@dataclass(frozen=True)
class Point:
    level: float  # the sparsity asked for
    sparsity: float  # the sparsity achieved
    metric: float
    accuracy: float | None


@dataclass
class Curve:
    """A curve being computed: its points so far (in level order), and how it ended."""

    key: Hashable
    levels: tuple[float, ...]
    metric: str = "accuracy"
    higher_is_better: bool = True
    dense: float | None = None
    points: dict[float, Point] = field(default_factory=dict)
    skipped: dict[float, str] = field(default_factory=dict)  # levels the method refused, and why
    error: str | None = None
    stopped: bool = False
    seen: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.error is not None or len(self.points) + len(self.skipped) == len(self.levels)

    def ordered(self) -> list[Point]:
        return [self.points[level] for level in sorted(self.points)]


_lock = threading.Lock()
_curves: OrderedDict[Hashable, Curve] = OrderedDict()
_threads: set[threading.Thread] = set()
_exiting = threading.Event()


@atexit.register
def _finish() -> None:
    """Let running curves stop after their level: a thread killed inside torch at interpreter exit
    aborts the process ('terminate called without an active exception')."""
    _exiting.set()
    for thread in list(_threads):
        thread.join(timeout=10)


def key(config: RunConfig) -> tuple:
    """What a curve depends on: the group (model, method, options...) and the scope. Not the per-layer
    overrides: they fix some layers' sparsities, which puts the low levels out of reach; the page
    shows the slider's point (overrides included) against the curve without them."""
    return (experiment.group_key(config), config.scope)


def _base(config: RunConfig) -> RunConfig:
    return config.replace(layer_sparsity=())


def point(config: RunConfig, level: float) -> Point:
    """The curve's point at `level`: the one-shot preview of `config` at that sparsity."""
    result = preview.preview(_base(config).replace(sparsity=level))
    return _point(level, result)


def _point(level: float, result: RunResult) -> Point:
    return Point(level, result.sparsity, result.pruned.metric, result.pruned.accuracy)


def order(levels: Sequence[float]) -> list[float]:
    """Coarse first: every fourth level, then every second, then the rest."""
    levels = sorted(levels)
    first = levels[::4]
    second = [x for x in levels[::2] if x not in first]
    return first + second + [x for x in levels if x not in first and x not in second]


def compute(config: RunConfig, levels: Sequence[float] = LEVELS) -> Curve:
    """The whole curve, in this thread (the background thread runs the same loop)."""
    curve = Curve(key(config), tuple(sorted(levels)))
    _fill(curve, config, abandon=False)
    return curve


def start(config: RunConfig, levels: Sequence[float] = LEVELS) -> Curve:
    """The curve of `config` (its sparsity is ignored), started in a background thread unless it is
    already computed or being computed; each call counts as asking for it (see ABANDON_SECONDS)."""
    k = key(config)
    with _lock:
        curve = _curves.get(k)
        if curve is None:
            curve = _curves[k] = Curve(k, tuple(sorted(levels)))
        if curve.stopped and not curve.done:  # abandoned half way: resume where it stopped
            curve.stopped = False
        if not curve.done and not any(t.name == _name(k) for t in _threads):
            thread = threading.Thread(target=_fill, args=(curve, config), daemon=True, name=_name(k))
            _threads.add(thread)
            thread.start()
        _curves.move_to_end(k)
        while len(_curves) > MAX_CURVES:
            _curves.popitem(last=False)
        curve.seen = time.monotonic()
    return curve


def _name(k: Hashable) -> str:
    return f"live-curve-{hash(k)}"


def _fill(curve: Curve, config: RunConfig, abandon: bool = True) -> None:
    config = _base(config)
    try:
        for level in order(curve.levels):
            if _exiting.is_set() or (abandon and time.monotonic() - curve.seen > ABANDON_SECONDS):
                return
            if level in curve.points or level in curve.skipped:
                continue
            try:
                result = preview.preview(config.replace(sparsity=level))
            except UserError as exc:  # a level this method cannot reach on this model: the others can
                curve.skipped[level] = str(exc)
                continue
            curve.metric, curve.higher_is_better = result.metric, result.higher_is_better
            curve.dense = result.dense.metric
            curve.points[level] = _point(level, result)
        if not curve.points:
            curve.error = next(iter(curve.skipped.values()), "no level could be previewed")
    except Exception as exc:  # a background thread has no one to raise to: the page shows it
        curve.error = f"{type(exc).__name__}: {exc}"
    finally:
        with _lock:
            curve.stopped = True
            _threads.discard(threading.current_thread())


def cliff(curve: Curve) -> Point | None:
    """The first level (in sparsity order) that loses more than one point of accuracy (a
    higher-is-better metric), or more than 10% (a lower-is-better one, such as perplexity), against
    the dense model; None when no computed level does."""
    if curve.dense is None:
        return None
    for p in curve.ordered():
        if curve.higher_is_better and curve.dense - p.metric > ACCURACY_CLIFF:
            return p
        if not curve.higher_is_better and p.metric > curve.dense * (1 + RELATIVE_CLIFF):
            return p
    return None


def clear() -> None:
    """Forget every curve (threads still running finish their level and stop being listed)."""
    with _lock:
        _curves.clear()
