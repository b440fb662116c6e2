"""2:4 semi-structured speed-up measured with torch.sparse.to_sparse_semi_structured (fp16, CUDA).

A masked model is not faster on the CPU, so without CUDA this module only says so on standard
error and emits no figure. With CUDA it emits, as reference figures (no goal):
- the speed-up of one 2:4 Linear(4096, 4096) at batch 4096, the regime sparse tensor cores target;
- the speed-up of tinyformer-mnist1d at 2:4 at batch 256, its Linear layers semi-structured.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from benchmarks.common import emit
from pruning.core import masks
from pruning.core.methods import Context, get
from pruning.core.methods.nm import semi_structured_latency
from pruning.runs import experiment
from pruning.runs.config import RunConfig


def two_four(model: nn.Module) -> nn.Module:
    """Mask every layer that fits to 2:4 with the engine's own N:M method."""
    method = get("nm")
    options = method.options()
    layers = masks.prunable_layers(model)
    masks.apply(layers, masks.select_nm(method.importance(model, layers, Context(None), options), 2, 4))
    return model


def report(name: str, figure: dict) -> None:
    if figure["status"] != "measured":
        print(f"{name}: {figure['status']}", file=sys.stderr)
        return
    emit(f"nm.semi_structured_speedup.{name}", figure["speedup"], "x")
    emit(f"nm.semi_structured_max_abs_difference.{name}", figure["max_abs_difference"], "logit")


def main() -> None:
    if not torch.cuda.is_available():
        print("nm: semi-structured latency needs CUDA; no figure on this machine", file=sys.stderr)
        return
    torch.manual_seed(0)
    big = two_four(nn.Linear(4096, 4096))
    report("linear4096_batch4096", semi_structured_latency(big, torch.randn(4096, 4096), 2, 4))
    prep = experiment.prepare(RunConfig("tinyformer-mnist1d", "nm", 0.5, latency=False))
    model = two_four(prep.model)
    report("tinyformer-mnist1d_batch256", semi_structured_latency(model, prep.example, 2, 4))


if __name__ == "__main__":
    main()
