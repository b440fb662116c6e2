"""A prepared group of runs: the loaded dense model, its data and dense measurements,
importance scores, and the steps every schedule shares (apply a level, fine-tune)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core import data as datasets
from pruning.core import masks as masking
from pruning.core import measure, methods, models
from pruning.core.train import fit
from pruning.errors import UserError
from pruning.runs.config import RunConfig

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available here; use --device cpu")
    return torch.device(name)


@dataclass
class Prepared:
    """A loaded dense model with its data and dense measurements, shared by a group of runs."""

    config: RunConfig
    model: nn.Module
    data: datasets.Data
    method: methods.Method
    options: dict
    layers: dict[str, nn.Module]
    example: torch.Tensor
    flops: int
    layer_flops: dict[str, int]
    dense: dict

    @property
    def ctx(self) -> methods.Context:
        return methods.Context(self.data.train, self.config.seed)


def prepare(config: RunConfig) -> Prepared:
    """Load and validate everything a run needs; raises UserError before any work is stored."""
    if resolve_device(config.device).type != "cpu":
        raise UserError("runs execute on the CPU for now; use --device cpu")
    method = methods.get(config.method)
    options = method.options(dict(config.options))
    model = models.load(config.model, config.weights)  # first: an unknown model is the error to show
    dataset_spec = config.data or models.default_dataset(config.model)
    if dataset_spec is None:
        raise UserError(f"model '{config.model}' has no default dataset: pass --data")
    data = datasets.load(dataset_spec)
    layers = masking.prunable_layers(model)
    unknown = sorted(set(config.overrides) - set(layers))
    if unknown:
        raise UserError(
            f"unknown layer(s) in per-layer sparsity: {', '.join(unknown)}; "
            f"prunable layers are {', '.join(layers)}"
        )
    try:
        example = data.test.x[: config.batch_size]
        total, per_layer = measure.layer_flops(model, example[:1])
    except Exception as exc:
        raise UserError(
            f"the model cannot run on dataset '{dataset_spec}': {type(exc).__name__}: {exc}"
        ) from exc
    accuracy, per_class = measure.evaluate(model, data.test, data.num_classes)
    dense = {
        "accuracy": accuracy,
        "per_class_accuracy": per_class,
        "params": measure.params(model),
        "nonzero_params": measure.nonzero_params(model),
        "flops": total,
        "size_bytes": len(measure.state_bytes(model)),
    }
    return Prepared(
        config,
        model,
        data,
        method,
        options,
        layers,
        example,
        total,
        per_layer,
        dense,
    )


def importance(prep: Prepared) -> dict[str, torch.Tensor] | None:
    """Element-wise scores of the dense model (None for structured methods, which score groups)."""
    if prep.method.granularity == "structured":
        return None
    model = copy.deepcopy(prep.model)
    return prep.method.importance(model, masking.prunable_layers(model), prep.ctx, prep.options)


def apply_level(prep: Prepared, work: nn.Module, scores: dict[str, torch.Tensor], config: RunConfig) -> dict:
    """Reset `work` to the dense weights, then mask `config.sparsity` of them in place; returns the masks."""
    work.load_state_dict(prep.model.state_dict())  # prep.model is never modified: it is the dense copy
    if prep.method.granularity == "n:m":
        keep = masking.select_nm(scores, prep.options["n"], prep.options["m"])
    else:
        keep = masking.select(scores, config.sparsity, config.scope, config.overrides)
    masking.apply(masking.prunable_layers(work), keep)
    return keep


def finetune(prep: Prepared, work: nn.Module, config: RunConfig, keep: dict, progress: Progress) -> None:
    """Fine-tune with the masks held fixed, with the model's own training recipe."""
    train = models.train_config(config.model)
    train = dataclasses.replace(train, epochs=config.finetune_epochs)
    fit(
        work,
        prep.data.train,
        train,
        masks=masking.param_masks(work, keep),
        seed=config.seed,
        progress=progress,
    )
