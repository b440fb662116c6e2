"""Experiments: RunConfig -> RunResult, and sweeps.

A sweep groups configs that share (model, weights, data, method, options, seed):
the dense model is measured once and importance is computed once per group,
then every sparsity level only prunes (the method's own `prune`), fine-tunes and
measures. What a method does is the method's business: nothing here depends on
its granularity.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

from torch import nn

from pruning.core import hf, lab, latency, measure
from pruning.core import masks as masking
from pruning.core.methods import Pruning, Target
from pruning.core.progress import Progress, no_progress
from pruning.core.tasks import Evaluation
from pruning.errors import UserError
from pruning.runs import schedule
from pruning.runs.config import RunConfig
from pruning.runs.export import export
from pruning.runs.prepared import Loaded, Prepared, check_training, finetune, importance, prepare
from pruning.runs.result import Latency, Pruned, RunResult, Sizes


def target(config: RunConfig) -> Target:
    return Target(config.sparsity, config.scope, config.overrides)


def check(loaded: Loaded, config: RunConfig) -> None:
    """Checks of one config that need the loaded model; UserError before anything is stored."""
    masking.check_layers(config.overrides, loaded.layers)
    if config.schedule != "oneshot":
        schedule.validate(loaded, config)
    if config.finetune_epochs > 0 or config.schedule != "oneshot":
        check_training(loaded)
    loaded.method.check(loaded.model, loaded.example[:2], target(config), loaded.options)
    _check_target(loaded, config)


def _evaluate(prep: Prepared, model: nn.Module) -> Evaluation:
    return prep.evaluate(model)


def summarise(
    prep: Prepared,
    pruning: Pruning,
    config: RunConfig,
    evaluation: Evaluation,
    before: Evaluation,
) -> RunResult:
    """The measured result of a pruned model (latency and export are added by the caller)."""
    model = pruning.model
    layers = masking.prunable_layers(model)
    table = measure.layer_table(prep.layers, layers, prep.layer_flops)
    if pruning.removed:  # the architecture changed: count its FLOPs again
        flops, _ = measure.layer_flops(model, prep.example[:1])
    else:
        density = {row["name"]: 1.0 - row["sparsity"] for row in table}
        flops = measure.effective_flops(prep.flops, prep.layer_flops, density)
    pruned = Pruned(
        accuracy=evaluation.accuracy,
        accuracy_before_finetune=before.accuracy,
        metric=evaluation.metric,
        metric_before_finetune=before.metric,
        per_class_accuracy=evaluation.per_class_accuracy,
        params=measure.params(model),
        nonzero_params=measure.nonzero_params(model),
        flops=flops,
        size_bytes=Sizes(**measure.size_bytes(model)),
        removed=pruning.removed,
    )
    return RunResult(
        model=config.model,
        method=config.method,
        granularity=prep.method.granularity,
        scope=config.scope,
        target_sparsity=config.sparsity,
        sparsity=measure.sparsity(prep.layers, layers),
        config=config.to_dict(),
        dense=prep.dense,
        pruned=pruned,
        latency_ms=Latency(batch_size=config.batch_size),
        layers=table,
        details=dict(pruning.details),
        task=prep.data.task.name,
        metric=prep.data.task.metric,
        higher_is_better=prep.data.task.higher_is_better,
    )


def prune(prep: Prepared, scores: Mapping | None, config: RunConfig, in_place: bool = False) -> Pruning:
    """One-shot: the method's pruned copy of the dense model at `config`'s target (no fine-tuning);
    `in_place`: the dense model itself, when nothing needs it afterwards."""
    return prep.method.prune(
        prep.model, scores, target(config), prep.ctx, prep.options, prep.example, in_place=in_place
    )


def _expected(layers: Mapping[str, nn.Module], config: RunConfig, elementwise: bool) -> float:
    """The sparsity a run must reach: the target, or with layer scope and per-layer sparsities (an
    elementwise method puts every layer at its own value) their weighted mean."""
    if config.scope != "layer" or not config.overrides or not elementwise:
        return config.sparsity
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    chosen = sum(size * config.overrides.get(n, config.sparsity) for n, size in sizes.items())
    return chosen / sum(sizes.values())


def _check_target(loaded: Loaded, config: RunConfig) -> None:
    """Refuse a target the model cannot land on: below the zeros its prunable weights already hold
    (they count as pruned), or, with global scope, out of the reach the per-layer sparsities leave."""
    method = loaded.method
    if method.fixed_sparsity(loaded.options) is not None:
        return
    if not config.overrides:
        zeros = measure.sparsity(loaded.layers, loaded.layers)
        if zeros > config.sparsity + method.tolerance:
            raise UserError(
                f"{zeros:.3f} of the model's prunable weights are already zero, more than the sparsity "
                f"{config.sparsity:.2f} asked: ask --sparsity {zeros:.2f} or more"
            )
        return
    if config.scope != "global" or not method.elementwise:
        return  # layer scope: each layer at its own value; structured search refuses its own
    sizes = {n: m.weight.numel() for n, m in loaded.layers.items()}
    total = sum(sizes.values())
    fixed = sum(sizes[n] * s for n, s in config.overrides.items()) / total
    reach = fixed + sum(size for n, size in sizes.items() if n not in config.overrides) / total
    if not fixed - method.tolerance <= config.sparsity <= reach + method.tolerance:
        raise UserError(
            f"with these per-layer sparsities the model's sparsity can only be between {fixed:.2f} and "
            f"{reach:.2f}, not {config.sparsity:.2f}: change --sparsity or the per-layer values"
        )


def _check_reached(prep: Prepared, config: RunConfig, model: nn.Module) -> None:
    """Fail the run (before fine-tuning) when the sparsity reached is not the target within the
    method's tolerance; a method whose pattern fixes the sparsity is held to it at submit."""
    if prep.method.fixed_sparsity(prep.options) is not None:
        return
    asked = _expected(prep.layers, config, prep.method.elementwise)
    reached = measure.sparsity(prep.layers, masking.prunable_layers(model))
    # plus one weight per layer: a layer of 3 weights at 0.3 loses 1 of them, 0.333
    weights = sum(m.weight.numel() for m in prep.layers.values())
    if abs(reached - asked) <= prep.method.tolerance + len(prep.layers) / weights:
        return
    if reached > asked:
        hint = f"more of its prunable weights were already zero: ask --sparsity {reached:.2f} or more"
    else:
        hint = "lower --sparsity or use another method"
    raise UserError(
        f"{config.method} reached sparsity {reached:.3f}, not the {asked:.2f} asked "
        f"(tolerance {prep.method.tolerance}); {hint}"
    )


def _prune(prep: Prepared, scores: Mapping | None, config: RunConfig, in_place: bool, progress: Progress):
    """(pruning, evaluation, evaluation before fine-tuning) for a one-shot or scheduled run."""
    if config.schedule != "oneshot":
        outcome = schedule.run(prep, config, lambda f, m: progress(0.8 * f, m))
        pruning = Pruning(outcome.model, outcome.masks, {"schedule_trace": outcome.trace})
        _check_reached(prep, config, pruning.model)
        return pruning, outcome.evaluation, outcome.before_finetune
    pruning = prune(prep, scores, config, in_place)
    _check_reached(prep, config, pruning.model)
    if config.finetune_epochs == 0 and pruning.masks:
        # Nothing will hold them fixed: released before evaluating (1 byte per weight, GPT-2: 124 MB).
        pruning.masks = {}
    evaluation = _evaluate(prep, pruning.model)
    before = evaluation
    if config.finetune_epochs > 0:  # removed structure has no masks to hold: the weights are gone
        report = lambda f, m: progress(0.1 + 0.7 * f, f"fine-tuning {m}")
        finetune(prep, pruning.model, config, pruning.masks or {}, report)
        evaluation = _evaluate(prep, pruning.model)
    return pruning, evaluation, before


def run_one(
    prep: Prepared,
    scores: Mapping | None,
    config: RunConfig,
    run_id: str | None = None,
    progress: Progress = no_progress,
    last: bool = False,
) -> RunResult:
    """Prune one copy of the prepared model per `config`, fine-tune, measure, export (once).

    `last`: no run after this one uses `prep`. Unless latency compares it with the pruned model, the
    dense model is then pruned itself rather than a copy: a one-shot run of a large model holds one
    model, not two (GPT-2 small: 475 MiB less)."""
    start = time.perf_counter()
    progress(0.0, "pruning")
    in_place = last and not config.latency
    pruning, evaluation, before = _prune(prep, scores, config, in_place, progress)
    progress(0.8, "measuring")
    result = summarise(prep, pruning, config, evaluation, before)
    result.run_id = run_id
    if config.latency:
        progress(0.9, "timing dense vs pruned")
        result.latency_ms.record(latency.compare(prep.model, pruning.model, prep.example))
    result.latency_ms.extra.update(prep.method.measure(pruning, prep.example, prep.options, config.latency))
    result.seconds = time.perf_counter() - start
    if config.export:
        hugging_face = hf.is_hf(lab.model_source(config.model))  # a lab id may name an hf: directory
        export(pruning.model, result, config.export, prep.example, hugging_face=hugging_face)
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
        config.task,
        config.eval_samples,  # the dense figures are measured on what is evaluated
        config.calib_samples,  # the scores depend on what calibrates them
        config.embeddings,  # which layers are prunable
    )


def groups(configs: Iterable[RunConfig]) -> list[list[RunConfig]]:
    out: dict[tuple, list[RunConfig]] = {}
    for config in configs:
        out.setdefault(group_key(config), []).append(config)
    return list(out.values())


def run_group(configs: list[RunConfig], progress: Progress = no_progress) -> Iterator[RunResult]:
    """Run configs sharing a group key, computing importance once; yields results in order."""
    prep = prepare(configs[0])
    scores = importance(prep)
    share = 1.0 / len(configs)
    for i, config in enumerate(configs):
        report = lambda f, m, i=i: progress((i + f) * share, m)
        yield run_one(prep, scores, config, progress=report, last=i == len(configs) - 1)


def run(config: RunConfig, progress: Progress = no_progress) -> RunResult:
    return next(run_group([config], progress))
