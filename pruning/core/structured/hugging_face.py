"""What Torch-Pruning needs to see in a `transformers` model, and putting it back afterwards.

- GPT-2's `Conv1D` is a Linear layer with its weight stored (inputs, outputs); Torch-Pruning
  and its importance criteria know only `nn.Linear`, so the working copy holds an equal
  `nn.Linear` in its place while it is pruned (`as_linear`) and a `Conv1D` again after
  (`as_conv1d`): the exported model keeps the source's layer types and state-dict layout.
- A language model's key/value cache concatenates tensors whose sizes Torch-Pruning's
  trace cannot follow; the trace runs with `use_cache` off (`without_cache`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from pruning.core import masks


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attribute, module)


def _transposed(weight: nn.Parameter) -> nn.Parameter:
    turned = nn.Parameter(weight.detach().t().contiguous(), requires_grad=weight.requires_grad)
    if weight.grad is not None:  # Taylor-style criteria read the stored gradients
        turned.grad = weight.grad.detach().t().contiguous()
    return turned


def as_linear(model: nn.Module) -> list[str]:
    """Replace every transformers `Conv1D` of `model` by an equal `nn.Linear`; their names."""
    swapped = []
    for name, module in list(model.named_modules()):
        if masks.transposed(module):
            inputs, outputs = module.weight.shape
            linear = nn.Linear(inputs, outputs, bias=module.bias is not None, device="meta")
            linear.weight = _transposed(module.weight)
            if module.bias is not None:
                linear.bias = module.bias
            _set(model, name, linear)
            swapped.append(name)
    return swapped


def as_conv1d(model: nn.Module, names: list[str]) -> None:
    """Put back the `Conv1D` layers `as_linear` replaced, with their pruned sizes."""
    if not names:
        return
    from transformers.pytorch_utils import Conv1D

    for name in names:
        linear = model.get_submodule(name)
        conv = Conv1D(linear.out_features, linear.in_features)
        conv.weight = _transposed(linear.weight)
        conv.bias = linear.bias
        _set(model, name, conv)


@contextlib.contextmanager
def without_cache(model: nn.Module) -> Iterator[None]:
    """Trace with a language model's key/value cache off; the model's setting is restored."""
    config = getattr(model, "config", None)
    if not getattr(config, "use_cache", False):
        yield
        return
    config.use_cache = False
    try:
        yield
    finally:
        config.use_cache = True
