"""Training and fine-tuning loops, with pruning masks held fixed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core.data import Split
from pruning.core.progress import Progress
from pruning.core.tasks import CLASSIFICATION, Task, device_of


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place (masks are bool, True = kept)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def fit(
    model: nn.Module,
    train: Split,
    config: TrainConfig,
    epochs: int | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    task: Task = CLASSIFICATION,
) -> nn.Module:
    """Train with AdamW and a cosine schedule; pruned weights stay zero after every step."""
    torch.manual_seed(seed)
    epochs = config.epochs if epochs is None else epochs
    if epochs <= 0:
        return model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = train.loader(config.batch_size, shuffle=True, seed=seed)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=epochs * len(loader)
    )
    model.train()
    device = device_of(model)
    for epoch in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            task.loss(model(x), y).backward()
            optimizer.step()
            scheduler.step()
            if masks:
                apply_masks(model, masks)
        if progress:
            progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
    model.eval()
    return model
