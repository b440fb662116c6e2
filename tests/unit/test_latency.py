"""Latency: interleaved rounds until the speedup's 90% interval is narrow, the interval of a median
checked against the binomial by hand, and what a run records and shows."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pruning.core import latency, measure


def test_the_interval_of_a_median_is_its_binomial_order_statistics():
    # 5 values: the extremes cover the median with probability 1 - 2/32 = 0.9375 >= 0.9
    assert latency.median_interval([5, 1, 4, 2, 3]) == (1, 5)
    # 20 values: P(Bin(20, 1/2) <= 5) = 0.0207 <= 0.05 < P(<= 6) = 0.0577, so the 6th from each end
    assert (
        sum(math.comb(20, k) for k in range(6)) / 2**20
        <= 0.05
        < sum(math.comb(20, k) for k in range(7)) / 2**20
    )
    assert latency.median_interval(list(range(20))) == (5, 14)
    # too few for a 90% interval: the range
    assert latency.median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_spread_is_the_wider_half_relative_to_the_value():
    s = latency.Speedup(2.0, 1.9, 2.1)
    assert s.spread == pytest.approx(0.05) and not s.excludes(2.05) and s.excludes(1.0)
    assert latency.Speedup(1.0, 0.99, 1.08).spread == pytest.approx(0.08)


def _mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def test_a_copy_of_the_model_times_as_fast_within_its_interval():
    dense = _mlp(128)
    timing = latency.compare(dense, copy.deepcopy(dense), torch.randn(64, 64), cap=2.0)
    speedup = timing.speedups["pruned"]
    assert timing.rounds >= latency.MIN_ROUNDS and speedup.low <= speedup.value <= speedup.high
    assert timing.ms["dense"] > 0 and timing.ms["pruned"] > 0
    # stopped because the interval was narrow enough, or because the cap was reached
    assert speedup.spread <= latency.TARGET_SPREAD or timing.seconds >= 2.0


def test_rounds_stop_at_the_cap_when_the_interval_cannot_narrow():
    dense = _mlp(64)
    timing = latency.interleaved({"dense": dense, "pruned": dense}, torch.randn(8, 64), target=0.0, cap=0.3)
    assert timing.seconds >= 0.3 and timing.rounds >= latency.MIN_ROUNDS


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRUNING_LAB_LATENCY_SECONDS", "2.5")
    assert latency.cap_seconds() == 2.5
    monkeypatch.delenv("PRUNING_LAB_LATENCY_SECONDS")
    assert latency.cap_seconds() == latency.CAP_SECONDS


def test_measure_keeps_its_figures_per_model(monkeypatch):
    monkeypatch.setenv("PRUNING_LAB_LATENCY_SECONDS", "1")
    timed = measure.latency_ms({"a": _mlp(32), "b": _mlp(16), "c": _mlp(8)}, torch.ones(8, 64), rounds=2)
    assert set(timed) == {"a", "b", "c"} and all(v > 0 for v in timed.values())
