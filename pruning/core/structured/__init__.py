"""Structured pruning with physical removal, through Torch-Pruning's dependency graph.

Torch-Pruning removes whole channel groups (a conv's filters together with the BatchNorm,
the next layer's inputs and every residual partner), so the pruned model is really smaller.
Layers whose outputs are the model's outputs never shrink (the output shape must not
change); they and other layers that cannot lose channels on a side are reported as
`skipped`, with the side they keep (a depthwise conv shrinks on both sides with the layer
that feeds it, so it is never one of them). Attention modules in timm's convention (a fused
`qkv` Linear and an int `num_heads`) lose whole heads or shrink every head, and their
`num_heads` follows; `nn.MultiheadAttention` shrinks every head alike.

- `layout`: what the dependency graph says about the model, before pruning;
- `search`: the channel-ratio search for a target sparsity (`prune`, `check`);
- `trial`: one pruner per search: trials predict what given ratios would leave, `apply` prunes;
- `explain`: failures as one-sentence UserErrors naming the layer;
- `internals`: every use of Torch-Pruning beyond its documented calls, listed.
"""

from pruning.core.structured.explain import UNSTRUCTURED_HINT
from pruning.core.structured.layout import Layout, analyse, attention_modules
from pruning.core.structured.search import TOLERANCE, Pruned, check, prune

__all__ = [
    "TOLERANCE",
    "UNSTRUCTURED_HINT",
    "Layout",
    "Pruned",
    "analyse",
    "attention_modules",
    "check",
    "prune",
]
