"""Exporting a pruned model: a plain state_dict (safetensors), run.json, recipe.json (the run's
config, which `python -m pruning run --recipe FILE` reads back), prune.py (the same pruning with
standard tools) and, when the architecture changed, a `torch.export` program and an ONNX file that
load without project code.

Every file is written into a hidden staging folder inside the destination, fsynced, then renamed into
place, run.json last: it marks an export complete. A full disk or an unwritable folder is one
`UserError` and leaves no half-written file under a final name. `check_destination` refuses, before
anything runs, a destination that is not a writable folder or that holds files (without overwrite)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruning.core import hf, measure
from pruning.core import methods as registry
from pruning.core.structured.hugging_face import without_cache
from pruning.core.tasks import logits
from pruning.errors import UserError
from pruning.runs import snippet
from pruning.runs.config import RunConfig
from pruning.runs.result import RunResult

RECIPE_VERSION = 1
NONE = type(None)
# The JSON types of a recipe's values: RunConfig's fields but `export` (where to write is not the run).
RECIPE_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "method": (str,), "sparsity": (int, float), "data": (str, NONE),
    "weights": (str, NONE), "task": (str, NONE), "scope": (str,), "layer_sparsity": (dict,),
    "options": (dict,), "finetune_epochs": (int,), "schedule": (str,), "steps": (int,), "seed": (int,),
    "device": (str,), "latency": (bool,), "batch_size": (int,), "eval_samples": (int, NONE),
    "calib_samples": (int, NONE), "embeddings": (bool,),
}  # fmt: skip
WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    bool: "true or false",
    NONE: "null",
}


@contextlib.contextmanager
def _exporters_quiet() -> Iterator[None]:
    # The ONNX exporter logs about optional packages (torchvision) and warns about torch internals.
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _batch_example(example: torch.Tensor) -> torch.Tensor:
    """Two rows: with one, torch.export would specialise the batch size to 1."""
    rows = example[:2]
    return rows if len(rows) == 2 else rows.repeat(2, *[1] * (rows.dim() - 1))


class _Logits(nn.Module):
    """The model with its output read as logits: a program returns a tensor, not a Hugging Face
    output (whose key/value cache no exporter can write)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits(self.model(x))


def _exportable(model: nn.Module) -> tuple[nn.Module, contextlib.AbstractContextManager]:
    """What the exporters trace: the model itself, or its logits with the cache off (Hugging Face)."""
    if hasattr(model, "config"):
        return _Logits(model).eval(), without_cache(model)
    return model.eval(), contextlib.nullcontext()


def save_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """A `torch.export` program with a dynamic batch size: `torch.export.load(path).module()(x)`."""
    x = _batch_example(example)
    traced, context = _exportable(model)
    with _exporters_quiet(), context:
        program = torch.export.export(traced, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, path)


def save_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """An ONNX model (torch's dynamo exporter, offline) with a dynamic batch size."""
    x = _batch_example(example)
    traced, context = _exportable(model)
    with _exporters_quiet(), context:
        onnx_program = torch.onnx.export(
            traced, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim.AUTO},), verbose=False
        )
        onnx_program.save(str(path))


def check_destination(directory: str | Path, overwrite: bool = False) -> None:
    """Refuse, before anything is stored or run, an export folder that cannot be written, or that
    holds files unless `overwrite`. Folders created to try are removed again."""
    path = Path(directory).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise UserError(f"--export {directory} is not a folder: give the path of a new or empty folder")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise UserError(
                f"--export folder {directory} is not empty: give a new or empty folder, "
                "or add --overwrite to replace its files"
            )
    except OSError as exc:
        raise _unwritable(path, exc) from None
    created: list[Path] = []
    try:
        for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
            folder.mkdir()
            created.append(folder)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _unwritable(directory: Path, exc: OSError) -> UserError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(
            f"no space left on the device of {directory} while exporting: free some space or export "
            "elsewhere (no file of this export was completed)"
        )
    return UserError(
        f"cannot write to --export {directory} ({exc.strerror or exc}): choose a folder you can write to"
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _staged(directory: Path) -> Iterator[Path]:
    """A staging folder inside `directory`; when the block succeeds its files are fsynced and renamed
    into `directory`, run.json last. A stale run.json goes first: the folder no longer holds that export."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "run.json").unlink(missing_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    try:
        yield stage
        files = sorted((f for f in stage.rglob("*") if f.is_file()), key=lambda f: f.name == "run.json")
        for file in files:
            _fsync(file)
        for file in files:
            target = directory / file.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
        if os.name != "nt":
            _fsync(directory)  # the renames themselves survive a crash
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_model(
    model: nn.Module, folder: Path, removed: bool, example: torch.Tensor, hugging_face: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Write the model files into `folder`: ({key: file name}, {key: why a program format failed})."""
    names = {"weights": "model.safetensors"}
    # A Hugging Face model whose structure was removed no longer matches any config (each layer
    # keeps its own sizes): its weights keep their keys and model.pt2 is the model to load.
    if hugging_face and not removed:
        hf.save(model, folder)
        names["config"] = "config.json"
    else:
        measure.save_state(model, folder / names["weights"])  # masks are folded in; no copy in memory
    errors = {}
    if removed:
        for key, name, save in (("program", "model.pt2", save_program), ("onnx", "model.onnx", save_onnx)):
            try:
                save(model, example, folder / name)
                names[key] = name
            except Exception as exc:  # any exporter failure is reported, not fatal
                errors[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return names, errors


def _paths(directory: Path, names: dict[str, str], errors: dict[str, str]) -> dict:
    paths: dict = {key: str(directory / name) for key, name in names.items()}
    if errors:
        paths["errors"] = errors
    return paths


def save_model(
    model: nn.Module, directory: str | Path, removed: bool, example: torch.Tensor, hugging_face: bool = False
) -> dict:
    """Write model.safetensors and (if removed) model.pt2 and model.onnx; returns their paths.
    A model that came from a Hugging Face directory is saved as one (`save_pretrained`: config.json
    and model.safetensors, which `from_pretrained` loads), unless its structure was removed: no
    config describes layers that each kept their own sizes, so model.pt2 is the model to load.

    A program format that fails (an op the exporter cannot handle) is reported under
    `errors` instead of failing the run: the weights are still written.
    """
    directory = Path(directory)
    with _staged(directory) as stage:
        names, errors = _write_model(model, stage, removed, example, hugging_face)
    return _paths(directory, names, errors)


def recipe(result: RunResult) -> dict[str, Any]:
    """recipe.json's content: the run's config without `export`, and the format's version."""
    return {"recipe_version": RECIPE_VERSION, **{k: v for k, v in result.config.items() if k != "export"}}


def _read_json(path: Path) -> dict[str, Any]:
    again = "give the recipe.json that `python -m pruning run ... --export DIR` wrote"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"recipe {path} does not exist: {again}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path} cannot be read ({exc}): {again}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"recipe {path} is not JSON ({exc}): {again}") from None
    if not isinstance(data, dict) or "recipe_version" not in data:
        raise UserError(f"recipe {path} is not a recipe (no recipe_version; run.json is a result): {again}")
    return data


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The RunConfig fields of a recipe.json, checked; UserError saying what to do when it is not one."""
    path = Path(path)
    data = _read_json(path)
    version = data.pop("recipe_version")
    if version != RECIPE_VERSION:
        raise UserError(
            f"recipe {path} has recipe_version {json.dumps(version)}, this Pruning Lab reads version "
            f"{RECIPE_VERSION}: export the run again with this version"
        )
    unknown = sorted(set(data) - set(RECIPE_TYPES))
    if unknown:
        where = " (give --export on the command line)" if "export" in unknown else ""
        raise UserError(
            f"recipe {path} has unknown keys: {', '.join(unknown)}{where}; "
            f"a recipe holds {', '.join(RECIPE_TYPES)}: remove the others"
        )
    missing = [k for k in ("model", "method", "sparsity") if k not in data]
    if missing:
        raise UserError(f"recipe {path} lacks {', '.join(missing)}: add them to the file")
    for key, value in data.items():
        kinds = RECIPE_TYPES[key]
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            names = " or ".join(WORDS[k] for k in kinds if not (k is int and float in kinds))
            raise UserError(
                f"recipe {path}: {key} must be {names}, got {json.dumps(value)}: fix it in the file"
            )
    try:
        config = RunConfig.from_dict(data)
        registry.get(config.method).options(dict(config.options))
    except UserError as exc:
        raise UserError(f"recipe {path}: {exc}: fix it in the file") from None
    except (TypeError, ValueError) as exc:  # a per-layer sparsity that is not a number
        raise UserError(f"recipe {path} has a value of the wrong type ({exc}): fix it in the file") from None
    return data


def export(
    model: nn.Module,
    result: RunResult,
    directory: str | Path,
    example: torch.Tensor,
    hugging_face: bool = False,
) -> dict:
    """The model files, recipe.json and prune.py, then run.json: the result, with every exported path
    under its `export` key. All or nothing: run.json appears only when every file is complete."""
    directory = Path(directory)
    with _staged(directory) as stage:
        names, errors = _write_model(model, stage, result.removed, example, hugging_face)
        names.update(recipe="recipe.json", snippet="prune.py", result="run.json")
        (stage / names["recipe"]).write_text(json.dumps(recipe(result), indent=2))
        (stage / names["snippet"]).write_text(snippet.render(result, model, example))
        paths = _paths(directory, names, errors)
        result.details["export"] = paths
        (stage / names["result"]).write_text(json.dumps(result.to_dict(), indent=2))
    return paths
