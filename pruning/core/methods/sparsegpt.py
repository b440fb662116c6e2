"""SparseGPT (Frantar & Alistarh, 2023): one-shot pruning that reconstructs what it prunes.

Per layer, the calibration inputs X give the Hessian H = 2 X X^T of the layer's squared
reconstruction error ||WX - W'X||^2 (plus a dampening of 1% of its mean diagonal). Columns are
visited in blocks of 128: within a block the weights with the lowest OBS saliency w^2 / [H^-1]_jj^2
are chosen, and each pruned weight's error is spread over the not-yet-visited weights of its row
through H^-1 (the Cholesky form of the reference code). Unstructured masks take exactly the asked
number of weights per layer; N:M masks choose n of every m consecutive inputs as the columns are
reached.

Layers are processed in model order with their inputs taken through the layers already pruned, as
in the paper. Transformer stacks (a ModuleList of same-class blocks) are walked block by block:
each block's inputs are computed once, replayed for each of its layers, then replaced by the pruned
block's outputs; other layers see a full forward pass that stops at them. Only the current layer's
Hessian is held.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruning.core.masks import Projection, prunable_layers, transposed
from pruning.core.methods.base import Method, Param, Pruning, calibration_batches
from pruning.core.methods.criteria import _unfold, layer_levels
from pruning.core.methods.nm import NM, split_layers
from pruning.errors import UserError

SAMPLES = Param("samples", "int", 128, "calibration samples (sequences for a language model)", 1, 4096)
BLOCKSIZE = Param("blocksize", "int", 128, "columns updated together (lazy batch updates)", 1, 4096)
DAMP = Param("damp", "float", 0.01, "dampening added to the Hessian, as a share of its mean diagonal", 0, 1)


def obs_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float = 0.0,
    n: int = 0,
    m: int = 0,
    blocksize: int = 128,
    damp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one weight (rows = outputs, columns = inputs) given H = 2 X X^T of its inputs:
    (the pruned and reconstructed weight, the bool keep-mask). Unstructured when `n` is 0: exactly
    round(sparsity * numel) weights go; else n of every m consecutive columns are kept."""
    W = weight.detach().float().clone(memory_format=torch.contiguous_format)
    rows, cols = W.shape
    H = hessian.detach().float().clone()
    dead = H.diagonal() == 0  # inputs that were always zero: any weight there is free to keep
    H[dead, dead] = 1.0
    H.diagonal().add_(damp * H.diagonal().mean())
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    if n:
        blocksize = max(m, blocksize // m * m)  # a group never straddles two blocks
    total = round(sparsity * W.numel())
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)  # True: pruned
        saliency_scale = Hinv1.diagonal().pow(2).unsqueeze(0)
        if not n:  # this block's share of the layer's count, so the blocks add up to exactly `total`
            k = round(total * i2 / cols) - round(total * i1 / cols)
            if k:
                lowest = (W1.pow(2) / saliency_scale).flatten().topk(k, largest=False).indices
                mask1.view(-1)[lowest] = True
        for i in range(i2 - i1):
            if n and i % m == 0:
                group = W1[:, i : i + m].pow(2) / saliency_scale[:, i : i + m]
                mask1.scatter_(1, i + group.topk(m - n, dim=1, largest=False).indices, True)
            w, d = W1[:, i], Hinv1[i, i]
            q = w.masked_fill(mask1[:, i], 0.0)
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1)
            Err1[:, i] = err
        W[:, i1:i2], pruned[:, i1:i2] = Q1, mask1
        W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1)  # in place: no (rows x columns) temporary
    return W.to(weight.dtype), ~pruned


class _Stop(Exception):
    """Raised by a hook once it has what it came for: the rest of the forward pass is not needed."""


def _columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's inputs as rows of what its weight (outputs, inputs) multiplies."""
    if isinstance(layer, nn.Linear) or transposed(layer):
        return x.reshape(-1, x.shape[-1])
    columns = _unfold(layer, x)  # (batch, inputs, positions)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as (outputs, inputs): Conv1D's is stored transposed, a conv's flattened."""
    w = layer.weight.detach()
    return w.T if transposed(layer) else w.reshape(w.shape[0], -1)


def _capture(layer: nn.Module, passes: Callable[[], None]) -> torch.Tensor:
    """2/N X X^T of the layer's inputs over `passes` (forward passes, each stopped at the layer)."""
    size = matrix(layer).shape[1]
    total, count = torch.zeros(size, size, device=layer.weight.device), 0

    def record(module, args):
        nonlocal count
        columns = _columns(module, args[0].detach().float())
        total.addmm_(columns.T, columns)
        count += columns.shape[0]
        raise _Stop

    handle = layer.register_forward_pre_hook(record)
    try:
        passes()
    finally:
        handle.remove()
    return total.mul_(2.0 / max(count, 1))


def _stopped(call: Callable[[], Any]) -> None:
    try:
        call()
    except _Stop:
        pass


def _block_stack(model: nn.Module, layers: Mapping[str, nn.Module]) -> tuple[str, nn.ModuleList] | None:
    """The stack of same-class blocks (a ModuleList or Sequential) holding the most prunable layers."""
    best, most = None, 1
    for name, module in model.named_modules():
        children = list(module.children())
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(children) < 2:
            continue
        if len({type(c) for c in children}) != 1:
            continue
        inside = sum(1 for layer in layers if layer.startswith(f"{name}."))
        if inside > most:
            best, most = (name, module), inside
    return best


def block_groups(model: nn.Module, layers: Mapping[str, nn.Module]) -> list[list[str]]:
    """Layer names grouped by the transformer block that holds them (one group per block of the
    stack `sequential` walks); every other layer is a group of its own. In model order."""
    stack = _block_stack(model, layers)
    groups: dict[str, list[str]] = {}
    for name in layers:
        key = name
        if stack is not None and name.startswith(f"{stack[0]}."):
            key = f"{stack[0]}.{name[len(stack[0]) + 1 :].split('.')[0]}"
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def sequential(model: nn.Module, layers: Mapping[str, nn.Module], inputs: list[torch.Tensor]) -> Iterator:
    """(name, layer, H) for every layer in model order, each H computed from inputs that went through
    the layers already pruned: the consumer prunes a layer before asking for the next one."""
    kwargs = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}

    def through_model(layer):
        return _capture(layer, lambda: [_stopped(lambda x=x: model(x, **kwargs)) for x in inputs])

    stack = _block_stack(model, layers)
    if stack is None:
        for name, layer in layers.items():
            yield name, layer, through_model(layer)
        return
    prefix, blocks = stack
    names = list(layers)
    owner = {n: int(n[len(prefix) + 1 :].split(".")[0]) for n in names if n.startswith(f"{prefix}.")}
    first = min(names.index(n) for n in owner)
    for name in names[:first]:
        if name not in owner:
            yield name, layers[name], through_model(layers[name])
    states = []  # each batch's (args, kwargs) as the first block receives them

    def record(module, args, kw):
        states.append((list(args), dict(kw)))
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        for x in inputs:
            _stopped(lambda x=x: model(x, **kwargs))
    finally:
        handle.remove()
    for index, block in enumerate(blocks):
        for name in (n for n in names if owner.get(n) == index):
            replay = lambda b=block: [_stopped(lambda a=a, k=k: b(*a, **k)) for a, k in states]  # noqa: E731
            yield name, layers[name], _capture(layers[name], replay)
        for args, kw in states:  # the pruned block's outputs are the next block's inputs
            out = _first(block(*args, **kw))
            if args:
                args[0] = out
            else:
                kw["hidden_states"] = out
    for name in names[first:]:
        if name not in owner:
            yield name, layers[name], through_model(layers[name])


def calibration_inputs(ctx, samples: int) -> list[torch.Tensor]:
    """The first `samples` shuffled calibration inputs, in batches small enough for a transformer."""
    size = 8 if ctx.task.name == "lm" else 128
    out, left = [], samples
    for x, _ in calibration_batches(ctx, -(-samples // size), size):
        out.append(x[:left])
        left -= len(out[-1])
    return out


def check_layers(model: nn.Module) -> None:
    """SparseGPT reads each layer's inputs as columns: Linear, Conv1D and ungrouped Conv1d/2d."""
    for name, layer in prunable_layers(model).items():
        conv = isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.groups == 1
        unfolds = conv and not isinstance(layer.padding, str) and layer.padding_mode == "zeros"
        if isinstance(layer, Projection) or not (
            isinstance(layer, nn.Linear) or transposed(layer) or unfolds
        ):
            kind = type(getattr(layer, "owner", layer)).__name__
            instead = "run without --embeddings" if kind == "Embedding" else "use magnitude or wanda"
            raise UserError(
                f"sparsegpt cannot read the inputs of layer {name} ({kind}): "
                "it prunes Linear, transformers' Conv1D and ungrouped zero-padded Conv1d/Conv2d layers; "
                f"{instead}"
            )


def _reconstruct(dense, ctx, options, in_place, choose: Callable[[str, nn.Module], dict | None]):
    """Run the sequential pass on a copy (or `dense`): `choose` gives obs_prune's pattern per layer
    (None: leave it dense). Returns (model, keep-masks)."""
    work = dense if in_place else copy.deepcopy(dense)
    layers = prunable_layers(work)
    wanted = {name: choose(name, layer) for name, layer in layers.items()}
    chosen = {name: layer for name, layer in layers.items() if wanted[name] is not None}
    keep = {name: torch.ones_like(layer.weight, dtype=torch.bool) for name, layer in layers.items()}
    was_training = work.training
    work.eval()
    try:
        with torch.no_grad():
            inputs = calibration_inputs(ctx, options["samples"])
            for name, layer, hessian in sequential(work, chosen, inputs):
                tuning = {"blocksize": options["blocksize"], "damp": options["damp"]}
                new, kept = obs_prune(matrix(layer), hessian, **tuning, **wanted[name])
                shape = layer.weight.shape
                layer.weight.copy_(new.T if transposed(layer) else new.reshape(shape))
                keep[name] = kept.T.contiguous() if transposed(layer) else kept.reshape(shape)
    finally:
        work.train(was_training)
    return work, keep


@dataclass(frozen=True)
class SparseGPT(Method):
    id: str = "sparsegpt"
    label: str = "SparseGPT (one-shot reconstruction)"
    needs_data: bool = True
    elementwise: bool = False  # no scores to schedule or to probe per layer: the weights are rewritten
    params: tuple[Param, ...] = field(default=(SAMPLES, BLOCKSIZE, DAMP))
    description: str = (
        "Prunes each layer by OBS saliency and updates the remaining weights to reconstruct its outputs "
        "on calibration inputs, layer after layer (Frantar & Alistarh, 2023). Every layer is pruned to "
        "the same level (the paper's choice); per-layer overrides set theirs."
    )

    def importance(self, model, layers, ctx, options):
        return None  # scored inside `prune`, layer by layer, on the inputs the pruned layers produce

    def check(self, model, example, target, options) -> None:
        check_layers(model)

    def prune(self, dense, scores, target, ctx, options, example, in_place=False) -> Pruning:
        sizes = {name: m.weight.numel() for name, m in prunable_layers(dense).items()}
        levels = layer_levels(sizes, target)
        pattern = {name: {"sparsity": level} if level else None for name, level in levels.items()}
        model, keep = _reconstruct(dense, ctx, options, in_place, lambda name, _: pattern[name])
        return Pruning(model, keep, {"layer_sparsity": levels})


@dataclass(frozen=True)
class SparseGPTNM(NM):
    id: str = "sparsegpt-nm"
    label: str = "SparseGPT N:M (2:4, 4:8)"
    needs_data: bool = True
    params: tuple[Param, ...] = field(default=(*NM().params, SAMPLES, BLOCKSIZE, DAMP))
    description: str = (
        "SparseGPT with an N:M pattern: n of every m consecutive input weights kept, chosen by OBS "
        "saliency as the columns are reached, the rest of the row updated to reconstruct the outputs."
    )

    def importance(self, model, layers, ctx, options):
        return None

    def check(self, model, example, target, options) -> None:
        super().check(model, example, target, options)
        check_layers(model)

    def prune(self, dense, scores, target, ctx, options, example, in_place=False) -> Pruning:
        eligible, skipped = split_layers(prunable_layers(dense), options["m"])
        if not eligible:
            raise UserError(f"no layer has a number of inputs per output divisible by m={options['m']}")
        nm = {"n": options["n"], "m": options["m"]}
        model, keep = _reconstruct(
            dense, ctx, options, in_place, lambda name, _: nm if name in eligible else None
        )
        return Pruning(model, keep, {"skipped_layers": skipped})
