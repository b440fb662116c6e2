"""Structured pruning with physical removal, through Torch-Pruning's dependency graph.

Torch-Pruning removes whole channel groups (a conv's filters together with the
BatchNorm, the next layer's inputs and every residual partner), so the pruned
model is really smaller. It is steered by a channel ratio, while Pruning Lab's
`sparsity` is the fraction of the dense model's prunable weights removed
(DESIGN.md §2): `prune` searches the ratio by bisection, each trial on a fresh
copy, until the achieved sparsity lands within `TOLERANCE` of the target.

Layers whose outputs are the model's outputs are never shrunk (the output shape
must not change); they and other layers that cannot lose channels are reported
as `skipped`. Attention modules in timm's convention (a fused `qkv` Linear and
an int `num_heads`) lose whole heads or shrink every head, and their
`num_heads` is updated so their forward stays valid.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks, measure
from pruning.errors import UserError

TOLERANCE = 0.02  # |achieved - target| allowed (DESIGN.md §2)
MAX_RATIO = 0.99  # channel ratio upper bound of the search
MAX_TRIALS = 24
OVERRIDE_ROUNDS = 3
UNSTRUCTURED_HINT = "use an unstructured method such as magnitude"
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)


@dataclass(frozen=True)
class Layout:
    """What the dependency graph says about a model's prunable layers."""

    outputs: tuple[str, ...]  # layers whose output channels are the model's outputs
    attention: dict[str, int]  # attention module name -> num_heads
    skipped: list[dict]  # {"name", "keeps", "reason"} for layers that cannot lose channels


@dataclass
class Trial:
    model: nn.Module
    ratio: float
    sparsity: float
    vanished: list[str] = field(default_factory=list)  # layers that would lose every channel


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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Torch-Pruning warns about every unwrapped nn.Parameter (e.g. a position embedding) it handles.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.enable_grad():  # it traces the model through autograd
            yield


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules in timm's attention convention: an int `num_heads` and a fused `qkv` Linear."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "num_heads", None), int) and isinstance(getattr(m, "qkv", None), nn.Linear)
    }


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    try:
        with _quiet():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:
        raise UserError(
            f"Torch-Pruning cannot trace this model ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}); {UNSTRUCTURED_HINT}"
        ) from exc


def _touches_output(graph: tp.DependencyGraph, layer: nn.Module, terminal: set) -> bool:
    """Would removing one of `layer`'s output channels change a model output (a terminal node)?"""
    pruner = graph.get_pruner_of_module(layer)
    group = graph.get_pruning_group(layer, pruner.prune_out_channels, [0])
    return any(graph.is_out_channel_pruning_fn(dep.handler) and dep.target in terminal for dep, _ in group)


def analyse(model: nn.Module, example: torch.Tensor) -> Layout:
    """Output layers, attention modules and the layers that cannot lose channels, on a copy."""
    model = copy.deepcopy(model)
    graph = _graph(model, example)
    layers = masks.prunable_layers(model)
    names = {m: n for n, m in layers.items()}
    traced = {n for n, m in layers.items() if m in graph.module2node}
    terminal = {node for node in graph.module2node.values() if not node.outputs}
    outputs = tuple(n for n in layers if n in traced and _touches_output(graph, layers[n], terminal))
    out_ok, in_ok = set(), set()
    with _quiet():
        ignored = [layers[n] for n in outputs]
        for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
            for dep, _ in group:
                if dep.target.module in names:
                    out = graph.is_out_channel_pruning_fn(dep.handler)
                    (out_ok if out else in_ok).add(names[dep.target.module])
    skipped = []
    for name in layers:
        if name not in traced:
            keeps, reason = "all", "the model's forward pass does not use it"
        elif name in outputs:
            keeps = "outputs" if name in in_ok else "all"
            reason = "its outputs are the model's outputs (e.g. the classes)"
            reason += ": only its input channels shrink" if name in in_ok else " and its inputs are fixed"
        elif name not in out_ok and name not in in_ok:
            keeps, reason = "all", "Torch-Pruning found no channel group of it that can be removed"
        elif name not in in_ok:
            keeps = "inputs"
            reason = "its inputs are fixed (the model's input features): only its output channels shrink"
        elif name not in out_ok:
            keeps = "outputs"
            reason = "its outputs feed something that cannot shrink: only its input channels shrink"
        else:
            continue
        skipped.append({"name": name, "keeps": keeps, "reason": reason})
    heads = {n: m.num_heads for n, m in attention_modules(model).items()}
    return Layout(outputs, heads, skipped)


@contextlib.contextmanager
def _explained(scoring: list[str]) -> Iterator[None]:
    """Turn a failure inside Torch-Pruning into a UserError naming the layer it was handling."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        where = f" at layer {scoring[-1]}" if scoring else ""
        raise UserError(
            f"Torch-Pruning cannot follow this architecture{where} ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}); {UNSTRUCTURED_HINT}"
        ) from exc


def _group_name(graph: tp.DependencyGraph, group) -> str:
    """The first layer of a group whose output channels it removes (else its root)."""
    for dep, _ in group:
        if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, ROOT_TYPES):
            return graph._module2name.get(dep.target.module, str(dep.target.module))
    return graph._module2name.get(group[0].dep.target.module, "?")


@dataclass
class Plan:
    """Everything a trial needs except the ratios it tries."""

    source: nn.Module
    grads: Mapping[str, torch.Tensor]
    example: torch.Tensor
    importance: Callable
    layout: Layout
    dense_layers: Mapping[str, nn.Module]
    scope: str
    heads: bool
    trials: int = 0

    def trial(self, ratio: float, head_ratio: float, override_ratios: Mapping[str, float]) -> Trial:
        """Prune a fresh copy of the source at these ratios and measure its sparsity."""
        self.trials += 1
        model = copy.deepcopy(self.source)
        for name, p in model.named_parameters():  # deepcopy drops .grad; Taylor importance reads it
            if name in self.grads:
                p.grad = self.grads[name].clone()
        modules = dict(model.named_modules())
        attention = {n: modules[n] for n in self.layout.attention}
        num_heads = {m.qkv: m.num_heads for m in attention.values()}
        vanished: list[str] = []
        scoring: list[str] = []  # the group being scored, to name it if Torch-Pruning fails
        with _quiet(), _explained(scoring):
            pruner = tp.pruner.BasePruner(
                model,
                self.example,
                self.importance,
                global_pruning=self.scope == "global",
                pruning_ratio=ratio,
                pruning_ratio_dict={modules[n]: r for n, r in override_ratios.items()},
                ignored_layers=[modules[n] for n in self.layout.outputs],
                in_channel_groups={},  # Torch-Pruning mutates these; its defaults are shared dicts
                out_channel_groups={},
                num_heads=num_heads,
                prune_num_heads=self.heads and bool(num_heads),
                prune_head_dims=not self.heads,
                head_pruning_ratio=head_ratio if self.heads else 0.0,
            )
            check = pruner.DG.check_pruning_group

            def recording(group) -> bool:  # a refused group would have lost every channel
                ok = check(group)
                if not ok:
                    vanished.append(_group_name(pruner.DG, group))
                return ok

            def scored(group):
                scoring.append(_group_name(pruner.DG, group))
                return self.importance(group)

            pruner.DG.check_pruning_group = recording
            pruner.estimate_importance = scored
            pruner.step()
        for module in attention.values():
            module.num_heads = pruner.num_heads[module.qkv]
        model.zero_grad(set_to_none=True)
        layers = masks.prunable_layers(model)
        vanished += [n for n, m in layers.items() if m.weight.numel() == 0]
        vanished += [n for n, m in attention.items() if m.num_heads < 1]
        return Trial(model, ratio, measure.sparsity(self.dense_layers, layers), vanished)


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


def _failure(model: nn.Module, example: torch.Tensor) -> tuple[str, Exception] | None:
    """Run the model; on an exception, name the innermost module that had not finished."""
    entered, finished = [], set()
    hooks = []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: entered.append(n)))
        hooks.append(module.register_forward_hook(lambda m, a, o, n=name: finished.add(n)))
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        failing = [n for n in entered if n and n not in finished]
        return (failing[-1] if failing else "its own forward"), exc
    finally:
        for h in hooks:
            h.remove()
    return None


def _verify(model: nn.Module, example: torch.Tensor, shape: torch.Size) -> None:
    failed = _failure(model.eval(), example)
    if failed:
        where, exc = failed
        raise UserError(
            f"Torch-Pruning could not prune this architecture consistently: the pruned model fails in "
            f"{where} ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}); {UNSTRUCTURED_HINT}"
        )
    with torch.no_grad():
        got = model(example).shape
    if got != shape:
        raise UserError(
            f"structured pruning changed the model's output shape from {tuple(shape)} to {tuple(got)}; "
            f"{UNSTRUCTURED_HINT}"
        )


def _check_overrides(layout: Layout, overrides: Mapping[str, float]) -> None:
    fixed = {row["name"]: row["reason"] for row in layout.skipped if row["keeps"] in ("outputs", "all")}
    for name in overrides:
        if name in fixed:
            why = fixed[name].split(":")[0]
            raise UserError(
                f"layer {name} cannot lose output channels ({why}), so a structured method cannot set its "
                f"sparsity: drop its per-layer sparsity or {UNSTRUCTURED_HINT}"
            )


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
    best = blocked = None
    for head_ratio in _head_ratios(layout.attention if heads else {}, sparsity):
        ratios = {n: 1.0 - math.sqrt(1.0 - s) for n, s in overrides.items()}  # warm-started per trial
        trial_at = functools.partial(_held, plan, head_ratio=head_ratio, overrides=overrides, ratios=ratios)
        best, blocked = _search(trial_at, sparsity, tol)
        qkv = {f"{n}.qkv" for n in layout.attention} | set(layout.attention)
        attention_vanished = blocked is not None and bool(qkv & set(blocked.vanished))
        if best is not None and abs(best.sparsity - sparsity) <= tol or not attention_vanished:
            break  # fewer heads only help when a whole attention module was about to vanish
    if best is None or abs(best.sparsity - sparsity) > tol:
        reached = f"{best.sparsity:.3f}" if best is not None else "none"
        if best is not None and best.sparsity > sparsity and overrides:
            raise UserError(
                f"the per-layer sparsities alone remove {best.sparsity:.2f} of the prunable weights, "
                f"more than the target {sparsity:.2f} (a layer's removed output channels are also the "
                "next layer's inputs); raise --sparsity or lower the per-layer values"
            )
        if blocked is not None:
            raise UserError(
                f"structured pruning cannot reach sparsity {sparsity:.2f} here: it would remove every "
                f"channel of layer {blocked.vanished[0]} (closest reachable: {reached}); lower --sparsity or "
                f"{UNSTRUCTURED_HINT}"
            )
        raise UserError(
            f"structured pruning reached sparsity {reached}, not {sparsity:.2f}: too few channels of this "
            f"model can be removed with this criterion; {UNSTRUCTURED_HINT}"
        )
    _verify(best.model, example, shape)
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
