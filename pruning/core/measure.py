"""Measurements of a model: parameters, non-zeros, FLOPs, bytes and latency (the task's metric is
measured by `tasks`, through `Data.evaluate`).

Everything here is measured, never estimated from a nominal sparsity: non-zeros
are counted, FLOPs come from torch.utils.flop_counter (scaled by each masked
layer's density for the *effective* count), bytes are the sizes of real
encodings, and latency is timed by `latency`, dense and pruned interleaved in one process until the
speedup is known within ±5%.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch
from isal import isal_zlib
from safetensors.torch import save, save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruning.core import latency


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def layer_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one forward pass of `example`, and FLOPs per module name."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    root = type(model).__name__
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root:
            per_module[""] = sum(ops.values())
        elif key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = sum(ops.values())
    return counter.get_total_flops(), per_module


def prunable_flops(model: nn.Module, layers: Mapping[str, nn.Module], per_module: Mapping[str, int]) -> dict:
    """FLOPs per prunable layer (as `masks.prunable_layers` names them), counting every module that
    uses the layer's weight: a tied weight is pruned once but multiplied wherever it is used."""
    owner = {id(m.weight): name for name, m in layers.items()}
    flops = dict.fromkeys(layers, 0)
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and id(weight) in owner:
            flops[owner[id(weight)]] += per_module.get(name, 0)
    return flops


def effective_flops(total: int, per_layer: Mapping[str, int], density: Mapping[str, float]) -> int:
    """FLOPs with each masked layer's share scaled by the fraction of its weights kept."""
    return round(total - sum(per_layer.get(name, 0) * (1.0 - d) for name, d in density.items()))


def state_dict_for_file(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's own state_dict keys, each with its own storage: safetensors refuses tensors that
    share memory, as tied weights do (an embedding and its output head). Loading the file back into
    a fresh copy of the model, strictly, restores the tie: both keys carry the same values."""
    seen: set[int] = set()
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()  # files are written from host memory
        pointer = value.untyped_storage().data_ptr() if value.numel() else None
        state[key] = value.clone() if pointer in seen else value.contiguous()
        if pointer is not None:
            seen.add(pointer)
    return state


def state_bytes(model: nn.Module) -> bytes:
    """The model's state_dict as a safetensors file (what a user would ship), in memory."""
    return save(state_dict_for_file(model))


def save_state(model: nn.Module, path: str | Path) -> None:
    """The same file written to `path`: safetensors writes it from the tensors' own memory, where
    `state_bytes` builds it in memory, for a moment twice (GPT-2 small: 1.4 GB on top of the model)."""
    try:
        save_file(state_dict_for_file(model), path)
    except Exception as exc:  # safetensors reports I/O failures as "... (os error N)": raise the OSError
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from exc


@contextmanager
def _state_file(model: nn.Module) -> Iterator[Path]:
    """The model's safetensors file in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        save_state(model, path)
        yield path


def state_size(model: nn.Module) -> int:
    """Bytes of the model's safetensors file."""
    with _state_file(model) as path:
        return path.stat().st_size


def sparse_bytes(model: nn.Module) -> int:
    """Bytes of a bitmask + non-zero values encoding of every floating-point tensor."""
    total = 0
    for t in model.state_dict().values():
        if t.is_floating_point():
            total += (t.numel() + 7) // 8 + int(torch.count_nonzero(t)) * t.element_size()
        else:
            total += t.numel() * t.element_size()
    return total


GZIP_CHUNK = 1 << 22


def gzipped_size(file: BinaryIO) -> int:
    """Bytes of what `file` holds as a gzip file (any gunzip reads it), deflated by ISA-L (python-isal)
    at its level 2, read and compressed in chunks: neither a large model's file nor its compressed
    copy is ever held whole.

    Why not `gzip -6`: a sweep gzips every level's file, and zlib at -6 took as long as evaluating a
    small model. On 0.05..0.95 sweeps of the sample models ISA-L level 2 was 11-14x faster than zlib -6
    (5-6x -1), its files 6% larger than -6's in total (2% smaller than -1's), up to 38% at 95% sparsity.
    """
    deflate = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    size = sum(len(deflate.compress(chunk)) for chunk in iter(lambda: file.read(GZIP_CHUNK), b""))
    return size + len(deflate.flush())


def size_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the dense file, of the bitmask + non-zeros encoding, and of the dense file gzipped."""
    with _state_file(model) as path, path.open("rb") as file:
        return {"dense": path.stat().st_size, "sparse": sparse_bytes(model), "gzip": gzipped_size(file)}


def latency_ms(
    models: Mapping[str, nn.Module],
    example: torch.Tensor,
    rounds: int = latency.MIN_ROUNDS,
    min_run_time: float = latency.BLOCK_SECONDS,
) -> dict[str, float]:
    """Median forward latency of each model, interleaved round by round so drift hits all alike, until
    each one's speedup against the first is known within ±5% (see `latency.interleaved`): at least
    `rounds` rounds, each model timed for at least `min_run_time` seconds per round."""
    return latency.interleaved(models, example, min_rounds=rounds, block=min_run_time).ms


def layer_table(
    dense_layers: Mapping[str, nn.Module],
    pruned_layers: Mapping[str, nn.Module],
    dense_flops: Mapping[str, int],
) -> list[dict]:
    """One row per prunable layer in model order; sparsity is relative to the dense layer."""
    rows = []
    for name, dense in dense_layers.items():
        layer = pruned_layers.get(name)
        weight = layer.weight if layer is not None else None
        numel = dense.weight.numel()
        nonzero = int(torch.count_nonzero(weight)) if weight is not None else 0
        sparsity = 1.0 - nonzero / numel
        rows.append(
            {
                "name": name,
                "type": type(dense).__name__,
                "params": sum(p.numel() for p in layer.parameters()) if layer is not None else 0,
                "dense_params": sum(p.numel() for p in dense.parameters()),
                "nonzero": sum(int(torch.count_nonzero(p)) for p in layer.parameters())
                if layer is not None
                else 0,
                "sparsity": sparsity,
                "flops": round(dense_flops.get(name, 0) * (1.0 - sparsity)),  # round: 9.99.. is 10
                "dense_flops": int(dense_flops.get(name, 0)),
            }
        )
    return rows


def sparsity(dense_layers: Mapping[str, nn.Module], pruned_layers: Mapping[str, nn.Module]) -> float:
    """Fraction of the dense model's prunable weights that are zero or removed."""
    total = sum(m.weight.numel() for m in dense_layers.values())
    kept = sum(int(torch.count_nonzero(m.weight)) for n, m in pruned_layers.items() if n in dense_layers)
    return 1.0 - kept / total
