"""SNIP, LAMP and Wanda: scores against hand computations and reference implementations,
and every criterion landing on its target on every sample model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning.core import masks, methods
from pruning.core.data import Split
from pruning.core.methods import Context
from pruning.core.methods.criteria import lamp_scores
from pruning.core.models import SAMPLE_MODELS
from pruning.runs import experiment
from pruning.runs.config import RunConfig


def calibration(n: int = 100, features: int = 36, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, features, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_lamp_scores_by_hand():
    # squares 1, 4, 9 -> 1/(1+4+9), 4/(4+9), 9/9; position does not matter, only rank
    assert torch.allclose(lamp_scores(torch.tensor([2.0, -1.0, 3.0])), torch.tensor([4 / 13, 1 / 14, 1.0]))
    assert torch.equal(lamp_scores(torch.zeros(3)), torch.zeros(3))  # an all-zero layer: no NaN


def test_lamp_global_masks_equal_torch_prune_with_the_same_scores(make_net):
    net = make_net(0)
    layers = masks.prunable_layers(net)
    scores = methods.get("lamp").importance(net, layers, Context(None), {})
    ours = masks.select(scores, 0.7, "global")
    prune.global_unstructured(
        [(m, "weight") for m in layers.values()],
        pruning_method=prune.L1Unstructured,
        importance_scores={(m, "weight"): scores[n] for n, m in layers.items()},
        amount=0.7,
    )
    for name, layer in layers.items():
        assert torch.equal(ours[name], layer.weight_mask.bool()), name


def test_lamp_never_empties_a_layer_where_global_magnitude_does():
    # one layer of large weights, one of small ones: global magnitude at 60% removes the small layer
    big, small = nn.Linear(10, 10), nn.Linear(10, 10)
    with torch.no_grad():
        big.weight.uniform_(1.0, 2.0)
        small.weight.uniform_(0.01, 0.02)
    layers = {"big": big, "small": small}
    magnitude = masks.select(methods.get("magnitude").importance(None, layers, Context(None), {}), 0.6)
    lamp = masks.select(methods.get("lamp").importance(None, layers, Context(None), {}), 0.6)
    assert magnitude["small"].sum() == 0
    assert lamp["small"].sum() > 0 and lamp["big"].sum() > 0
    assert sum(int(m.sum()) for m in lamp.values()) == 80  # still exactly 60% of 200 pruned


def test_snip_is_weight_times_gradient_of_the_whole_calibration_loss(make_net):
    net, data = make_net(1), calibration()
    layers = masks.prunable_layers(net)
    scores = methods.get("snip").importance(net, layers, Context(data, seed=3), {"batches": 2})
    assert all(m.weight.grad is None for m in layers.values())  # the model is left as it was
    # reference: one backward of the summed per-batch losses over the same two batches
    net.zero_grad()
    sum(nn.functional.cross_entropy(net(x), y) for x, y in data.loader(64, shuffle=True, seed=3)).backward()
    saliency = {n: (m.weight * m.weight.grad).abs().detach() for n, m in layers.items()}
    total = sum(s.sum() for s in saliency.values())
    for name in layers:
        assert torch.allclose(scores[name], saliency[name] / total, atol=1e-7), name
    assert sum(s.sum() for s in scores.values()).item() == pytest.approx(1.0)


def _reference_input_norms(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-weight input norms computed another way: the weight gradient of a ones-output on x^2."""
    if isinstance(layer, nn.Linear):
        return (x.pow(2).sum(0) / len(x)).sqrt().expand_as(layer.weight)
    grad = torch.nn.grad.conv2d_weight if isinstance(layer, nn.Conv2d) else torch.nn.grad.conv1d_weight
    out = layer(x)
    energy = grad(
        x.pow(2),
        layer.weight.shape,
        torch.ones_like(out),
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups,
    )
    return (energy / len(x)).sqrt()


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Linear(12, 5), (40, 12)),
        (nn.Conv2d(3, 4, 3, padding=1), (40, 3, 6, 6)),
        (nn.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2), (40, 4, 7, 7)),
        (nn.Conv1d(2, 5, 5, padding=2), (40, 2, 20)),
    ],
    ids=["linear", "conv2d", "conv2d-grouped-strided", "conv1d"],
)
def test_wanda_scores_are_weight_times_input_norm(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    data = Split(x, torch.zeros(len(x), dtype=torch.long))
    scores = methods.get("wanda").importance(layer, {"layer": layer}, Context(data), {"batches": 1})
    expected = layer.weight.detach().abs() * _reference_input_norms(layer, x).detach()
    assert torch.allclose(scores["layer"], expected, rtol=1e-4, atol=1e-6)


def test_wanda_prefers_weights_on_loud_inputs():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x = torch.stack([torch.full((50,), 10.0), torch.full((50,), 1.0)], dim=1)  # input 0 is 10x louder
    data = Split(x, torch.zeros(50, dtype=torch.long))
    scores = methods.get("wanda").importance(layer, {"l": layer}, Context(data), {"batches": 1})["l"]
    assert scores[0, 0] > scores[0, 1]  # magnitude alone would keep weight 1 instead
    assert masks.select({"l": scores}, 0.5)["l"].tolist() == [[True, False]]


@pytest.fixture(scope="module", params=list(SAMPLE_MODELS))
def prepared(request):
    return experiment.prepare(RunConfig(request.param, "magnitude", 0.6, latency=False))


@pytest.mark.parametrize("method_id", ["snip", "lamp", "wanda"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_every_criterion_reaches_its_target_on_every_sample_model(prepared, method_id, scope):
    method = methods.get(method_id)
    options = method.options({"batches": 1} if method.needs_data else {})
    prep = dataclasses.replace(prepared, method=method, options=options)
    config = RunConfig(prep.config.model, method_id, 0.6, scope=scope, latency=False)
    scores = experiment.importance(prep)
    work = experiment.prune(prep, scores, config).model
    pruned = masks.prunable_layers(work)
    total = sum(m.weight.numel() for m in pruned.values())
    zeros = sum(int((m.weight == 0).sum()) for m in pruned.values())
    assert zeros / total == pytest.approx(0.6, abs=0.002)
    if scope == "layer":
        for name, layer in pruned.items():
            assert (layer.weight == 0).float().mean().item() == pytest.approx(0.6, abs=0.01), name


def test_wanda_reads_the_inputs_of_attention_projections_inside_an_encoder_layer():
    from pruning.core.methods.criteria import input_norms

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0).eval()  # its fast path
    model = nn.Sequential(layer)
    x = torch.randn(32, 5, 8)
    norms = input_norms(model, masks.prunable_layers(model), Context(Split(x, torch.zeros(32).long())), 2)
    in_proj = norms["0.self_attn.in_proj"]
    expected = x.reshape(-1, 8).pow(2).sum(0).div(32).sqrt()  # the query input, every sample read once
    assert torch.allclose(in_proj, expected.expand(24, 8), rtol=1e-5)
