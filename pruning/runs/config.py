"""RunConfig: everything needed to reproduce a run, stored with it (one frozen, flat dataclass)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from pruning.core.masks import Scope, validate_sparsity
from pruning.core.tasks import TASKS
from pruning.errors import UserError

Schedule = Literal["oneshot", "iterative", "lottery"]
SCHEDULES = ("oneshot", "iterative", "lottery")
# Upper bounds of the counts a run takes, far above any useful value and low enough that a typo
# (`--steps 1000000000`) is one error line, not a job that never ends. Seeds go to NumPy as well
# as torch, and NumPy takes 32-bit seeds.
MAX_SEED = 2**32 - 1
MAX_STEPS = 1000
MAX_EPOCHS = 10_000


@dataclass(frozen=True)
class RunConfig:
    model: str
    method: str
    sparsity: float
    data: str | None = None
    weights: str | None = None
    task: str | None = None  # classification | lm | regression; None: inferred from the data
    scope: Scope = "global"
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    finetune_epochs: int = 0
    schedule: Schedule = "oneshot"
    steps: int = 1
    seed: int = 0
    device: str = "auto"  # auto: CUDA where there is one, else the CPU
    latency: bool = True
    batch_size: int = 256
    export: str | None = None
    eval_samples: int | None = None  # evaluate on the first N test samples (None: all of them)
    calib_samples: int | None = None  # calibrate criteria on N seeded training samples (None: all)
    embeddings: bool = False  # nn.Embedding weights are prunable too (opt-in)

    def __post_init__(self) -> None:
        validate_sparsity(self.sparsity)
        if self.scope not in ("global", "layer"):
            raise UserError(f"scope must be 'global' or 'layer', got '{self.scope}'")
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        for name, value in self.layer_sparsity:
            validate_sparsity(value, f"sparsity of layer {name}")
        for field, low, high in (
            ("finetune_epochs", 0, MAX_EPOCHS),
            ("steps", 1, MAX_STEPS),
            ("batch_size", 1, None),
            ("seed", 0, MAX_SEED),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"{field.replace('_', '-')} must be an integer >= {low}, got {value!r}")
            if high is not None and value > high:
                raise UserError(f"{field.replace('_', '-')} must be at most {high}, got {value}")
        for field in ("eval_samples", "calib_samples"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{field.replace('_', '-')} must be an integer >= 1 (leave it out for all)")
        if self.task is not None and self.task not in TASKS:
            raise UserError(f"task must be one of {', '.join(TASKS)}, got '{self.task}'")
        if not isinstance(self.embeddings, bool):
            raise UserError(f"embeddings must be true or false, got {self.embeddings!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise UserError(f"device must be cpu, cuda or auto, got '{self.device}'")

    @property
    def overrides(self) -> dict[str, float]:
        return dict(self.layer_sparsity)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layer_sparsity"] = dict(self.layer_sparsity)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["layer_sparsity"] = tuple(sorted(dict(d.get("layer_sparsity") or {}).items()))
        d["options"] = tuple(sorted(dict(d.get("options") or {}).items()))
        return cls(**d)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def parse_layer_sparsity(items: list[str]) -> tuple[tuple[str, float], ...]:
    """`NAME=S` strings (from --layer-sparsity) as sorted (name, sparsity) pairs."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name or math.isnan(number):
            raise UserError(f"--layer-sparsity expects NAME=S with S in [0, 1), got '{item}'")
        pairs[name] = validate_sparsity(number, f"sparsity of layer {name}")
    return tuple(sorted(pairs.items()))
