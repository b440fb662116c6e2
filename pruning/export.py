"""Exporting a pruned model: a plain state_dict (safetensors), run.json and, when the
architecture changed, a `torch.export` program that loads without project code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pruning import measure


def export(
    model: nn.Module, result: dict, directory: str | Path, removed: bool, example: torch.Tensor
) -> dict:
    """Write model.safetensors, run.json and (if removed) model.pt2; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"weights": directory / "model.safetensors", "result": directory / "run.json"}
    files["weights"].write_bytes(measure.state_bytes(model))  # masks are folded in: weights are zero
    if removed:
        files["program"] = directory / "model.pt2"
        program = torch.export.export(model.eval(), (example[:1],))
        torch.export.save(program, files["program"])
    result["export"] = {k: str(v) for k, v in files.items()}
    files["result"].write_text(json.dumps(result, indent=2))
    return result["export"]
