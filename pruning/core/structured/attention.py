"""Attention modules, found by the conventions of the code that writes them, and what their
attributes must say once Torch-Pruning has removed heads or narrowed every head.

Torch-Pruning removes whole heads only when told which layers project into heads and how
many there are (`num_heads`), and it cannot rewrite the attributes a module's forward reads
(the head count, the head size). Conventions known here:

- timm: an int `num_heads` and one fused `qkv` Linear read as (3, heads, head size);
- `transformers` (BERT, ViT, RoBERTa, DeiT, DistilBERT, OPT, Llama, ...): an int
  `num_attention_heads` (or `num_heads`, `n_heads`; or, for a module that reads only its
  `head_dim`, its config's `num_attention_heads`) and separate `query`/`key`/`value`,
  `q_proj`/`k_proj`/`v_proj` or `q_lin`/`k_lin`/`v_lin` Linear layers, with
  `attention_head_size` or `head_dim` and sometimes `all_head_size`.

Attention that has heads but fits neither (GPT-2's `c_attn`, one projection split by
position; grouped-query attention, with fewer key/value heads than query heads) keeps its
heads whole: its projections are listed with the reason, and the rest of the model is pruned.
`nn.MultiheadAttention` is handled by Torch-Pruning itself (`internals.channel_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

HEAD_COUNTS = ("num_heads", "num_attention_heads", "n_heads")
SEPARATE = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"))
FUSED = "qkv"  # timm's layout: (3, heads, head size) along the output features
HEAD_SIZES = ("head_dim", "attention_head_size")
OTHER_FUSED = ("c_attn", "qkv_proj", "Wqkv", "query_key_value")
SPLIT_REASON = (
    "its query, key and value are one projection split by position, a layout whose heads "
    "Torch-Pruning cannot remove: the attention keeps every head"
)
UNNAMED_REASON = (
    "an attention projection whose module names no head count (num_heads or num_attention_heads), "
    "so its heads cannot be kept intact: the attention keeps every head"
)
GROUPED_REASON = (
    "grouped-query attention (fewer key/value heads than query heads), whose heads Torch-Pruning "
    "cannot remove here: the attention keeps every head"
)


@dataclass
class Attention:
    """An attention module whose heads Torch-Pruning can remove."""

    module: nn.Module
    projections: dict[str, nn.Linear]  # layer name -> query, key, value (or the one fused qkv)
    count: str | None  # the module's attribute holding the number of heads (None: its config's)
    heads: int  # the number of heads (updated by `follow`)

    @property
    def first(self) -> nn.Linear:
        return next(iter(self.projections.values()))

    def follow(self, heads: int) -> None:
        """Set the attributes the forward reads from what the pruned projections hold (a head
        count read from the config is shared by every layer and read only when built: kept)."""
        width = self.first.out_features // (3 if len(self.projections) == 1 else 1)
        self.heads = heads
        if self.count is not None:
            setattr(self.module, self.count, heads)
        for name in HEAD_SIZES:
            if isinstance(getattr(self.module, name, None), int):
                setattr(self.module, name, width // heads)
        if isinstance(getattr(self.module, "all_head_size", None), int):
            self.module.all_head_size = width


def _count(module: nn.Module) -> tuple[str | None, int | None]:
    """Where the module keeps its head count, and the count: its own attribute, else (for a module
    that reads only `head_dim`, as Llama's does) its config's `num_attention_heads`."""
    for name in HEAD_COUNTS:
        if isinstance(getattr(module, name, None), int):
            return name, getattr(module, name)
    config = getattr(module, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if isinstance(heads, int) and isinstance(getattr(module, "head_dim", None), int):
        return None, heads
    return None, None


def _linear(module: nn.Module, name: str) -> bool:
    return isinstance(getattr(module, name, None), nn.Linear)


def find(model: nn.Module) -> tuple[dict[str, Attention], dict[str, str]]:
    """Attention whose heads can be removed (module name -> Attention), and the projection
    layers of attention whose heads cannot (layer name -> why)."""
    found: dict[str, Attention] = {}
    kept: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            continue
        prefix = f"{name}." if name else ""
        count, heads = _count(module)
        parts = next((p for p in SEPARATE if all(_linear(module, n) for n in p)), None)
        if parts is not None:
            q, k, v = (getattr(module, n) for n in parts)
            kv_heads = getattr(module, "num_key_value_heads", None)
            if kv_heads is None:
                kv_heads = getattr(getattr(module, "config", None), "num_key_value_heads", heads)
            if heads is None:
                kept.update({prefix + n: UNNAMED_REASON for n in parts})
            elif kv_heads != heads or not q.out_features == k.out_features == v.out_features:
                kept.update({prefix + n: GROUPED_REASON for n in parts})
            else:
                found[name] = Attention(module, {prefix + n: getattr(module, n) for n in parts}, count, heads)
        elif count is not None and _linear(module, FUSED):
            found[name] = Attention(module, {prefix + FUSED: getattr(module, FUSED)}, count, heads)
        elif heads is not None:
            for fused in OTHER_FUSED:
                if isinstance(getattr(getattr(module, fused, None), "weight", None), nn.Parameter):
                    kept[prefix + fused] = SPLIT_REASON
    return found, kept
