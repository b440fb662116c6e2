"""N:M semi-structured sparsity: in every group of m consecutive input weights keep the n largest.

2:4 is the pattern sparse tensor cores accelerate. A layer whose inputs per output
(in_features, or in_channels/groups * kernel for convs) are not a multiple of m cannot
carry the pattern: it is left dense and listed in the result's `skipped_layers`.

The real speed-up is measured with `torch.sparse.to_sparse_semi_structured` on the
Linear layers in fp16 on CUDA. Without CUDA that figure says "needs CUDA".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruning.core import measure
from pruning.core.masks import apply, prunable_layers, select_nm, transposed
from pruning.core.methods.base import Granularity, Method, Param, Pruning, Target
from pruning.errors import UserError


def inputs_per_output(layer: nn.Module) -> int:
    return layer.weight.shape[0] if transposed(layer) else layer.weight[0].numel()


def split_layers(
    layers: Mapping[str, nn.Module], m: int
) -> tuple[dict[str, nn.Module], list[dict[str, str]]]:
    """(layers that can carry an N:M pattern, [{name, reason}] for those that cannot)."""
    eligible, skipped = {}, []
    for name, layer in layers.items():
        size = inputs_per_output(layer)
        if size % m:
            skipped.append({"name": name, "reason": f"{size} inputs per output is not a multiple of m={m}"})
        else:
            eligible[name] = layer
    return eligible, skipped


@dataclass(frozen=True)
class NM(Method):
    id: str = "nm"
    label: str = "N:M semi-structured (magnitude)"
    granularity: Granularity = "n:m"
    elementwise: bool = False  # the pattern fixes the sparsity: no schedules, no per-layer levels
    params: tuple[Param, ...] = field(
        default=(
            Param("n", "int", 2, "weights kept in every group of m", min=1, max=16),
            Param("m", "int", 4, "group size along the inputs (2:4 is what GPUs accelerate)", min=2, max=32),
        )
    )
    description: str = (
        "Keep the n largest |w| of every m consecutive input weights (2:4 by default). The sparsity "
        "is 1 - n/m on every layer that fits the pattern, whatever the sparsity slider says."
    )

    def options(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        options = super().options(given)
        if options["n"] >= options["m"]:
            raise UserError(f"N:M needs n < m, got {options['n']}:{options['m']}; 2:4 is the usual choice")
        return options

    def fixed_sparsity(self, options: Mapping[str, Any]) -> float:
        return 1.0 - options["n"] / options["m"]

    def check(self, model, example, target: Target, options) -> None:
        # The pattern fixes the sparsity: a run asking for another one would record a target it
        # cannot reach (sweeps and the dashboard ask for `target_sparsity`, which is this one).
        fixed = self.fixed_sparsity(options)
        if abs(target.sparsity - fixed) > 1e-6 or target.overrides:
            n, m = options["n"], options["m"]
            raise UserError(
                f"N:M {n}:{m} prunes exactly {fixed:g} of every layer that fits the pattern, so it cannot "
                f"aim for sparsity {target.sparsity:g}{' or per-layer levels' if target.overrides else ''}: "
                f"pass --sparsity {fixed:g}, or other n and m (--option n=N --option m=M)"
            )

    def select(self, scores, target: Target, options) -> dict[str, torch.Tensor]:
        return select_nm(scores, options["n"], options["m"])

    def prune(self, dense, scores, target, ctx, options, example, in_place=False) -> Pruning:
        layers = prunable_layers(dense)
        flipped = {n for n in scores if transposed(layers[n])}  # Conv1D: groups run along dim 0
        upright = {n: s.T if n in flipped else s for n, s in scores.items()}
        keep = {n: k.T if n in flipped else k for n, k in self.select(upright, target, options).items()}
        work = dense if in_place else copy.deepcopy(dense)
        apply(prunable_layers(work), keep)
        return Pruning(work, keep, {"skipped_layers": split_layers(layers, options["m"])[1]})

    def measure(self, pruned: Pruning, example, options, timed: bool) -> dict[str, Any]:
        if timed or not torch.cuda.is_available():
            latency = semi_structured_latency(pruned.model, example, options["n"], options["m"])
        else:
            latency = _result("not measured (latency timing was switched off)")
        return {"semi_structured": latency}

    def importance(self, model, layers, ctx, options):
        # Only layers that can carry the pattern get scores; the others stay dense.
        eligible, _ = split_layers(layers, options["m"])
        if not eligible:
            raise UserError(
                f"no layer has a number of inputs per output divisible by m={options['m']}; "
                "use a smaller m or an unstructured method"
            )
        return {name: m.weight.detach().abs() for name, m in eligible.items()}


def _result(status: str, **figures: Any) -> dict[str, Any]:
    out = {"status": status, "dense_fp16": None, "sparse_fp16": None, "speedup": None, "layers": []}
    out["skipped"] = []
    out.update(figures)
    return out


def semi_structured_latency(
    model: nn.Module, example: torch.Tensor, n: int, m: int, device: str | None = None
) -> dict[str, Any]:
    """Measured fp16 latency of the model with its Linear weights as semi-structured sparse tensors,
    against the same model dense in fp16, on CUDA (or `device`). Layers the kernels cannot take
    stay dense and are listed with the library's reason."""
    if device is None and not torch.cuda.is_available():
        return _result("needs CUDA")
    if m != 4 or n > 2:
        return _result(f"semi-structured kernels need a 2:4 pattern; this run is {n}:{m}")
    from torch.sparse import to_sparse_semi_structured

    device = torch.device(device or "cuda")
    dense = copy.deepcopy(model).half().to(device).eval()
    sparse = copy.deepcopy(dense)
    converted, skipped = [], []
    with torch.no_grad():
        for name, layer in prunable_layers(sparse).items():
            if not isinstance(layer, nn.Linear):
                skipped.append({"name": name, "reason": "only Linear layers have semi-structured kernels"})
                continue
            try:
                packed = to_sparse_semi_structured(layer.weight.detach().contiguous())
            except (RuntimeError, ValueError, NotImplementedError) as exc:
                skipped.append({"name": name, "reason": str(exc).splitlines()[0]})
                continue
            layer.weight = nn.Parameter(packed, requires_grad=False)
            converted.append(name)
    if not converted:
        return _result("no layer fits the semi-structured kernels", skipped=skipped)
    x = example.half().to(device)
    with torch.inference_mode():
        difference = (dense(x).float() - sparse(x).float()).abs().max().item()
    timed = measure.latency_ms({"dense": dense, "sparse": sparse}, x)
    return _result(
        "measured",
        dense_fp16=timed["dense"],
        sparse_fp16=timed["sparse"],
        speedup=timed["dense"] / timed["sparse"],
        layers=converted,
        skipped=skipped,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        max_abs_difference=difference,
    )
