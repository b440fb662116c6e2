"""A lab folder as an operator writes one: a model file, its weights, a dataset and lab.toml with
relative paths. Shared by the lab's unit tests and the dashboard's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from pruning.core import models

NET = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
"""

LAB = """
[models.tiny]
source = "models/net.py:build"
weights = "weights/tiny.safetensors"
data = "blobs"
task = "classification"
label = "Tiny *net* (v1)"

[models.bare]
source = "models/net.py:build"
data = "data/blobs.npz"

[datasets.blobs]
source = "data/blobs.npz"
"""


def blobs(seed: int = 0, n: int = 240) -> dict[str, np.ndarray]:
    """Three separable classes in 4 features: a trained net gets them nearly all right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    cut = n * 3 // 4
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def train(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`net` fitted to `blobs()` (full batch, seeded): its state_dict."""
    torch.manual_seed(0)
    arrays = blobs()
    x, y = torch.as_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"])
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def write_lab(folder: Path) -> Path:
    """The lab folder under `folder`; returns its lab.toml."""
    for sub in ("models", "weights", "data"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "models" / "net.py").write_text(NET)
    save_file(
        train(models.build(f"{folder / 'models' / 'net.py'}:build")), folder / "weights" / "tiny.safetensors"
    )
    np.savez(folder / "data" / "blobs.npz", **blobs())
    (folder / "lab.toml").write_text(LAB)
    return folder / "lab.toml"
