"""What Torch-Pruning's dependency graph says about a model's prunable layers.

Before any pruning: which layers produce the model's outputs (never shrunk, so the output
shape holds), which are attention modules (they lose whole heads), and which layers cannot
lose channels at all, with the reason shown to the user.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks
from pruning.core.structured import attention, explain, hugging_face, internals
from pruning.core.structured.attention import Attention
from pruning.core.tasks import logits


@dataclass(frozen=True)
class Layout:
    """What the dependency graph says about a model's prunable layers."""

    outputs: tuple[str, ...]  # layers whose output channels are the model's outputs
    attention: dict[str, Attention]  # attention modules whose heads can be removed, by name
    kept: dict[str, str]  # layers whose output channels stay, besides `outputs` -> why
    skipped: list[dict]  # {"name", "keeps", "reason"} for layers that cannot lose channels


HIDDEN_REASON = (
    "its outputs are the model's hidden size, the width of an embedding, which structured removal keeps"
)


def embeddings(model: nn.Module) -> list[nn.Module]:
    """The model's nn.Embedding modules: their width (a transformer's hidden size) is kept."""
    return [m for m in model.modules() if isinstance(m, nn.Embedding)]


def graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    try:
        with internals.quiet(), hugging_face.without_cache(model):
            # a Hugging Face output (`.logits`) or a tuple: traced from the logits
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example, output_transform=logits
            )
    except Exception as exc:
        raise explain.untraceable(exc) from exc


def _skip_reason(
    traced: bool, output: bool, out_ok: bool, in_ok: bool, kept: str | None, hidden_in: bool
) -> tuple[str, str] | None:
    """(what the layer keeps, why) for a layer that cannot lose channels on both sides, else None."""
    if not traced:
        return "all", "the model's forward pass does not use it"
    if output:
        reason = "its outputs are the model's outputs (e.g. the classes)"
        if in_ok:
            return "outputs", reason + ": only its input channels shrink"
        return "all", reason + " and its inputs are fixed"
    if kept is not None:
        return ("outputs", f"{kept}; only its input channels shrink") if in_ok else ("all", kept)
    if not out_ok and not in_ok:
        return "all", "Torch-Pruning found no channel group of it that can be removed"
    if not in_ok and hidden_in:
        return (
            "inputs",
            "its inputs are the model's hidden size, which is kept: only its output channels shrink",
        )
    if not in_ok:
        return "inputs", "its inputs are fixed (the model's input features): only its output channels shrink"
    if not out_ok:
        return "outputs", "its outputs feed something that cannot shrink: only its input channels shrink"
    return None


def analyse(model: nn.Module, example: torch.Tensor, kept: Mapping[str, str] | None = None) -> Layout:
    """Output layers, attention modules and the layers that cannot lose channels, on a copy."""
    model = copy.deepcopy(model)
    hugging_face.as_linear(model)
    return read(graph(model, example), model, kept or {})


def module_of(layer: nn.Module | masks.Projection) -> nn.Module:
    """The module Torch-Pruning prunes for a prunable layer: itself, or a projection's owner."""
    return layer.owner if isinstance(layer, masks.Projection) else layer


def read(graph: tp.DependencyGraph, model: nn.Module, kept: Mapping[str, str]) -> Layout:
    """The layout of `model` from its dependency graph (before anything is pruned); `kept` are
    layers whose output channels must stay (layer name -> why)."""
    layers = {n: module_of(layer) for n, layer in masks.prunable_layers(model).items()}
    names: dict[nn.Module, list[str]] = {}
    for name, module in layers.items():  # an attention module owns one to three projections
        names.setdefault(module, []).append(name)
    reached = internals.traced(graph)
    inside = internals.used_inside(reached)  # pruned with the module that uses them
    traced = {n for n, m in layers.items() if m in reached or m in inside}
    terminal = internals.terminal_modules(graph)
    widths = set(embeddings(model))
    heads, whole = attention.find(model)
    kept = {**whole, **kept}
    outputs, hidden = [], {}
    reads_hidden: set[str] = set()  # layers whose inputs are an embedding's width
    for name, module in layers.items():
        if module not in reached or name in whole:  # attention kept whole: never grouped (trial.py)
            continue
        group = internals.output_channel_group(graph, module)
        if any(step.outputs and step.module in terminal for step in group):
            outputs.append(name)
        elif any(step.module in widths for step in group):
            reads_hidden.update(n for step in group if step.inputs for n in names.get(step.module, ()))
            if name not in kept:
                hidden[name] = HIDDEN_REASON
    kept = {**kept, **hidden}
    ignored = [layers[n] for n in (*outputs, *kept) if n in layers] + list(widths)
    out_ok, in_ok = set(), set()
    with internals.quiet():
        for group in internals.all_groups(graph, ignored=ignored):
            for step in group:
                # a depthwise conv loses inputs and outputs at once: its channels are both
                if step.outputs:
                    out_ok.update(names.get(step.module, ()))
                if step.inputs:
                    in_ok.update(names.get(step.module, ()))
    skipped = []
    for name in layers:
        hidden_in = name in reads_hidden
        why = _skip_reason(
            name in traced, name in outputs, name in out_ok, name in in_ok, kept.get(name), hidden_in
        )
        if why is not None:
            skipped.append({"name": name, "keeps": why[0], "reason": why[1]})
    return Layout(tuple(outputs), heads, {n: r for n, r in kept.items() if n in layers}, skipped)
