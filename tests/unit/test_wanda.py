"""Wanda's per-output-row comparison groups (the paper's choice) and its N:M variant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.core import methods
from pruning.core.data import Split
from pruning.core.methods import Context, Target
from pruning.core.methods.criteria import input_norms


def loud_inputs(n: int = 256, features: int = 16, seed: int = 0) -> Split:
    """Inputs whose scale grows along the features: Wanda's scores then differ from |W|'s."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g) * torch.linspace(0.05, 5.0, features)
    return Split(x, torch.zeros(n, dtype=torch.long))


def wanda(model: nn.Module, sparsity: float, scope: str = "layer", overrides=None, method="wanda", **given):
    method = methods.get(method)
    options = method.options({"batches": 1, **given})
    layers = dict(model.named_children())
    ctx = Context(loud_inputs())
    scores = method.importance(model, layers, ctx, options)
    return method.prune(model, scores, Target(sparsity, scope, overrides or {}), ctx, options, None).masks


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_every_output_row_loses_the_target_share(scope, sparsity):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 7))
    masks = wanda(model, sparsity, scope)
    for name, keep in masks.items():
        pruned_per_row = (~keep).sum(1)
        assert pruned_per_row.min() >= int(sparsity * 16) and pruned_per_row.max() <= int(sparsity * 16) + 1
        assert int((~keep).sum()) == round(sparsity * keep.numel()), name  # the layer lands on its target


def test_within_a_row_the_lowest_weight_times_input_norm_goes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12))
    keep = wanda(model, 0.5)["0"]
    norms = input_norms(model, {"0": model[0]}, Context(loud_inputs()), 1)["0"]
    scores = model[0].weight.detach().abs() * norms
    for row, kept in zip(scores, keep):
        assert row[~kept].max() <= row[kept].min()
    magnitude_keep = model[0].weight.abs() >= model[0].weight.abs().median(dim=1, keepdim=True).values
    assert not torch.equal(keep, magnitude_keep)  # the input norms changed the choice


def test_overrides_under_a_global_scope_keep_the_total():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))
    masks = wanda(model, 0.5, "global", {"0": 0.75})
    assert int((~masks["0"]).sum()) == 192  # 0.75 of 256
    assert int((~masks["0"]).sum() + (~masks["1"]).sum()) == 256  # half of all 512
    assert ((~masks["1"]).sum(1) == 4).all()  # the rest from the other layer's rows: 64 of 256


def test_conv1d_rows_are_its_outputs():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(12, 16))  # weight (16 inputs, 12 outputs)
    keep = wanda(model, 0.5)["0"]
    assert ((~keep).sum(0) == 8).all()  # each output (a column here) loses half of its 16 inputs


def test_groups_scope_compares_as_the_run_says():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12))
    keep = wanda(model, 0.5, groups="scope")["0"]
    assert int((~keep).sum()) == 96 and (~keep).sum(1).unique().numel() > 1  # not row by row


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_wanda_nm_keeps_the_n_best_scores_of_every_group(n, m):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12))
    keep = wanda(model, 1 - n / m, method="wanda-nm", n=n, m=m)["0"]
    norms = input_norms(model, {"0": model[0]}, Context(loud_inputs()), 1)["0"]
    scores = (model[0].weight.detach().abs() * norms).reshape(12, -1, m)
    groups = keep.reshape(12, -1, m)
    assert (groups.sum(-1) == n).all()
    best = scores.topk(n, dim=-1).indices
    assert torch.equal(groups, torch.zeros_like(groups).scatter_(-1, best, True))


def test_row_orders_kept_between_levels_give_the_same_masks_as_sorting_again():
    from pruning.core.methods.criteria import RowScores, select_rows

    g = torch.Generator().manual_seed(0)
    plain = {"a": torch.rand(30, 40, generator=g), "b": torch.rand(8, 16, generator=g).round(decimals=1)}
    kept = RowScores(plain, set())
    for level in (0.1, 0.5, 0.37, 0.9, 0.5):
        levels = {"a": level, "b": level}
        fresh, cached = select_rows(plain, levels), select_rows(kept, levels)
        assert all(torch.equal(fresh[n], cached[n]) for n in plain)  # ties (layer b) broken alike
    assert set(kept.orders) == {"a", "b"}
    small = RowScores(plain, set())
    small.ORDER_BUDGET = 30 * 40 * 4  # room for layer a's order only
    select_rows(small, {"a": 0.5, "b": 0.5})
    assert set(small.orders) == {"a"}
