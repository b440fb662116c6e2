"""The model registry (sample models and user models) and safe weight loading.

User files are never unpickled: weights come from safetensors, or from .pt/.pth
through `torch.load(..., weights_only=True)` and nothing else.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from pruning.core import hf, lab
from pruning.core.data import load_python_object
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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or .pt/.pth with weights_only=True (never a full unpickle)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"'{path}' is not a valid safetensors file ({exc})") from exc
    if path.suffix in (".pt", ".pth"):
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
        return obj
    raise UserError(f"weights file '{path}' must be .safetensors, .pt or .pth")


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
    if problems:
        raise UserError(f"weights in '{source}' do not match the model ({'; '.join(problems)})")
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise UserError(f"weights in '{source}' have NaN or infinite values in: {', '.join(bad)}")
    model.load_state_dict(state)


def load(spec: str, weights: str | Path | None = None) -> nn.Module:
    """A model in eval mode with its weights: the given file, else a sample model's own."""
    spec, weights = lab.model_source(spec), lab.model_weights(spec, weights)  # a lab model: its own
    model = hf.load(spec) if hf.is_hf(spec) else build(spec)  # hf: its directory's own weights
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
