"""What a pruning method is: an importance criterion plus how it turns scores into a pruned model.

The run engine asks every method the same questions through one interface: its scores
(`importance`), what it does to a copy of the dense model at a `Target` (`prune`, by default
bool masks from `select`), whether it fixes the sparsity itself (`fixed_sparsity`, as N:M does),
what it refuses before any work (`check`), and what it measures beyond the common figures
(`measure`). Nothing outside `methods/` needs to know a method's granularity.

A method's parameters are described as data (`Param`), so the dashboard and the
command line can render and validate controls for any method without knowing it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pruning.core import masks as masking
from pruning.core.data import Split
from pruning.core.masks import Scope
from pruning.core.tasks import CLASSIFICATION, Task
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
        # What a bool's text may say; anything else ("xyz") is a typo, refused rather than read as False.
        booleans = {"true": True, "1": True, "yes": True, "on": True}
        booleans |= {"false": False, "0": False, "no": False, "off": False}
        try:
            if self.kind == "int":
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool" and not isinstance(value, bool):
                value = booleans[str(value).strip().lower()]
        except (TypeError, ValueError, KeyError) as exc:
            kind = "bool (true or false)" if self.kind == "bool" else self.kind
            raise UserError(f"option {self.name} must be a {kind}, got {value!r}") from exc
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
    task: Task = CLASSIFICATION  # its loss is what gradient-based criteria differentiate
    device: torch.device = torch.device("cpu")  # where calibration batches go (the model's device)


@dataclass(frozen=True)
class Target:
    """What a run asks of a method: the sparsity, where it is compared, per-layer overrides."""

    sparsity: float
    scope: Scope = "global"
    overrides: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Pruning:
    """What a method did to a copy of the dense model (or to the model itself, `in_place`)."""

    model: nn.Module
    # Bool keep-masks held while fine-tuning (a run that does not fine-tune releases them: {});
    # None: structure was removed.
    masks: dict[str, torch.Tensor] | None
    details: dict[str, Any] = field(default_factory=dict)  # result keys of the method's own

    @property
    def removed(self) -> bool:
        """Structure was physically removed (the architecture changed), not masked."""
        return self.masks is None


class WeightScores(Mapping[str, torch.Tensor]):
    """Scores that are a function of each layer's own weight (|w| for magnitude), computed when read
    rather than held: a model's worth of scores would add a float copy of every prunable weight.
    They follow the weights, so a pruning reads them before it changes the weights."""

    def __init__(self, layers: Mapping[str, nn.Module], score: Callable[[torch.Tensor], torch.Tensor]):
        self.layers, self.score = layers, score

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.score(self.layers[name].weight.detach())

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class Method:
    """Base class: subclasses set the fields and implement `importance`; methods that do more than
    masking the lowest scores override `select` or `prune`."""

    id: str
    label: str
    granularity: Granularity = "unstructured"
    params: tuple[Param, ...] = field(default=())
    needs_data: bool = False
    # Scores with the loss gradient (a backward pass): its importance gets a copy of the model, whose
    # .grad it fills, and the load-time dry run checks a backward pass too.
    needs_gradients: bool = False
    description: str = ""
    # Scores and masks single weights at any sparsity: schedules and per-layer sensitivity can use it.
    elementwise: bool = True
    # |reached - target| a run allows: masks land within rounding of one weight per layer
    tolerance: float = 0.01

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
    ) -> dict[str, torch.Tensor] | None:
        """Scores shaped like each layer's weight (higher = more important), computed once per sweep;
        None for a method that scores inside `prune`. A method with `needs_gradients` False is given
        the dense model itself and must leave it unchanged; one that reads gradients gets a copy."""
        raise NotImplementedError

    def fixed_sparsity(self, options: Mapping[str, Any]) -> float | None:
        """The sparsity the method's pattern fixes whatever is asked (None: it follows the target)."""
        return None

    def target_sparsity(self, options: Mapping[str, Any], asked: float) -> float:
        """The sparsity a run of this method records and aims for when `asked` is requested."""
        fixed = self.fixed_sparsity(options)
        return asked if fixed is None else fixed

    def check(
        self, model: nn.Module, example: torch.Tensor, target: Target, options: Mapping[str, Any]
    ) -> None:
        """Refuse (UserError) what `prune` would refuse for this model, before anything is stored."""

    def select(
        self, scores: Mapping[str, torch.Tensor], target: Target, options: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Bool keep-masks from scores: the lowest go, compared within the target's scope."""
        return masking.select(scores, target.sparsity, target.scope, target.overrides)

    def prune(
        self,
        dense: nn.Module,
        scores: Mapping[str, torch.Tensor] | None,
        target: Target,
        ctx: Context,
        options: Mapping[str, Any],
        example: torch.Tensor,
        in_place: bool = False,
    ) -> Pruning:
        """A pruned copy of `dense` (which is left as it is) at `target`; with `in_place`, nothing
        needs `dense` afterwards and it may be pruned itself (a copy doubles a large model's memory).
        """
        keep = self.select(scores, target, options)  # before the weights change: scores may follow them
        work = dense if in_place else copy.deepcopy(dense)
        masking.apply(masking.prunable_layers(work), keep)
        return Pruning(work, keep)

    def measure(
        self, pruned: Pruning, example: torch.Tensor, options: Mapping[str, Any], timed: bool
    ) -> dict[str, Any]:
        """Latency figures of the method's own (e.g. N:M's semi-structured kernels), keyed by name."""
        return {}

    def describe(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "granularity": self.granularity,
            "elementwise": self.elementwise,
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
        yield x.to(ctx.device), y.to(ctx.device)
