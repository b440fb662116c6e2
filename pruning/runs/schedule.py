"""Gradual pruning schedules: iterative (cubic AGP) and lottery tickets (pruning with rewinding).

Both prune in `config.steps` steps with the run's own criterion, scope and per-layer
overrides, recompute importance on the current model at every step (so data-dependent
criteria see the pruned, retrained network), and keep masks monotone: a weight once
pruned stays pruned. `before_finetune` is the evaluation right after the last pruning
step, before the training that follows it. Trace rows carry the task's metric (accuracy for
classification) under the keys `accuracy_pruned` and `accuracy`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core import masks as masking
from pruning.core import measure, models
from pruning.core.methods import Target
from pruning.core.progress import Progress
from pruning.core.tasks import Evaluation
from pruning.core.train import fit
from pruning.errors import UserError
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Loaded, Prepared, finetune

REWIND_FRACTION = 0.1  # lottery: rewind to the end of the first ~10% of training (at least one epoch)


@dataclass
class Outcome:
    """A scheduled run's pruned model, its final masks, and what happened step by step."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    before_finetune: Evaluation
    evaluation: Evaluation
    trace: dict


def agp_sparsity(final: float, step: int, steps: int, initial: float = 0.0) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) (1 - t/n)^3, pruning fast early, slowly late."""
    return final + (initial - final) * (1.0 - step / steps) ** 3


def geometric_sparsity(final: float, step: int, steps: int) -> float:
    """Lottery rounds prune the same fraction of the remaining weights each round."""
    return 1.0 - (1.0 - final) ** (step / steps)


def validate(loaded: Loaded, config: RunConfig) -> None:
    if not loaded.method.elementwise:
        raise UserError(
            f"schedule '{config.schedule}' works with unstructured methods; '{config.method}' is "
            f"{loaded.method.granularity}: use --schedule oneshot"
        )
    if config.schedule == "lottery" and config.finetune_epochs == 1:
        raise UserError(
            "lottery needs at least 2 training epochs (rewind point + training): raise --finetune-epochs"
        )


def prune_step(
    prep: Prepared,
    work: nn.Module,
    config: RunConfig,
    target: Callable[[float], float],
    previous: dict[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """Mask `work` in place at this step's targets (`target` maps a final sparsity to this step's)."""
    layers = masking.prunable_layers(work)
    scores = prep.method.importance(work, layers, prep.ctx, prep.options)
    if previous is not None:  # already-pruned weights rank below everything, so they stay pruned
        scores = {n: s.float().masked_fill(~previous[n], -torch.inf) for n, s in scores.items()}
    overrides = {name: target(value) for name, value in config.overrides.items()}
    keep = prep.method.select(scores, Target(target(config.sparsity), config.scope, overrides), prep.options)
    if previous is not None:  # rounding can never resurrect a weight
        keep = {n: k & previous[n] for n, k in keep.items()}
    masking.apply(layers, keep)
    return keep


def _evaluate(prep: Prepared, model: nn.Module) -> Evaluation:
    return prep.evaluate(model)


def _trace_row(prep: Prepared, work: nn.Module, step: int, before: Evaluation, after: Evaluation) -> dict:
    """One step of a schedule's trace: sparsity reached, accuracy after pruning and after training."""
    sparsity = measure.sparsity(prep.layers, masking.prunable_layers(work))
    return {"step": step, "sparsity": sparsity, "accuracy_pruned": before.metric, "accuracy": after.metric}


def iterative(prep: Prepared, config: RunConfig, progress: Progress) -> Outcome:
    """Prune to the cubic AGP sparsity of each step, fine-tuning after every step.

    Each step fine-tunes max(1, finetune_epochs // steps) epochs with the model's own
    recipe: gradual pruning without training in between would be one-shot pruning."""
    steps, epochs = config.steps, max(1, config.finetune_epochs // config.steps)
    work = copy.deepcopy(prep.model)
    keep, rows = None, []
    for t in range(1, steps + 1):
        progress((t - 1) / steps, f"step {t}/{steps}: pruning")
        fraction = agp_sparsity(1.0, t, steps)  # the share of each final target reached at step t
        keep = prune_step(prep, work, config, lambda s, f=fraction: s * f, keep)
        before = _evaluate(prep, work)
        step_config = config.replace(finetune_epochs=epochs, seed=config.seed + t)

        def report(f: float, message: str, t: int = t) -> None:
            progress((t - 1 + f) / steps, f"step {t}/{steps}: fine-tuning {message}")

        finetune(prep, work, step_config, keep, report)
        after = _evaluate(prep, work)
        rows.append(_trace_row(prep, work, t, before, after))
    trace = {"name": "iterative", "epochs_per_step": epochs, "steps": rows}
    return Outcome(work, keep, before, after, trace)


def lottery(prep: Prepared, config: RunConfig, progress: Progress) -> Outcome:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    Trains a fresh network (seeded by `config.seed`) for `finetune_epochs` epochs, or the
    model's own recipe when that is 0, saving a rewind checkpoint after the first ~10%.
    Each round prunes a fixed fraction of the remaining weights of the trained network,
    rewinds the survivors to the checkpoint and retrains them for the rest of the recipe.
    `--weights` are not used: a lottery ticket is found by training from scratch."""
    recipe = models.train_config(config.model)
    total = config.finetune_epochs or recipe.epochs
    rewind = min(max(1, round(REWIND_FRACTION * total)), total - 1)
    rest, steps, train = total - rewind, config.steps, prep.data.train
    budget = total + steps * rest  # epochs in all, for the progress bar

    def phase(start: int, epochs: int, message: str) -> Progress:
        return lambda f, epoch: progress((start + f * epochs) / budget, f"{message} {epoch}")

    torch.manual_seed(config.seed)
    work = models.build(config.model).to(prep.example.device)
    task = prep.data.task
    fit(work, train, recipe, rewind, seed=config.seed, progress=phase(0, rewind, "to rewind"), task=task)
    checkpoint = copy.deepcopy(work.state_dict())
    fit(work, train, recipe, rest, seed=config.seed + 1, progress=phase(rewind, rest, "dense"), task=task)
    dense = _evaluate(prep, work)
    keep, rows = None, []
    for r in range(1, steps + 1):
        start = total + (r - 1) * rest
        progress(start / budget, f"round {r}/{steps}: pruning")
        keep = prune_step(prep, work, config, lambda s, r=r: geometric_sparsity(s, r, steps), keep)
        before = _evaluate(prep, work)
        work.load_state_dict(checkpoint)
        masking.apply(masking.prunable_layers(work), keep)
        masks = masking.param_masks(work, keep)
        fit(
            work,
            train,
            recipe,
            epochs=rest,
            masks=masks,
            seed=config.seed + 1,
            progress=phase(start, rest, f"round {r}/{steps}"),
            task=task,
        )
        after = _evaluate(prep, work)
        rows.append(_trace_row(prep, work, r, before, after))
    trace = {
        "name": "lottery",
        "epochs": total,
        "rewind_epoch": rewind,
        "dense_accuracy": dense.metric,  # the same recipe without pruning: the fair reference
        "steps": rows,
    }
    return Outcome(work, keep, before, after, trace)


SCHEDULES = {"iterative": iterative, "lottery": lottery}


def run(prep: Prepared, config: RunConfig, progress: Progress) -> Outcome:
    validate(prep, config)
    return SCHEDULES[config.schedule](prep, config, progress)
