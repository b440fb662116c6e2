"""Element-wise (unstructured) criteria: random, magnitude, Taylor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.core.methods.base import Context, Method, Param, WeightScores, calibration_batches

BATCHES = Param("batches", "int", 4, "calibration batches to accumulate over", min=1, max=64)


@dataclass(frozen=True)
class Random(Method):
    id: str = "random"
    label: str = "Random"
    description: str = "Uniformly random scores: the baseline every criterion must beat."

    def importance(self, model, layers, ctx, options):
        g = torch.Generator().manual_seed(ctx.seed)
        return {name: torch.rand(m.weight.shape, generator=g) for name, m in layers.items()}


@dataclass(frozen=True)
class Magnitude(Method):
    id: str = "magnitude"
    label: str = "Magnitude (L1)"
    description: str = "|w|: prune the smallest weights (Han et al., 2015)."

    def importance(self, model, layers, ctx, options):
        return WeightScores(layers, torch.abs)


def accumulate_gradients(
    model: nn.Module, layers: Mapping[str, nn.Module], ctx: Context, batches: int, score
) -> dict[str, torch.Tensor]:
    """Sum score(weight, grad) over calibration batches; the model's own grads are left untouched."""
    totals = {name: torch.zeros_like(m.weight) for name, m in layers.items()}
    was_training = model.training
    model.eval()  # BatchNorm statistics must not drift while we look at gradients
    for x, y in calibration_batches(ctx, batches):
        model.zero_grad(set_to_none=True)
        ctx.task.loss(model(x), y).backward()
        for name, m in layers.items():
            if m.weight.grad is not None:
                totals[name] += score(m.weight.detach(), m.weight.grad)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return totals


@dataclass(frozen=True)
class Taylor(Method):
    id: str = "taylor"
    label: str = "Taylor (first order)"
    needs_data: bool = True
    needs_gradients: bool = True
    params: tuple[Param, ...] = field(default=(BATCHES,))
    description: str = "|w * dL/dw| accumulated over calibration batches (Molchanov et al., 2019)."

    def importance(self, model, layers, ctx, options):
        return accumulate_gradients(model, layers, ctx, options["batches"], lambda w, g: (w * g).abs())
