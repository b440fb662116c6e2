"""More element-wise criteria from the literature: SNIP, LAMP and Wanda (and its N:M variant).

Each returns scores shaped like the layer's weight (higher = keep); the run's
`scope` then decides whether they are compared across the whole model or
within each layer, exactly as for magnitude.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.core.masks import Projection, transposed
from pruning.core.methods.base import Context, Method, Param, Target, calibration_batches
from pruning.core.methods.nm import NM
from pruning.core.methods.unstructured import BATCHES, accumulate_gradients

TINY = 1e-30  # guards 0/0 in all-zero layers; such weights score 0 (pruned first)


@dataclass(frozen=True)
class Snip(Method):
    id: str = "snip"
    label: str = "SNIP (connection sensitivity)"
    needs_data: bool = True
    needs_gradients: bool = True
    params: tuple[Param, ...] = field(default=(BATCHES,))
    description: str = (
        "|w * dL/dw| with the gradient summed over calibration batches first, normalised to sum 1 "
        "(Lee et al., 2019). Unlike taylor, opposite-signed per-batch terms cancel."
    )

    def importance(self, model, layers, ctx, options):
        # SNIP's saliency is |dL/dc| at c = 1 for a connection mask c, which equals |w * dL/dw| of
        # the loss over the whole calibration set: sum the gradients, then take the magnitude.
        summed = accumulate_gradients(model, layers, ctx, options["batches"], lambda w, g: w * g)
        saliency = {name: s.abs() for name, s in summed.items()}
        total = sum(s.sum() for s in saliency.values()).clamp_min(TINY)
        return {name: s / total for name, s in saliency.items()}


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP: w_u^2 / sum of w_v^2 over the weights v at least as large as u (in sorted order)."""
    squared = weight.detach().flatten().double().pow(2)
    order = squared.argsort(stable=True)
    ascending = squared[order]
    remaining = ascending.flip(0).cumsum(0).flip(0)  # sum over this weight and every larger one
    scores = torch.empty_like(squared)
    scores[order] = ascending / remaining.clamp_min(TINY)
    return scores.float().view_as(weight)


@dataclass(frozen=True)
class Lamp(Method):
    id: str = "lamp"
    label: str = "LAMP (layer-adaptive magnitude)"
    description: str = (
        "Layer-adaptive magnitude score w_u^2 / sum_{v>=u} w_v^2 within each layer, compared globally: "
        "every layer keeps its largest weight (Lee et al., 2021)."
    )

    def importance(self, model, layers, ctx, options):
        return {name: lamp_scores(m.weight) for name, m in layers.items()}


def _unfold(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Conv inputs as (batch, in_channels/groups... * kernel, positions) columns, or None when the
    layer's padding cannot be reproduced by `unfold` (string padding, non-zero padding modes, 3-D)."""
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        return None
    if isinstance(layer, nn.Conv1d):
        x, kernel = x.unsqueeze(2), (1, *layer.kernel_size)
        dilation, padding, stride = (1, *layer.dilation), (0, *layer.padding), (1, *layer.stride)
    elif isinstance(layer, nn.Conv2d):
        kernel, dilation, padding, stride = layer.kernel_size, layer.dilation, layer.padding, layer.stride
    else:
        return None
    return nn.functional.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)


def _input_energy(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared inputs seen by each input position of the weight, flattened per output row
    (before grouping): in_features for Linear, in_channels * kernel for Conv; for an embedding (its
    input a one-hot token) the count of each token, one per row of its weight."""
    if isinstance(layer, nn.Embedding):
        return torch.bincount(x.reshape(-1).long(), minlength=layer.num_embeddings).float()
    if isinstance(layer, (nn.Linear, Projection)) or transposed(layer):
        return x.reshape(-1, x.shape[-1]).pow(2).sum(0)
    columns = _unfold(layer, x)
    if columns is not None:  # exactly the im2col rows each weight multiplies
        return columns.pow(2).sum(dim=(0, 2))
    # Fallback: one norm per input channel, shared by all kernel positions of that channel.
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).pow(2).sum(1)
    return per_channel.repeat_interleave(layer.weight[0, 0].numel())


def input_norms(
    model: nn.Module, layers: Mapping[str, nn.Module], ctx: Context, batches: int
) -> dict[str, torch.Tensor]:
    """||X_j||_2 of every weight's input over the calibration batches, shaped like the weight.

    Squared norms are divided by the number of samples (as in Wanda's reference code), so
    layers stay comparable under a global scope whatever the calibration size."""
    energy: dict[str, torch.Tensor] = {}
    samples = 0

    def hook(name):
        def record(module, inputs, output):
            if not inputs:  # called with keyword arguments only: nothing positional to read
                return
            e = _input_energy(module, inputs[0].detach().float())
            energy[name] = energy[name] + e if name in energy else e

        return record

    def reading(name, layer):  # a projection's input is one of its attention module's inputs
        if isinstance(layer, Projection):
            record, index = hook(name), layer.input_index
            return layer.owner.register_forward_hook(lambda m, args, out: record(layer, args[index:], out))
        return layer.register_forward_hook(hook(name))

    handles = [reading(name, m) for name, m in layers.items()]
    was_training = model.training
    model.eval()
    # Gradients on: nn.TransformerEncoderLayer's inference fast path skips its attention module
    # (and so the hooks on it) when they are off. Nothing is backpropagated.
    try:
        with torch.enable_grad():
            for x, _ in calibration_batches(ctx, batches):
                model(x)
                samples += len(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    norms = {}
    for name, layer in layers.items():
        weight = layer.weight
        if isinstance(layer, nn.Embedding):  # row v is read as often as token v occurs
            per_row = (energy.get(name, torch.zeros(weight.shape[0])) / max(samples, 1)).sqrt()
            norms[name] = per_row.unsqueeze(1).expand_as(weight).clone()
            continue
        if transposed(layer):  # Conv1D: weight (inputs, outputs), every output sees every input
            per_input = (energy.get(name, torch.zeros(weight.shape[0])) / max(samples, 1)).sqrt()
            norms[name] = per_input.unsqueeze(1).expand_as(weight).clone()
            continue
        groups = getattr(layer, "groups", 1)
        unused = torch.zeros(weight[0].numel() * groups)  # a layer the forward pass never reached
        per_input = (energy.get(name, unused) / max(samples, 1)).sqrt()
        # grouped convs: output channel o only sees its group's slice of the inputs
        rows = per_input.view(groups, -1).repeat_interleave(weight.shape[0] // groups, dim=0)
        norms[name] = rows.view_as(weight)
    return norms


def layer_levels(sizes: Mapping[str, int], target: Target) -> dict[str, float]:
    """Each layer's sparsity when every layer is pruned on its own (`sizes`: their numbers of weights):
    an override's level, else the target; under a global scope the layers without an override share
    the level that brings the model's total to the target (the target itself without overrides)."""
    levels = {name: target.overrides.get(name, target.sparsity) for name in sizes}
    free = [name for name in sizes if name not in target.overrides]
    if target.scope == "global" and target.overrides and free:
        fixed = sum(round(target.overrides[n] * sizes[n]) for n in target.overrides if n in sizes)
        left = round(target.sparsity * sum(sizes.values())) - fixed
        level = min(max(left / sum(sizes[n] for n in free), 0.0), 1.0)
        levels.update({name: level for name in free})
    return levels


class RowScores(dict):
    """Scores shaped like each weight, with the names of the layers whose outputs run along dim 1
    (transformers' Conv1D stores (inputs, outputs)): per-output groups are columns there.

    The scores are computed once per sweep and every level sorts the same rows, so each layer's row
    order is kept after its first sort, as int32, up to ORDER_BUDGET bytes in all (a 20-level sweep of
    the sample LM spent 1.1 of its 19 s sorting; a 124M model's orders would not fit the budget, and
    its layers are sorted again at each level)."""

    ORDER_BUDGET = 64 * 2**20

    def __init__(self, scores: Mapping[str, torch.Tensor], outputs_on_columns: set[str]):
        super().__init__(scores)
        self.outputs_on_columns = outputs_on_columns
        self.orders: dict[str, torch.Tensor] = {}

    def row_order(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """`rows` (this layer's scores, one output per row) sorted ascending along each row, stably."""
        kept = self.orders.get(name)
        if kept is not None:
            return kept.long()
        order = rows.float().argsort(dim=1, stable=True)
        used = sum(o.numel() * o.element_size() for o in self.orders.values())
        if rows.shape[1] < 2**31 and used + order.numel() * 4 <= self.ORDER_BUDGET:
            self.orders[name] = order.int()
        return order


def select_rows(scores: Mapping[str, torch.Tensor], levels: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Keep-masks pruning the lowest scores of every output row: each layer loses exactly
    round(level * numel) weights, spread so that every row loses the same count to within one."""
    flipped = getattr(scores, "outputs_on_columns", set())
    masks = {}
    for name, s in scores.items():
        upright = s.T if name in flipped else s
        rows = upright.reshape(upright.shape[0], -1)
        count = round(levels[name] * rows.numel())
        per_row = torch.full((rows.shape[0],), count // rows.shape[0], device=s.device)
        per_row[: count % rows.shape[0]] += 1
        if isinstance(scores, RowScores):
            order = scores.row_order(name, rows)
        else:
            order = rows.float().argsort(dim=1, stable=True)
        goes = torch.arange(rows.shape[1], device=s.device).unsqueeze(0) < per_row.unsqueeze(1)
        keep = torch.ones_like(rows, dtype=torch.bool).scatter_(1, order, ~goes)
        masks[name] = keep.T.contiguous() if name in flipped else keep.view_as(s)
    return masks


def wanda_scores(model, layers, ctx, batches) -> RowScores:
    norms = input_norms(model, layers, ctx, batches)
    scores = {name: m.weight.detach().abs() * norms[name] for name, m in layers.items()}
    return RowScores(scores, {name for name, m in layers.items() if transposed(m)})


GROUPS = Param(
    "groups",
    "choice",
    "row",
    "which weights are compared: within each output row (the paper's choice) or as the run's scope says",
    choices=("row", "scope"),
)


@dataclass(frozen=True)
class Wanda(Method):
    id: str = "wanda"
    label: str = "Wanda (|W| x input norm)"
    needs_data: bool = True
    params: tuple[Param, ...] = field(default=(BATCHES, GROUPS))
    description: str = (
        "|W_ij| * ||X_j||_2 with input-activation norms from calibration batches of the task's own data "
        "(Sun et al., 2023), compared within each output row as in the paper (groups=row: every row "
        "loses the same share, a layer's share as the scope and overrides set it) or as the run's "
        "scope says (groups=scope)."
    )

    def importance(self, model, layers, ctx, options):
        return wanda_scores(model, layers, ctx, options["batches"])

    def select(self, scores, target: Target, options) -> dict[str, torch.Tensor]:
        if options["groups"] == "scope":
            return super().select(scores, target, options)
        return select_rows(scores, layer_levels({name: s.numel() for name, s in scores.items()}, target))


@dataclass(frozen=True)
class WandaNM(NM):
    id: str = "wanda-nm"
    label: str = "Wanda N:M (2:4, 4:8)"
    needs_data: bool = True
    params: tuple[Param, ...] = field(default=(*NM().params, BATCHES))
    description: str = (
        "Keep the n highest |W_ij| * ||X_j||_2 of every m consecutive input weights (Sun et al., 2023's "
        "N:M variant); the sparsity is 1 - n/m on every layer that fits the pattern."
    )

    def importance(self, model, layers, ctx, options):
        fits = super().importance(model, layers, ctx, options)  # refuses a model with no layer that fits
        return dict(wanda_scores(model, {name: layers[name] for name in fits}, ctx, options["batches"]))
