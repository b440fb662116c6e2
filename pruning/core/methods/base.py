"""What a pruning method is: an importance criterion plus how its scores are selected.

A method's parameters are described as data (`Param`), so the dashboard and the
command line can render and validate controls for any method without knowing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pruning.core.data import Split
from pruning.errors import UserError

Granularity = Literal["unstructured", "structured", "n:m"]


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a method, described for UIs."""

    name: str
    kind: Literal["int", "float", "choice", "bool"]
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()

    def parse(self, value: Any) -> Any:
        try:
            if self.kind == "int":
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool":
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        except (TypeError, ValueError) as exc:
            raise UserError(f"option {self.name} must be a {self.kind}, got {value!r}") from exc
        if self.kind == "choice" and value not in self.choices:
            raise UserError(f"option {self.name} must be one of {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise UserError(f"option {self.name} must be between {self.min} and {self.max}, got {value}")
        return value


@dataclass(frozen=True)
class Context:
    """What a criterion may look at besides the weights: calibration data and a seed."""

    calibration: Split | None
    seed: int = 0


@dataclass(frozen=True)
class Method:
    """Base class: subclasses set the fields and implement `importance` (or, for
    structured methods, the structured pruning entry point)."""

    id: str
    label: str
    granularity: Granularity = "unstructured"
    params: tuple[Param, ...] = field(default=())
    needs_data: bool = False
    description: str = ""

    def options(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with `given`, each value validated."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise UserError(f"method {self.id} has no option {', '.join(unknown)} (options: {names})")
        return {name: p.parse(given.get(name, p.default)) for name, p in known.items()}

    def importance(
        self, model: nn.Module, layers: Mapping[str, nn.Module], ctx: Context, options: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Scores shaped like each layer's weight: higher = more important."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "granularity": self.granularity,
            "needs_data": self.needs_data,
            "description": self.description,
            "params": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "default": p.default,
                    "help": p.help,
                    "min": p.min,
                    "max": p.max,
                    "choices": list(p.choices),
                }
                for p in self.params
            ],
        }


def calibration_batches(ctx: Context, batches: int, batch_size: int = 64):
    """The first `batches` shuffled (seeded) batches of the calibration split."""
    if ctx.calibration is None:
        raise UserError("this method needs calibration data: pass --data or use a sample model")
    for i, (x, y) in enumerate(ctx.calibration.loader(batch_size, shuffle=True, seed=ctx.seed)):
        if i >= batches:
            break
        yield x, y
