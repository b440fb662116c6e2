"""Launch quotas (`pruning.runs.limits`): what one click may queue, and how the operator changes it."""

from __future__ import annotations

import pytest

from pruning.errors import UserError
from pruning.runs.config import RunConfig
from pruning.runs.limits import Limits, check_launch, check_levels

BASE = RunConfig("mlp-digits", "magnitude", 0.5)


def test_the_environment_sets_the_limits() -> None:
    env = {"PRUNING_LAB_MAX_RUNS": "7", "PRUNING_LAB_MAX_EPOCHS": " 3 "}
    assert Limits.from_env(env) == Limits(runs=7, levels=20, epochs=3, steps=20)
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_limit_that_is_not_a_positive_integer_is_refused(value) -> None:
    with pytest.raises(UserError, match=f"PRUNING_LAB_MAX_STEPS must be a positive integer, got '{value}'"):
        Limits.from_env({"PRUNING_LAB_MAX_STEPS": value})


def test_a_launch_at_the_limits_passes_and_one_over_is_refused() -> None:
    limits = Limits(runs=2, levels=3, epochs=5, steps=4)
    check_launch([BASE.replace(finetune_epochs=5, steps=4)] * 2, limits)
    check_levels([0.1, 0.2, 0.3], limits)
    with pytest.raises(UserError, match="would queue 3 runs, over the limit of 2 per launch"):
        check_launch([BASE] * 3, limits)
    with pytest.raises(UserError, match="6 fine-tune epochs is over the limit of 5 per run"):
        check_launch([BASE, BASE.replace(finetune_epochs=6)], limits)
    with pytest.raises(UserError, match="5 pruning steps is over the limit of 4 per run"):
        check_launch([BASE.replace(steps=5)], limits)
    with pytest.raises(UserError, match="4 sparsity levels is over the limit of 3 per sweep"):
        check_levels([0.1, 0.2, 0.3, 0.4], limits)
