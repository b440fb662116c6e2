"""Tasks: what a model's outputs mean, the loss it trains on, and the metric it is judged by.

- `classification`: logits (batch, classes) against integer labels; metric `accuracy` (higher is
  better), with per-class accuracy.
- `lm`: integer token ids in, logits (batch, positions, vocabulary) out, targets are the next ids
  (batch, positions); metric next-token `perplexity` (lower is better), plus token accuracy.
- `regression`: outputs against float targets; metric `mse` (lower is better).

Outputs with a `.logits` attribute (Hugging Face models) are read as logits. A dataset's task is
inferred when that is unambiguous (float targets: regression; integer inputs with targets shaped
like them: lm; else classification) and can always be declared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from pruning.errors import UserError

TaskName = Literal["classification", "lm", "regression"]
TASKS: tuple[str, ...] = ("classification", "lm", "regression")
# Samples per evaluation batch; a language model's logits (positions x vocabulary per sample) are
# large, so it takes few samples at a time.
EVAL_BATCH = {"classification": 2048, "regression": 2048, "lm": 4}


@dataclass(frozen=True)
class Evaluation:
    """One pass over a split: the task's metric, and accuracy where the task has one."""

    metric: float
    accuracy: float | None = None
    per_class_accuracy: list[float] = field(default_factory=list)


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are (CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


def logits(output) -> torch.Tensor:
    """A model's output as a tensor: `.logits` of a Hugging Face output, the first of a tuple."""
    out = output
    if hasattr(output, "logits"):
        out = output.logits
    elif isinstance(output, (tuple, list)) and output:
        out = output[0]
    if not isinstance(out, torch.Tensor):
        raise UserError(
            f"the model's forward returned a {type(output).__name__}, which holds no outputs tensor; return "
            "a tensor (or a tuple whose first item is one, or an object with .logits)"
        )
    return out


@dataclass(frozen=True)
class Task:
    name: TaskName
    metric: str
    higher_is_better: bool

    def loss(self, output, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (fine-tuning, gradient-based criteria)."""
        out = logits(output)
        if self.name == "regression":
            return nn.functional.mse_loss(out.reshape(y.shape).float(), y.float())
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split, num_classes: int = 0, limit: int | None = None) -> Evaluation:
        """The metric over `split` (its first `limit` samples when given), in batches."""
        model.eval()
        n = len(split) if limit is None else min(limit, len(split))
        total = hits = count = 0.0
        per_hits = torch.zeros(max(num_classes, 1))
        per_count = torch.zeros(max(num_classes, 1))
        device = device_of(model)
        for x, y in split.batches(EVAL_BATCH[self.name], n):
            x, y = x.to(device), y.to(device)
            out = logits(model(x))
            if self.name == "regression":
                total += float(
                    nn.functional.mse_loss(out.reshape(y.shape).float(), y.float(), reduction="sum")
                )
                count += y.numel()
                continue
            flat, target = out.reshape(-1, out.shape[-1]), y.reshape(-1)
            if self.name == "lm":
                total += float(nn.functional.cross_entropy(flat.float(), target, reduction="sum"))
            right = (flat.argmax(1) == target).float()
            hits, count = hits + float(right.sum()), count + target.numel()
            if self.name == "classification" and num_classes:
                per_hits += torch.bincount(target, weights=right, minlength=num_classes)[:num_classes].cpu()
                per_count += torch.bincount(target, minlength=num_classes)[:num_classes].float().cpu()
        count = max(count, 1)
        if self.name == "regression":
            return Evaluation(total / count)
        accuracy = hits / count
        if self.name == "lm":
            return Evaluation(math.exp(min(total / count, 700.0)), accuracy)
        per_class = (per_hits / per_count.clamp(min=1)).tolist() if num_classes else []
        return Evaluation(accuracy, accuracy, per_class)

    def check(self, output, y: torch.Tensor, num_classes: int, what: str, labels: int = 0) -> None:
        """Refuse outputs that cannot be read as this task's predictions for targets `y` (a batch);
        `labels`: 1 + the largest target id in the data (lm: the vocabulary it needs)."""
        out = logits(output)
        problem = None
        if not out.is_floating_point():
            problem = f"the outputs are {out.dtype}, not floats"
        elif self.name == "classification":
            if y.dim() != 1 or out.dim() != 2:
                problem = "classification needs outputs (batch, classes) and one label per sample"
            elif out.shape[1] < num_classes:
                problem = f"the model has {out.shape[1]} outputs but the data has {num_classes} classes"
        elif self.name == "lm":
            if y.dim() < 2 or out.dim() != y.dim() + 1 or out.shape[:-1] != y.shape:
                problem = "lm needs token ids in, (batch, positions, vocabulary) out, next ids as targets"
            elif out.shape[-1] < labels:
                problem = (
                    f"the model has a vocabulary of {out.shape[-1]} but the targets go up to id {labels - 1}"
                )
        elif out[0].numel() != y[0].numel():
            problem = f"regression needs one output per target value ({y[0].numel()})"
        if problem:
            shape = tuple(out.shape)
            raise UserError(
                f"{what} does not fit this model as task '{self.name}': {problem}, got outputs {shape} for "
                f"targets {tuple(y.shape)}; check --data or declare the right --task"
            )

    def worse_by(self, dense: float, pruned: float) -> float:
        """How much worse `pruned` is than `dense` on this metric (positive: worse)."""
        return dense - pruned if self.higher_is_better else pruned - dense


CLASSIFICATION = Task("classification", "accuracy", True)
LM = Task("lm", "perplexity", False)
REGRESSION = Task("regression", "mse", False)
_BY_NAME = {t.name: t for t in (CLASSIFICATION, LM, REGRESSION)}


def get(name: str) -> Task:
    if name not in _BY_NAME:
        raise UserError(f"unknown task '{name}': use one of {', '.join(TASKS)}")
    return _BY_NAME[name]


def infer(x: torch.Tensor, y: torch.Tensor) -> Task:
    """The task a dataset's tensors imply: float targets regress; integer inputs whose targets have
    their shape are next-token ids; anything else is classification."""
    if y.is_floating_point():
        return REGRESSION
    if not x.is_floating_point() and x.dim() == 2 and y.shape == x.shape:
        return LM
    return CLASSIFICATION
