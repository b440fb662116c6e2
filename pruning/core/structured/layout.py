"""What Torch-Pruning's dependency graph says about a model's prunable layers.

Before any pruning: which layers produce the model's outputs (never shrunk, so the output
shape holds), which are attention modules (they lose whole heads), and which layers cannot
lose channels at all, with the reason shown to the user.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks
from pruning.core.structured import explain, internals
from pruning.core.tasks import logits


@dataclass(frozen=True)
class Layout:
    """What the dependency graph says about a model's prunable layers."""

    outputs: tuple[str, ...]  # layers whose output channels are the model's outputs
    attention: dict[str, int]  # attention module name -> num_heads
    skipped: list[dict]  # {"name", "keeps", "reason"} for layers that cannot lose channels


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules in timm's attention convention: an int `num_heads` and a fused `qkv` Linear."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "num_heads", None), int) and isinstance(getattr(m, "qkv", None), nn.Linear)
    }


def graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    try:
        with internals.quiet():
            # a Hugging Face output (`.logits`) or a tuple: traced from the logits
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example, output_transform=logits
            )
    except Exception as exc:
        raise explain.untraceable(exc) from exc


def _touches_output(graph: tp.DependencyGraph, layer: nn.Module, terminal: set) -> bool:
    """Would removing one of `layer`'s output channels change a model output (a terminal module)?"""
    return any(
        step.outputs and step.module in terminal for step in internals.output_channel_group(graph, layer)
    )


def _skip_reason(traced: bool, output: bool, out_ok: bool, in_ok: bool) -> tuple[str, str] | None:
    """(what the layer keeps, why) for a layer that cannot lose channels on both sides, else None."""
    if not traced:
        return "all", "the model's forward pass does not use it"
    if output:
        reason = "its outputs are the model's outputs (e.g. the classes)"
        if in_ok:
            return "outputs", reason + ": only its input channels shrink"
        return "all", reason + " and its inputs are fixed"
    if not out_ok and not in_ok:
        return "all", "Torch-Pruning found no channel group of it that can be removed"
    if not in_ok:
        return "inputs", "its inputs are fixed (the model's input features): only its output channels shrink"
    if not out_ok:
        return "outputs", "its outputs feed something that cannot shrink: only its input channels shrink"
    return None


def analyse(model: nn.Module, example: torch.Tensor) -> Layout:
    """Output layers, attention modules and the layers that cannot lose channels, on a copy."""
    model = copy.deepcopy(model)
    return read(graph(model, example), model)


def module_of(layer: nn.Module | masks.Projection) -> nn.Module:
    """The module Torch-Pruning prunes for a prunable layer: itself, or a projection's owner."""
    return layer.owner if isinstance(layer, masks.Projection) else layer


def read(graph: tp.DependencyGraph, model: nn.Module) -> Layout:
    """The layout of `model` from its dependency graph (before anything is pruned)."""
    layers = {n: module_of(layer) for n, layer in masks.prunable_layers(model).items()}
    names: dict[nn.Module, list[str]] = {}
    for name, module in layers.items():  # an attention module owns one to three projections
        names.setdefault(module, []).append(name)
    reached = internals.traced(graph)
    inside = internals.used_inside(reached)  # pruned with the module that uses them
    traced = {n for n, m in layers.items() if m in reached or m in inside}
    terminal = internals.terminal_modules(graph)
    outputs = tuple(n for n, m in layers.items() if m in reached and _touches_output(graph, m, terminal))
    out_ok, in_ok = set(), set()
    with internals.quiet():
        for group in internals.all_groups(graph, ignored=[layers[n] for n in outputs]):
            for step in group:
                # a depthwise conv loses inputs and outputs at once: its channels are both
                if step.outputs:
                    out_ok.update(names.get(step.module, ()))
                if step.inputs:
                    in_ok.update(names.get(step.module, ()))
    skipped = []
    for name in layers:
        kept = _skip_reason(name in traced, name in outputs, name in out_ok, name in in_ok)
        if kept is not None:
            skipped.append({"name": name, "keeps": kept[0], "reason": kept[1]})
    heads = {n: m.num_heads for n, m in attention_modules(model).items()}
    return Layout(outputs, heads, skipped)
