"""Exports (pruning/runs/export.py): a structurally pruned model runs from model.pt2 with plain PyTorch
and from model.onnx with ONNX's reference evaluator, with the same outputs as in memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from safetensors.torch import load_file

from pruning.core import methods, models, structured
from pruning.runs import export

# Only torch: no project module is importable (-I ignores PYTHONPATH and the working directory).
LOAD_PT2 = textwrap.dedent(
    """
    import sys, torch
    x = torch.load(sys.argv[2], weights_only=True)
    out = torch.export.load(sys.argv[1]).module()(x)
    assert not any(m.split(".")[0] in ("pruning", "sample_models") for m in sys.modules), "project code"
    torch.save(out, sys.argv[3])
    """
)


@pytest.fixture(scope="module", params=["cnn-digits", "tinyformer-mnist1d"])
def pruned(request) -> tuple[str, torch.nn.Module, torch.Tensor]:
    model_id = request.param
    model = models.load(model_id)
    torch.manual_seed(0)
    x = torch.randn(7, 64 if model_id == "cnn-digits" else 40)  # 7 rows: not the traced batch size
    criterion = methods.get("l1-channel").criterion(model, None, {})
    return model_id, structured.prune(model, x[:2], criterion, 0.5).model.eval(), x


@pytest.fixture(scope="module")
def exported(pruned, tmp_path_factory) -> dict:
    model_id, model, x = pruned
    directory = tmp_path_factory.mktemp(model_id)
    return export.save_model(model, directory, removed=True, example=x)


def test_a_removed_model_exports_weights_results_program_and_onnx(pruned, exported):
    _, model, _ = pruned
    files = exported
    assert set(files) == {"weights", "program", "onnx"}
    weights = load_file(files["weights"])
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.slow  # a fresh interpreter per model, to prove plain PyTorch loads the program
def test_the_pt2_program_gives_the_same_outputs_with_plain_pytorch(pruned, exported, tmp_path):
    _, model, x = pruned
    files = exported
    torch.save(x, tmp_path / "x.pt")
    command = [
        sys.executable,
        "-I",
        "-c",
        LOAD_PT2,
        files["program"],
        str(tmp_path / "x.pt"),
        str(tmp_path / "y.pt"),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), model(x))


def test_the_onnx_file_is_valid_and_gives_the_same_outputs(pruned, exported):
    _, model, x = pruned
    files = exported
    onnx_model = onnx.load(files["onnx"])
    onnx.checker.check_model(onnx_model, full_check=True)
    (output,) = ReferenceEvaluator(onnx_model).run(None, {onnx_model.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(output, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_a_masked_model_exports_only_weights_and_results(tmp_path):
    model = models.load("mlp-digits")
    files = export.save_model(model, tmp_path, removed=False, example=torch.randn(2, 64))
    assert set(files) == {"weights"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_an_exporter_failure_is_reported_and_the_rest_still_written(tmp_path):
    class DataDependent(torch.nn.Module):  # branches on a value: torch.export cannot trace it
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    files = export.save_model(DataDependent(), tmp_path, removed=True, example=torch.ones(2, 4))
    assert set(files["errors"]) == {"program", "onnx"}
    assert (tmp_path / "model.safetensors").exists()
