"""Structural removal: is a model with half its weights physically removed really faster on CPU?

For `cnn-digits` and `resnet-mnist1d` at sparsity 0.5 (`l1-channel`, one-shot, the engine's own
`experiment.prune`), the dense and pruned models are timed interleaved in one process
(`measure.latency_ms`) at batch 256 and batch 1, next to the FLOPs bound (dense FLOPs / pruned
FLOPs, from torch's flop counter). Run: `python -m benchmarks structured`.

- structured/<model>/flops_bound: dense FLOPs / pruned FLOPs (reference).
- structured/<model>/speedup_b256, _b1: measured dense / pruned latency.
- structured/<model>/of_bound_b256: speedup_b256 / flops_bound; goal >= 0.7.
- structured/<model>/speedup_b1: goal >= 1.1.
- structured/<model>/overhead_bound_b256, _b1: 1 when the speedup is below half the bound (the
  dashboard's overhead-bound label), else 0 (reference).
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import emit
from pruning.core import measure
from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.result import OVERHEAD_SHARE

MODELS = ("cnn-digits", "resnet-mnist1d")
SPARSITY = 0.5
ROUNDS = 11  # interleaved rounds (median): a shared machine's load spikes hit single rounds


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench(model_id: str) -> None:
    config = RunConfig(model=model_id, method="l1-channel", sparsity=SPARSITY, latency=False)
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, None, config).model
    dense_flops, _ = measure.layer_flops(prep.model, prep.example[:1])
    pruned_flops, _ = measure.layer_flops(pruned, prep.example[:1])
    bound = dense_flops / pruned_flops
    params = (measure.params(prep.model), measure.params(pruned))
    note(
        f"{model_id}: params {params[0]} -> {params[1]}, FLOPs {dense_flops} -> {pruned_flops}, "
        f"{torch.get_num_threads()} threads"
    )
    emit(f"structured/{model_id}/flops_bound", round(bound, 3), "x")
    for batch in (256, 1):
        x = prep.data.test.x[:batch]
        timed = measure.latency_ms({"dense": prep.model, "pruned": pruned}, x, rounds=ROUNDS)
        speedup = timed["dense"] / timed["pruned"]
        note(f"{model_id} batch {batch}: dense {timed['dense']:.4f} ms, pruned {timed['pruned']:.4f} ms")
        emit(
            f"structured/{model_id}/speedup_b{batch}",
            round(speedup, 3),
            "x",
            ">= 1.1" if batch == 1 else None,
        )
        if batch == 256:
            emit(f"structured/{model_id}/of_bound_b256", round(speedup / bound, 3), "ratio", ">= 0.7")
        emit(f"structured/{model_id}/overhead_bound_b{batch}", int(speedup < OVERHEAD_SHARE * bound), "bool")


def main() -> None:
    for model_id in MODELS:
        bench(model_id)


if __name__ == "__main__":
    main()
