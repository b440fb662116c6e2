"""The method registry, keyed by short stable ids."""

from __future__ import annotations

from pruning.core.methods.base import Context, Method, Param, Pruning, Target
from pruning.core.methods.criteria import Lamp, Snip, Wanda, WandaNM
from pruning.core.methods.nm import NM
from pruning.core.methods.sparsegpt import SparseGPT, SparseGPTNM
from pruning.core.methods.structured import BNScale, L1Channel, L2Channel, RandomChannel, TaylorChannel
from pruning.core.methods.unstructured import Magnitude, Random, Taylor
from pruning.errors import UserError

METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Random(),
        Magnitude(),
        Taylor(),
        Snip(),
        Lamp(),
        Wanda(),
        SparseGPT(),
        NM(),
        WandaNM(),
        SparseGPTNM(),
        L1Channel(),
        L2Channel(),
        TaylorChannel(),
        BNScale(),
        RandomChannel(),
    )
}


def get(method_id: str) -> Method:
    if method_id not in METHODS:
        raise UserError(f"unknown method '{method_id}': use one of {', '.join(METHODS)}")
    return METHODS[method_id]


__all__ = ["METHODS", "Context", "Method", "Param", "Pruning", "Target", "get"]
