"""SparseGPT (Frantar & Alistarh, 2023): one-shot pruning that reconstructs what it prunes.

Per layer, the calibration inputs X give the Hessian H = 2 X X^T of the layer's squared
reconstruction error ||WX - W'X||^2 (plus a dampening of 1% of its mean diagonal). Columns are
visited in blocks of 128: within a block the weights with the lowest OBS saliency w^2 / [H^-1]_jj^2
are chosen, and each pruned weight's error is spread over the not-yet-visited weights of its row
through H^-1 (the Cholesky form of the reference code). Unstructured masks take exactly the asked
number of weights per layer; N:M masks choose n of every m consecutive inputs as the columns are
reached.

Layers are processed in model order with their inputs taken through the layers already pruned, as
in the paper. Transformer stacks (a ModuleList of same-class blocks) are walked block by block: the
calibration set's inputs of each block are computed once (for every batch, the block's arguments),
and the block is replayed on them up to each of its layers in turn, that layer's H accumulated
batch by batch in float32 (X^T X with addmm_, no copy of all the inputs). Layers that the block
calls one after the other with the very same input tensor (q/k/v projections, gate/up) share one
replay and one H: pruning the first cannot change an input computed before it, so each still gets
the inputs the layers pruned before it produce. A layer reading another input (o, down) waits for
its own replay, after those are pruned. The pruned block's outputs then replace its inputs. Layers
after the stack (a language model's head) read the stack's last outputs through the model's own
code, its blocks answering with them instead of being computed again; other layers see a full
forward pass that stops at them. Only the current H is held, and each weight is rewritten where it
lies (a 50257-output head: one 128-column slab and its errors as working memory).
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


def _inverse_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor of H^-1 (H dampened, dead inputs given a unit diagonal): the
    reference code's form of the OBS updates. Computed in the memory of `hessian`, which it returns
    (a 3072-input layer would otherwise hold four 36 MB matrices at once)."""
    H = hessian
    diagonal = H.diagonal()
    diagonal[diagonal == 0] = 1.0  # inputs that were always zero: any weight there is free to keep
    diagonal.add_(damp * diagonal.mean())
    torch.linalg.cholesky(H, out=H)
    torch.cholesky_inverse(H, out=H)
    return torch.linalg.cholesky(H, upper=True, out=H)


def _saliency(W1: torch.Tensor, d: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """OBS saliency w^2 / [H^-1]_jj^2 of a block of rows (one per input column), into `out`."""
    return torch.mul(W1, W1, out=out).div_(d.pow(2).unsqueeze(1))


def _lowest(W1: torch.Tensor, d: torch.Tensor, k: int, scratch: torch.Tensor, out: torch.Tensor) -> None:
    """Mark in `out` exactly the `k` weights of lowest saliency (ties broken by position). The k-th
    value comes from a partial sort done in `scratch` (no temporary: torch's k-th value holds a copy
    and int64 indices, a top-k of half a block is several times slower); the saliencies are then
    computed again, identically, to compare with it."""
    if k >= W1.numel():
        out.fill_(True)
        return
    _saliency(W1, d, scratch)
    if scratch.device.type == "cpu" and scratch.is_contiguous():
        flat = scratch.numpy().reshape(-1)
        flat.partition(k - 1)  # in place
        threshold = torch.tensor(float(flat[k - 1]), dtype=scratch.dtype)
    else:
        threshold = scratch.flatten().kthvalue(k).values
    scores = _saliency(W1, d, scratch)
    torch.lt(scores, threshold, out=out)
    missing = k - int(torch.count_nonzero(out))  # a bool sum would hold an int64 copy
    if missing:  # ties at the threshold: the first ones in order
        ties = (scores == threshold).flatten().nonzero().flatten()[:missing]
        out.view(-1)[ties] = True


def obs_prune_(
    columns: torch.Tensor,
    pruned: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float = 0.0,
    n: int = 0,
    m: int = 0,
    blocksize: int = 128,
    damp: float = 0.01,
) -> None:
    """SparseGPT on one float32 weight, in place, given as `columns`: (inputs, outputs), one row per
    input column of the weight (a view of the weight itself: Conv1D's own layout, a Linear's
    transpose). Marks the pruned weights True in `pruned` (same shape) and sets them to zero, the
    others updated to reconstruct the outputs. `hessian` (2 X X^T, float32) is consumed.
    Unstructured when `n` is 0: exactly round(sparsity * numel) weights go; else n of every m
    consecutive inputs are kept for each output."""
    cols, rows = columns.shape
    Hinv = _inverse_factor(hessian, damp)
    if n:
        blocksize = max(m, blocksize // m * m)  # a group never straddles two blocks
    total = round(sparsity * columns.numel())
    size = min(blocksize, cols)
    # Buffers shared by the column blocks (a layer's worth of churn would fragment the heap): one
    # (columns x outputs) slab serves in turn as the saliencies, the scale 1/[H^-1]_jj of the pruned
    # weights (0 for the kept) and, row by row, the errors spread over the later columns.
    errors = torch.empty(size, rows, dtype=columns.dtype, device=columns.device)
    slab = masks = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        view, target = columns[i1:i2], pruned[i1:i2]
        W1 = view  # the block as contiguous rows: each input's weights to all outputs lie together
        if not view.is_contiguous():
            slab = torch.empty_like(errors) if slab is None else slab
            W1 = slab[:count].copy_(view)
        mask1 = target
        if not target.is_contiguous():
            masks = torch.empty_like(errors, dtype=torch.bool) if masks is None else masks
            mask1 = masks[:count]
        mask1.zero_()
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = Hinv1.diagonal()
        Err1 = errors[:count]
        if not n:  # this block's share of the layer's count, so the blocks add up to exactly `total`
            k = round(total * i2 / cols) - round(total * i1 / cols)
            if k:
                _lowest(W1, d, k, scratch=Err1, out=mask1)
            Err1.copy_(mask1).div_(d.unsqueeze(1))  # no float temporary of the mask
        for i in range(count):
            if n and i % m == 0:  # a group's saliencies from its weights as updated so far
                group = _saliency(W1[i : i + m], d[i : i + m], torch.empty_like(W1[i : i + m]))
                mask1[i : i + m].scatter_(0, group.topk(m - n, dim=0, largest=False).indices, True)
                Err1[i : i + m].copy_(mask1[i : i + m]).div_(d[i : i + m].unsqueeze(1))
            err = Err1[i].mul_(W1[i])  # (w - q) / [H^-1]_jj, q the weight with the pruned ones zeroed
            if i + 1 < count:
                W1[i + 1 :].addr_(Hinv1[i, i + 1 :], err, alpha=-1)
        W1.masked_fill_(mask1, 0.0)  # what the updates left of a pruned weight is rounding: exact zeros
        if W1 is not view:
            view.copy_(W1)
        if mask1 is not target:
            target.copy_(mask1)
        if i2 < cols:  # the rest of every row, in place: no (rows x columns) temporary
            columns[i2:].addmm_(Hinv[i1:i2, i2:].T, Err1, alpha=-1)


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
    (the pruned and reconstructed weight, the bool keep-mask); `weight` and `hessian` are left as
    they are. Unstructured when `n` is 0: exactly round(sparsity * numel) weights go; else n of
    every m consecutive columns are kept."""
    columns = weight.detach().T.float().contiguous()
    pruned = torch.zeros_like(columns, dtype=torch.bool)
    obs_prune_(columns, pruned, hessian.detach().float().clone(), sparsity, n, m, blocksize, damp)
    return columns.T.to(weight.dtype), ~pruned.T


class _Stop(Exception):
    """Raised by a hook once it has what it came for: the rest of the forward pass is not needed."""


class _Unready(Exception):
    """Raised by a hook that finds the forward pass does not give the layer the inputs it needs."""


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


def _capture(
    layer: nn.Module, passes: Callable[[], None], ready: Callable[[], bool] | None = None
) -> torch.Tensor | None:
    """2/N X X^T of the layer's inputs over `passes` (forward passes, each stopped at the layer),
    accumulated in float32 batch by batch (no copy of all the inputs). None when `ready` says, as
    the layer is reached, that the passes do not give its inputs."""
    size = matrix(layer).shape[1]
    total, count = torch.zeros(size, size, device=layer.weight.device), 0

    def record(module, args):
        nonlocal count
        if ready is not None and not ready():
            raise _Unready
        columns = _columns(module, args[0].detach().float())
        total.addmm_(columns.T, columns)
        count += columns.shape[0]
        raise _Stop

    handle = layer.register_forward_pre_hook(record)
    try:
        passes()
    except _Unready:
        return None
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
    raw = None  # what the stack's last block returned (its output's form)
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
        args, kw = list(args), dict(kw)
        if args:  # owned copies: each block's outputs are written over them (not over the caller's)
            args[0] = args[0].clone()
        elif "hidden_states" in kw:
            kw["hidden_states"] = kw["hidden_states"].clone()
        states.append((args, kw))
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        for x in inputs:
            _stopped(lambda x=x: model(x, **kwargs))
    finally:
        handle.remove()
    for index, block in enumerate(blocks):
        pending = [n for n in names if owner.get(n) == index]
        while pending:
            shared, hessian = _replay(block, states, [layers[n] for n in pending])
            for j, name in enumerate(pending[:shared]):  # one H for layers that read the same inputs
                yield name, layers[name], hessian if j == shared - 1 else hessian.clone()
            del hessian
            pending = pending[shared:]
        for args, kw in states:  # the pruned block's outputs are the next block's inputs
            raw = block(*args, **kw)
            out = _first(raw)
            held = args[0] if args else kw.get("hidden_states")
            if _can_overwrite(held, out):
                held.copy_(out)  # into the same memory: the inputs' buffers serve every block
            elif args:
                args[0] = out
            else:
                kw["hidden_states"] = out
            del out
    for name in names[first:]:
        if name not in owner:
            layer = layers[name]
            hessian = _after_stack(model, kwargs, blocks, layer, inputs, states, raw)
            yield name, layer, through_model(layer) if hessian is None else hessian


def _can_overwrite(held: Any, out: Any) -> bool:
    """Whether a block's output can be copied over its input: same shape and type, no shared memory."""
    if not (isinstance(held, torch.Tensor) and isinstance(out, torch.Tensor)):
        return False
    if out.shape != held.shape or out.dtype != held.dtype or out.device != held.device:
        return False
    return out.untyped_storage().data_ptr() != held.untyped_storage().data_ptr()


def _replay(block: nn.Module, states: list, candidates: list[nn.Module]) -> tuple[int, torch.Tensor]:
    """Replay the block on every batch's recorded inputs up to the first candidate (its layers not yet
    pruned, in model order) and accumulate that layer's H. The layers after it in that order that the
    block calls next with the very same input tensor (q, k and v projections; gate and up) share
    that H, as pruning the first cannot change an input computed before it: (how many candidates
    the H is for, H). The pass stops at the first candidate reached with any other input (which
    must wait for those layers to be pruned); once a batch shows no layer shares the inputs, the
    later batches stop at the first candidate itself."""
    first = candidates[0]
    size = matrix(first).shape[1]
    total, count = torch.zeros(size, size, device=first.weight.device), 0
    sharing = len(candidates) - 1  # how many of the next candidates still read the first's inputs
    state: dict[str, Any] = {}

    def on_first(module, args):
        nonlocal count
        x = args[0]
        columns = _columns(module, x.detach().float())
        total.addmm_(columns.T, columns)
        count += columns.shape[0]
        state.update(x=x, followers=0)
        if not sharing:
            raise _Stop

    def on_next(j):
        def hook(module, args):
            if state["x"] is None:
                return  # called before the first candidate: not what this pass is for
            if args[0] is state["x"] and j == state["followers"] + 1 and j <= sharing:
                state["followers"] = j
                if j == sharing:
                    raise _Stop
                return
            raise _Stop  # a candidate with other inputs: the group ends before it

        return hook

    handles = [first.register_forward_pre_hook(on_first)]
    handles += [c.register_forward_pre_hook(on_next(j)) for j, c in enumerate(candidates[1:], 1)]
    try:
        for args, kw in states:
            state.update(x=None, followers=0)
            _stopped(lambda a=args, k=kw: block(*a, **k))
            sharing = min(sharing, state["followers"])
    finally:
        for handle in handles:
            handle.remove()
    return 1 + sharing, total.mul_(2.0 / max(count, 1))


def _after_stack(model, kwargs, blocks, layer, inputs, states, raw) -> torch.Tensor | None:
    """H of a layer that runs after the stack (a language model's head), from forward passes in which
    every block answers at once with the stack's recorded output for that batch: the model's own
    code between and after the blocks (final norm) runs, the blocks are not computed again. None
    when that cannot be done (a block output other than a tensor or a plain tuple) or the layer is
    reached before the last block (it runs inside the stack): then a full pass is needed."""
    if not isinstance(raw, (torch.Tensor, tuple)):
        return None
    current: dict[str, Any] = {}

    def answer(*args, **kw):
        return current["out"] if isinstance(raw, torch.Tensor) else (current["out"], *raw[1:])

    def answer_last(*args, **kw):
        current["past"] = True
        return answer()

    def passes():
        for x, (args, kw) in zip(inputs, states):
            current.update(out=args[0] if args else kw["hidden_states"], past=False)
            _stopped(lambda x=x: model(x, **kwargs))

    for block in blocks:
        block.forward = answer
    blocks[-1].forward = answer_last
    try:
        return _capture(layer, passes, ready=lambda: current["past"])
    finally:
        for block in blocks:
            del block.forward


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


def _as_columns(layer: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A tensor shaped like the layer's weight as (inputs, outputs): a view of it when contiguous."""
    return t if transposed(layer) else t.reshape(t.shape[0], -1).T


def _prune_layer(layer: nn.Module, hessian: torch.Tensor, pattern: dict, keep: torch.Tensor) -> None:
    """Prune and reconstruct the layer's weight in place (a float32 contiguous weight is rewritten
    where it lies, a 50257-row head included, with no copy); its keep-mask is written into `keep`
    (bool, contiguous, weight-shaped)."""
    weight = layer.weight.detach()
    pruned = keep.zero_()  # True: pruned, until the end
    direct = weight.dtype == torch.float32 and weight.is_contiguous()
    work = weight if direct else weight.float().contiguous()
    obs_prune_(_as_columns(layer, work), _as_columns(layer, pruned), hessian, **pattern)
    if not direct:
        weight.copy_(work)
    pruned.logical_not_()


def _masks(layers: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """All-True keep-masks shaped like each layer's weight, views of one buffer: allocated before the
    pass churns the heap and given back whole when the run drops them (GPT-2 small: 124 MB, which
    as separate tensors stayed in the process through the evaluation that follows)."""
    devices = {layer.weight.device for layer in layers.values()}
    if len(devices) != 1:
        return {name: torch.ones_like(layer.weight, dtype=torch.bool) for name, layer in layers.items()}
    buffer = torch.ones(
        sum(layer.weight.numel() for layer in layers.values()), dtype=torch.bool, device=devices.pop()
    )
    masks, offset = {}, 0
    for name, layer in layers.items():
        size = layer.weight.numel()
        masks[name] = buffer[offset : offset + size].view(layer.weight.shape)
        offset += size
    return masks


def _reconstruct(dense, ctx, options, in_place, choose: Callable[[str, nn.Module], dict | None]):
    """Run the sequential pass on a copy (or `dense`): `choose` gives obs_prune's pattern per layer
    (None: leave it dense). Returns (model, keep-masks)."""
    work = dense if in_place else copy.deepcopy(dense)
    layers = prunable_layers(work)
    wanted = {name: choose(name, layer) for name, layer in layers.items()}
    chosen = {name: layer for name, layer in layers.items() if wanted[name] is not None}
    keep = _masks(layers)
    was_training = work.training
    work.eval()
    tuning = {"blocksize": options["blocksize"], "damp": options["damp"]}
    try:
        with torch.no_grad():
            inputs = calibration_inputs(ctx, options["samples"])
            for name, layer, hessian in sequential(work, chosen, inputs):
                _prune_layer(layer, hessian, {**tuning, **wanted[name]}, keep[name])
                del hessian
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
