"""The search for the channel ratio that removes a target sparsity, and `prune`/`check`.

Torch-Pruning is steered by a channel ratio, while `sparsity` is the fraction of the dense
model's prunable weights removed (DESIGN.md §2): `prune` bisects the ratio, each trial on
a fresh copy, until the achieved sparsity lands within `TOLERANCE` of the target. Per-layer
sparsities are held by correcting those layers' own ratios inside each trial (`_held`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core import masks
from pruning.core.structured import explain
from pruning.core.structured.layout import Layout, analyse, attention_modules
from pruning.core.structured.trial import Plan, Trial

TOLERANCE = 0.02  # |achieved - target| allowed (DESIGN.md §2)
MAX_RATIO = 0.99  # channel ratio upper bound of the search
MAX_TRIALS = 24
OVERRIDE_ROUNDS = 3


@dataclass
class Pruned:
    """A physically pruned copy of a model and how it was reached."""

    model: nn.Module
    sparsity: float
    channel_ratio: float
    head_ratio: float | None
    heads: dict[str, int]  # attention module name -> heads left
    skipped: list[dict]
    trials: int
    overrides: dict[str, dict]  # layer -> {"target", "sparsity"} for per-layer sparsities


def _search(
    trial_at: Callable[[float], Trial], target: float, tol: float
) -> tuple[Trial | None, Trial | None]:
    """Bisection over the channel ratio; returns the closest valid trial and the last that vanished."""
    if target <= 0.0:
        return trial_at(0.0), None
    lo, hi = 0.0, MAX_RATIO
    ratio = 1.0 - math.sqrt(1.0 - target)  # guess: both sides of a layer shrink at this ratio
    best = blocked = None
    for _ in range(MAX_TRIALS):
        t = trial_at(ratio)
        if t.vanished:
            hi, blocked = ratio, t
        else:
            if best is None or abs(t.sparsity - target) < abs(best.sparsity - target):
                best = t
            if abs(t.sparsity - target) <= tol / 4:
                break
            lo, hi = (ratio, hi) if t.sparsity < target else (lo, ratio)
        if hi - lo < 1e-4:
            break
        ratio = (lo + hi) / 2
    return best, blocked


def _check_overrides(layout: Layout, overrides: Mapping[str, float]) -> None:
    fixed = {row["name"]: row["reason"] for row in layout.skipped if row["keeps"] in ("outputs", "all")}
    for name in overrides:
        if name in fixed:
            raise explain.fixed_layer(name, fixed[name])


def check(model: nn.Module, example: torch.Tensor, overrides: Mapping[str, float]) -> None:
    """Refuse, before any work, what `prune` would refuse for the model's layout."""
    _check_overrides(analyse(model, example), overrides)


def _layer_sparsity(dense: Mapping[str, nn.Module], model: nn.Module, name: str) -> float:
    return 1.0 - masks.prunable_layers(model)[name].weight.numel() / dense[name].weight.numel()


def _held(
    plan: Plan, ratio: float, head_ratio: float, overrides: Mapping[str, float], ratios: dict[str, float]
) -> Trial:
    """A trial at `ratio` whose overridden layers keep their own weight sparsity.

    A layer's weight sparsity also depends on how many of its inputs the layers before it
    lost, so its output-channel ratio is corrected from what the last trial left of its
    inputs (a fixed point, usually reached in one or two rounds); `ratios` is updated in place.
    """
    for _ in range(OVERRIDE_ROUNDS if overrides else 1):
        t = plan.trial(ratio, head_ratio, ratios)
        layers = masks.prunable_layers(t.model)
        errors = [abs(_layer_sparsity(plan.dense_layers, t.model, n) - s) for n, s in overrides.items()]
        if t.vanished or all(e <= TOLERANCE / 2 for e in errors):
            break
        for name, target in overrides.items():
            kept_in = layers[name].weight.shape[1] / plan.dense_layers[name].weight.shape[1]
            ratios[name] = min(max(1.0 - (1.0 - target) / kept_in, 0.0), MAX_RATIO)
    return t


def _head_ratios(heads: Mapping[str, int], sparsity: float) -> list[float]:
    """Fractions of heads to remove, most first: about `sparsity` of them, never a whole module."""
    if not heads:
        return [0.0]
    total, fewest = sum(heads.values()), min(heads.values())
    first = min(sparsity, (fewest - 1) / fewest)
    return [max(first - k / total, 0.0) for k in range(int(first * total) + 1)]


def _closest(plan: Plan, sparsity: float, overrides: Mapping[str, float], tol: float) -> tuple[Trial, float]:
    """The trial within `tol` of `sparsity` and its head ratio; UserError when there is none."""
    attention = plan.layout.attention
    qkv = {f"{n}.qkv" for n in attention} | set(attention)
    best = blocked = None
    for head_ratio in _head_ratios(attention if plan.heads else {}, sparsity):
        ratios = {n: 1.0 - math.sqrt(1.0 - s) for n, s in overrides.items()}  # warm-started per trial
        trial_at = functools.partial(_held, plan, head_ratio=head_ratio, overrides=overrides, ratios=ratios)
        best, blocked = _search(trial_at, sparsity, tol)
        attention_vanished = blocked is not None and bool(qkv & set(blocked.vanished))
        if best is not None and abs(best.sparsity - sparsity) <= tol or not attention_vanished:
            break  # fewer heads only help when a whole attention module was about to vanish
    if best is None or abs(best.sparsity - sparsity) > tol:
        reached = best.sparsity if best is not None else None
        vanished = blocked.vanished[0] if blocked is not None else None
        raise explain.unreached(sparsity, reached, vanished, bool(overrides))
    return best, head_ratio


def prune(
    model: nn.Module,
    example: torch.Tensor,
    importance: Callable,
    sparsity: float,
    scope: str = "global",
    overrides: Mapping[str, float] | None = None,
    heads: bool = True,
    tol: float = TOLERANCE,
) -> Pruned:
    """A physically pruned copy of `model` with `sparsity` of its prunable weights removed.

    `importance` is a deterministic Torch-Pruning importance object (every trial must rank
    alike); Taylor-style criteria read the gradients already stored in `model`.
    `scope="global"` ranks channels across layers, `"layer"` removes the same channel ratio
    everywhere; `overrides` give layers their own weight sparsity. Raises UserError when the
    target is out of reach or the pruned model breaks.
    """
    overrides = dict(overrides or {})
    layout = analyse(model, example)
    _check_overrides(layout, overrides)
    with torch.no_grad():
        shape = model.eval()(example).shape
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    dense = masks.prunable_layers(model)
    plan = Plan(model, grads, example, importance, layout, dense, scope, heads)
    best, head_ratio = _closest(plan, sparsity, overrides, tol)
    explain.verify(best.model, example, shape)
    left = {n: m.num_heads for n, m in attention_modules(best.model).items() if n in layout.attention}
    return Pruned(
        best.model,
        best.sparsity,
        best.ratio,
        head_ratio if heads and layout.attention else None,
        left,
        layout.skipped,
        plan.trials,
        {n: {"target": t, "sparsity": _layer_sparsity(dense, best.model, n)} for n, t in overrides.items()},
    )
