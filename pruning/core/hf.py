"""Hugging Face models from a local directory (`--model hf:PATH`), offline, never remote code.

A directory holds `config.json` (and, for trained weights, `model.safetensors`). The class
comes from the config's `architectures`, looked up among `transformers`' own classes only:
`trust_remote_code` is never set, so no code from the directory runs. The hub is never
contacted (offline flags are set before `transformers` is imported). Outputs with `.logits`
are read as logits by the tasks. `transformers` is imported only when an `hf:` model is used.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from pruning.errors import UserError

PREFIX = "hf:"


def is_hf(spec: str) -> bool:
    return spec.startswith(PREFIX)


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: transformers reads them then
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise UserError("hf: models need the transformers package: pip install transformers") from exc
    transformers.logging.set_verbosity_error()  # its notes about unused weights are not the user's
    transformers.logging.disable_progress_bar()
    return transformers


def _architecture(spec: str) -> tuple[Path, type]:
    folder = Path(spec[len(PREFIX) :]).expanduser()
    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"'{spec}' is not a Hugging Face model directory: {config} does not exist")
    try:
        names = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError) as exc:
        raise UserError(f"{config} is not valid JSON ({exc})") from exc
    if not names:
        raise UserError(f'{config} names no architectures; add e.g. "architectures": ["GPT2LMHeadModel"]')
    transformers = _transformers()
    cls = getattr(transformers, str(names[0]), None)
    concrete = isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
    if not (concrete and getattr(cls, "config_class", None) is not None):
        raise UserError(
            f"{config} names architecture '{names[0]}', which transformers {transformers.__version__} "
            "does not provide; models that need their own code (trust_remote_code) are not loaded"
        )
    return folder, cls


def build(spec: str) -> nn.Module:
    """A fresh model from the directory's config (random weights)."""
    folder, cls = _architecture(spec)
    with _explained(spec):
        return cls(cls.config_class.from_pretrained(folder, local_files_only=True))


def load(spec: str) -> nn.Module:
    """The directory's model with its weights (`model.safetensors`), or fresh when it has none."""
    folder, cls = _architecture(spec)
    if not any(folder.glob("*.safetensors")):
        return build(spec)
    with _explained(spec):
        return cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)


@contextlib.contextmanager
def _explained(spec: str) -> Iterator[None]:
    """Whatever transformers raises about a directory (a bad config value, a broken weights file)
    as one line naming the directory."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[-1].strip()
        raise UserError(f"'{spec}' could not be loaded: {type(exc).__name__}: {first}") from exc


def save(model: nn.Module, directory: str | Path) -> None:
    """A Hugging Face directory (`save_pretrained`) that `from_pretrained` loads back."""
    model.save_pretrained(directory, safe_serialization=True)
