"""The weights behind the pictures of what was pruned (`present.pictures`): the live preview's pruned
model (pruned again from the cached dense model and scores: previews keep only their measurements),
or a stored run's exported weights (`model.safetensors`, masks folded in as zeros, removed channels
gone). Both come with the dense weights' shapes and, for structured pruning, the heads kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from torch import nn

from pruning.core import masks as masking
from pruning.core import models
from pruning.errors import UserError
from pruning.runs import experiment, preview
from pruning.runs.config import RunConfig
from pruning.runs.store import RunRecord


@dataclass
class Pruned:
    """Per prunable layer (model order): the pruned weight, and the dense weight's shape."""

    weights: dict[str, np.ndarray]
    dense_shapes: dict[str, tuple[int, ...]]
    removed: bool  # structure was removed (else: masked, zeros kept in place)
    heads: dict[str, tuple[int, int]] = field(default_factory=dict)  # module -> (dense, kept)


def _heads(dense: nn.Module, details: dict) -> dict[str, tuple[int, int]]:
    kept = (details.get("structured") or {}).get("heads") or {}
    modules = dict(dense.named_modules())
    out = {}
    for name, count in kept.items():
        module = modules.get(name)
        total = next(
            (
                getattr(module, a)
                for a in ("num_heads", "num_attention_heads", "n_heads")
                if hasattr(module, a)
            ),
            None,
        )
        if isinstance(total, int):
            out[name] = (total, int(count))
    return out


def of_preview(config: RunConfig) -> Pruned:
    """The preview's pruned model at `config`'s sparsity, scope and overrides."""
    prep, scores = preview.prepared(config)
    pruning = experiment.prune(prep, scores, config.replace(eval_samples=prep.config.eval_samples))
    layers = masking.prunable_layers(pruning.model)
    weights = {name: m.weight.detach().cpu().numpy() for name, m in layers.items()}
    shapes = {name: tuple(m.weight.shape) for name, m in prep.layers.items()}
    return Pruned(weights, shapes, pruning.removed, _heads(prep.model, pruning.details))


def of_run(config: dict, result: dict, exported: Path) -> Pruned:
    """A stored run's layers from its exported weights file, against the dense model it came from."""
    dense = models.load(config["model"], config.get("weights"))
    layers = masking.prunable_layers(dense)
    stored = load_file(str(exported))
    weights = {name: stored[f"{name}.weight"] for name in layers if f"{name}.weight" in stored}
    shapes = {name: tuple(m.weight.shape) for name, m in layers.items()}
    removed = bool((result.get("pruned") or {}).get("removed"))
    return Pruned(weights, shapes, removed, _heads(dense, result))  # details are top-level keys of a result


def of_record(record: RunRecord) -> tuple[Pruned, str] | None:
    """What a stored run pruned, and where that comes from: its exported weights if it kept them, else
    (a one-shot run) its masks pruned again from its config, the same the run fine-tuned with (the
    pruning is deterministic for a config and seed); None for an iterative or lottery run without an
    export, whose masks only the run itself had."""
    weights = ((record.result or {}).get("export") or {}).get("weights")
    if weights and Path(weights).is_file():
        return of_run(record.config, record.result or {}, Path(weights)), "its exported weights"
    config = RunConfig.from_dict(record.config)
    if config.schedule != "oneshot":
        return None
    return of_preview(config.replace(export=None)), "its one-shot masks, pruned again from its config"


def of_records(records: list[RunRecord]) -> tuple[dict[str, tuple[Pruned, str]], dict[str, str]]:
    """`of_record` of each run: ({run id: (pruned, source)}, {run id: why there is no picture})."""
    found, missing = {}, {}
    for record in records:
        try:
            drawn = of_record(record)
        except (UserError, OSError) as exc:  # its model, weights or data are gone since
            missing[record.id] = str(exc)
            continue
        if drawn is None:
            missing[record.id] = f"its {record.config.get('schedule')} masks were kept by the run only"
        else:
            found[record.id] = drawn
    return found, missing
