"""The model registry (sample models and user models) and safe weight loading.

User files are never unpickled: weights come from safetensors, or from .pt/.pth
through `torch.load(..., weights_only=True)` and nothing else.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from pruning.core import hf, lab
from pruning.core.data import check_memory, load_python_object
from pruning.core.train import TrainConfig
from pruning.errors import UserError
from sample_models.registry import SAMPLE_MODELS  # noqa: F401  (re-exported: the sample ids)


def build(spec: str) -> nn.Module:
    """A fresh (untrained) model: a sample model id or `path/to/file.py:function`."""
    spec = lab.model_source(spec)  # a lab file's model id: its source
    if spec in SAMPLE_MODELS:
        return SAMPLE_MODELS[spec].build()
    if hf.is_hf(spec):
        return hf.build(spec)
    if ".py:" in spec:
        model = load_python_object(spec, "model")
        if not isinstance(model, nn.Module):
            raise UserError(f"'{spec}' returned {type(model).__name__}, not an nn.Module")
        return model
    known = ", ".join(SAMPLE_MODELS)
    raise UserError(f"unknown model '{spec}': use one of {known}, path/to/file.py:function or hf:DIRECTORY")


def safetensors_bytes(path: str | Path) -> int:
    """The bytes a .safetensors file's tensors take, from its header alone (nothing is loaded)."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= min(100 * 2**20, Path(path).stat().st_size - 8):
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(f.read(length))
        return sum(
            end - start
            for name, t in header.items()
            if name != "__metadata__"
            for start, end in [t["data_offsets"]]
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"'{path}' is not a valid safetensors file ({exc})") from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or .pt/.pth with weights_only=True (never a full unpickle); their
    size is checked against the memory budget before they are read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        check_memory(safetensors_bytes(path), f"weights file '{path}'")
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"'{path}' is not a valid safetensors file ({exc})") from exc
    if path.suffix in (".pt", ".pth"):
        check_memory(path.stat().st_size, f"weights file '{path}'")  # torch stores tensors uncompressed
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message suggests retrying with a full (unsafe) unpickle; show only what was refused
            found = re.search(r"GLOBAL [\w.]+|Unsupported operand \w+", str(exc))
            reason = found.group(0) if found else "unsupported content"
            raise UserError(
                f"'{path}' holds objects or code that a weights-only load refuses ({reason}); "
                "save a plain state_dict, ideally as .safetensors"
            ) from exc
        except Exception as exc:
            raise UserError(f"'{path}' could not be read as a PyTorch weights file ({exc})") from exc
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not (isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())):
            raise UserError(f"'{path}' does not hold a state_dict (a dict of name -> tensor)")
        odd = sorted(k for k, v in obj.items() if v.layout != torch.strided or v.is_meta)
        if odd:
            raise UserError(
                f"'{path}' holds sparse or meta tensors, which have no plain values to load: "
                f"{', '.join(odd)}; save dense tensors (tensor.to_dense()) with their values"
            )
        return obj
    raise UserError(f"weights file '{path}' must be .safetensors, .pt or .pth")


def _estimated_bytes(spec: str) -> int:
    """The model's size, from a copy built on the meta device (no memory); 0 when its code cannot be
    built there (the real build then shows its own error)."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build(spec)
    except Exception:
        return 0
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _kind(t: torch.Tensor) -> str:
    if t.is_complex():
        return "complex"
    return "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "integer"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state_dict, refusing missing, unexpected, mis-shaped or non-finite tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{label}: {', '.join(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if names
    ]
    # Float weights load at the model's own precision; ints, bools or complex numbers would be cast
    # into something else than what was trained.
    cast = sorted(
        f"{k} {state[k].dtype} vs {own[k].dtype}"
        for k in set(own) & set(state)
        if _kind(state[k]) != _kind(own[k])
    )
    if cast:
        problems.append(f"dtype: {', '.join(cast)}")
    if problems:
        raise UserError(f"weights in '{source}' do not match the model ({'; '.join(problems)})")
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise UserError(f"weights in '{source}' have NaN or infinite values in: {', '.join(bad)}")
    model.load_state_dict(state)


def load(spec: str, weights: str | Path | None = None) -> nn.Module:
    """A model in eval mode with its weights: the given file, else a sample model's own."""
    spec, weights = lab.model_source(spec), lab.model_weights(spec, weights)  # a lab model: its own
    if hf.is_hf(spec):  # its directory's own weights, sized from their headers before loading
        folder = Path(spec[len(hf.PREFIX) :]).expanduser()
        check_memory(sum(safetensors_bytes(f) for f in folder.glob("*.safetensors")), f"model '{spec}'")
        model = hf.load(spec)
    else:
        check_memory(_estimated_bytes(spec), f"model '{spec}'")  # before a too large one is allocated
        model = build(spec)
    if weights is None and spec in SAMPLE_MODELS:
        weights = SAMPLE_MODELS[spec].weights
    if weights is not None:
        load_weights(model, read_state_dict(weights), str(weights))
    return model.eval()


def default_dataset(spec: str) -> str | None:
    spec, data = lab.model_source(spec), lab.model_data(spec)  # a lab model: its data, else its source's
    if data is not None:
        return data
    return SAMPLE_MODELS[spec].dataset if spec in SAMPLE_MODELS else None


def train_config(spec: str) -> TrainConfig:
    """A sample model's own training recipe; the defaults for any other model."""
    spec = lab.model_source(spec)
    return TrainConfig(**SAMPLE_MODELS[spec].recipe) if spec in SAMPLE_MODELS else TrainConfig()
