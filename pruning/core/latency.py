"""Latency of a pruned model against its dense original: a speedup with a 90% interval, not one number.

Dense and pruned are timed in alternating blocks (dense, pruned, pruned, dense, ...: the order flips
each round so neither always runs right after the other), each block long enough (`BLOCK_SECONDS`) to
average out the clock. Every round gives one ratio dense / pruned; the speedup is the median ratio and
its 90% interval is the distribution-free one of a median (order statistics of the rounds' ratios, the
binomial with p = 0.5): no assumption about how a busy machine's noise is shaped. Rounds go on until
the interval is within `TARGET_SPREAD` of the speedup or `cap_seconds` have passed, and the spread
that was reached is reported with the figure.

Why rounds rather than one long measurement of each: a neighbour's burst of work lands in one round
and moves one ratio, where it would move a whole model's figure. On a 2-core machine with other
workers fine-tuning, 5 fixed rounds of medians gave masked runs (the same work as dense) "2.31x".

Timing uses one thread, as `torch.utils.benchmark.Timer` does by default, and its clock, which
synchronises the accelerator.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.benchmark.utils.common import set_torch_threads
from torch.utils.benchmark.utils.timer import timer as clock

TARGET_SPREAD = 0.05  # stop once the 90% interval is within ±5% of the speedup
CAP_SECONDS = 10.0  # ... or after this long (PRUNING_LAB_LATENCY_SECONDS overrides it)
BLOCK_SECONDS = 0.01  # a block of calls at least this long: one reading of the clock per block
MIN_ROUNDS = 5  # the fewest rounds whose extremes make a 90% interval of the median (1 - 2/32)
MAX_ROUNDS = 2000
CONFIDENCE = 0.90


@dataclass(frozen=True)
class Speedup:
    """Median of the rounds' ratios (reference / model) and its 90% interval."""

    value: float
    low: float
    high: float

    @property
    def spread(self) -> float:
        """Half-width of the interval relative to the value: 0.04 is ±4%."""
        return max(self.value - self.low, self.high - self.value) / self.value

    def excludes(self, ratio: float) -> bool:
        return not self.low <= ratio <= self.high


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call of each model (the median of its blocks) and each model's speedup
    against the first one, from `rounds` interleaved rounds that took `seconds`."""

    ms: dict[str, float]
    speedups: dict[str, Speedup]
    rounds: int
    seconds: float


def cap_seconds() -> float:
    return float(os.environ.get("PRUNING_LAB_LATENCY_SECONDS") or CAP_SECONDS)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A `confidence` interval of the median of `values`: the j-th smallest and j-th largest, j the
    largest rank with P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2. Fewer than 5 values have no
    such rank at 90%: their range is returned."""
    s, n = sorted(values), len(values)
    tail, j, below = (1 - confidence) / 2, 0, 0.0
    while j < n // 2:
        below += math.comb(n, j) / 2**n  # P(Binomial(n, 1/2) == j)
        if below > tail:
            break
        j += 1
    j = max(j, 1)
    return s[j - 1], s[n - j]


def _calls_per_block(model: nn.Module, example: torch.Tensor, block: float) -> int:
    """The number of calls that take at least `block` seconds (doubling, as timeit's autorange does)."""
    number = 1
    while True:
        start = clock()
        for _ in range(number):
            model(example)
        if clock() - start >= block or number >= 1 << 16:
            return number
        number *= 2


def _block(model: nn.Module, example: torch.Tensor, number: int) -> float:
    """Milliseconds per call over `number` calls, after one untimed call (the other model ran last
    and left the caches its own) unless a single call is already a whole block."""
    if number > 1:
        model(example)
    start = clock()
    for _ in range(number):
        model(example)
    return (clock() - start) / number * 1e3


def interleaved(
    models: Mapping[str, nn.Module],
    example: torch.Tensor,
    target: float = TARGET_SPREAD,
    cap: float | None = None,
    min_rounds: int = MIN_ROUNDS,
    block: float = BLOCK_SECONDS,
) -> Timing:
    """Time `models` round by round until every speedup against the first is within ±`target` (90%
    interval) or `cap` seconds have passed (default `cap_seconds()`); at least `min_rounds` rounds,
    each timing every model for at least `block` seconds."""
    cap = cap_seconds() if cap is None else cap
    names = list(models)
    samples: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    with torch.inference_mode(), set_torch_threads(1):
        for model in models.values():
            model.eval()
        numbers = {name: _calls_per_block(models[name], example, block) for name in names}
        while True:
            order = names if len(samples[names[0]]) % 2 == 0 else names[::-1]
            for name in order:
                samples[name].append(_block(models[name], example, numbers[name]))
            rounds = len(samples[names[0]])
            speedups = _speedups(samples)
            settled = all(s.spread <= target for s in speedups.values())
            elapsed = time.perf_counter() - start
            if rounds >= min_rounds and (settled or elapsed >= cap) or rounds >= MAX_ROUNDS:
                break
    return Timing({n: median(v) for n, v in samples.items()}, speedups, rounds, elapsed)


def _speedups(samples: Mapping[str, list[float]]) -> dict[str, Speedup]:
    reference, *others = samples
    out = {}
    for name in others:
        ratios = [r / p for r, p in zip(samples[reference], samples[name], strict=True)]
        out[name] = Speedup(median(ratios), *median_interval(ratios))
    return out


def compare(dense: nn.Module, pruned: nn.Module, example: torch.Tensor, cap: float | None = None) -> Timing:
    """Dense and pruned per batch `example`: `ms["dense"]`, `ms["pruned"]`, `speedups["pruned"]`."""
    return interleaved({"dense": dense, "pruned": pruned}, example, cap=cap)
