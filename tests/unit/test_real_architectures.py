"""Structured removal (pruning/core/structured) on the architectures people bring.

ResNet-18/50, a CIFAR ResNet-18, MobileNetV2, VGG-16-BN, DenseNet-121-style blocks and an
nn.TransformerEncoder classifier, as torchvision and PyTorch write them (tests/unit/architectures.py),
narrowed for speed, on seeded random 32x32 images. Sparsities are checked against weights counted
by hand from each layer's own dimensions, the skip list against the shapes pruning left.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks, measure, structured
from pruning.core.structured import internals
from pruning.core.structured.trial import Plan
from tests.unit import architectures as arch

ARCHITECTURES = {
    "resnet18": lambda: arch.resnet18(10, width=16),
    "resnet18-cifar": lambda: arch.resnet18_cifar(10, width=16),
    "resnet50": lambda: arch.resnet50(10, width=16),
    "mobilenet-v2": lambda: arch.MobileNetV2(10, width_mult=0.5),
    "vgg16-bn": lambda: arch.vgg16_bn(10, scale=0.25, pool=1, hidden=64),
    "densenet": lambda: arch.densenet121(10, growth_rate=16, block_config=(2, 2, 2, 2)),
    "transformer": lambda: arch.TransformerClassifier(dim=128, ff=256),
}
CASES = [(name, scope) for name in ARCHITECTURES for scope in ("layer", "global")]


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = ARCHITECTURES[name]().eval()
    return model, torch.randn(2, 3, 32, 32)


def l1() -> tp.importance.Importance:
    return tp.importance.MagnitudeImportance(p=1)


def hand_count(model: nn.Module) -> int:
    """Prunable weights from each layer's own dimensions: out x in / groups x kernel for a conv,
    out x in for a Linear, 3 x embed x embed for an attention module's packed input projection."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            total += module.out_channels * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            total += module.out_features * module.in_features
        elif isinstance(module, nn.MultiheadAttention):
            total += 3 * module.embed_dim * module.embed_dim
    return total


def shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {name: layer.weight.shape for name, layer in masks.prunable_layers(model).items()}


@pytest.fixture(scope="module")
def pruned() -> dict[tuple[str, str], tuple[nn.Module, structured.Pruned]]:
    """Every architecture pruned to 0.5 in both scopes, once for the module's tests."""
    done = {}
    for name, scope in CASES:
        model, example = build(name)
        done[name, scope] = model, structured.prune(model, example, l1(), 0.5, scope=scope)
    return done


@pytest.mark.parametrize("name,scope", CASES)
def test_half_the_weights_are_removed_by_hand_count(pruned, name, scope):
    dense, result = pruned[name, scope]
    reached = 1 - hand_count(result.model) / hand_count(dense)
    assert reached == pytest.approx(0.5, abs=structured.TOLERANCE)
    assert result.sparsity == pytest.approx(reached)  # the engine's count is the hand count
    kept = sum(
        int(torch.count_nonzero(layer.weight)) for layer in masks.prunable_layers(result.model).values()
    )
    assert kept == hand_count(result.model)  # removed, not zeroed: every weight left is there


@pytest.mark.parametrize("name,scope", CASES)
def test_the_pruned_model_runs_and_keeps_its_output_shape(pruned, name, scope):
    dense, result = pruned[name, scope]
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)  # another batch size than the trace used
    with torch.no_grad():
        assert result.model(x).shape == dense(x).shape == (3, 10)
    assert measure.params(result.model) < 0.6 * measure.params(dense)


@pytest.mark.parametrize("name,scope", CASES)
def test_every_skip_reason_is_true_of_the_pruned_model(pruned, name, scope):
    dense, result = pruned[name, scope]
    before, after = shapes(dense), shapes(result.model)
    assert result.skipped, "the stem's inputs and the classifier's outputs are always fixed"
    for row in result.skipped:
        was, now = before[row["name"]], after[row["name"]]
        if row["keeps"] == "all":
            assert now == was, row
        if row["keeps"] == "outputs":
            assert now[0] == was[0], row
        if row["keeps"] == "inputs":
            assert now[1:] == was[1:], row
    assert any(after[n] != before[n] for n in before if n not in {r["name"] for r in result.skipped})


def test_mobilenet_v2_depthwise_convolutions_shrink_and_are_not_called_skipped(pruned):
    dense, result = pruned["mobilenet-v2", "layer"]
    before, after = shapes(dense), shapes(result.model)
    skipped = {row["name"]: row["keeps"] for row in result.skipped}
    assert skipped == {"features.0.0": "inputs", "classifier.1": "outputs"}  # the image, the classes
    for name in skipped:  # what a skipped layer keeps is what it had; no layer keeps everything
        side = 1 if skipped[name] == "inputs" else 0
        assert after[name][side] == before[name][side]
    depthwise = [
        n for n, m in masks.prunable_layers(dense).items() if isinstance(m, nn.Conv2d) and m.groups > 1
    ]
    assert len(depthwise) == 17
    for name in depthwise:  # fewer channels, and still one input channel per filter
        assert after[name][0] < before[name][0] and after[name][1] == 1, name
        assert name not in skipped


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_trial_predicts_exactly_what_pruning_at_its_ratio_leaves(name):
    model, example = build(name)
    plan = Plan(model, example, l1(), "global", True, ())
    trial = plan.trial(0.3, 0.0, {})
    pruned = plan.apply(trial)
    assert shapes(pruned) == shapes(trial.model)
    assert measure.sparsity(plan.dense_layers, masks.prunable_layers(pruned)) == trial.sparsity
    assert shapes(model) != shapes(pruned)  # the source is untouched, the copy pruned


def test_zeros_already_in_the_weights_count_as_removed_in_trials_as_in_the_result():
    model, example = build("resnet18-cifar")
    with torch.no_grad():  # a quarter of two layers' weights already zero, as a masked model has
        for layer in (model.conv1, model.layer3[0].conv2):
            layer.weight[layer.weight.abs() < layer.weight.abs().quantile(0.25)] = 0
    plan = Plan(model, example, l1(), "layer", True, ())
    assert plan.unpruned == pytest.approx(measure.sparsity(plan.dense_layers, plan.dense_layers))
    trial = plan.trial(0.2, 0.0, {})
    pruned = plan.apply(trial)
    assert measure.sparsity(plan.dense_layers, masks.prunable_layers(pruned)) == trial.sparsity
    result = structured.prune(model, example, l1(), 0.5, scope="layer")
    kept = sum(int(torch.count_nonzero(m.weight)) for m in masks.prunable_layers(result.model).values())
    assert result.sparsity == pytest.approx(1 - kept / hand_count(model), abs=1e-9)
    assert result.sparsity == pytest.approx(0.5, abs=structured.TOLERANCE)


@pytest.mark.parametrize(
    "name,scope,output", [("resnet18", "global", "fc"), ("mobilenet-v2", "layer", "classifier.1")]
)
def test_the_engine_prunes_as_one_direct_torch_pruning_step_at_its_ratio(pruned, name, scope, output):
    dense, result = pruned[name, scope]
    model, example = copy.deepcopy(dense), build(name)[1]
    with internals.quiet():
        tp.pruner.BasePruner(
            model,
            example,
            l1(),
            global_pruning=scope == "global",
            pruning_ratio=result.channel_ratio,
            ignored_layers=[model.get_submodule(output)],
            **internals.channel_groups(model),
        ).step()
    direct, engine = model.state_dict(), result.model.state_dict()
    assert direct.keys() == engine.keys()
    assert all(torch.equal(direct[k], engine[k]) for k in direct)


def test_pruning_is_deterministic():
    first, second = (structured.prune(*build("resnet18"), l1(), 0.5, scope="global") for _ in range(2))
    assert first.channel_ratio == second.channel_ratio and first.sparsity == second.sparsity
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_caller_s_model_is_left_as_it_was():
    model, example = build("resnet18-cifar")
    before = copy.deepcopy(model.state_dict())
    structured.prune(model, example, l1(), 0.5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_full_depth_densenet_121_lands_on_target(scope):
    torch.manual_seed(0)
    dense = arch.densenet121(10, growth_rate=16).eval()  # DenseNet-121's 58 dense layers, narrower
    result = structured.prune(dense, torch.randn(2, 3, 32, 32), l1(), 0.5, scope=scope)
    assert 1 - hand_count(result.model) / hand_count(dense) == pytest.approx(0.5, abs=structured.TOLERANCE)
    with torch.no_grad():
        assert result.model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
