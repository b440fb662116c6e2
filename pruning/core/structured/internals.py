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
- A group iterates as `(dep, idxs)` pairs, root first; `dep.target.module` is the module,
  `DependencyGraph.is_out_channel_pruning_fn(dep.handler)` / `is_in_channel_pruning_fn`
  which side it loses (both for a depthwise conv, whose channels are its inputs and outputs
  at once), and `idxs` hold `_HybridIndex` items whose `.idx` indexes the target (`members`).
- `nn.MultiheadAttention` is pruned as one module: its pruner shrinks the embedding of the
  in-projection and of `out_proj` on both sides, and `out_proj` is never traced by itself.
  Its embedding stays divisible by `num_heads` only with channel groups of `num_heads`
  (`channel_groups`).
- `BasePruner.DG` is the pruner's graph. `step()` calls `DG.check_pruning_group(group)`
  through the instance and skips a group it refuses (one that would remove every channel
  of a layer); replacing it on the instance records those refusals.
- `BasePruner.estimate_importance(group)`: `step()` calls it through the instance for each
  group it scores; replacing it records the group, to name it if Torch-Pruning fails, and
  keeps the scores, so one pruner scores the dense model once for every trial (`score_once`).
  `step()` forms the groups with `DG.get_all_groups(ignored_layers=, root_module_types=)`,
  also through the instance: they are kept too. Nothing is pruned before the last group is
  scored (the step is a generator whose first phase scores every group), so the groups
  and scores kept from the dense model are also those of the step that prunes.
- One pruner, many trials (`aim`, `plan`): `reset()` then `step(interactive=True)` yields
  the groups it would prune without pruning them, every index in the unpruned model's
  numbering (`get_pruning_group` re-reads concat offsets from the current shapes). The
  ratios a step uses are `per_step_pruning_ratio`, `per_step_head_pruning_ratio` and
  `pruning_ratio_dict[module]` (schedules the constructor builds from its arguments;
  `_layer_to_scope` keeps the per-layer scopes it built). `_scope_initial_channels` is
  filled by the first step and stays right while nothing is pruned.
- `DependencyGraph.get_pruning_group` first calls `index_mapping.update_index_mapping(graph)`
  (through the module), which re-reads every concat, split, reshape and slice offset from the
  current shapes: 16 ms a group on DenseNet-121, most of a trial. The graph's build ends
  with the same call, so while nothing is pruned it changes nothing; `hold_offsets` skips it
  for one graph (a wrapper installed once, calling the original for every other graph).
- `BasePruner.num_heads`: the dict passed as `num_heads`, decremented in place as `step()`
  removes heads, so it holds the heads left; a step that only yields does the same, and
  also rewrites `out_channel_groups[qkv]`, so `plan` puts both back.
- `BasePruner.ignored_layers` (every submodule of the ignored layers) and the totals the
  constructor counts over the groups that are not ignored (`initial_total_channels`,
  `initial_total_heads`) are all it derives from `ignored_layers`: `ignore` sets them on a
  built pruner, so the graph it traced also tells which layers to ignore.
- A dependency calls `dep.handler(module, plain_idxs)` after setting the handler's
  `pruning_dim` to `dep.target.pruning_dim`; handlers build new parameters (they never
  write in place), so `shrink` runs them on stand-in modules to learn the shapes a step
  would leave.
- `BasePruner(in_channel_groups=..., out_channel_groups=...)`: their defaults are dicts
  shared by every call, which the constructor fills (grouped convs, `num_heads`); fresh
  dicts keep one model's modules out of the next pruner.
- Tracing warns about every unwrapped nn.Parameter and needs autograd (see `quiet`).
- Groups are rooted at conv, linear and LSTM layers: BasePruner's default
  `root_module_types`, repeated as `ROOT_TYPES` so the layout sees the pruner's groups.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

PINNED = "1.6.1"
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)


class Member(NamedTuple):
    """One step of a channel group: the module it prunes and on which sides."""

    module: Any  # an nn.Module, a Torch-Pruning op or an unwrapped nn.Parameter
    outputs: bool  # it loses output channels
    inputs: bool  # it loses input channels (both, for a depthwise conv or a BatchNorm)


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


def used_inside(modules: Iterable) -> set:
    """Layers the trace cannot reach that these modules use: each nn.MultiheadAttention's `out_proj`."""
    return {m.out_proj for m in modules if isinstance(m, nn.MultiheadAttention)}


def terminal_modules(graph: tp.DependencyGraph) -> set:
    """Modules whose node feeds nothing: their outputs are the model's outputs."""
    return {node.module for node in graph.module2node.values() if not node.outputs}


def members(graph: tp.DependencyGraph, group: Iterable) -> list[Member]:
    """Each step of `group`; an nn.MultiheadAttention brings its `out_proj`, which shrinks with it."""
    steps = []
    for dep, _ in group:
        module, handler = dep.target.module, dep.handler
        steps.append(
            Member(module, graph.is_out_channel_pruning_fn(handler), graph.is_in_channel_pruning_fn(handler))
        )
        if isinstance(module, nn.MultiheadAttention):
            steps.append(Member(module.out_proj, True, True))
    return steps


def output_channel_group(graph: tp.DependencyGraph, layer: nn.Module) -> list[Member]:
    """What removing `layer`'s first output channel would also remove."""
    pruner = graph.get_pruner_of_module(layer)
    return members(graph, graph.get_pruning_group(layer, pruner.prune_out_channels, [0]))


def input_channel_group(graph: tp.DependencyGraph, layer: nn.Module) -> list[Member]:
    """What removing `layer`'s first input channel would also remove."""
    pruner = graph.get_pruner_of_module(layer)
    return members(graph, graph.get_pruning_group(layer, pruner.prune_in_channels, [0]))


def all_groups(graph: tp.DependencyGraph, ignored: list[nn.Module]) -> Iterator[list[Member]]:
    """Every channel group the pruner would form, rooted as it roots them."""
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        yield members(graph, group)


def channel_groups(model: nn.Module) -> dict[str, dict]:
    """BasePruner keyword arguments: fresh dicts in place of its shared, mutated defaults, holding
    `num_heads` groups for each nn.MultiheadAttention so that every head loses the same dims."""
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return {"in_channel_groups": dict(heads), "out_channel_groups": dict(heads)}


def dependency_graph(pruner: tp.pruner.BasePruner) -> tp.DependencyGraph:
    return pruner.DG


def ignore(pruner: tp.pruner.BasePruner, layers: Iterable[nn.Module]) -> None:
    """Ignore `layers` in a built pruner, as if the constructor had been given them."""
    pruner.ignored_layers = [m for layer in layers for m in layer.modules()]
    channels = heads = 0
    ignored, roots = pruner.ignored_layers, pruner.root_module_types
    for group in pruner.DG.get_all_groups(ignored_layers=ignored, root_module_types=roots):
        if pruner._is_atten_group(group)[0]:
            group = pruner._downstream_node_as_root_if_attention(group)
            if group is None:
                continue
        channels += pruner.DG.get_out_channels(group[0][0].target.module) // pruner._get_channel_groups(group)
        for dep, _ in group:
            if dep.target.module in pruner.num_heads and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                heads += pruner.num_heads[dep.target.module]
                break
    pruner.initial_total_channels, pruner.initial_total_heads = channels, heads


def record_refused_groups(pruner: tp.pruner.BasePruner, on_refused: Callable[[Any], None]) -> None:
    """Call `on_refused(group)` for each group `step()` skips because it would empty a layer."""
    check = pruner.DG.check_pruning_group

    def recording(group) -> bool:
        ok = check(group)
        if not ok:
            on_refused(group)
        return ok

    pruner.DG.check_pruning_group = recording


def score_once(pruner: tp.pruner.BasePruner, on_scored: Callable[[Any], None]) -> None:
    """Form the groups and score each only once, calling `on_scored(group)` before `step()` scores
    it: while nothing is pruned, later steps would form the same groups and compute the same scores.
    Stays right for the step that prunes: it forms and scores every group before pruning any."""
    estimate, form = pruner.estimate_importance, pruner.DG.get_all_groups
    scores: dict[tuple, Any] = {}
    formed: dict[tuple, list] = {}

    def scored(group):
        on_scored(group)
        dep, _ = group[0]
        key = (dep.target.module, dep.handler)
        if key not in scores:
            scores[key] = estimate(group)
        return scores[key]

    def groups(ignored_layers=(), root_module_types=ROOT_TYPES):
        key = (tuple(map(id, ignored_layers)), tuple(root_module_types))
        if key not in formed:
            formed[key] = list(form(ignored_layers=list(ignored_layers), root_module_types=root_module_types))
        return iter(formed[key])

    pruner.estimate_importance = scored
    pruner.DG.get_all_groups = groups


def aim(
    pruner: tp.pruner.BasePruner, ratio: float, head_ratio: float, layer_ratios: Mapping[nn.Module, float]
) -> None:
    """Point the pruner's next step at these ratios, as if the constructor had been given them;
    the modules of `layer_ratios` must have been in its `pruning_ratio_dict`."""
    schedule, steps = pruner.iterative_pruning_ratio_scheduler, pruner.iterative_steps
    pruner.pruning_ratio, pruner.head_pruning_ratio = ratio, head_ratio
    pruner.per_step_pruning_ratio = schedule(ratio, steps)
    pruner.per_step_head_pruning_ratio = schedule(head_ratio, steps)
    for module, layer_ratio in layer_ratios.items():
        pruner.pruning_ratio_dict[module] = schedule(layer_ratio, steps)
    pruner.reset()


def plan(pruner: tp.pruner.BasePruner) -> tuple[list, dict]:
    """The groups the next step would prune, without pruning them, and the heads it would leave."""
    heads = dict(pruner.num_heads)
    grouped = {m: pruner.out_channel_groups[m] for m in heads if m in pruner.out_channel_groups}
    try:
        groups = list(pruner.step(interactive=True))
        left = dict(pruner.num_heads)
    finally:
        pruner.num_heads.update(heads)
        pruner.out_channel_groups.update(grouped)
        pruner.reset()
    return groups, left


def shrink(groups: Iterable, stand_ins: Mapping[Any, nn.Module]) -> None:
    """Prune stand-ins of the modules as pruning `groups` would prune the modules themselves.

    The groups come from `plan`, so their indices number the unpruned model's channels: the
    indices of every group are gathered per module and handler, then removed in one call each
    (pruning group after group would renumber what is left in between)."""
    removals: dict[tuple, tuple] = {}
    for group in groups:
        for dep, idxs in group:
            module = stand_ins.get(dep.target.module)
            if module is None:  # a Torch-Pruning op or an unwrapped parameter: no weights of a layer
                continue
            handler = dep.handler
            key = (id(module), getattr(handler, "__func__", handler))  # depthwise: in and out are one
            entry = removals.setdefault(key, (module, handler, dep.target.pruning_dim, set()))
            entry[3].update(getattr(i, "idx", i) for i in idxs)
    for module, handler, dim, idxs in removals.values():
        handler.__self__.pruning_dim = dim
        handler(module, sorted(idxs))


_HELD: weakref.WeakSet = weakref.WeakSet()  # graphs whose model nothing has pruned since the build
_UPDATE = index_mapping.update_index_mapping


def _update_unless_held(graph: tp.DependencyGraph) -> None:
    if graph not in _HELD:
        _UPDATE(graph)


def hold_offsets(graph: tp.DependencyGraph) -> None:
    """Until `release_offsets`, form groups without re-reading the offsets: nothing is pruned."""
    index_mapping.update_index_mapping = _update_unless_held
    _HELD.add(graph)


def release_offsets(graph: tp.DependencyGraph) -> None:
    """Before pruning: offsets move as channels go, so every group re-reads them again."""
    _HELD.discard(graph)


def heads_left(pruner: tp.pruner.BasePruner, qkv: nn.Module) -> int:
    return pruner.num_heads[qkv]
