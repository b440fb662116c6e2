"""Which weights are prunable, and turning importance scores into bool masks.

Masks are bool tensors (True = kept) keyed by layer name, one per prunable
layer's weight, and are applied in place: the model never holds a second
float copy of its weights, unlike torch.nn.utils.prune's `_orig` + float mask.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import numpy as np
import torch
from torch import nn

from pruning.errors import UserError

Scope = Literal["global", "layer"]
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_types() -> tuple[type, ...]:
    """Linear and Conv layers, and `transformers`' Conv1D (GPT-2's, its weight stored transposed)
    once transformers is loaded (only a model that uses it loads it)."""
    if "transformers" in sys.modules:
        from transformers.pytorch_utils import Conv1D

        return (*PRUNABLE_TYPES, Conv1D)
    return PRUNABLE_TYPES


def transposed(layer: nn.Module) -> bool:
    """A weight stored (inputs, outputs), as transformers' Conv1D stores it, not (outputs, inputs)."""
    return type(layer).__name__ == "Conv1D" and type(layer).__module__.startswith("transformers")


class Projection:
    """A weight that is a parameter of a module rather than a layer of its own: the input projections
    of `nn.MultiheadAttention` (`in_proj_weight`, or `q/k/v_proj_weight`). It answers like a Linear
    layer where masks and counts look (`weight`, `parameters()`), and says which input it reads."""

    def __init__(self, owner: nn.Module, attribute: str, parameter_name: str, input_index: int):
        self.owner, self.attribute = owner, attribute
        self.parameter_name = parameter_name  # the weight's name in the model's state_dict
        self.input_index = input_index  # which of the owner's inputs it multiplies (query, key, value)

    @property
    def weight(self) -> nn.Parameter:
        return getattr(self.owner, self.attribute)

    def parameters(self):
        yield self.weight


def _projections(name: str, module: nn.MultiheadAttention) -> dict[str, Projection]:
    prefix = f"{name}." if name else ""
    if module.in_proj_weight is not None:  # query, key and value packed in one (3E, E) weight
        return {f"{prefix}in_proj": Projection(module, "in_proj_weight", f"{prefix}in_proj_weight", 0)}
    return {
        f"{prefix}{part}_proj": Projection(module, f"{part}_proj_weight", f"{prefix}{part}_proj_weight", i)
        for i, part in enumerate("qkv")
    }


EMBEDDINGS = "pruning_lab_embeddings"  # set on a model whose nn.Embedding weights are prunable too


def include_embeddings(model: nn.Module) -> None:
    """Make `model`'s embeddings prunable (they are not by default). Recorded on the model itself, so
    every copy of it, and everything that lists its layers, agrees."""
    setattr(model, EMBEDDINGS, True)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear/Conv layers (and MultiheadAttention's input projections) in model order, and its
    embeddings once `include_embeddings` was called; a weight shared by several layers (an
    embedding tied to the output layer) is listed once, under the first."""
    layers, seen = {}, set()
    kinds = prunable_types()
    if getattr(model, EMBEDDINGS, False):
        kinds = (*kinds, nn.Embedding)
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            layers.update(_projections(name, module))  # its out_proj is a Linear: listed next
        elif isinstance(module, kinds) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            layers[name] = module
    if not layers:
        raise UserError("the model has no prunable layers (Linear or Conv weights); nothing to prune")
    return layers


def n_to_prune(sparsity: float, numel: int) -> int:
    # Python's round, exactly as torch.nn.utils.prune computes its amount.
    return round(sparsity * numel)


INT32_MAX = 2**31 - 1
CHUNK = 1 << 20  # elements per step of the threshold search: its transients stay small on any layer
HALF = 1 << 16  # bins per histogram: one per value of a 16-bit half of a key


def _order_keys(flat: np.ndarray, keys: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """int32 keys that sort as the float32 values of `flat` do, NaN last (where numpy sorts it), written
    into `keys` (`nan`: a bool buffer): a positive float's bits already sort as an integer, a negative
    one's magnitude bits are flipped."""
    bits = flat.view(np.int32)
    np.right_shift(bits, 31, out=keys)  # -1 for a negative value, else 0
    np.bitwise_and(keys, INT32_MAX, out=keys)
    np.bitwise_xor(keys, bits, out=keys)
    np.copyto(keys, INT32_MAX, where=np.isnan(flat, out=nan))
    return keys


def _kth_lowest(flats: Callable[[], Iterator[torch.Tensor]], k: int) -> float:
    """The k-th lowest (1-based) of the values of flat float32 tensors taken together, the value
    np.partition of their concatenation gives, found without concatenating them: a radix selection,
    one pass of 65536-bin histograms for each 16-bit half of the values' order keys. On a
    124M-parameter model the concatenated scores and numpy's partitioned copy of them were 1 GB.

    Chunks are keyed by numpy into buffers made once and counted by index_add_ into one tensor: on
    two cores shared with other work, torch's two threads (integer ops, fresh memory for each result,
    torch.bincount's own bins at every call) took 24 s for GPT-2 small."""

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for flat in flats():
            for chunk in flat.detach().split(CHUNK):
                n = len(chunk)
                yield _order_keys(chunk.cpu().numpy(), keys[:n], nan[:n]), halves[:n]

    counts = torch.zeros(HALF, dtype=torch.int64)
    ones = torch.ones(CHUNK, dtype=torch.int64)
    keys, halves = np.empty(CHUNK, dtype=np.int32), np.empty(CHUNK, dtype=np.int32)
    nan = np.empty(CHUNK, dtype=bool)
    for chunk_keys, chunk_halves in chunks():
        np.add(np.right_shift(chunk_keys, 16, out=chunk_halves), HALF // 2, out=chunk_halves)
        counts.index_add_(0, torch.from_numpy(chunk_halves), ones[: len(chunk_halves)])
    cumulative = counts.cumsum(0)
    upper = int(torch.searchsorted(cumulative, k))  # the k-th lowest key's upper half, as a bin
    below = int(cumulative[upper - 1]) if upper else 0
    counts.zero_()
    for chunk_keys, chunk_halves in chunks():
        np.add(np.right_shift(chunk_keys, 16, out=chunk_halves), HALF // 2, out=chunk_halves)
        lower = np.bitwise_and(chunk_keys[chunk_halves == upper], HALF - 1)
        counts.index_add_(0, torch.from_numpy(lower), ones[: len(lower)])
    upper -= HALF // 2
    key = (upper << 16) | int(torch.searchsorted(counts.cumsum(0), k - below))
    bits = key ^ INT32_MAX if key < 0 else key
    return torch.tensor([bits], dtype=torch.int32).view(torch.float32).item()


def _keep_lowest(
    scores: Mapping[str, torch.Tensor], names: list[str], k: int, sizes: Mapping[str, int]
) -> dict[str, torch.Tensor]:
    """Keep-masks pruning the k lowest scores of the `names` layers taken together (as float32),
    ties at the threshold broken by position in that order: the masks sorting their concatenation
    would give. Each layer's scores are read once per pass and dropped, never held together (a
    score mapping may compute them when read, as magnitude's does); `sizes`: their numbers of elements."""
    total = sum(sizes[name] for name in names)
    if k <= 0 or k >= total:
        return {name: torch.full(scores[name].shape, k <= 0, device=scores[name].device) for name in names}
    threshold = _kth_lowest(lambda: (scores[name].flatten().float() for name in names), k)
    # The largest layer first: its scores, when computed as they are read, meet the fewest masks.
    keep = {name: scores[name].float() > threshold for name in sorted(names, key=sizes.get, reverse=True)}
    excess = total - sum(int(m.count_nonzero()) for m in keep.values()) - k
    for name in reversed(names):  # more ties at the threshold than we need to prune: keep the last ones
        if excess <= 0:
            break
        tied = (scores[name].flatten().float() == threshold).nonzero().flatten()[-excess:]
        keep[name].view(-1)[tied] = True
        excess -= len(tied)
    return keep


def validate_sparsity(value: float, what: str = "sparsity") -> float:
    value = float(value)
    if not (0.0 <= value < 1.0):  # also false for NaN
        raise UserError(f"{what} must be a number in [0, 1), got {value}")
    return value


def check_layers(overrides: Mapping[str, float], layers: Mapping[str, object]) -> None:
    """Refuse per-layer sparsities for layers that are not prunable layers of the model."""
    unknown = sorted(set(overrides) - set(layers))
    if unknown:
        raise UserError(
            f"unknown layer(s) in per-layer sparsity: {', '.join(unknown)}; "
            f"prunable layers are {', '.join(layers)}"
        )


def select(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    scope: Scope = "global",
    overrides: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Bool keep-masks pruning the lowest scores.

    scope="layer": every layer at `sparsity`. scope="global": one threshold over
    all layers without an override, chosen so the whole model lands on `sparsity`.
    Overrides always fix their layer's own sparsity.
    """
    overrides = dict(overrides or {})
    check_layers(overrides, scores)
    validate_sparsity(sparsity)
    for name, value in overrides.items():
        validate_sparsity(value, f"sparsity of layer {name}")
    sizes = {name: s.numel() for name, s in scores.items()}  # each layer's scores read once here
    masks = {}  # layer scope: every layer on its own; global scope: only the overridden ones
    for name in scores:
        if name in overrides or scope == "layer":
            k = n_to_prune(overrides.get(name, sparsity), sizes[name])
            masks.update(_keep_lowest(scores, [name], k, sizes))
    if scope == "layer":
        return masks
    free = [name for name in scores if name not in overrides]
    if free:
        fixed = sum(n_to_prune(overrides[n], sizes[n]) for n in overrides)
        k = min(max(n_to_prune(sparsity, sum(sizes.values())) - fixed, 0), sum(sizes[n] for n in free))
        masks.update(_keep_lowest(scores, free, k, sizes))
    return {name: masks[name] for name in scores}


def select_nm(scores: Mapping[str, torch.Tensor], n: int, m: int) -> dict[str, torch.Tensor]:
    """N:M masks: in every group of m consecutive input weights keep the n highest scores."""
    masks = {}
    for name, s in scores.items():
        rows = s.reshape(s.shape[0], -1)
        if rows.shape[1] % m:
            raise UserError(
                f"layer {name} has {rows.shape[1]} inputs, not a multiple of {m}; "
                f"exclude it or use an unstructured method"
            )
        groups = rows.reshape(-1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(1, groups.topk(n, dim=1).indices, True)
        masks[name] = keep.view_as(s)
    return masks


def apply(layers: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place."""
    with torch.no_grad():
        for name, mask in masks.items():
            layers[name].weight.mul_(mask)


def parameter_name(name: str, layer: nn.Module) -> str:
    """The state_dict name of a prunable layer's weight."""
    return getattr(layer, "parameter_name", None) or (f"{name}.weight" if name else "weight")


def param_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Re-key layer masks by parameter name (what the training loop holds fixed)."""
    layers = prunable_layers(model)
    return {parameter_name(name, layers[name]): mask for name, mask in masks.items()}
