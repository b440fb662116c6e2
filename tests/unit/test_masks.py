"""Masks against the reference, torch.nn.utils.prune, on the same weights; sparsity, ties, N:M."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruning.core import masks, methods, models
from pruning.errors import UserError


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    layers = masks.prunable_layers(model)
    return methods.get("magnitude").importance(model, layers, methods.Context(None), {})


def seeded_mlp() -> nn.Module:
    torch.manual_seed(0)
    return models.build("mlp-digits")  # 19200 + 30000 + 1000 weights: rounding stays below 1e-3


def achieved(keep: dict[str, torch.Tensor], names=None) -> float:
    names = list(keep) if names is None else names
    return 1.0 - sum(int(keep[n].sum()) for n in names) / sum(keep[n].numel() for n in names)


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.77, 0.95])
def test_global_masks_equal_torch_global_unstructured(make_net, amount):
    ours, reference = make_net(seed=3), make_net(seed=3)
    keep = masks.select(magnitude_scores(ours), amount, "global")
    ref_layers = masks.prunable_layers(reference)
    prune.global_unstructured(
        [(m, "weight") for m in ref_layers.values()], pruning_method=prune.L1Unstructured, amount=amount
    )
    assert list(keep) == ["conv", "fc1", "fc2"]
    for name, module in ref_layers.items():
        assert keep[name].dtype == torch.bool
        assert torch.equal(keep[name], module.weight_mask.bool()), name


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.77, 0.95])
def test_layer_masks_equal_torch_l1_unstructured(make_net, amount):
    ours, reference = make_net(seed=4), make_net(seed=4)
    keep = masks.select(magnitude_scores(ours), amount, "layer")
    for name, module in masks.prunable_layers(reference).items():
        prune.l1_unstructured(module, "weight", amount=amount)
        assert keep[name].dtype == torch.bool
        assert torch.equal(keep[name], module.weight_mask.bool()), name


def test_applied_masks_zero_the_same_weights_as_torch_prune(make_net):
    ours, reference = make_net(seed=5), make_net(seed=5)
    layers = masks.prunable_layers(ours)
    masks.apply(layers, masks.select(magnitude_scores(ours), 0.6, "global"))
    ref_layers = masks.prunable_layers(reference)
    prune.global_unstructured(
        [(m, "weight") for m in ref_layers.values()], pruning_method=prune.L1Unstructured, amount=0.6
    )
    for name, module in ref_layers.items():
        prune.remove(module, "weight")
        assert torch.equal(layers[name].weight, module.weight), name
    assert not any("_orig" in key or "_mask" in key for key in ours.state_dict())


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_achieved_sparsity_is_the_target(sparsity, scope):
    keep = masks.select(magnitude_scores(seeded_mlp()), sparsity, scope)
    assert achieved(keep) == pytest.approx(sparsity, abs=1e-3)
    if scope == "layer":
        for name in keep:
            assert achieved(keep, [name]) == pytest.approx(sparsity, abs=1e-3), name


def test_global_scope_with_overrides_lands_on_the_target_overall():
    overrides = {"fc1": 0.2, "fc3": 0.95}
    keep = masks.select(magnitude_scores(seeded_mlp()), 0.6, "global", overrides)
    assert achieved(keep) == pytest.approx(0.6, abs=1e-3)
    assert achieved(keep, ["fc1"]) == pytest.approx(0.2, abs=1e-3)
    assert achieved(keep, ["fc3"]) == pytest.approx(0.95, abs=1e-3)
    # the free layer absorbed the rest: 0.6 * 50200 - 0.2 * 19200 - 0.95 * 1000 of its 30000 weights
    assert achieved(keep, ["fc2"]) == pytest.approx((0.6 * 50200 - 3840 - 950) / 30000, abs=1e-3)


def test_layer_scope_with_overrides():
    keep = masks.select(magnitude_scores(seeded_mlp()), 0.5, "layer", {"fc2": 0.8})
    assert [round(achieved(keep, [n]), 3) for n in keep] == [0.5, 0.8, 0.5]


def test_overrides_keep_the_global_threshold_among_free_layers():
    scores = magnitude_scores(seeded_mlp())
    keep = masks.select(scores, 0.7, "global", {"fc3": 0.1})
    kept = torch.cat([scores[n][keep[n]] for n in ("fc1", "fc2")])
    dropped = torch.cat([scores[n][~keep[n]] for n in ("fc1", "fc2")])
    assert dropped.max() <= kept.min()


def test_ties_prune_exactly_the_requested_count():
    flat = {"a": torch.ones(10, 10)}
    for s in (0.01, 0.37, 0.5, 0.99):
        assert int((~masks.select(flat, s, "layer")["a"]).sum()) == round(s * 100)
    tied = {"a": torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 2.0]])}
    keep = masks.select(tied, 0.5, "layer")["a"]
    assert int((~keep).sum()) == 3
    assert not keep[0, 0] and keep[0, 5]  # the lowest goes, the highest stays, two of the four 1s go
    two = {"a": torch.ones(4, 5), "b": torch.ones(3, 10)}
    keep = masks.select(two, 0.4, "global")
    assert sum(int((~m).sum()) for m in keep.values()) == 20


def sorted_keep(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The reference: sort the concatenated scores (stable: ties in position order), prune the first k."""
    pool = torch.cat([s.flatten().float() for s in scores.values()])
    keep = torch.ones(pool.numel(), dtype=torch.bool)
    keep[pool.argsort(stable=True)[:k]] = False
    parts = keep.split([s.numel() for s in scores.values()])
    return {name: part.view_as(s) for (name, s), part in zip(scores.items(), parts)}


@pytest.mark.parametrize("chunk", [masks.CHUNK, 7])  # 7: every layer's scores cut in many chunks
def test_global_selection_equals_sorting_all_scores_taken_together(monkeypatch, chunk):
    monkeypatch.setattr(masks, "CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    scores = {
        "signed": torch.randn(6, 9, generator=g),  # negative scores, some far apart in exponent
        "ties": torch.randint(-3, 4, (50,), generator=g).float(),  # many ties, -0.0 and 0.0 among them
        "double": torch.rand(4, 5, generator=g, dtype=torch.float64) * 1e-3,  # compared as float32
        "extremes": torch.tensor([-torch.inf, torch.inf, -0.0, 1e-40, -1e-40, 3e38]),
    }
    scores["ties"][::7] = -0.0
    total = sum(s.numel() for s in scores.values())
    for k in (1, 2, 17, 40, 57, 60, total // 2, total - 1):
        keep = masks.select(scores, k / total, "global")
        assert sum(int((~m).sum()) for m in keep.values()) == k
        for name, mask in sorted_keep(scores, k).items():
            assert torch.equal(keep[name], mask), (k, name)


def test_extreme_levels():
    scores = {"a": torch.rand(7, 3)}
    assert bool(masks.select(scores, 0.0, "global")["a"].all())
    assert int(masks.select(scores, 0.999, "global")["a"].sum()) == 0  # round(0.999 * 21) = 21


def test_select_refuses_bad_sparsity_and_unknown_layers():
    scores = {"a": torch.rand(4, 4)}
    for bad in (1.0, -0.1, float("nan"), 2):
        with pytest.raises(UserError, match=r"\[0, 1\)"):
            masks.select(scores, bad)
    with pytest.raises(UserError, match="sparsity of layer a"):
        masks.select(scores, 0.5, "global", {"a": 1.5})
    with pytest.raises(UserError, match="unknown layer.*nope.*prunable layers are a"):
        masks.select(scores, 0.5, "global", {"nope": 0.5})


def test_two_four_keeps_the_two_largest_of_every_four():
    torch.manual_seed(0)
    scores = {"fc": torch.rand(6, 16), "conv": torch.rand(4, 4, 3, 3)}  # conv rows: 36 inputs
    keep = masks.select_nm(scores, 2, 4)
    for name, s in scores.items():
        assert keep[name].dtype == torch.bool and keep[name].shape == s.shape
        groups, kept = s.reshape(-1, 4), keep[name].reshape(-1, 4)
        assert (kept.sum(1) == 2).all(), name
        smallest_kept = torch.where(kept, groups, torch.inf).min(1).values
        largest_dropped = torch.where(kept, -torch.inf, groups).max(1).values
        assert (smallest_kept >= largest_dropped).all(), name
        assert achieved(keep, [name]) == 0.5


def test_n_m_refuses_layers_whose_inputs_do_not_divide():
    with pytest.raises(UserError, match="layer odd has 6 inputs, not a multiple of 4"):
        masks.select_nm({"odd": torch.rand(3, 6)}, 2, 4)


def test_prunable_layers_in_model_order_and_only_linear_or_conv():
    model = models.build("cnn-digits")
    assert list(masks.prunable_layers(model)) == [
        "features.0.0",
        "features.1.0",
        "features.3.0",
        "classifier",
    ]
    with pytest.raises(UserError, match="no prunable layers"):
        masks.prunable_layers(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))


def test_apply_zeroes_pruned_weights_in_place_and_keeps_the_rest(make_net):
    model = make_net()
    layers = masks.prunable_layers(model)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    storage = {n: m.weight.data_ptr() for n, m in layers.items()}
    keep = masks.select(magnitude_scores(model), 0.5, "layer")
    masks.apply(layers, keep)
    for name, module in layers.items():
        assert module.weight.data_ptr() == storage[name]  # in place: no second copy of the weights
        assert (module.weight[~keep[name]] == 0).all()
        assert torch.equal(module.weight[keep[name]], before[name][keep[name]])
    assert list(masks.param_masks(model, keep)) == ["conv.weight", "fc1.weight", "fc2.weight"]


def test_multihead_attention_projections_are_prunable_like_torch_prune():
    torch.manual_seed(0)
    packed = nn.MultiheadAttention(16, 4)
    split = nn.MultiheadAttention(16, 4, kdim=8, vdim=8)  # separate q/k/v weights
    cases = ((packed, ["in_proj", "out_proj"]), (split, ["q_proj", "k_proj", "v_proj", "out_proj"]))
    for attention, names in cases:
        layers = masks.prunable_layers(attention)
        assert list(layers) == names
        scores = {n: m.weight.detach().abs() for n, m in layers.items()}
        keep = masks.select(scores, 0.5, "layer")
        reference = copy.deepcopy(attention)
        for name, layer in layers.items():
            parameter = masks.parameter_name(name, layer)
            module = reference if "." not in parameter else reference.out_proj
            prune.l1_unstructured(module, parameter.split(".")[-1], amount=0.5)
            assert torch.equal(keep[name], getattr(module, parameter.split(".")[-1] + "_mask").bool()), name
        masks.apply(layers, keep)
        assert (
            attention.state_dict()[masks.parameter_name(names[0], layers[names[0]])] == 0
        ).float().mean() == 0.5
