"""Per-layer sensitivity analysis, and per-layer sparsities allocated from it.

Sensitivity: prune one layer at a time, one-shot, at each level of a grid, with the
run's criterion, and measure the task's metric (accuracy for classification) on the
validation split, never the test split: allocations chosen from it would otherwise make
the test figures reported afterwards optimistic. Every other layer stays dense. The table
is cached in the store, keyed by everything that determines it, so asking again is instant.

Allocation: given a global target, choose one accuracy-drop tolerance for all layers
(by bisection) and give each layer the highest level whose measured drop stays within
it (interpolated between grid levels); the result lands on the target by weight count.

OWL (outlier-weighed layerwise sparsity, Yin et al., 2024), for language models above all: a
layer's outlier ratio is the share of its Wanda scores |W_ij| * ||X_j|| above `threshold` times
their mean (computed per transformer block, the block's layers pooled, as in the paper's code);
sparsity is lowered where outliers are many and raised where they are few, within +-`limit` of
the target, and lands on the target by weight count. It needs one calibration pass, no grid.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pruning.core import lab, models
from pruning.core import masks as masking
from pruning.core.methods.criteria import input_norms
from pruning.core.methods.sparsegpt import block_groups
from pruning.core.progress import Progress, no_progress
from pruning.errors import UserError
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Loaded, importance, load, prepare
from pruning.runs.store import Store

DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CACHE_VERSION = "sensitivity-v2"  # v2: measured on the validation split
TIE_SLOPE = 1e-6  # accuracy per unit of sparsity: far below what any test set can resolve


@dataclass(frozen=True)
class Sensitivity:
    """The task's metric with one layer pruned, for every (layer, level). For classification the
    metric is accuracy; `accuracy` / `accuracy_drop` hold the metric and how much worse it got."""

    model: str
    method: str
    dense_accuracy: float
    levels: tuple[float, ...]
    layers: dict[str, int]  # prunable weights per layer, in model order
    rows: list[dict] = field(default_factory=list)  # {layer, level, accuracy, accuracy_drop}, tidy
    cached: bool = False
    metric: str = "accuracy"
    split: str = ""  # what was measured on, in words

    def drops(self, layer: str) -> list[float]:
        return [r["accuracy_drop"] for r in self.rows if r["layer"] == layer]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Sensitivity:
        return cls(**{**d, "levels": tuple(d["levels"])})


def parse_levels(levels: Sequence[float]) -> tuple[float, ...]:
    values = sorted({masking.validate_sparsity(v, "sensitivity level") for v in levels} - {0.0})
    if not values:
        raise UserError("sensitivity needs at least one level in (0, 1), e.g. --levels 0.3,0.6,0.9")
    return tuple(values)


def _fingerprint(spec: str | None) -> str | None:
    """A file's content hash, so a changed weights/model/data file invalidates the cache."""
    if spec is None:
        return None
    path = Path(spec.split(":")[0] if ".py:" in spec else spec)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else spec


def cache_key(config: RunConfig, options: Mapping, levels: Sequence[float]) -> str:
    """Everything that determines a table, files by their content (a lab id by what it points at)."""
    source = lab.model_source(config.model)
    weights = lab.model_weights(config.model, config.weights)
    if weights is None and source in models.SAMPLE_MODELS:
        weights = str(models.SAMPLE_MODELS[source].weights)
    data = config.data or models.default_dataset(config.model)
    parts = {
        "kind": CACHE_VERSION,
        "model": [config.model, _fingerprint(source)],
        "weights": _fingerprint(str(weights) if weights is not None else None),
        "data": [data, _fingerprint(lab.dataset_source(data) if data else None)],
        "task": config.task,
        "method": config.method,
        "options": dict(sorted(options.items())),
        "levels": list(levels),
        "seed": config.seed,
    }
    return json.dumps(parts, sort_keys=True, default=str)


def check(loaded: Loaded) -> None:
    """Refuse a method that cannot prune one layer at a time at several levels."""
    if not loaded.method.elementwise:
        raise UserError(
            f"sensitivity analysis prunes one layer at a time at several levels, which needs an "
            f"unstructured method; '{loaded.method.id}' is {loaded.method.granularity}: try magnitude"
        )


def analyse(
    config: RunConfig,
    levels: Sequence[float] = DEFAULT_LEVELS,
    store: Store | None = None,
    progress: Progress = no_progress,
) -> Sensitivity:
    """Sensitivity of every prunable layer of `config.model` to `config.method` at `levels`.

    Only the model, weights, data, method, options and seed of `config` matter."""
    levels = parse_levels(levels)
    loaded = load(config.replace(sparsity=0.0, layer_sparsity=(), latency=False))
    check(loaded)
    key = cache_key(config, loaded.options, levels)
    if store is not None and (hit := store.cache_get(key)) is not None:
        progress(1.0, "from cache")
        return Sensitivity.from_dict({**hit, "cached": True})
    progress(0.0, "scoring")
    prep = prepare(loaded.config, loaded)
    scores = importance(prep)
    work = copy.deepcopy(prep.model)
    layers = masking.prunable_layers(work)
    task, split = prep.data.task, prep.data.choices
    dense = prep.evaluate(prep.model, split).metric
    rows = []
    for i, (name, layer) in enumerate(layers.items()):
        progress(i / len(layers), f"layer {name}")
        original = layer.weight.detach().clone()
        for level in levels:
            keep = masking.select({name: scores[name]}, level, "layer")[name]
            with torch.no_grad():
                layer.weight.copy_(original * keep)
            value = prep.evaluate(work, split).metric
            rows.append(
                {
                    "layer": name,
                    "level": level,
                    "accuracy": value,
                    "accuracy_drop": task.worse_by(dense, value),
                }
            )
        with torch.no_grad():
            layer.weight.copy_(original)
    result = Sensitivity(
        model=config.model,
        method=config.method,
        dense_accuracy=dense,
        levels=levels,
        layers={name: layer.weight.numel() for name, layer in layers.items()},
        rows=rows,
        metric=task.metric,
        split=f"validation: {len(split)} samples, a seeded tenth of the training split",
    )
    if store is not None:
        store.cache_put(key, result.to_dict())
    progress(1.0, "done")
    return result


def _level_within(levels: Sequence[float], drops: Sequence[float], tolerance: float) -> float:
    """Highest level whose (monotone) drop stays <= tolerance, linear between grid points."""
    if tolerance < drops[0]:
        return levels[0]
    for i in range(len(levels) - 1):
        if drops[i + 1] > tolerance:
            step = (tolerance - drops[i]) / (drops[i + 1] - drops[i])
            return levels[i] + step * (levels[i + 1] - levels[i])
    return levels[-1]


def allocate(sensitivity: Sensitivity, target: float) -> dict[str, float]:
    """Per-layer sparsities that prune `target` of all prunable weights, most where it hurts least."""
    target = masking.validate_sparsity(target, "target sparsity")
    counts = sensitivity.layers
    total = sum(counts.values())
    grid = (0.0, *sensitivity.levels)
    curves = {}
    for name in counts:
        # A drop measured at a lower level is not undone by pruning more: use the running maximum.
        # The tiny slope breaks ties: layers whose measured drops are equal get equal sparsity.
        drops, worst = [0.0], 0.0
        for level, d in zip(sensitivity.levels, sensitivity.drops(name)):
            worst = max(worst, d)
            drops.append(worst + TIE_SLOPE * level)
        curves[name] = drops

    def at(tolerance: float) -> dict[str, float]:
        return {n: _level_within(grid, curves[n], tolerance) for n in counts}

    def pruned(allocation: Mapping[str, float]) -> float:
        return sum(counts[n] * s for n, s in allocation.items()) / total

    low, high = -1.0, max(max(c) for c in curves.values())
    if pruned(at(high)) < target - 1e-9:
        raise UserError(
            f"target sparsity {target} is beyond the measured levels (at most {pruned(at(high)):.3f} with "
            f"every layer at {grid[-1]}); rerun the sensitivity analysis with higher levels"
        )
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if pruned(at(mid)) >= target else (mid, high)
    below, above = at(low), at(high)
    # the tolerance where the target is crossed may be a jump (a flat curve segment): share it out
    gap = pruned(above) - pruned(below)
    weight = (target - pruned(below)) / gap if gap > 0 else 1.0
    return {n: round(below[n] + weight * (above[n] - below[n]), 4) for n in counts}


OWL_THRESHOLD = 5.0  # the paper's M: an outlier scores above M times its block's mean
OWL_LIMIT = 0.08  # the paper's lambda: how far a layer's sparsity may move from the target
OWL_BATCHES = 4


def outlier_ratios(loaded: Loaded, threshold: float = OWL_THRESHOLD) -> dict[str, float]:
    """Each prunable layer's share of outlier Wanda scores (pooled over its transformer block),
    from calibration batches of the model's own training data (the dense model)."""
    layers = loaded.layers
    with torch.no_grad():
        norms = input_norms(loaded.model, layers, loaded.ctx, OWL_BATCHES)
    ratios = {}
    for group in block_groups(loaded.model, layers):
        scores = torch.cat([(layers[n].weight.detach().abs() * norms[n]).flatten() for n in group])
        ratio = float((scores > threshold * scores.mean()).float().mean())
        ratios.update({name: ratio for name in group})
    return ratios


def allocate_owl(
    ratios: Mapping[str, float],
    counts: Mapping[str, int],
    target: float,
    limit: float = OWL_LIMIT,
) -> dict[str, float]:
    """Per-layer sparsities from outlier ratios: ratios scaled to [0, 2 * limit], and each layer's
    sparsity the target minus its scaled ratio plus a common shift that lands the weight count on
    the target (the paper's mean centring, weighted by layer size), each kept within [0, 0.99]."""
    target = masking.validate_sparsity(target, "target sparsity")
    low, high = min(ratios.values()), max(ratios.values())
    spread = {n: 2 * limit * (r - low) / (high - low) if high > low else 0.0 for n, r in ratios.items()}
    total = sum(counts.values())

    def levels(shift: float) -> dict[str, float]:
        return {n: min(max(target - spread[n] + shift, 0.0), 0.99) for n in counts}

    def pruned(shift: float) -> float:
        return sum(counts[n] * s for n, s in levels(shift).items()) / total

    below, above = -1.0, 1.0 + 2 * limit  # pruned() grows with the shift from 0 to 0.99
    for _ in range(60):
        mid = (below + above) / 2
        below, above = (below, mid) if pruned(mid) >= target else (mid, above)
    return {n: round(s, 4) for n, s in levels(above).items()}


def owl(config: RunConfig, target: float, threshold: float = OWL_THRESHOLD, limit: float = OWL_LIMIT):
    """OWL's per-layer sparsities for `config.model` (its weights, data, seed) at `target`."""
    return owl_with_counts(config, target, threshold, limit)[0]


def owl_with_counts(
    config: RunConfig, target: float, threshold: float = OWL_THRESHOLD, limit: float = OWL_LIMIT
) -> tuple[dict[str, float], dict[str, int]]:
    """`owl`, and the weight count of each prunable layer (what the overall sparsity is over)."""
    loaded = load(config.replace(method="magnitude", sparsity=0.0, layer_sparsity=(), options=()))
    counts = {name: layer.weight.numel() for name, layer in loaded.layers.items()}
    return allocate_owl(outlier_ratios(loaded, threshold), counts, target, limit), counts
