"""Each Torch-Pruning internal that pruning/core/structured/internals.py lists still behaves so.

Fails on a version of Torch-Pruning that renamed, removed or changed one of them: run it
before changing the pin in requirements.txt.
"""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from torch import nn

from pruning.core.structured import internals

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


class Net(nn.Module):
    """Two conv + BatchNorm blocks and a linear classifier, on 1x8x8 inputs."""

    def __init__(self, groups: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, groups=groups), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class Attention(nn.Module):
    """timm's attention layout: a fused qkv Linear, `num_heads`, heads split by unbind(0)."""

    def __init__(self, dim: int = 16, num_heads: int = 4):
        super().__init__()
        self.num_heads, self.qkv, self.proj = num_heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        inner = self.qkv.out_features // 3
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, inner // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, inner))


class Former(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.attn, self.fc = nn.Linear(4, 16), Attention(), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.attn(self.embed(x)).mean(1))


def seeded(make: type[nn.Module], **kwargs) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    example = torch.randn(2, 1, 8, 8) if make is Net else torch.randn(2, 5, 4)
    return make(**kwargs).eval(), example


def graph_of(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with internals.quiet():
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def pruner(model: nn.Module, example: torch.Tensor, **kwargs) -> tp.pruner.BasePruner:
    kwargs = {"ignored_layers": [model.fc], **internals.channel_groups(model), **kwargs}
    with internals.quiet():
        return tp.pruner.BasePruner(model, example, tp.importance.MagnitudeImportance(p=1), **kwargs)


def test_the_installed_version_is_the_pinned_one():
    assert importlib.metadata.version("torch-pruning") == internals.PINNED
    assert f"torch-pruning=={internals.PINNED}" in REQUIREMENTS.read_text().splitlines()


def test_the_graph_names_modules_by_their_qualified_name():
    model, example = seeded(Net)
    graph = graph_of(model, example)
    assert isinstance(graph._module2name, dict)
    assert internals.module_name(graph, model.conv2, "?") == "conv2"
    assert internals.module_name(graph, nn.Linear(1, 1), "?") == "?"


def test_the_graph_maps_traced_modules_to_nodes_and_the_last_one_feeds_nothing():
    model, example = seeded(Net)
    graph = graph_of(model, example)
    assert all(m in graph.module2node for m in (model.conv1, model.bn1, model.conv2, model.bn2, model.fc))
    assert {model.conv1, model.conv2, model.fc} <= internals.traced(graph)
    assert internals.terminal_modules(graph) == {model.fc}


def test_tracing_needs_autograd_and_quiet_provides_it():
    model, example = seeded(Net)
    with torch.no_grad(), pytest.raises(AssertionError, match="autograd"):
        tp.DependencyGraph().build_dependency(model, example_inputs=example)
    with torch.no_grad():  # as under a caller's no_grad: quiet turns autograd back on
        assert model.conv1 in graph_of(model, example).module2node


def test_a_group_lists_each_module_and_the_side_that_loses_channels():
    model, example = seeded(Net)
    graph = graph_of(model, example)
    steps = internals.output_channel_group(graph, model.conv1)
    assert steps[0] == internals.Member(model.conv1, True, False)  # the root first
    assert internals.Member(model.conv2, False, True) in steps  # conv2 loses the matching inputs
    assert internals.Member(model.bn1, True, True) in steps  # BatchNorm: one axis, both sides
    assert internals.Member(model.fc, True, False) in internals.output_channel_group(graph, model.fc)


def test_all_groups_are_rooted_as_the_pruner_roots_them():
    default = inspect.signature(tp.pruner.BasePruner).parameters["root_module_types"].default
    assert internals.ROOT_TYPES == tuple(default)
    model, example = seeded(Net)
    graph = graph_of(model, example)
    roots = [group[0].module for group in internals.all_groups(graph, ignored=[model.fc])]
    assert sorted(roots, key=id) == sorted([model.conv1, model.conv2], key=id)


def test_step_consults_the_replaced_importance_and_grouping_once_each():
    model, example = seeded(Net)
    p = pruner(model, example, pruning_ratio=0.5)
    graph = internals.dependency_graph(p)
    computed, formed = [], []
    estimate, form = p.importance, graph.get_all_groups
    p.importance = lambda g: computed.append(g) or estimate(g)  # what scoring a group costs
    graph.get_all_groups = lambda **kw: formed.append(kw) or form(**kw)  # what forming them costs
    scored = []
    internals.score_once(p, lambda g: scored.append(internals.members(graph, g)[0].module))
    internals.plan(p)
    internals.plan(p)
    p.step()
    assert sorted(scored, key=id) == sorted([model.conv1, model.conv2] * 3, key=id)  # named every time
    assert len(computed) == 2 and len(formed) == 1  # the dense model's groups and scores, every step
    assert (model.conv1.out_channels, model.conv2.out_channels) == (4, 8)  # the scores were still used


def test_step_consults_the_replaced_check_and_skips_what_it_refuses():
    model, example = seeded(Net)
    p = pruner(model, example, pruning_ratio=1.0)  # every channel: each group would empty its layer
    graph = internals.dependency_graph(p)
    refused = []
    internals.record_refused_groups(p, lambda g: refused.append(internals.members(graph, g)[0].module))
    p.step()
    assert sorted(refused, key=id) == sorted([model.conv1, model.conv2], key=id)
    assert (model.conv1.out_channels, model.conv2.out_channels) == (8, 16)  # refused: nothing removed


def test_num_heads_is_decremented_in_place_as_heads_are_removed():
    model, example = seeded(Former)
    qkv = model.attn.qkv
    p = pruner(
        model,
        example,
        global_pruning=True,
        pruning_ratio=0.5,
        num_heads={qkv: 4},
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=0.5,
    )
    p.step()
    assert internals.heads_left(p, qkv) == 2
    assert qkv.out_features == 3 * 2 * 4  # two whole heads of 4 dims each are left


def test_the_default_channel_group_dicts_are_shared_and_filled_by_the_constructor():
    # The reason trial.py passes fresh dicts: without them, one model's modules stay in the defaults.
    defaults = inspect.signature(tp.pruner.BasePruner).parameters
    shared = [defaults["in_channel_groups"].default, defaults["out_channel_groups"].default]
    before = [dict(d) for d in shared]
    model, example = seeded(Net, groups=2)
    try:
        with internals.quiet():
            tp.pruner.BasePruner(
                model, example, tp.importance.MagnitudeImportance(p=1), ignored_layers=[model.fc]
            )
        assert all(d.get(model.conv2) == 2 for d in shared)
    finally:
        for d, saved in zip(shared, before):
            d.clear()
            d.update(saved)
    fresh = pruner(model, example)
    assert fresh.out_channel_groups[model.conv2] == 2
    assert all(model.conv2 not in d for d in shared)


class Mobile(nn.Module):
    """MobileNetV2's inverted residual without the residual: pointwise, depthwise, pointwise."""

    def __init__(self):
        super().__init__()
        self.expand, self.bn1 = nn.Conv2d(1, 8, 1), nn.BatchNorm2d(8)
        self.depthwise, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.project, self.fc = nn.Conv2d(8, 6, 1), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.depthwise(torch.relu(self.bn1(self.expand(x))))))
        return self.fc(self.project(x).mean(dim=(2, 3)))


class Concat(nn.Module):
    """Two branches concatenated into one conv, as in DenseNet: each branch owns part of its inputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 8, 3), nn.Conv2d(1, 4, 3)
        self.joint, self.fc = nn.Conv2d(12, 8, 1), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(self.joint(x).mean(dim=(2, 3)))


class Encoder(nn.Module):
    """nn.TransformerEncoderLayer (nn.MultiheadAttention inside) between two Linear layers."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer(self.embed(x)).mean(1))


def made(make: type[nn.Module]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    example = torch.randn(2, 5, 4) if make is Encoder else torch.randn(2, 1, 8, 8)
    return make().eval(), example


def test_a_depthwise_conv_loses_inputs_and_outputs_in_the_group_that_feeds_it():
    model, example = made(Mobile)
    graph = graph_of(model, example)
    steps = internals.output_channel_group(graph, model.expand)
    assert internals.Member(model.depthwise, True, True) in steps
    assert internals.Member(model.project, False, True) in steps
    groups = [g for g in internals.all_groups(graph, ignored=[model.fc]) if g[0].module is not model.project]
    assert len(groups) == 1  # no group of its own: its channels are the expand conv's
    assert {model.expand, model.depthwise} <= {step.module for step in groups[0]}


def test_multihead_attention_is_traced_and_pruned_with_its_out_proj():
    model, example = made(Encoder)
    attention = model.layer.self_attn
    graph = graph_of(model, example)
    assert attention in graph.module2node and attention.out_proj not in graph.module2node
    assert internals.used_inside(internals.traced(graph)) == {attention.out_proj}
    steps = internals.output_channel_group(graph, model.embed)
    assert (
        internals.Member(attention.out_proj, True, True) in steps
    )  # the embedding is its inputs and outputs
    groups = internals.channel_groups(model)
    assert groups == {"in_channel_groups": {attention: 4}, "out_channel_groups": {attention: 4}}
    p = pruner(model, example, pruning_ratio=0.3)
    p.step()
    assert attention.embed_dim % 4 == 0 and attention.embed_dim < 16  # every head lost the same dims
    assert attention.out_proj.weight.shape == (attention.embed_dim, attention.embed_dim)
    assert model(example).shape == (2, 3)


@pytest.mark.parametrize("make,ignored", [(Net, ("fc", "conv2")), (Former, ("fc", "attn.qkv"))])
def test_ignore_sets_what_the_constructor_derives_from_ignored_layers(make, ignored):
    model, example = seeded(make)
    heads = {model.attn.qkv: 4} if make is Former else {}
    layers = [model.get_submodule(name) for name in ignored]

    def build(**kwargs) -> tp.pruner.BasePruner:
        with internals.quiet():
            return tp.pruner.BasePruner(
                model,
                example,
                tp.importance.MagnitudeImportance(p=1),
                num_heads=dict(heads),
                prune_num_heads=bool(heads),
                **internals.channel_groups(model),
                **kwargs,
            )

    constructed, given = build(ignored_layers=layers), build()
    totals = lambda p: (p.initial_total_channels, p.initial_total_heads)  # noqa: E731
    assert totals(given) != totals(constructed)  # ignoring these layers changes what is counted
    internals.ignore(given, layers)
    assert given.ignored_layers == constructed.ignored_layers
    assert totals(given) == totals(constructed)


def test_a_planned_step_prunes_nothing_and_aiming_matches_a_pruner_built_at_that_ratio():
    model, example = seeded(Former)
    qkv = model.attn.qkv
    options = {"global_pruning": True, "prune_num_heads": True, "prune_head_dims": False}
    aimed = pruner(model, example, pruning_ratio=0.0, num_heads={qkv: 4}, **options)
    internals.aim(aimed, 0.5, 0.5, {})
    groups, heads = internals.plan(aimed)
    assert groups and heads[qkv] == 2  # it would remove two heads ...
    assert aimed.num_heads[qkv] == 4 and aimed.out_channel_groups[qkv] == 4  # ... and put the count back
    assert qkv.out_features == 48  # nothing was pruned
    aimed.step()
    twin, _ = seeded(Former)
    built = pruner(
        twin, example, pruning_ratio=0.5, num_heads={twin.attn.qkv: 4}, head_pruning_ratio=0.5, **options
    )
    built.step()
    assert [p.shape for p in model.parameters()] == [p.shape for p in twin.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


@pytest.mark.parametrize("make", [Net, Mobile, Concat, Encoder])
def test_shrinking_stand_ins_by_the_planned_groups_leaves_the_shapes_pruning_leaves(make):
    model, example = made(make)
    p = pruner(model, example, global_pruning=True, pruning_ratio=0.4)
    internals.aim(p, 0.4, 0.0, {})
    groups, _ = internals.plan(p)
    before = {name: param.clone() for name, param in model.named_parameters()}
    # stand-ins holding the very same parameters: the pruning functions must not write in place
    memo = {id(param): param for param in model.parameters()}
    copied = copy.deepcopy(model, memo)
    internals.shrink(groups, {m: memo[id(m)] for m in model.modules()})
    assert all(torch.equal(before[name], param) for name, param in model.named_parameters())
    p.step()
    assert {n: q.shape for n, q in copied.named_parameters()} == {
        n: q.shape for n, q in model.named_parameters()
    }
    assert any(q.shape != before[n].shape for n, q in model.named_parameters())  # something was pruned


def out_group(graph: tp.DependencyGraph, layer: nn.Module, idxs: list[int]):
    return graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, idxs)


def test_held_offsets_form_the_same_groups_until_released_and_other_graphs_are_untouched(monkeypatch):
    updates = []
    update = internals._UPDATE
    monkeypatch.setattr(internals, "_UPDATE", lambda graph: updates.append(graph) or update(graph))
    model, example = made(Concat)
    graph = graph_of(model, example)

    def joint_inputs(layer: nn.Module) -> list[int]:  # where the layer's first two channels enter `joint`
        steps = out_group(graph, layer, [0, 1])
        return [getattr(i, "idx", i) for dep, idxs in steps if dep.target.module is model.joint for i in idxs]

    assert joint_inputs(model.b) == [8, 9]  # b's channels follow a's 8 in the concatenation
    other = graph_of(*made(Concat))
    internals.hold_offsets(graph)
    try:
        updates.clear()
        assert joint_inputs(model.b) == [8, 9]  # the same group, without re-reading offsets
        out_group(other, other.model.a, [0])
        assert updates == [other]  # only the held graph skips them
    finally:
        internals.release_offsets(graph)
    out_group(graph, model.a, [0, 1]).prune()
    assert joint_inputs(model.b) == [6, 7]  # released: a lost two channels, so b's offset moved
