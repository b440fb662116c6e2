"""The search for the channel ratio that removes a target sparsity, and `prune`/`check`.

Torch-Pruning is steered by a channel ratio, while `sparsity` is the fraction of the dense
model's prunable weights removed (DESIGN.md §2): `prune` searches the ratio, each trial a
prediction of one shared pruner (`trial.Plan`), until the sparsity lands within `TOLERANCE`
of the target, then prunes once at that ratio. Per-layer sparsities are held by correcting
those layers' own ratios inside each trial (`_held`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core import masks, measure
from pruning.core.structured import explain
from pruning.core.structured.layout import Layout, analyse
from pruning.core.structured.trial import Plan, Trial
from pruning.errors import UserError

TOLERANCE = 0.02  # |achieved - target| allowed (DESIGN.md §2)
MAX_RATIO = 0.99  # channel ratio upper bound of the search
MAX_TRIALS = 24
OVERRIDE_ROUNDS = 3
RETRIES = 4  # rounds of keeping whole the layers Torch-Pruning failed on

Point = tuple[float, float | None]  # (channel ratio, sparsity reached there, or None if unknown)


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
    outputs: tuple[str, ...] = ()  # layers whose outputs are the model's outputs: never shrunk


def _u(sparsity: float) -> float:
    """The channel ratio at which both sides of every layer reach `sparsity`: 1 - sqrt(1 - s)."""
    return 1.0 - math.sqrt(max(1.0 - sparsity, 0.0))


def _toward(a: Point, b: Point, target: float) -> float:
    """The ratio where the line through two points, in `_u` of their sparsity, meets the target."""
    (r0, s0), (r1, s1) = a, b
    return r0 + (_u(target) - _u(s0)) * (r1 - r0) / (_u(s1) - _u(s0))


def _next_ratio(lo: Point, hi: Point, below: list[Point], target: float, stuck: bool) -> float:
    """The next ratio to try between the bounds `lo` and `hi` (ratio, sparsity or None if unknown).

    Sparsity grows with the ratio about as 1 - (1 - ratio)^2, so it is about linear in `_u` of the
    sparsity: between two known bounds, interpolate (kept a twentieth of the bracket inside it),
    unless the same bound moved twice (`stuck`: the sparsity jumps somewhere in between, as where
    a coarse channel group goes); above the last known point below the target, extrapolate from
    the lowest and the highest of them (`below`: far apart, so a step in the sparsity cannot tilt
    the line; at most halfway to `hi`); else halve.
    """
    (r0, s0), (r1, s1) = lo, hi
    if s0 is not None and s1 is not None and s1 > s0 and not stuck:
        margin = (r1 - r0) / 20
        return min(max(_toward((r0, s0), (r1, s1), target), r0 + margin), r1 - margin)
    if s1 is None and len(below) >= 2 and below[-1][1] > below[0][1]:
        return min(max(_toward(below[0], below[-1], target), r0 + 1e-4), (r0 + r1) / 2)
    return (r0 + r1) / 2


def _search(
    trial_at: Callable[[float], Trial], target: float, tol: float, start: float | None
) -> tuple[Trial | None, Trial | None]:
    """Bracketed search over the channel ratio; the closest valid trial and the last that vanished.

    `start` is the sparsity at ratio 0 when known (no per-layer ratios, no heads removed).
    """
    if target <= 0.0:
        return trial_at(0.0), None
    lo: Point = (0.0, start)
    hi: Point = (MAX_RATIO, None)
    below = [(0.0, start)] if start is not None else []  # known points under the target, rising
    ratio = _u(target)  # guess: both sides of a layer shrink at this ratio
    best = blocked = None
    moved: list[str] = []  # which bound each trial moved
    for _ in range(MAX_TRIALS):
        t = trial_at(ratio)
        if t.vanished:
            hi, blocked = (ratio, None), t
            moved.append("hi")
        else:
            if best is None or abs(t.sparsity - target) < abs(best.sparsity - target):
                best = t
            if abs(t.sparsity - target) <= tol / 4:
                break
            if t.sparsity < target:
                lo = (ratio, t.sparsity)
                below.append(lo)
                moved.append("lo")
            else:
                hi = (ratio, t.sparsity)
                moved.append("hi")
        within = best is not None and abs(best.sparsity - target) <= tol
        if hi[0] - lo[0] < (1e-3 if within else 1e-4):  # a jump: nothing closer lies in between
            break
        ratio = _next_ratio(lo, hi, below, target, stuck=moved[-2:] in (["lo", "lo"], ["hi", "hi"]))
    return best, blocked


def _check_overrides(layout: Layout, overrides: Mapping[str, float]) -> None:
    fixed = {row["name"]: row["reason"] for row in layout.skipped if row["keeps"] in ("outputs", "all")}
    for name in overrides:
        if name in fixed:
            raise explain.fixed_layer(name, fixed[name])


def check(model: nn.Module, example: torch.Tensor, overrides: Mapping[str, float]) -> None:
    """Refuse, before any work, what `prune` would refuse for the model's layout."""
    _check_overrides(analyse(model, example), overrides)


def _inputs(layer: nn.Module) -> int:
    """A layer's input features (a transformers Conv1D stores its weight transposed)."""
    return layer.weight.shape[0 if masks.transposed(layer) else 1]


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
            kept_in = _inputs(layers[name]) / _inputs(plan.dense_layers[name])
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
    qkv = {p for a in attention.values() for p in a.projections} | set(attention)
    heads = {n: a.heads for n, a in attention.items()} if plan.heads else {}
    best = blocked = None
    for head_ratio in _head_ratios(heads, sparsity):
        ratios = {n: _u(s) for n, s in overrides.items()}  # warm-started per trial
        trial_at = functools.partial(_held, plan, head_ratio=head_ratio, overrides=overrides, ratios=ratios)
        start = plan.unpruned if not overrides and head_ratio == 0.0 else None
        best, blocked = _search(trial_at, sparsity, tol, start)
        attention_vanished = blocked is not None and bool(qkv & set(blocked.vanished))
        if best is not None and abs(best.sparsity - sparsity) <= tol or not attention_vanished:
            break  # fewer heads only help when a whole attention module was about to vanish
    if best is None or abs(best.sparsity - sparsity) > tol:
        reached = best.sparsity if best is not None else None
        vanished = blocked.vanished[0] if blocked is not None else None
        raise explain.unreached(sparsity, reached, vanished, bool(overrides))
    return best, best.head_ratio


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

    `importance` is a deterministic Torch-Pruning importance object; it scores the dense
    model once, and Taylor-style criteria read the gradients already stored in `model`.
    `scope="global"` ranks channels across layers, `"layer"` removes the same channel ratio
    everywhere; `overrides` give layers their own weight sparsity. Where Torch-Pruning fails on
    some layers, they keep their channels (listed in `skipped` with the failure) and the rest
    is pruned. Raises UserError when the target is out of reach or the pruned model breaks.
    """
    overrides = dict(overrides or {})
    kept: dict[str, str] = {}
    for attempt in range(RETRIES):
        try:
            return _prune(model, example, importance, sparsity, scope, overrides, heads, tol, kept)
        except explain.LayerFailure as failure:
            more = {n: failure.reason for n in failure.layers if n not in kept and n not in overrides}
            if not more or attempt == RETRIES - 1:
                raise
            kept.update(more)
        except UserError as exc:
            if not kept:
                raise
            raise UserError(f"{exc} (Torch-Pruning failed on {', '.join(kept)}: kept whole)") from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _prune(
    model: nn.Module,
    example: torch.Tensor,
    importance: Callable,
    sparsity: float,
    scope: str,
    overrides: dict[str, float],
    heads: bool,
    tol: float,
    kept: Mapping[str, str],
) -> Pruned:
    plan = Plan(model, example, importance, scope, heads, overrides, kept)
    _check_overrides(plan.layout, overrides)
    best, head_ratio = _closest(plan, sparsity, overrides, tol)
    pruned = plan.apply(best)
    explain.verify(pruned, example, plan.shape, plan.dense_layers)
    dense, layers = plan.dense_layers, masks.prunable_layers(pruned)
    reached = best.sparsity  # exact when every layer has the shape the trial foresaw; else count again
    if any(
        layers[n].weight.numel() != m.weight.numel() for n, m in masks.prunable_layers(best.model).items()
    ):
        reached = measure.sparsity(dense, layers)
        if abs(reached - sparsity) > tol:
            raise explain.unreached(sparsity, reached, None, bool(overrides))
    attention = plan.layout.attention
    return Pruned(
        pruned,
        reached,
        best.ratio,
        head_ratio if heads and attention else None,
        {n: a.heads for n, a in plan.attention.items()},  # heads left (`apply` updated them)
        plan.layout.skipped,
        plan.trials,
        {n: {"target": t, "sparsity": _layer_sparsity(dense, pruned, n)} for n, t in overrides.items()},
        plan.layout.outputs,
    )
