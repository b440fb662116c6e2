"""Experiments: RunConfig -> result dict (the JSON contract of DESIGN.md §3), and sweeps.

A sweep groups configs that share (model, weights, data, method, options, seed):
the dense model is measured once and importance is computed once per group,
then every sparsity level only selects, applies, (fine-tunes) and measures.
This module is the engine's entry point for runs; it re-exports the preparation
steps of `pruning.runs.prepared` so callers need one import.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator

from torch import nn

from pruning.core import masks as masking
from pruning.core import measure, methods, structured
from pruning.runs import schedule
from pruning.runs.config import RunConfig
from pruning.runs.export import export
from pruning.runs.prepared import (  # noqa: F401  (re-exported: the engine's run API)
    Prepared,
    Progress,
    _quiet,
    apply_level,
    finetune,
    importance,
    prepare,
    resolve_device,
)


def check(prep: Prepared, config: RunConfig) -> None:
    """Checks of one config that need the loaded model; UserError before anything is stored."""
    if config.schedule != "oneshot":
        schedule.validate(prep, config)
    if prep.method.granularity == "structured":
        prep.method.check(prep.model)
        structured.check(prep.model, prep.example[:2], config.overrides)


def summarise(
    prep: Prepared,
    model: nn.Module,
    config: RunConfig,
    evaluation: tuple[float, list[float]],
    accuracy_before: float,
    removed: bool,
) -> dict:
    """The result dict of a pruned model (the JSON contract); latency is filled in by the caller."""
    layers = masking.prunable_layers(model)
    table = measure.layer_table(prep.layers, layers, prep.layer_flops)
    if removed:  # the architecture changed: count its FLOPs again
        flops, _ = measure.layer_flops(model, prep.example[:1])
    else:
        density = {row["name"]: 1.0 - row["sparsity"] for row in table}
        flops = measure.effective_flops(prep.flops, prep.layer_flops, density)
    nonzero = measure.nonzero_params(model)
    pruned = {
        "accuracy": evaluation[0],
        "accuracy_before_finetune": accuracy_before,
        "per_class_accuracy": evaluation[1],
        "params": measure.params(model),
        "nonzero_params": nonzero,
        "flops": flops,
        "size_bytes": measure.size_bytes(model),
        "removed": removed,
    }
    return {
        "run_id": None,
        "status": "succeeded",
        "model": config.model,
        "method": config.method,
        "granularity": prep.method.granularity,
        "scope": config.scope,
        "target_sparsity": config.sparsity,
        "sparsity": measure.sparsity(prep.layers, layers),
        "config": config.to_dict(),
        "dense": dict(prep.dense),
        "pruned": pruned,
        "compression_ratio": prep.dense["nonzero_params"] / max(nonzero, 1),
        "theoretical_speedup": prep.flops / max(flops, 1),
        "latency_ms": {"dense": None, "pruned": None, "batch_size": config.batch_size, "speedup": None},
        "layers": table,
    }


def add_latency(result: dict, prep: Prepared, model: nn.Module) -> None:
    timed = measure.latency_ms({"dense": prep.model, "pruned": model}, prep.example)
    speedup = timed["dense"] / timed["pruned"]
    # Below half the FLOPs bound, fixed per-call costs dominate (tiny inputs): label it overhead-bound.
    # Masked models are not faster by design and are labelled as masked instead.
    bound = result["pruned"]["removed"] and speedup < 0.5 * result["theoretical_speedup"]
    result["latency_ms"].update(timed, speedup=speedup, overhead_bound=bool(bound))


def run_one(prep: Prepared, scores: dict | None, config: RunConfig, progress: Progress = _quiet) -> dict:
    """Prune one copy of the prepared model per `config`, fine-tune, measure, export."""
    start = time.perf_counter()
    progress(0.0, "pruning")
    removed, details = False, {}
    if config.schedule != "oneshot":
        outcome = schedule.run(prep, config, lambda f, m: progress(0.8 * f, m))
        work, evaluation = outcome.model, outcome.evaluation
        accuracy_before, details["schedule_trace"] = outcome.accuracy_before_finetune, outcome.trace
    elif prep.method.granularity == "structured":
        work, details["skipped_layers"], details["structured"] = prune_structured(prep, config)
        removed = True
        evaluation = measure.evaluate(work, prep.data.test, prep.data.num_classes)
        accuracy_before = evaluation[0]
        if config.finetune_epochs > 0:  # no masks to hold: the pruned weights are gone, not zeroed
            finetune(prep, work, config, {}, lambda f, m: progress(0.1 + 0.7 * f, f"fine-tuning {m}"))
            evaluation = measure.evaluate(work, prep.data.test, prep.data.num_classes)
    else:
        work = copy.deepcopy(prep.model)
        keep = apply_level(prep, work, scores, config)
        evaluation = measure.evaluate(work, prep.data.test, prep.data.num_classes)
        accuracy_before = evaluation[0]
        if config.finetune_epochs > 0:
            finetune(prep, work, config, keep, lambda f, m: progress(0.1 + 0.7 * f, f"fine-tuning {m}"))
            evaluation = measure.evaluate(work, prep.data.test, prep.data.num_classes)
    progress(0.8, "measuring")
    result = summarise(prep, work, config, evaluation, accuracy_before, removed=removed)
    add_details(result, prep, work, config, details)
    if config.latency:
        progress(0.9, "timing dense vs pruned")
        add_latency(result, prep, work)
    if config.export:
        export(work, result, config.export, removed=result["pruned"]["removed"], example=prep.example)
    result["seconds"] = time.perf_counter() - start
    progress(1.0, "done")
    return result


def group_key(config: RunConfig) -> tuple:
    """Configs with the same key share the dense model and the importance scores."""
    return (
        config.model,
        config.weights,
        config.data,
        config.method,
        config.options,
        config.seed,
        config.device,
    )


def groups(configs: Iterable[RunConfig]) -> list[list[RunConfig]]:
    out: dict[tuple, list[RunConfig]] = {}
    for config in configs:
        out.setdefault(group_key(config), []).append(config)
    return list(out.values())


def run_group(configs: list[RunConfig], progress: Progress = _quiet) -> Iterator[dict]:
    """Run configs sharing a group key, computing importance once; yields results in order."""
    prep = prepare(configs[0])
    scores = importance(prep)
    share = 1.0 / len(configs)
    for i, config in enumerate(configs):
        yield run_one(prep, scores, config, lambda f, m, i=i: progress((i + f) * share, m))


def run(config: RunConfig, progress: Progress = _quiet) -> dict:
    return next(run_group([config], progress))


def add_details(result: dict, prep: Prepared, work: nn.Module, config: RunConfig, details: dict) -> None:
    """Method- and schedule-specific result keys (N:M: skipped layers, semi-structured latency)."""
    result.update(details)
    if prep.method.granularity == "n:m":
        extra = methods.nm.report(work, prep.layers, prep.options, prep.example, timed=config.latency)
        result["skipped_layers"] = extra["skipped_layers"]
        result["latency_ms"]["semi_structured"] = extra["semi_structured"]


def prune_structured(prep: Prepared, config: RunConfig) -> tuple[nn.Module, list[dict], dict]:
    """Physically remove channels of a copy of the dense model until `config.sparsity` is reached.

    Returns the pruned model, the layers that cannot lose channels (with reasons), and how
    the target was reached (Torch-Pruning's channel and head ratios, heads left, trials).
    """
    source = copy.deepcopy(prep.model)
    criterion = prep.method.criterion(source, prep.ctx, prep.options)  # Taylor stores gradients in source
    pruned = structured.prune(
        source,
        prep.example[:2],
        criterion,
        config.sparsity,
        scope=config.scope,
        overrides=config.overrides,
        heads=prep.options.get("heads", True),
    )
    info = {
        "channel_ratio": pruned.channel_ratio,
        "head_ratio": pruned.head_ratio,
        "heads": pruned.heads,
        "trials": pruned.trials,
        "layer_sparsity": pruned.overrides,  # asked vs reached: coupled layers cannot always match
    }
    return pruned.model, pruned.skipped, info
