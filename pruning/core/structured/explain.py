"""Failures of structural removal as one-sentence UserErrors that name the layer.

Torch-Pruning fails deep inside its graph code, or leaves a model that no longer runs;
either way the user needs the layer it was handling and what to use instead
(`UNSTRUCTURED_HINT`), not a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch_pruning as tp
from torch import nn

from pruning.core.structured import internals
from pruning.core.tasks import logits
from pruning.errors import UserError

UNSTRUCTURED_HINT = "use an unstructured method such as magnitude"


def cause(exc: Exception) -> str:
    """`TypeName: first line of the message`, short enough for one sentence."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


class LayerFailure(UserError):
    """Torch-Pruning failed on these layers: the search can keep them whole and prune the rest."""

    def __init__(self, message: str, layers: Iterable[str], why: str):
        super().__init__(message)
        self.layers, self.why = tuple(layers), why

    @property
    def reason(self) -> str:
        """Why a layer kept whole after this failure keeps its output channels."""
        return f"Torch-Pruning could not remove its channels consistently ({self.why}), so it keeps them"


def untraceable(exc: Exception) -> UserError:
    return UserError(f"Torch-Pruning cannot trace this model ({cause(exc)}); {UNSTRUCTURED_HINT}")


@contextlib.contextmanager
def explained(scoring: list[str]) -> Iterator[None]:
    """Turn a failure inside Torch-Pruning into a UserError naming the layer it was handling."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        where = f" at layer {scoring[-1]}" if scoring else ""
        raise LayerFailure(
            f"Torch-Pruning cannot follow this architecture{where} ({cause(exc)}); {UNSTRUCTURED_HINT}",
            scoring[-1:],
            cause(exc),
        ) from exc


def group_name(graph: tp.DependencyGraph, group: Iterable) -> str:
    """The first layer of a group whose output channels it removes (else its root)."""
    steps = internals.members(graph, group)
    for step in steps:
        if step.outputs and isinstance(step.module, internals.ROOT_TYPES):
            return internals.module_name(graph, step.module, str(step.module))
    return internals.module_name(graph, steps[0].module, "?")


def _unfinished(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Run the model again with hooks: the modules that had not finished, outermost first."""
    entered, finished = [], set()
    hooks = []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: entered.append(n)))
        hooks.append(module.register_forward_hook(lambda m, a, o, n=name: finished.add(n)))
    try:
        with torch.no_grad():
            model(example)
    except Exception:
        pass
    finally:
        for h in hooks:
            h.remove()
    return [n for n in entered if n and n not in finished]


def verify(model: nn.Module, example: torch.Tensor, shape: torch.Size, layers: Iterable[str]) -> None:
    """Refuse a pruned model that no longer runs, or whose output shape changed; a failure names
    the prunable `layers` inside the module that failed."""
    try:  # one plain run; hooks to name the failing module only when it fails
        with torch.no_grad():
            got = logits(model.eval()(example)).shape
    except Exception as exc:
        unfinished = _unfinished(model, example)
        failing = unfinished[-1] if unfinished else "its own forward"
        inside: list[str] = []  # the layers of the innermost failing module that holds any
        for module in reversed(unfinished):
            inside = [n for n in layers if n.startswith(f"{module}.")]
            if inside:
                break
        raise LayerFailure(
            f"Torch-Pruning could not prune this architecture consistently: the pruned model fails in "
            f"{failing} ({cause(exc)}); {UNSTRUCTURED_HINT}",
            inside,
            f"the pruned model failed in {failing}: {cause(exc)}",
        ) from exc
    if got != shape:
        raise UserError(
            f"structured pruning changed the model's output shape from {tuple(shape)} to {tuple(got)}; "
            f"{UNSTRUCTURED_HINT}"
        )


def fixed_layer(name: str, reason: str) -> UserError:
    """A per-layer sparsity asked of a layer that cannot lose output channels."""
    why = reason.split(":")[0]
    return UserError(
        f"layer {name} cannot lose output channels ({why}), so a structured method cannot set its "
        f"sparsity: drop its per-layer sparsity or {UNSTRUCTURED_HINT}"
    )


def unreached(target: float, reached: float | None, vanished: str | None, overrides: bool) -> UserError:
    """Why the search ended away from `target`: `reached` is the closest valid sparsity, if any,
    `vanished` the layer that would have lost every channel on the way, if one did."""
    if reached is not None and reached > target and overrides:
        return UserError(
            f"the per-layer sparsities alone remove {reached:.2f} of the prunable weights, "
            f"more than the target {target:.2f} (a layer's removed output channels are also the "
            "next layer's inputs); raise --sparsity or lower the per-layer values"
        )
    closest = f"{reached:.3f}" if reached is not None else "none"
    if vanished is not None:
        return UserError(
            f"structured pruning cannot reach sparsity {target:.2f} here: it would remove every "
            f"channel of layer {vanished} (closest reachable: {closest}); lower --sparsity or "
            f"{UNSTRUCTURED_HINT}"
        )
    return UserError(
        f"structured pruning reached sparsity {closest}, not {target:.2f}: too few channels of this "
        f"model can be removed with this criterion; {UNSTRUCTURED_HINT}"
    )
