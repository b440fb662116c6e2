"""One trial of the search: prune a fresh copy of the model at given ratios, measure it.

Each trial starts from the unpruned source, so trials are independent and the search can
try ratios in any order. Groups that would empty a layer are refused by Torch-Pruning and
listed in `Trial.vanished`, so the search can tell "too far" from "not far enough".
This is the only place that builds a Torch-Pruning pruner.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks, measure
from pruning.core.structured import explain, internals
from pruning.core.structured.layout import Layout


@dataclass
class Trial:
    """The model one trial left and the sparsity it reached."""

    model: nn.Module
    ratio: float
    sparsity: float
    vanished: list[str] = field(default_factory=list)  # layers that would lose every channel


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

    def _pruner(
        self, model: nn.Module, ratio: float, head_ratio: float, override_ratios: Mapping[str, float]
    ) -> tp.pruner.BasePruner:
        modules = dict(model.named_modules())
        num_heads = {modules[n].qkv: modules[n].num_heads for n in self.layout.attention}
        return tp.pruner.BasePruner(
            model,
            self.example,
            self.importance,
            global_pruning=self.scope == "global",
            pruning_ratio=ratio,
            pruning_ratio_dict={modules[n]: r for n, r in override_ratios.items()},
            ignored_layers=[modules[n] for n in self.layout.outputs],
            num_heads=num_heads,
            prune_num_heads=self.heads and bool(num_heads),
            prune_head_dims=not self.heads,
            head_pruning_ratio=head_ratio if self.heads else 0.0,
            **internals.fresh_channel_groups(),
        )

    def trial(self, ratio: float, head_ratio: float, override_ratios: Mapping[str, float]) -> Trial:
        """Prune a fresh copy of the source at these ratios and measure its sparsity."""
        self.trials += 1
        model = copy.deepcopy(self.source)
        for name, p in model.named_parameters():  # deepcopy drops .grad; Taylor importance reads it
            if name in self.grads:
                p.grad = self.grads[name].clone()
        modules = dict(model.named_modules())
        attention = {n: modules[n] for n in self.layout.attention}
        vanished: list[str] = []  # a refused group would have lost every channel
        scoring: list[str] = []  # the group being scored, to name it if Torch-Pruning fails
        with internals.quiet(), explain.explained(scoring):
            pruner = self._pruner(model, ratio, head_ratio, override_ratios)
            graph = internals.dependency_graph(pruner)
            internals.record_refused_groups(pruner, lambda g: vanished.append(explain.group_name(graph, g)))
            internals.record_scored_groups(pruner, lambda g: scoring.append(explain.group_name(graph, g)))
            pruner.step()
        for module in attention.values():
            module.num_heads = internals.heads_left(pruner, module.qkv)
        model.zero_grad(set_to_none=True)  # the copied gradients were only there to score channels
        layers = masks.prunable_layers(model)
        vanished += [n for n, m in layers.items() if m.weight.numel() == 0]
        vanished += [n for n, m in attention.items() if m.num_heads < 1]
        return Trial(model, ratio, measure.sparsity(self.dense_layers, layers), vanished)
