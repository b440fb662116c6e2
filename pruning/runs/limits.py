"""Quotas on what one launch may queue, so that one click cannot fill the machine for days.

The dashboard checks a launch against them before anything is recorded (a refused launch queues
nothing). The operator sets them with environment variables (`PRUNING_LAB_MAX_RUNS`,
`PRUNING_LAB_MAX_LEVELS`, `PRUNING_LAB_MAX_EPOCHS`, `PRUNING_LAB_MAX_STEPS`); the defaults cover a
methods x levels sweep of the sample models with room to spare.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pruning.errors import UserError
from pruning.runs.config import RunConfig


@dataclass(frozen=True)
class Limits:
    runs: int = 60  # runs one launch may queue (a sweep: methods x levels)
    levels: int = 20  # sparsity levels in one sweep
    epochs: int = 100  # fine-tune epochs of one run
    steps: int = 20  # pruning steps of an iterative or lottery schedule

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults, each replaced by `PRUNING_LAB_MAX_<NAME>` when that is set to a positive integer."""
        env = os.environ if env is None else env
        values = {}
        for name, default in vars(cls()).items():
            text = env.get(f"PRUNING_LAB_MAX_{name.upper()}", "").strip()
            if not text:
                values[name] = default
                continue
            try:
                values[name] = int(text)
            except ValueError:
                values[name] = 0
            if values[name] < 1:
                raise UserError(f"PRUNING_LAB_MAX_{name.upper()} must be a positive integer, got '{text}'")
        return cls(**values)


def check_levels(levels: Sequence[float], limits: Limits) -> None:
    """Refuse a sweep over more sparsity levels than the quota."""
    if len(levels) > limits.levels:
        raise UserError(
            f"{len(levels)} sparsity levels is over the limit of {limits.levels} per sweep; "
            "type fewer levels (the operator can raise PRUNING_LAB_MAX_LEVELS)"
        )


def check_launch(configs: Sequence[RunConfig], limits: Limits) -> None:
    """Refuse a launch that queues more runs, epochs or steps than the quotas allow: one sentence
    that says which limit and what to change. Nothing is queued when this raises."""
    if len(configs) > limits.runs:
        raise UserError(
            f"this launch would queue {len(configs)} runs, over the limit of {limits.runs} per launch; "
            "choose fewer methods or sparsity levels (the operator can raise PRUNING_LAB_MAX_RUNS)"
        )
    epochs = max((c.finetune_epochs for c in configs), default=0)
    if epochs > limits.epochs:
        raise UserError(
            f"{epochs} fine-tune epochs is over the limit of {limits.epochs} per run; "
            "choose fewer epochs (the operator can raise PRUNING_LAB_MAX_EPOCHS)"
        )
    steps = max((c.steps for c in configs), default=1)
    if steps > limits.steps:
        raise UserError(
            f"{steps} pruning steps is over the limit of {limits.steps} per run; "
            "choose fewer steps (the operator can raise PRUNING_LAB_MAX_STEPS)"
        )
