"""Structured criteria: which channel groups to remove physically (see pruning/core/structured/).

Each method turns its options into a Torch-Pruning importance object, which scores
whole coupled groups (a filter, its BatchNorm channel, the next layer's inputs).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from pruning.core import masks, structured
from pruning.core.methods.base import (
    Context,
    Granularity,
    Method,
    Param,
    Pruning,
    Target,
    calibration_batches,
)
from pruning.core.methods.unstructured import BATCHES
from pruning.errors import UserError

HEADS = Param(
    "heads",
    "bool",
    True,
    "attention layers (timm's fused qkv, transformers' query/key/value or q/k/v_proj): remove whole "
    "heads (on) or shrink every head (off); no effect on models without attention",
)


@dataclass(frozen=True)
class ChannelMethod(Method):
    """A structured method: `criterion` gives the group importance used by Torch-Pruning, and
    `prune` removes channel groups physically until the target sparsity is reached."""

    granularity: Granularity = "structured"
    elementwise: bool = False
    tolerance: float = structured.TOLERANCE  # the channel-ratio search lands within it
    params: tuple[Param, ...] = field(default=(HEADS,))

    def criterion(
        self, model: nn.Module, ctx: Context, options: Mapping[str, Any]
    ) -> tp.importance.Importance:
        """The importance object; may store what it needs (gradients) in `model` first."""
        raise NotImplementedError

    def importance(self, model, layers, ctx, options):
        return None  # channel groups are scored inside Torch-Pruning, once per prune

    def check(self, model: nn.Module, example: torch.Tensor, target: Target, options) -> None:
        if getattr(model, masks.EMBEDDINGS, False):
            raise UserError(
                "structured removal keeps an embedding's width (the model's hidden size), so it "
                f"cannot prune embeddings: drop --embeddings, or {structured.UNSTRUCTURED_HINT}"
            )
        structured.check(model, example, target.overrides)

    def prune(self, dense, scores, target, ctx, options, example, in_place=False) -> Pruning:
        """Physically remove channels of a copy of `dense` until `target.sparsity` is reached.

        Details: the layers that cannot lose channels (with reasons), and how the target was
        reached (Torch-Pruning's channel and head ratios, heads left, trials)."""
        # Always a copy, even `in_place`: the run measures what was removed against the dense layers.
        source = copy.deepcopy(dense)
        criterion = self.criterion(source, ctx, options)  # Taylor stores gradients in source
        pruned = structured.prune(
            source,
            example[:2],
            criterion,
            target.sparsity,
            scope=target.scope,
            overrides=target.overrides,
            heads=options.get("heads", True),
        )
        how = {
            "channel_ratio": pruned.channel_ratio,
            "head_ratio": pruned.head_ratio,
            "heads": pruned.heads,
            "trials": pruned.trials,
            "layer_sparsity": pruned.overrides,  # asked vs reached: coupled layers cannot always match
            "outputs": list(pruned.outputs),  # never shrunk: the model's outputs (e.g. the classes)
        }
        return Pruning(pruned.model, None, {"skipped_layers": pruned.skipped, "structured": how})


@dataclass(frozen=True)
class L1Channel(ChannelMethod):
    id: str = "l1-channel"
    label: str = "L1 channel norm"
    description: str = (
        "Remove the channels whose coupled weights have the smallest L1 norm (Li et al., 2017), "
        "physically, with every dependent layer."
    )

    def criterion(self, model, ctx, options):
        return tp.importance.MagnitudeImportance(p=1)


@dataclass(frozen=True)
class L2Channel(ChannelMethod):
    id: str = "l2-channel"
    label: str = "L2 channel norm"
    description: str = "Remove the channels whose coupled weights have the smallest L2 norm, physically."

    def criterion(self, model, ctx, options):
        return tp.importance.MagnitudeImportance(p=2)


def store_gradients(model: nn.Module, ctx: Context, batches: int) -> None:
    """Leave the loss gradient summed over calibration batches in every parameter's .grad."""
    model.eval()  # BatchNorm statistics must not drift while we look at gradients
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for x, y in calibration_batches(ctx, batches):
            ctx.task.loss(model(x), y).backward()


@dataclass(frozen=True)
class TaylorChannel(ChannelMethod):
    id: str = "taylor-channel"
    label: str = "Taylor channel (first order)"
    needs_data: bool = True
    needs_gradients: bool = True
    params: tuple[Param, ...] = field(default=(BATCHES, HEADS))
    description: str = (
        "Remove the channels with the smallest |w * dL/dw| summed over the group, on calibration "
        "batches (Molchanov et al., 2019), physically."
    )

    def criterion(self, model, ctx, options):
        store_gradients(model, ctx, options["batches"])
        return tp.importance.TaylorImportance()


@dataclass(frozen=True)
class BNScale(ChannelMethod):
    id: str = "bn-scale"
    label: str = "BatchNorm scale"
    description: str = (
        "Remove the channels whose BatchNorm scale |gamma| is smallest (network slimming, Liu et al., "
        "2017), physically; needs BatchNorm layers."
    )

    def check(self, model, example, target, options):
        _require_batchnorm(model)  # first: the more basic refusal
        super().check(model, example, target, options)

    def criterion(self, model, ctx, options):
        _require_batchnorm(model)
        return tp.importance.BNScaleImportance()


def _require_batchnorm(model: nn.Module) -> None:
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(
            "bn-scale ranks channels by their BatchNorm scale and this model has no BatchNorm layer; "
            "use l1-channel or taylor-channel"
        )


class SeededRandomImportance(tp.importance.Importance):
    """Random channel scores that depend only on the seed and the group's root layer.

    Torch-Pruning's RandomImportance draws from the global generator; this one gives every
    trial of the ratio search the same scores and never touches global state (threads).
    """

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, group) -> torch.Tensor:
        root, idxs = group[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(root.target.name.encode()))
        return torch.rand(len(idxs), generator=g)


@dataclass(frozen=True)
class RandomChannel(ChannelMethod):
    id: str = "random-channel"
    label: str = "Random channels"
    description: str = "Remove random channels (seeded): the baseline structured criteria must beat."

    def criterion(self, model, ctx, options):
        return SeededRandomImportance(ctx.seed if ctx is not None else 0)
