"""The sample models: id -> architecture, dataset, training recipe and shipped weights.

Plain data beside the architectures, with no engine import, so the engine can list
and load them and `sample_models.train` can train them without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sample_models import architectures as arch

WEIGHTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SampleModel:
    id: str
    description: str
    build: Callable[[], nn.Module]
    dataset: str  # a sample dataset id of the engine ("digits", "mnist1d")
    recipe: dict[str, Any]  # training hyper-parameters: epochs, lr, batch_size, weight_decay
    stored_dtype: torch.dtype = torch.float32  # the file's float precision (loaded into float32)

    @property
    def weights(self) -> Path:
        return WEIGHTS_DIR / f"{self.id}.safetensors"


SAMPLE_MODELS: dict[str, SampleModel] = {
    m.id: m
    for m in [
        SampleModel(
            "mlp-digits",
            "LeNet-300-100 MLP on 8x8 digits",
            arch.MLP,
            "digits",
            {"epochs": 30, "lr": 2e-3, "batch_size": 64, "weight_decay": 1e-4},
        ),
        SampleModel(
            "cnn-digits",
            "small CNN with BatchNorm on 8x8 digits",
            arch.CNN,
            "digits",
            {"epochs": 30, "lr": 3e-3, "batch_size": 64, "weight_decay": 1e-4},
        ),
        SampleModel(
            "resnet-mnist1d",
            "1-D residual CNN on MNIST-1D",
            arch.ResNet1d,
            "mnist1d",
            {"epochs": 30, "lr": 3e-3, "batch_size": 128, "weight_decay": 1e-4},
        ),
        SampleModel(
            "tinyformer-mnist1d",
            "tiny transformer encoder on MNIST-1D",
            arch.TinyFormer,
            "mnist1d",
            {"epochs": 40, "lr": 3e-3, "batch_size": 128, "weight_decay": 1e-2},
        ),
        SampleModel(
            "charlm-shakespeare",
            "decoder-only character transformer (1.3M params) on Shakespeare's plays",
            arch.CharLM,
            "shakespeare",
            # One pass over the training plays: a few minutes on one CPU thread.
            {"epochs": 1, "lr": 3e-3, "batch_size": 32, "weight_decay": 1e-2},
            stored_dtype=torch.float16,  # keeps the shipped file under 5 MB
        ),
    ]
}
