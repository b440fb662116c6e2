"""Training and fine-tuning loops, with pruning masks held fixed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruning.core.data import Split
from pruning.core.progress import Progress
from pruning.core.tasks import CLASSIFICATION, Task, device_of
from pruning.errors import UserError


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


def _check_finite(model: nn.Module, step: int, epoch: int) -> None:
    """A step that left a weight NaN or infinite fails the run here: its exported model would be all
    NaN, and NaN counts as non-zero in every sparsity figure."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise UserError(
                f"fine-tuning diverged: weight {name} became NaN or infinite at step {step} "
                f"(epoch {epoch + 1}); lower the learning rate or check the training data"
            )


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
    step = 0
    for epoch in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            step += 1
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(x), y)
            if not torch.isfinite(loss):
                raise UserError(
                    f"fine-tuning diverged: the loss is {loss.item()} at step {step} (epoch {epoch + 1}); "
                    "lower the learning rate or check the training data"
                )
            loss.backward()
            optimizer.step()
            scheduler.step()
            if masks:
                apply_masks(model, masks)
            _check_finite(model, step, epoch)
        if progress:
            progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
    model.eval()
    return model
