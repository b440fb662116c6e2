"""Iterative (cubic AGP) and lottery-ticket schedules: targets, monotone masks, rewinding, progress."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pruning.core import masks
from pruning.errors import UserError
from pruning.runs import experiment, schedule
from pruning.runs.config import RunConfig


def test_agp_schedule_by_hand():
    assert schedule.agp_sparsity(0.8, 0, 4) == 0.0
    assert schedule.agp_sparsity(0.8, 1, 4) == pytest.approx(0.8 * (1 - 0.75**3))  # 0.4625
    assert schedule.agp_sparsity(0.8, 2, 4) == pytest.approx(0.7)
    assert schedule.agp_sparsity(0.8, 4, 4) == pytest.approx(0.8)
    assert schedule.agp_sparsity(0.9, 2, 4, initial=0.5) == pytest.approx(0.9 - 0.4 * 0.125)
    assert schedule.geometric_sparsity(0.75, 1, 2) == pytest.approx(0.5)  # half, then half of the rest


@pytest.fixture
def spy(monkeypatch):
    """Record every mask a schedule applies, by wrapping the real `prune_step`."""
    seen = []

    def recording(*args, **kwargs):
        keep = real(*args, **kwargs)
        seen.append({name: mask.clone() for name, mask in keep.items()})
        return keep

    real = schedule.prune_step
    monkeypatch.setattr(schedule, "prune_step", recording)
    return seen


def assert_monotone(steps: list[dict]) -> None:
    for earlier, later in zip(steps, steps[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any(), f"{name}: a pruned weight came back"


@pytest.mark.parametrize("method, scope", [("magnitude", "global"), ("taylor", "layer")])
def test_iterative_follows_agp_and_reaches_the_target(spy, method, scope):
    config = RunConfig(
        "mlp-digits",
        method,
        0.9,
        scope=scope,
        schedule="iterative",
        steps=3,
        finetune_epochs=3,
        latency=False,
    )
    progress = []
    result = experiment.run(config, lambda f, m: progress.append(f))
    assert result.sparsity == pytest.approx(0.9, abs=0.002)
    trace = result.details["schedule_trace"]
    assert trace["name"] == "iterative" and trace["epochs_per_step"] == 1
    expected = [schedule.agp_sparsity(0.9, t, 3) for t in (1, 2, 3)]  # 0.633, 0.867, 0.9
    assert [row["sparsity"] for row in trace["steps"]] == pytest.approx(expected, abs=0.002)
    assert len(spy) == 3  # importance recomputed on the current model at every step
    assert_monotone(spy)
    assert result.pruned.accuracy_before_finetune == trace["steps"][-1]["accuracy_pruned"]
    assert result.pruned.accuracy == trace["steps"][-1]["accuracy"]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_iterative_beats_one_shot_at_high_sparsity():
    common = dict(finetune_epochs=3, latency=False)
    oneshot = experiment.run(RunConfig("mlp-digits", "magnitude", 0.95, **common))
    gradual = experiment.run(
        RunConfig("mlp-digits", "magnitude", 0.95, schedule="iterative", steps=3, **common)
    )
    assert gradual.sparsity == pytest.approx(oneshot.sparsity, abs=1e-6)
    assert gradual.pruned.accuracy > oneshot.pruned.accuracy


def test_iterative_honours_layer_overrides(spy):
    config = RunConfig(
        "mlp-digits",
        "magnitude",
        0.6,
        layer_sparsity=(("fc3", 0.2),),
        schedule="iterative",
        steps=2,
        finetune_epochs=2,
        latency=False,
    )
    result = experiment.run(config)
    layers = {row["name"]: row["sparsity"] for row in result.layers}
    assert layers["fc3"] == pytest.approx(0.2, abs=0.001)
    assert result.sparsity == pytest.approx(0.6, abs=0.002)
    assert_monotone(spy)


def test_lottery_rewinds_survivors_to_the_early_checkpoint(spy, monkeypatch):
    starts = []  # the weights each training phase starts from

    def recording_fit(model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    real_fit = schedule.fit
    monkeypatch.setattr(schedule, "fit", recording_fit)
    config = RunConfig(
        "mlp-digits", "magnitude", 0.75, schedule="lottery", steps=2, finetune_epochs=2, latency=False
    )
    result = experiment.run(config)
    trace = result.details["schedule_trace"]
    assert (trace["epochs"], trace["rewind_epoch"]) == (2, 1)
    assert result.sparsity == pytest.approx(0.75, abs=0.002)
    assert [row["sparsity"] for row in trace["steps"]] == pytest.approx([0.5, 0.75], abs=0.002)
    assert_monotone(spy)
    # phases: to the rewind point, dense to the end, then one retraining per round
    assert len(starts) == 4
    checkpoint = starts[1]  # the state at the rewind point
    for round_start, keep in zip(starts[2:], spy):
        for name, mask in keep.items():
            weight = f"{name}.weight"
            assert torch.equal(round_start[weight], checkpoint[weight] * mask), name
            assert torch.equal(round_start[f"{name}.bias"], checkpoint[f"{name}.bias"]), name
    assert 0.0 < trace["dense_accuracy"] <= 1.0


def test_lottery_trains_from_scratch_with_the_seed():
    config = RunConfig("mlp-digits", "random", 0.5, schedule="lottery", finetune_epochs=2, latency=False)
    first, again = experiment.run(config), experiment.run(config)
    assert first.pruned.accuracy == again.pruned.accuracy
    assert (
        first.details["schedule_trace"]["dense_accuracy"] == again.details["schedule_trace"]["dense_accuracy"]
    )


def test_lottery_needs_two_epochs():
    config = RunConfig("mlp-digits", "magnitude", 0.5, schedule="lottery", finetune_epochs=1, latency=False)
    with pytest.raises(UserError, match="at least 2 training epochs"):
        experiment.run(config)


def test_prune_step_never_revives_a_weight_even_when_scores_change():
    prep = experiment.prepare(RunConfig("mlp-digits", "random", 0.3, latency=False))
    work = copy.deepcopy(prep.model)
    first = schedule.prune_step(prep, work, prep.config, lambda s: s, None)
    # a different seed gives different random scores: without care, some pruned weights would return
    other = dataclasses.replace(prep, config=prep.config.replace(seed=1, sparsity=0.6))
    second = schedule.prune_step(other, work, other.config, lambda s: s, first)
    assert_monotone([first, second])
    total = sum(m.numel() for m in second.values())
    assert sum(int((~m).sum()) for m in second.values()) == round(0.6 * total)
    for name, layer in masks.prunable_layers(work).items():
        assert torch.equal(layer.weight != 0, second[name]), name
