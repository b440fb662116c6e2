"""Engine benchmarks: sweep overhead, one pruning action, global masking and mask memory.

Every figure is measured with the engine's own functions, side by side with its reference in the
same process (interleaved where timed). Run: `python -m benchmarks engine`.

- sweep_vs_eval/<model>: a 20-level `magnitude` sweep (`experiment.run_group`, no latency, no
  fine-tuning, dense model loaded and measured inside it) over 20 plain evaluations of the dense model
  on the test set, interleaved level by level; the median of 3 rounds' ratios. Its goal (<= 1.3)
  applies to models whose one evaluation takes >= 10 ms.
- sweep_bookkeeping/<model>: (sweep - evaluations) / 20: what one level costs beyond evaluating the
  model (prune, count, encode the file, per-layer table); goal <= 10 ms for models evaluated in < 10 ms.
- prune_action/<model>: one pruning action (reset a working copy to the dense weights, the method's
  `select`, `masks.apply`) at 90% sparsity, importance precomputed; the copy a run makes per level is
  counted in sweep_vs_eval.
- global_masking_25M: `torch.nn.utils.prune.global_unstructured` (L1, amount 0.9) time over ours
  (magnitude importance + `masks.select` + `masks.apply`) on identical copies of a seeded ~25M
  parameter stack of Linear layers. `global_masking_25M_identical`: the masks agree, up to which of
  several exactly equal scores at the threshold are pruned (torch.topk leaves that order unspecified);
  `global_masking_25M_tied_choices` counts the weights such ties decided differently.
- mask_memory_overhead: bytes of every tensor the pruned model holds (parameters, buffers, plain tensor
  attributes, and our mask dict; each storage once) over the dense parameter bytes, for us and for
  torch.nn.utils.prune on the same model.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from benchmarks.common import emit, timed
from pruning.core import masks, methods, models
from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Prepared

LEVELS = [round(0.05 + 0.9 * i / 19, 4) for i in range(20)]  # 20 levels from 0.05 to 0.95
WIDTHS = (1024, 2560, 2560, 2560, 2560, 1024)  # 24.9M weights + 11.8K biases
SWEEP_ROUNDS = 3


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sweep_round(configs: list[RunConfig], evaluate: Callable[[], object]) -> tuple[float, float]:
    """Seconds of a sweep and of as many evaluations, interleaved level by level (a busy machine slows
    both alike); the sweep's first step also loads, measures and scores the dense model."""
    steps = experiment.run_group(configs)
    results: list = []
    seconds = timed({"sweep": lambda: results.append(next(steps)), "evaluation": evaluate}, len(configs))
    if any(abs(r.sparsity - c.sparsity) >= 1e-3 for r, c in zip(results, configs, strict=True)):
        raise RuntimeError("the sweep did not reach its target sparsities: its timing would mean nothing")
    return sum(seconds["sweep"]), sum(seconds["evaluation"])


def sweep_vs_eval(model_id: str, prep: Prepared) -> None:
    configs = [RunConfig(model=model_id, method="magnitude", sparsity=s, latency=False) for s in LEVELS]
    evaluate = lambda: prep.data.evaluate(prep.model, prep.data.test)
    sweeps, evaluations = zip(*(sweep_round(configs, evaluate) for _ in range(SWEEP_ROUNDS)))
    ratio = statistics.median(s / e for s, e in zip(sweeps, evaluations))
    sweep_s, eval_s = statistics.median(sweeps), statistics.median(evaluations)
    note(f"{model_id}: sweep {sweep_s:.3f} s, 20 evaluations {eval_s:.3f} s")
    # The ratio goal holds for models whose one evaluation takes >= 10 ms; below that, what a level
    # costs beyond its evaluation (pruning, counting, encoding the file) is held to <= 10 ms instead.
    fast = eval_s / len(configs) < 0.010
    emit(f"sweep_vs_eval/{model_id}", round(ratio, 3), "x", None if fast else "<= 1.3")
    bookkeeping = statistics.median((s - e) / len(configs) for s, e in zip(sweeps, evaluations))
    emit(
        f"sweep_bookkeeping/{model_id}",
        round(bookkeeping * 1e3, 2),
        "ms per level",
        "<= 10" if fast else None,
    )


def prune_action(model_id: str, prep: Prepared) -> None:
    config = RunConfig(model=model_id, method="magnitude", sparsity=0.9, latency=False)
    scores = experiment.importance(prep)
    work = copy.deepcopy(prep.model)
    layers, target = masks.prunable_layers(work), experiment.target(config)

    def action() -> None:
        work.load_state_dict(prep.model.state_dict())
        masks.apply(layers, prep.method.select(scores, target, prep.options))

    seconds = timed({"prune": action}, 21)["prune"]
    emit(f"prune_action/{model_id}", round(statistics.median(seconds) * 1e3, 3), "ms", "<= 50")


def big_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(a, b) for a, b in zip(WIDTHS, WIDTHS[1:])))


def ours(model: nn.Module) -> dict[str, torch.Tensor]:
    layers = masks.prunable_layers(model)
    scores = methods.get("magnitude").importance(model, layers, methods.Context(None), {})
    keep = masks.select(scores, 0.9, "global")
    masks.apply(layers, keep)
    return keep


def torch_prune(model: nn.Module) -> None:
    targets = [(m, "weight") for m in masks.prunable_layers(model).values()]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=0.9)


def held_bytes(model: nn.Module, extra: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of every tensor storage the model holds (and `extra`), each storage counted once."""
    tensors = [*model.parameters(), *model.buffers(), *extra]
    for module in model.modules():
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def same_masks(
    dense: nn.Module, keep: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> tuple[bool, int]:
    """Whether two keep-masks agree up to ties at the threshold, and how many weights ties decided apart."""
    scores = {name: m.weight.detach().abs() for name, m in masks.prunable_layers(dense).items()}
    threshold = max(s[~keep[name]].max() for name, s in scores.items() if not keep[name].all())
    differ = {name: keep[name] != reference[name].bool() for name in keep}
    untied = all(bool((scores[name][d] == threshold).all()) for name, d in differ.items())
    same_count = sum(int(k.sum()) for k in keep.values()) == sum(int(r.sum()) for r in reference.values())
    return untied and same_count, sum(int(d.sum()) for d in differ.values())


def global_masking(rounds: int = 3) -> None:
    base = big_model()
    ours_s, theirs_s = [], []
    for _ in range(rounds):  # fresh identical copies every round: pruning changes the model
        mine, theirs = copy.deepcopy(base), copy.deepcopy(base)
        start = time.perf_counter()
        keep = ours(mine)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch_prune(theirs)
        theirs_s.append(time.perf_counter() - start)
    identical, tied = same_masks(
        base, keep, {n: m.weight_mask for n, m in masks.prunable_layers(theirs).items()}
    )
    mine_s, torch_s = statistics.median(ours_s), statistics.median(theirs_s)
    note(f"global masking: ours {mine_s:.3f} s, torch.nn.utils.prune {torch_s:.3f} s")
    speedup = statistics.median(t / o for t, o in zip(theirs_s, ours_s))
    emit("global_masking_25M", round(speedup, 2), "x faster than torch.nn.utils.prune", ">= 3")
    emit("global_masking_25M_identical", int(identical), "bool", "== 1")
    emit("global_masking_25M_tied_choices", tied, "weights")

    dense = sum(p.numel() * p.element_size() for p in base.parameters())
    emit(
        "mask_memory_overhead", round(held_bytes(mine, keep.values()) / dense, 4), "x dense bytes", "<= 1.25"
    )
    emit("mask_memory_overhead/torch_prune", round(held_bytes(theirs) / dense, 4), "x dense bytes")


def main() -> None:
    for model_id in models.SAMPLE_MODELS:
        prep = experiment.prepare(RunConfig(model=model_id, method="magnitude", sparsity=0.5, latency=False))
        sweep_vs_eval(model_id, prep)
        prune_action(model_id, prep)
    global_masking()
