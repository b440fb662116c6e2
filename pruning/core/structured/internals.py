"""The one place that reaches into Torch-Pruning beyond its documented calls.

Pinned to torch-pruning==1.6.1 (requirements.txt; its `tp.__version__` still reads "1.6.0").
Before changing the pin, run tests/unit/test_torch_pruning_internals.py, which checks each
item below on a small model. What the rest of the package relies on, and why:

- `DependencyGraph._module2name` (module -> qualified name): names a channel group's layer
  in error messages; the graph has no public lookup.
- `DependencyGraph.module2node` (module -> Node) and `Node.outputs`: which layers the trace
  reached, and the terminal nodes (no outputs), i.e. the model's outputs.
- `DependencyGraph.get_pruner_of_module(m).prune_out_channels`, `get_pruning_group` and
  `get_all_groups(ignored_layers, root_module_types)`: the groups the pruner will form.
- A group iterates as `(dep, idxs)` pairs, root first; `dep.target.module` is the module
  and `DependencyGraph.is_out_channel_pruning_fn(dep.handler)` whether it loses output
  (else input) channels (`members`).
- `BasePruner.DG` is the pruner's graph. `step()` calls `DG.check_pruning_group(group)`
  through the instance and skips a group it refuses (one that would remove every channel
  of a layer); replacing it on the instance records those refusals.
- `BasePruner.estimate_importance(group)`: `step()` calls it through the instance for each
  group it scores; replacing it records the group, to name it if Torch-Pruning fails.
- `BasePruner.num_heads`: the dict passed as `num_heads`, decremented in place as `step()`
  removes heads, so it holds the heads left.
- `BasePruner(in_channel_groups=..., out_channel_groups=...)`: their defaults are dicts
  shared by every call, which the constructor fills (grouped convs, `num_heads`); fresh
  dicts keep one trial's modules out of the next pruner.
- Tracing warns about every unwrapped nn.Parameter and needs autograd (see `quiet`).
- Groups are rooted at conv, linear and LSTM layers: BasePruner's default
  `root_module_types`, repeated as `ROOT_TYPES` so the layout sees the pruner's groups.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
import torch_pruning as tp
from torch import nn

PINNED = "1.6.1"
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)


class Member(NamedTuple):
    """One step of a channel group: the module it prunes and on which side."""

    module: Any  # an nn.Module, a Torch-Pruning op or an unwrapped nn.Parameter
    outputs: bool  # it loses output channels (else input channels)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Torch-Pruning's per-parameter warnings and let it trace through autograd."""
    # It warns about every unwrapped nn.Parameter (e.g. a position embedding) it handles.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.enable_grad():  # it traces the model through autograd
            yield


def module_name(graph: tp.DependencyGraph, module: Any, default: str) -> str:
    return graph._module2name.get(module, default)


def traced(graph: tp.DependencyGraph) -> set:
    """The modules the trace reached."""
    return set(graph.module2node)


def terminal_modules(graph: tp.DependencyGraph) -> set:
    """Modules whose node feeds nothing: their outputs are the model's outputs."""
    return {node.module for node in graph.module2node.values() if not node.outputs}


def members(graph: tp.DependencyGraph, group: Iterable) -> list[Member]:
    return [Member(dep.target.module, graph.is_out_channel_pruning_fn(dep.handler)) for dep, _ in group]


def output_channel_group(graph: tp.DependencyGraph, layer: nn.Module) -> list[Member]:
    """What removing `layer`'s first output channel would also remove."""
    pruner = graph.get_pruner_of_module(layer)
    return members(graph, graph.get_pruning_group(layer, pruner.prune_out_channels, [0]))


def all_groups(graph: tp.DependencyGraph, ignored: list[nn.Module]) -> Iterator[list[Member]]:
    """Every channel group the pruner would form, rooted as it roots them."""
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        yield members(graph, group)


def fresh_channel_groups() -> dict[str, dict]:
    """BasePruner keyword arguments replacing its shared, mutated default dicts."""
    return {"in_channel_groups": {}, "out_channel_groups": {}}


def dependency_graph(pruner: tp.pruner.BasePruner) -> tp.DependencyGraph:
    return pruner.DG


def record_refused_groups(pruner: tp.pruner.BasePruner, on_refused: Callable[[Any], None]) -> None:
    """Call `on_refused(group)` for each group `step()` skips because it would empty a layer."""
    check = pruner.DG.check_pruning_group

    def recording(group) -> bool:
        ok = check(group)
        if not ok:
            on_refused(group)
        return ok

    pruner.DG.check_pruning_group = recording


def record_scored_groups(pruner: tp.pruner.BasePruner, on_scored: Callable[[Any], None]) -> None:
    """Call `on_scored(group)` before `step()` scores each group."""
    estimate = pruner.estimate_importance

    def scored(group):
        on_scored(group)
        return estimate(group)

    pruner.estimate_importance = scored


def heads_left(pruner: tp.pruner.BasePruner, qkv: nn.Module) -> int:
    return pruner.num_heads[qkv]
