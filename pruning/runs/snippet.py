"""prune.py: a short script that applies a run's pruning to the user's own model with standard tools.

Masked runs become `torch.nn.utils.prune.l1_unstructured` calls in the run's per-layer amounts;
removed runs a Torch-Pruning pruner at the channel ratio the run searched. The script imports no
Pruning Lab code. Everything taken from the run (ids, paths, layer names) enters it as a Python
literal (`repr`), never as raw text, so a model path cannot inject code.
"""

from __future__ import annotations

from string import Template
from typing import Any

import torch
from torch import nn

from pruning.core import masks
from pruning.runs.result import RunResult

# Torch-Pruning's importance for each structured criterion it has; others get L1 as a stand-in.
IMPORTANCE = {
    "l1-channel": "tp.importance.MagnitudeImportance(p=1)",
    "l2-channel": "tp.importance.MagnitudeImportance(p=2)",
    "bn-scale": "tp.importance.BNScaleImportance()",
    "random-channel": "tp.importance.RandomImportance()",
}

HEADER = '''\
"""Apply a Pruning Lab run's pruning to your own model with $tools (no Pruning Lab needed).

    import runpy
    prune_model = runpy.run_path("prune.py")["prune_model"]
    model = prune_model(model)  # your model, with its trained weights loaded
"""

from __future__ import annotations

'''

MASKED = '''\
from torch import nn
from torch.nn.utils import prune

RUN = $run

$notes
# (module, parameter, fraction of its weights to zero): the per-layer sparsities the run reached.
AMOUNTS = $amounts


def prune_model(model: nn.Module, permanent: bool = True) -> nn.Module:
    """Zero each layer's smallest-magnitude weights in the run's amounts. `permanent=False` keeps
    torch's masks (`weight_orig`, `weight_mask`) to fine-tune with; `prune.remove` folds them in later."""
    modules = dict(model.named_modules())
    for name, parameter, amount in AMOUNTS:
        prune.l1_unstructured(modules[name], parameter, amount=amount)
        if permanent:
            prune.remove(modules[name], parameter)
    return model
'''

REMOVED = '''\
import torch
import torch_pruning as tp
from torch import nn

RUN = $run

$notes
# Torch-Pruning's pruning_ratio: the fraction of channels the run removed from each channel group,
# found by searching for the ratio that removes RUN["sparsity"] of the prunable weights.
CHANNEL_RATIO = $ratio
GLOBAL_PRUNING = $global_pruning  # True: channels are ranked across layers (the run's scope)
# The layers whose outputs are the model's outputs (the classes): never shrunk.
OUTPUT_LAYERS = $outputs
# A batch shaped like the run's inputs, for Torch-Pruning to trace the model with.
EXAMPLE_SHAPE, EXAMPLE_DTYPE = $shape, $dtype


def prune_model(model: nn.Module, example_inputs: torch.Tensor | None = None) -> nn.Module:
    """Remove channels (and what depends on them) from `model` in place at the run's channel ratio.
    Which channels go depends on the criterion and the weights: this removes about the run's share
    of the weights; the exact channels are the run's only with its criterion on its weights."""
    if example_inputs is None:
        example_inputs = torch.zeros((2, *EXAMPLE_SHAPE), dtype=EXAMPLE_DTYPE)
    modules = dict(model.named_modules())
    pruner = tp.pruner.MagnitudePruner(
        model,
        example_inputs,
        importance=$importance,
        pruning_ratio=CHANNEL_RATIO,
        global_pruning=GLOBAL_PRUNING,
        ignored_layers=[modules[name] for name in OUTPUT_LAYERS if name in modules],
    )
    pruner.step()
    return model
'''


def _literal(value: list | dict) -> str:
    """A list or dict literal, one item a line; every item as `repr` writes it, never raw text."""
    if isinstance(value, dict):
        items, brackets = [f"{k!r}: {v!r}" for k, v in value.items()], "{}"
    else:
        items, brackets = [repr(v) for v in value], "[]"
    if not items:
        return brackets
    return brackets[0] + "\n" + "".join(f"    {item},\n" for item in items) + brackets[1]


def _run(result: RunResult, *extra: str) -> dict[str, Any]:
    """What the run was, for the reader: its id, source, method and the sparsity asked and reached."""
    keys = ("model", "weights", "method", "scope", "sparsity", *extra, "finetune_epochs", "schedule")
    return {"run_id": result.run_id, **{k: result.config.get(k) for k in keys}, "reached": result.sparsity}


def _finetune(config: dict[str, Any]) -> str:
    """A note when the run did more than prune once: the script only prunes."""
    epochs, schedule = int(config.get("finetune_epochs") or 0), config.get("schedule", "oneshot")
    if not epochs and schedule == "oneshot":
        return ""
    return (
        f"# The run pruned with the {schedule!r} schedule and fine-tuned for {epochs} epoch(s); this script\n"
        "# prunes once: fine-tune the pruned model on your data to recover accuracy.\n"
    )


def _parameters(model: nn.Module) -> dict[str, tuple[str, str]]:
    """Prunable layer name -> (module name, parameter name), as `torch.nn.utils.prune` takes them."""
    names = {id(module): name for name, module in model.named_modules()}
    out = {}
    for name, layer in masks.prunable_layers(model).items():
        if isinstance(layer, masks.Projection):  # a MultiheadAttention's input projection
            out[name] = (names[id(layer.owner)], layer.attribute)
        else:
            out[name] = (name, "weight")
    return out


def _masked(result: RunResult, model: nn.Module) -> str:
    parameters = _parameters(model)
    amounts = [(*parameters[row["name"]], row["sparsity"]) for row in result.layers if row["sparsity"] > 0]
    if result.method != "magnitude":
        criterion = (
            f"# Magnitude (|w|, the L1 criterion) chooses the weights here, not the run's own criterion "
            f"({result.method!r}):\n# this reproduces the run's amounts per layer, not which weights it "
            "chose (nor a pattern it imposed).\n"
        )
    elif result.scope == "global":
        criterion = (
            "# The run ranked |w| across layers (global scope); zeroing each layer's smallest |w| in the\n"
            "# amounts that ranking reached gives the same masks (up to ties).\n"
        )
    else:
        criterion = "# The run zeroed each layer's smallest |w| (magnitude, layer scope), as this does.\n"
    return Template(HEADER + MASKED).substitute(
        tools="torch.nn.utils.prune",
        run=_literal(_run(result)),
        notes=criterion + _finetune(result.config),
        amounts=_literal(amounts),
    )


def _removed(result: RunResult, example: torch.Tensor) -> str:
    how = result.details.get("structured") or {}
    outputs = list(how.get("outputs", []))  # the run's pruner left these alone
    if result.method in IMPORTANCE:
        importance = IMPORTANCE[result.method]
        notes = f"# The run's criterion ({result.method!r}) is Torch-Pruning's {importance}.\n"
    else:
        importance = IMPORTANCE["l1-channel"]
        notes = (
            f"# Torch-Pruning has no importance here for the run's criterion ({result.method!r}): L1\n"
            "# magnitude stands in, so the same share of channels goes, not necessarily the same ones.\n"
        )
    if how.get("head_ratio"):
        notes += (
            f"# The run also removed attention heads (head ratio {float(how['head_ratio'])!r}): give the\n"
            "# pruner num_heads={qkv_module: heads}, prune_num_heads=True and head_pruning_ratio for that.\n"
        )
    if how.get("layer_sparsity"):
        notes += (
            "# The run held its own sparsity for some layers (RUN['layer_sparsity']): Torch-Pruning's\n"
            "# pruning_ratio_dict={module: ratio} gives a layer its own channel ratio.\n"
        )
    return Template(HEADER + REMOVED).substitute(
        tools="Torch-Pruning",
        run=_literal(_run(result, "layer_sparsity")),
        notes=notes + _finetune(result.config),
        ratio=repr(float(how.get("channel_ratio", 0.0))),
        global_pruning=repr(result.scope == "global"),
        outputs=_literal(outputs),
        shape=repr(tuple(int(n) for n in example.shape[1:])),
        dtype=repr(example.dtype),  # torch.float32, torch.int64: torch's names, not user text
        importance=importance,
    )


def render(result: RunResult, model: nn.Module, example: torch.Tensor) -> str:
    """prune.py for `result`: `model` is the pruned model (for its module names), `example` its inputs."""
    return _removed(result, example) if result.removed else _masked(result, model)
