"""A fine-tuning that diverges fails its run, with the step and the loss or weight named, instead of
being recorded `succeeded` with an all-NaN model whose NaNs count as non-zero weights."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from pruning.cli import main
from pruning.core.data import Split
from pruning.core.train import TrainConfig, fit
from pruning.errors import UserError

NETS = """
import torch
from torch import nn

class Unstable(nn.Module):
    # Finite in eval mode (the dry run before anything is stored), infinite once it trains.
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x) * (float("inf") if self.training else 1.0)

def unstable():
    torch.manual_seed(0)
    return Unstable()
"""


def test_a_run_whose_fine_tuning_diverges_is_recorded_failed(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "toy.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    store = tmp_path / "lab"
    with pytest.raises(SystemExit) as exited:  # a failed run exits 1 after printing its outcome
        main(["run", "--model", f"{tmp_path / 'nets.py'}:unstable", "--data", str(tmp_path / "toy.npz"),
              "--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "1", "--no-latency",
              "--quiet", "--json", "--store", str(store)])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    message = (
        "fine-tuning diverged: the loss is nan at step 1 (epoch 1); lower the learning rate or check the "
        "training data"
    )
    assert exited.value.code == 1 and (printed["status"], printed["error"]) == ("failed", message)
    with sqlite3.connect(store / "lab.db") as conn:
        assert conn.execute("SELECT status, error FROM runs").fetchall() == [("failed", message)]


def test_a_step_that_leaves_a_weight_non_finite_names_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    train = Split(torch.randn(16, 6), torch.randint(0, 3, (16,)))
    with pytest.raises(UserError) as caught:
        fit(model, train, TrainConfig(epochs=1, lr=float("inf"), batch_size=8))
    assert str(caught.value) == (
        "fine-tuning diverged: weight 0.weight became NaN or infinite at step 1 (epoch 1); lower the "
        "learning rate or check the training data"
    )
