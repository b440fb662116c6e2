"""Accuracy after pruning and fine-tuning, for the figures the README quotes (each is also a test).

Run: `python -m benchmarks accuracy`. Each figure is one `python -m pruning run` equivalent, through
the engine (`experiment.run`), on the whole test split; the dense accuracy is measured in the same run.

- accuracy/<model>/<method>/<sparsity>/<epochs>ep: pruned test accuracy after fine-tuning, with the
  dense model's accuracy as a reference figure beside it, and (structured) the parameters left.
"""

from __future__ import annotations

from benchmarks.common import emit
from pruning.runs import experiment
from pruning.runs.config import RunConfig

RUNS = (
    RunConfig("mlp-digits", "magnitude", 0.9, finetune_epochs=10, latency=False),
    RunConfig("cnn-digits", "l1-channel", 0.5, finetune_epochs=3, latency=False),
    RunConfig("mlp-digits", "nm", 0.5, finetune_epochs=3, latency=False),
)


def main() -> None:
    for config in RUNS:
        result = experiment.run(config)
        name = f"accuracy/{config.model}/{config.method}/{config.sparsity:g}/{config.finetune_epochs}ep"
        emit(
            name, round(result.pruned.accuracy, 4), "test accuracy", f">= {result.dense.accuracy - 0.01:.4f}"
        )
        emit(f"{name}/dense", round(result.dense.accuracy, 4), "test accuracy")
        if result.removed:
            emit(f"{name}/params", result.pruned.params, f"parameters (dense {result.dense.params})")
