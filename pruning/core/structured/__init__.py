"""Structured pruning with physical removal, through Torch-Pruning's dependency graph.

Torch-Pruning removes whole channel groups (a conv's filters together with the BatchNorm,
the next layer's inputs and every residual partner), so the pruned model is really smaller.
Layers whose outputs are the model's outputs never shrink (the output shape must not
change), nor does the width of an nn.Embedding (a transformer's hidden size): embeddings are
not pruned. They and other layers that cannot lose channels on a side are reported as
`skipped`, with the side they keep and why (a depthwise conv shrinks on both sides with the
layer that feeds it, so it is never one of them). Attention modules lose whole heads or shrink
every head, and the attributes their forward reads follow (`attention`). Where Torch-Pruning
fails on some layers, those keep their channels, listed with the failure, and the rest is pruned.

- `layout`: what the dependency graph says about the model, before pruning;
- `attention`: attention modules by the conventions of timm and `transformers`;
- `hugging_face`: GPT-2's Conv1D as nn.Linear while pruning, the trace without a KV cache;
- `search`: the channel-ratio search for a target sparsity (`prune`, `check`);
- `trial`: one pruner per search: trials predict what given ratios would leave, `apply` prunes;
- `explain`: failures as one-sentence UserErrors naming the layer;
- `internals`: every use of Torch-Pruning beyond its documented calls, listed.
"""

from pruning.core.structured.attention import Attention
from pruning.core.structured.explain import UNSTRUCTURED_HINT
from pruning.core.structured.layout import Layout, analyse
from pruning.core.structured.search import TOLERANCE, Pruned, check, prune

__all__ = [
    "Attention",
    "TOLERANCE",
    "UNSTRUCTURED_HINT",
    "Layout",
    "Pruned",
    "analyse",
    "check",
    "prune",
]
