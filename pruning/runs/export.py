"""Exporting a pruned model: a plain state_dict (safetensors), run.json, recipe.json (the run's
config, which `python -m pruning run --recipe FILE` reads back), prune.py (the same pruning with
standard tools) and, when the architecture changed, a `torch.export` program and an ONNX file that
load without project code."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruning.core import hf, measure
from pruning.core import methods as registry
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
    "calib_samples": (int, NONE),
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


def save_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """A `torch.export` program with a dynamic batch size: `torch.export.load(path).module()(x)`."""
    x = _batch_example(example)
    with _exporters_quiet():
        program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, path)


def save_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """An ONNX model (torch's dynamo exporter, offline) with a dynamic batch size."""
    x = _batch_example(example)
    with _exporters_quiet():
        onnx_program = torch.onnx.export(
            model.eval(), (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim.AUTO},), verbose=False
        )
        onnx_program.save(str(path))


def save_model(
    model: nn.Module, directory: str | Path, removed: bool, example: torch.Tensor, hugging_face: bool = False
) -> dict:
    """Write model.safetensors and (if removed) model.pt2 and model.onnx; returns their paths.
    A model that came from a Hugging Face directory is saved as one (`save_pretrained`: config.json
    and model.safetensors, which `from_pretrained` loads).

    A program format that fails (an op the exporter cannot handle) is reported under
    `errors` instead of failing the run: the weights are still written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"weights": directory / "model.safetensors"}
    if hugging_face:
        hf.save(model, directory)
        files["config"] = directory / "config.json"
    else:
        files["weights"].write_bytes(measure.state_bytes(model))  # masks are folded in: weights are zero
    errors = {}
    if removed:
        for key, name, save in (("program", "model.pt2", save_program), ("onnx", "model.onnx", save_onnx)):
            try:
                save(model, example, directory / name)
                files[key] = directory / name
            except Exception as exc:  # any exporter failure is reported, not fatal
                errors[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    paths: dict = {k: str(v) for k, v in files.items()}
    if errors:
        paths["errors"] = errors
    return paths


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
    """`save_model`, recipe.json and prune.py, then run.json: the result, with every exported path
    under its `export` key."""
    directory = Path(directory)
    paths = save_model(model, directory, result.removed, example, hugging_face)
    paths["recipe"] = str(directory / "recipe.json")
    Path(paths["recipe"]).write_text(json.dumps(recipe(result), indent=2))
    paths["snippet"] = str(directory / "prune.py")
    Path(paths["snippet"]).write_text(snippet.render(result, model, example))
    paths["result"] = str(directory / "run.json")
    result.details["export"] = paths
    Path(paths["result"]).write_text(json.dumps(result.to_dict(), indent=2))
    return paths
