"""One pruner for the whole search: trials predict what a ratio would leave, `apply` prunes once.

Tracing Torch-Pruning's dependency graph and scoring every channel group cost more than the
pruning itself, so a `Plan` does both once, on one working copy of the model. A trial asks
the pruner which channels a step at given ratios would remove, without removing them, and
runs Torch-Pruning's own pruning functions on stand-ins of the modules (meta tensors: shapes
without values) to learn the sparsity that step would reach; `apply` then prunes the copy
once, at the ratios chosen, exactly as one direct `BasePruner(...).step()` at those ratios.
ResNet-18 at 224x224, half its weights: a pruned fresh copy per trial took 1.8-2.3 s, 9-12x one
direct step (0.2 s); one plan takes 0.35-0.37 s (benchmarks/structured.py). Groups that would
empty a layer are refused by Torch-Pruning and listed in `Trial.vanished`, so the search can
tell "too far" from "not far enough". This is the only place that builds a Torch-Pruning pruner.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks
from pruning.core.structured import attention, explain, hugging_face, internals, layout
from pruning.core.structured.layout import Layout
from pruning.core.tasks import logits


@dataclass
class Trial:
    """What pruning at one set of ratios would leave, found without pruning."""

    model: nn.Module  # a stand-in with the pruned shapes (meta tensors where the values do not matter)
    ratio: float
    head_ratio: float
    layer_ratios: dict[str, float]  # per-layer channel ratios (overridden layers)
    sparsity: float
    vanished: list[str] = field(default_factory=list)  # layers that would lose every channel


def _kept(weight: torch.Tensor) -> int:
    """Weights left that count as kept: a meta tensor stands for a layer without zeros."""
    return weight.numel() if weight.is_meta else int(torch.count_nonzero(weight))


def sparsity(dense_layers: Mapping[str, nn.Module], layers: Mapping[str, nn.Module]) -> float:
    """`measure.sparsity`, also for stand-ins: the fraction of dense prunable weights zero or removed."""
    total = sum(m.weight.numel() for m in dense_layers.values())
    return 1.0 - sum(_kept(m.weight) for n, m in layers.items() if n in dense_layers) / total


class Plan:
    """One Torch-Pruning pruner on a working copy of `model`, which `apply` prunes."""

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
        importance: Callable,
        scope: str,
        heads: bool,
        overridden: Iterable[str],
        kept: Mapping[str, str] | None = None,
    ):
        self.dense_layers = masks.prunable_layers(model)
        nonzero = {n: int(torch.count_nonzero(m.weight)) for n, m in self.dense_layers.items()}
        total = sum(m.weight.numel() for m in self.dense_layers.values())
        self.unpruned = 1.0 - sum(nonzero.values()) / total  # the sparsity of the zeros it holds already
        self.work = copy.deepcopy(model).eval()
        for name, p in self.work.named_parameters():  # deepcopy drops .grad; Taylor importance reads it
            source = model.get_parameter(name)
            if source.grad is not None:
                p.grad = source.grad.detach().clone()
        self.swapped = hugging_face.as_linear(self.work)  # Torch-Pruning knows nn.Linear, not Conv1D
        # the module Torch-Pruning prunes for each prunable layer (an attention projection: its owner)
        self.targets = {n: layout.module_of(m) for n, m in masks.prunable_layers(self.work).items()}
        self.attention, _ = attention.find(self.work)
        self.heads = heads
        self.trials = 0
        self.refused: list[str] = []  # groups the last step refused: they would empty a layer
        self.scoring: list[str] = []  # the groups scored, to name the last if Torch-Pruning fails
        self.pruner, self.shape = self._pruner(example, importance, scope, heads, overridden)
        graph = internals.dependency_graph(self.pruner)
        internals.hold_offsets(graph)  # nothing is pruned before `apply`
        self.layout: Layout = layout.read(graph, self.work, kept or {})
        kept_whole = [self.targets[n] for n in (*self.layout.outputs, *self.layout.kept)]
        internals.ignore(self.pruner, kept_whole + layout.embeddings(self.work))
        name = functools.partial(explain.group_name, graph)
        internals.record_refused_groups(self.pruner, lambda g: self.refused.append(name(g)))
        internals.score_once(self.pruner, lambda g: self.scoring.append(name(g)))
        work_layers = masks.prunable_layers(self.work)
        self._meta = self._meta_tensors(
            [work_layers[n].weight for n, m in self.dense_layers.items() if nonzero[n] < m.weight.numel()]
        )

    def _pruner(
        self, example: torch.Tensor, importance: Callable, scope: str, heads: bool, overridden: Iterable[str]
    ) -> tuple[tp.pruner.BasePruner, torch.Size]:
        """The pruner (its graph traces the model once) and the output shape that trace saw."""
        seen = []

        def output_shape(module, args, out) -> None:
            if args and args[0] is example and isinstance(logits(out), torch.Tensor):
                seen.append(logits(out).shape)

        hook = self.work.register_forward_hook(output_shape)
        num_heads = {p: a.heads for a in self.attention.values() for p in a.projections.values()}
        # attention whose heads stay whole is ignored from the start: Torch-Pruning's grouping of
        # grouped-query attention (keys and values repeated per head) does not finish
        whole = [self.work.get_submodule(n) for n in attention.find(self.work)[1]]
        self.prunes_heads = heads and bool(num_heads)
        try:
            with internals.quiet(), hugging_face.without_cache(self.work):
                pruner = tp.pruner.BasePruner(
                    self.work,
                    example,
                    importance,
                    global_pruning=scope == "global",
                    pruning_ratio=0.0,  # every trial aims it anew (`internals.aim`)
                    pruning_ratio_dict={self.targets[n]: 0.0 for n in overridden},
                    num_heads=num_heads,
                    prune_num_heads=self.prunes_heads,
                    prune_head_dims=not heads,
                    output_transform=logits,  # Hugging Face outputs and tuples: trace the logits
                    ignored_layers=whole + layout.embeddings(self.work),
                    **internals.channel_groups(self.work),
                )
        except Exception as exc:
            raise explain.untraceable(exc) from exc
        finally:
            hook.remove()
        if not seen:  # Torch-Pruning traced it some other way: run it once more
            with torch.no_grad():
                seen.append(logits(self.work(example)).shape)
        return pruner, seen[-1]

    def _meta_tensors(self, with_zeros: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """Every parameter and buffer's stand-in, by id: a meta tensor, except the weights of
        prunable layers that hold zeros, which stand for themselves (zeros count as removed)."""
        keep = {id(w) for w in with_zeros}
        meta: dict[int, torch.Tensor] = {}
        for t in itertools.chain(self.work.parameters(), self.work.buffers()):
            if id(t) in keep:
                meta[id(t)] = t  # Torch-Pruning's functions index it into new tensors, never in place
            elif isinstance(t, nn.Parameter):
                meta[id(t)] = nn.Parameter(torch.empty_like(t, device="meta"), requires_grad=t.requires_grad)
            else:
                meta[id(t)] = torch.empty_like(t, device="meta")
        return meta

    def _stand_ins(self) -> dict[nn.Module, nn.Module]:
        """A clone of every module holding stand-in tensors, for one trial to prune.

        Shallow: a clone shares nothing a pruning function writes (its own parameter, buffer
        and submodule dicts, its own copies of containers), and is never run. A deepcopy of
        ResNet-18 took 15 ms per trial, these clones 2 ms."""
        clones = {}
        for module in self.work.modules():
            clone = object.__new__(type(module))
            state = {k: v.copy() if isinstance(v, (list, dict, set)) else v for k, v in vars(module).items()}
            state["_parameters"] = {k: self._meta.get(id(v), v) for k, v in module._parameters.items()}
            state["_buffers"] = {k: self._meta.get(id(v), v) for k, v in module._buffers.items()}
            clone.__dict__.update(state)
            clones[module] = clone
        for module, clone in clones.items():
            clone._modules = {k: clones.get(child) for k, child in module._modules.items()}
        return clones

    def _aim(self, ratio: float, head_ratio: float, layer_ratios: Mapping[str, float]) -> None:
        per_layer = {self.targets[n]: r for n, r in layer_ratios.items()}
        internals.aim(self.pruner, ratio, head_ratio if self.prunes_heads else 0.0, per_layer)

    def trial(self, ratio: float, head_ratio: float, layer_ratios: Mapping[str, float]) -> Trial:
        """What pruning at these ratios would leave, and its sparsity; nothing is pruned."""
        self.trials += 1
        self.refused.clear()
        with internals.quiet(), explain.explained(self.scoring):
            self._aim(ratio, head_ratio, layer_ratios)
            groups, heads = internals.plan(self.pruner)
            stand_ins = self._stand_ins()
            internals.shrink(groups, stand_ins)
        model = stand_ins[self.work]
        layers = masks.prunable_layers(model)
        vanished = list(self.refused)
        vanished += [n for n, m in layers.items() if m.weight.numel() == 0]
        vanished += [n for n, a in self.attention.items() if heads.get(a.first, 1) < 1]
        reached = sparsity(self.dense_layers, layers)
        return Trial(model, ratio, head_ratio, dict(layer_ratios), reached, vanished)

    def apply(self, trial: Trial) -> nn.Module:
        """Prune the working copy at the trial's ratios and return it (the plan ends here)."""
        internals.release_offsets(internals.dependency_graph(self.pruner))
        with internals.quiet(), explain.explained(self.scoring):
            self._aim(trial.ratio, trial.head_ratio, trial.layer_ratios)
            self.pruner.step()
        for module in self.attention.values():
            module.follow(internals.heads_left(self.pruner, module.first))
        hugging_face.as_conv1d(self.work, self.swapped)
        self.work.zero_grad(set_to_none=True)  # the copied gradients were only there to score channels
        return self.work
