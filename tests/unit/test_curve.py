"""The live curve (`runs.curve`): its points are one-shot previews, computed in the background, coarse
first; the cliff; and the accuracy's noise (`present.noise`) against reference values."""

from __future__ import annotations

import time

import pytest

from pruning.present import noise
from pruning.runs import curve, experiment, preview
from pruning.runs.config import RunConfig

BASE = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)
LEVELS = (0.3, 0.6, 0.9, 0.98)


def wait(c: curve.Curve, timeout: float = 600.0) -> curve.Curve:
    deadline = time.monotonic() + timeout  # stops a hung thread only
    while not c.done and time.monotonic() < deadline:
        curve.start(BASE, LEVELS)  # asking keeps it alive
        time.sleep(0.05)
    assert c.done and c.error is None, c.error
    return c


@pytest.mark.slow  # loads the digits data and prepares the model twice (preview and a plain run)
def test_points_equal_separate_one_shot_previews() -> None:
    preview.clear()
    curve.clear()
    c = wait(curve.start(BASE.replace(sparsity=0.77), LEVELS))  # the slider's value plays no part
    assert [p.level for p in c.ordered()] == list(LEVELS)
    preview.clear()  # nothing cached: each preview below prunes and evaluates again
    for p in c.ordered():
        alone = preview.preview(BASE.replace(sparsity=p.level))
        assert (p.sparsity, p.metric, p.accuracy) == (
            alone.sparsity,
            alone.pruned.metric,
            alone.pruned.accuracy,
        )
    assert c.dense == alone.dense.metric
    assert [p.metric for p in c.ordered()][-1] < c.dense  # 98% of the weights gone: it shows
    # and a one-shot run through the experiment (no cache at all) on the samples the preview evaluates
    cap = preview.prepared(BASE)[0].config.eval_samples
    run = experiment.run(BASE.replace(sparsity=0.9, eval_samples=cap))
    assert run.pruned.metric == c.points[0.9].metric


def test_a_curve_is_computed_once_and_shared() -> None:
    curve.clear()
    first = curve.start(BASE.replace(sparsity=0.2), LEVELS)
    assert curve.start(BASE.replace(sparsity=0.9), LEVELS) is first  # same model, method, scope
    with_overrides = BASE.replace(layer_sparsity=(("fc1", 0.9),))  # out of reach below ~0.8 with them
    assert curve.start(with_overrides, LEVELS) is first
    other = curve.start(BASE.replace(scope="layer"), LEVELS)
    assert other is not first
    wait(first), wait(other)


def test_levels_come_coarse_first() -> None:
    assert len(curve.LEVELS) == 20
    ordered = curve.order(curve.LEVELS)
    assert sorted(ordered) == sorted(curve.LEVELS)
    assert ordered[:5] == [0.05, 0.25, 0.45, 0.65, 0.85]  # the whole range is covered first


def made(metric: str, higher: bool, dense: float, values: dict[float, float]) -> curve.Curve:
    c = curve.Curve("k", tuple(values), metric, higher, dense)
    c.points = {level: curve.Point(level, level, value, None) for level, value in values.items()}
    return c


def test_the_cliff_is_the_first_level_past_one_point_or_ten_percent() -> None:
    accuracy = made("accuracy", True, 0.95, {0.5: 0.951, 0.7: 0.945, 0.8: 0.939, 0.9: 0.5})
    assert curve.cliff(accuracy).level == 0.8  # 0.945 is 0.5 points down; 0.939 is 1.1
    perplexity = made("perplexity", False, 10.0, {0.5: 10.5, 0.7: 10.9, 0.8: 11.2, 0.9: 30.0})
    assert curve.cliff(perplexity).level == 0.8
    assert curve.cliff(made("accuracy", True, 0.95, {0.5: 0.95, 0.9: 0.945})) is None


def test_wilson_interval_matches_reference_values() -> None:
    assert noise.wilson(0.5, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)  # the textbook case
    # the definition: the bounds are the proportions p0 whose score test sits exactly at z
    observed, n = 441 / 450, 450
    for p0 in noise.wilson(observed, n):
        assert (observed - p0) ** 2 == pytest.approx(noise.Z95**2 * p0 * (1 - p0) / n)
    assert noise.within_noise(0.98, 0.975, 450) and not noise.within_noise(0.98, 0.95, 450)
    assert noise.points(0.9511 - 0.9756) == "-2.5 pts"
