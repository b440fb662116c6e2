"""Models and weights a run would trip over are refused before anything is stored, each in one
`error:` line: a model function or forward that raises, outputs that are not a tensor or not finite,
weights that would be cast (int8, bool, complex) or have no plain values (sparse, meta), and models
or weights beyond the memory budget (sized before they are allocated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pruning.cli import main

NETS = """
import torch
from torch import nn

def net():
    torch.manual_seed(0)
    return nn.Linear(6, 3)

def raises():
    raise RuntimeError("checkpoint server down")

class Wrapped(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.fc, self.wrap = nn.Linear(6, 3), wrap

    def forward(self, x):
        return self.wrap(self.fc(x))

def as_dict():
    return Wrapped(lambda out: {"out": out})

def nan_outputs():
    return Wrapped(lambda out: out * float("nan"))

def broken_forward():
    return Wrapped(lambda out: out.reshape(5, 7))

def wide():
    return nn.Sequential(nn.Linear(6, 300_000), nn.Linear(300_000, 3))  # 11 MB of float32
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "nets.py").write_text(NETS)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "toy.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    return tmp_path


def refused(folder: Path, capsys, model: str, *extra: str) -> str:
    """The one error line of `run` on nets.py's `model`, after checking that nothing was stored."""
    store = folder / "lab"
    code = main(["run", "--model", f"{folder / 'nets.py'}:{model}", "--data", str(folder / "toy.npz"),
                 "--method", "magnitude", "--sparsity", "0.5", "--no-latency", "--quiet",
                 "--store", str(store), *extra])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert not store.exists()
    return lines[0]


def test_a_model_function_that_raises_is_one_line(folder, capsys):
    assert refused(folder, capsys, "raises") == (
        f"error: model function '{folder / 'nets.py'}:raises' failed: RuntimeError: checkpoint server "
        "down; fix it and run again"
    )


def test_a_forward_returning_a_dict_is_refused(folder, capsys):
    assert refused(folder, capsys, "as_dict") == (
        "error: the model's forward returned a dict, which holds no outputs tensor; return a tensor (or "
        "a tuple whose first item is one, or an object with .logits)"
    )


def test_a_forward_that_raises_is_one_line(folder, capsys):
    assert refused(folder, capsys, "broken_forward") == (
        f"error: the model cannot run on dataset '{folder / 'toy.npz'}': RuntimeError: shape '[5, 7]' is "
        "invalid for input of size 6"
    )


def test_a_model_that_outputs_nan_is_refused(folder, capsys):
    assert refused(folder, capsys, "nan_outputs") == (
        f"error: the model outputs NaN or infinite values on dataset '{folder / 'toy.npz'}'; check its "
        "weights and forward"
    )


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64])
def test_weights_that_would_be_cast_are_refused(folder, capsys, dtype):
    state = {k: v.to(dtype) for k, v in torch.nn.Linear(6, 3).state_dict().items()}
    path = folder / "weights.pt"
    torch.save(state, path)
    assert refused(folder, capsys, "net", "--weights", str(path)) == (
        f"error: weights in '{path}' do not match the model (dtype: bias {dtype} vs torch.float32, "
        f"weight {dtype} vs torch.float32)"
    )


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_sparse_or_meta_tensors_in_a_pt_are_refused(folder, capsys, kind):
    state = torch.nn.Linear(6, 3).state_dict()
    state = {k: v.to_sparse() if kind == "sparse" else v.to("meta") for k, v in state.items()}
    path = folder / "weights.pt"
    torch.save(state, path)
    assert refused(folder, capsys, "net", "--weights", str(path)) == (
        f"error: '{path}' holds sparse or meta tensors, which have no plain values to load: bias, weight; "
        "save dense tensors (tensor.to_dense()) with their values"
    )


def test_a_model_beyond_the_memory_budget_is_refused_before_it_is_built(folder, capsys, monkeypatch):
    monkeypatch.setenv("PRUNING_LAB_MEMORY_BUDGET", "4M")
    assert refused(folder, capsys, "wide") == (
        f"error: model '{folder / 'nets.py'}:wide' needs 11 MB in memory, over the budget of 4 MB; use a "
        "smaller one, or raise PRUNING_LAB_MEMORY_BUDGET (e.g. PRUNING_LAB_MEMORY_BUDGET=32G) if the "
        "machine has the memory"
    )


def test_weights_beyond_the_memory_budget_are_refused_from_their_header(folder, capsys, monkeypatch):
    path = folder / "weights.safetensors"
    save_file({"weight": torch.zeros(3, 6), "bias": torch.zeros(3), "extra": torch.zeros(600, 1000)}, path)
    monkeypatch.setenv("PRUNING_LAB_MEMORY_BUDGET", "1M")
    assert refused(folder, capsys, "net", "--weights", str(path)) == (
        f"error: weights file '{path}' needs 2 MB in memory, over the budget of 1 MB; use a smaller one, "
        "or raise PRUNING_LAB_MEMORY_BUDGET (e.g. PRUNING_LAB_MEMORY_BUDGET=32G) if the machine has the "
        "memory"
    )
