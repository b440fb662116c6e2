"""Structural removal: is a model with half its weights physically removed really faster on CPU,
and does removing them cost much more than one direct Torch-Pruning step?

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

On torchvision's ResNet-18 (tests/unit/architectures.py, seeded random weights, L1 channel norm):
- structured/resnet18/engine_vs_direct/<scope>: seconds of the engine's `structured.prune` to 0.5
  (layout, ratio search, pruning, check; on a copy it makes) over one direct Torch-Pruning call,
  `BasePruner(...).step()` on a copy made beforehand, at the ratio the engine chose; ImageNet-style
  model, one 2x3x224x224 example (what the method passes); interleaved, median of 5; goal <= 2.
  Before one pruner served the whole search (a fresh copy and graph per trial): 11.5 (layer), 9.3.
- structured/resnet18_cifar/of_bound_b64: measured speedup of the CIFAR ResNet-18 with half its
  weights removed (global scope) at batch 64 of 32x32 images, over its FLOPs bound; goal >= 0.7.
"""

from __future__ import annotations

import copy
import statistics
import sys

import torch
import torch_pruning as tp

from benchmarks.common import emit, timed
from pruning.core import measure, structured
from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.result import OVERHEAD_SHARE
from tests.unit import architectures

MODELS = ("cnn-digits", "resnet-mnist1d")
SPARSITY = 0.5
ROUNDS = 11  # interleaved rounds (median): a shared machine's load spikes hit single rounds
PRUNE_ROUNDS = 5  # engine and direct pruning calls, interleaved
LATENCY_ROUNDS = 5  # a batch of 64 through the CIFAR ResNet-18 takes about a second on one thread


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


def engine_vs_direct(scope: str) -> None:
    torch.manual_seed(0)
    model, example = architectures.resnet18().eval(), torch.randn(2, 3, 224, 224)
    importance = tp.importance.MagnitudeImportance(p=1)

    def engine() -> structured.Pruned:
        return structured.prune(model, example, importance, SPARSITY, scope=scope)

    ratio = engine().channel_ratio  # also a warm-up
    copies = [copy.deepcopy(model) for _ in range(PRUNE_ROUNDS)]  # made before the clock starts

    def direct() -> None:
        dense = copies.pop()
        tp.pruner.BasePruner(
            dense,
            example,
            importance,
            global_pruning=scope == "global",
            pruning_ratio=ratio,
            ignored_layers=[dense.fc],
            in_channel_groups={},  # fresh dicts: the defaults are shared between calls
            out_channel_groups={},
        ).step()

    seconds = {
        name: statistics.median(v)
        for name, v in timed({"engine": engine, "direct": direct}, PRUNE_ROUNDS).items()
    }
    note(
        f"resnet18 {scope}: engine {seconds['engine']:.3f} s, direct {seconds['direct']:.3f} s "
        f"at channel ratio {ratio:.4f}"
    )
    emit(
        f"structured/resnet18/engine_vs_direct/{scope}",
        round(seconds["engine"] / seconds["direct"], 3),
        "ratio",
        "<= 2",
    )


def cifar_of_bound() -> None:
    torch.manual_seed(0)
    model, images = architectures.resnet18_cifar().eval(), torch.randn(64, 3, 32, 32)
    pruned = structured.prune(model, images[:2], tp.importance.MagnitudeImportance(p=1), SPARSITY).model
    bound = measure.layer_flops(model, images[:1])[0] / measure.layer_flops(pruned, images[:1])[0]
    timed_ms = measure.latency_ms({"dense": model, "pruned": pruned}, images, rounds=LATENCY_ROUNDS)
    speedup = timed_ms["dense"] / timed_ms["pruned"]
    note(
        f"resnet18_cifar batch 64: dense {timed_ms['dense']:.1f} ms, pruned {timed_ms['pruned']:.1f} ms, "
        f"FLOPs bound {bound:.2f}x"
    )
    emit("structured/resnet18_cifar/of_bound_b64", round(speedup / bound, 3), "ratio", ">= 0.7")


def main() -> None:
    for model_id in MODELS:
        bench(model_id)
    for scope in ("layer", "global"):
        engine_vs_direct(scope)
    cifar_of_bound()


if __name__ == "__main__":
    main()
