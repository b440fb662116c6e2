"""Exporting a pruned model: a plain state_dict (safetensors), run.json and, when the
architecture changed, a `torch.export` program and an ONNX file that load without project code."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from pruning.core import hf, measure
from pruning.runs.result import RunResult


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


def export(
    model: nn.Module,
    result: RunResult,
    directory: str | Path,
    example: torch.Tensor,
    hugging_face: bool = False,
) -> dict:
    """`save_model`, then run.json: the result, with every exported path under its `export` key."""
    paths = save_model(model, directory, result.removed, example, hugging_face)
    paths["result"] = str(Path(directory) / "run.json")
    result.details["export"] = paths
    Path(paths["result"]).write_text(json.dumps(result.to_dict(), indent=2))
    return paths
