"""SparseGPT: reconstruction against magnitude on a layer with known inputs, exact targets, valid
N:M groups, transformers' Conv1D, and a layer-sequential pass that reads the pruned layers' outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.core import methods
from pruning.core.data import Split
from pruning.core.methods import Context, Target
from pruning.core.methods.criteria import layer_levels
from pruning.core.methods.sparsegpt import sequential


def correlated_inputs(n: int = 512, features: int = 32, seed: int = 0) -> torch.Tensor:
    """Inputs with unequal, correlated features: what makes reconstruction beat plain magnitude."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=g) * torch.linspace(0.1, 3.0, features)
    return torch.randn(n, features, generator=g) @ mixing


def single_layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 24)).eval()


def pruned(method_id: str, model: nn.Module, x: torch.Tensor, sparsity: float, **options) -> nn.Module:
    method = methods.get(method_id)
    options = method.options({"samples": len(x), **options} if method.needs_data else options)
    ctx = Context(Split(x, torch.zeros(len(x), dtype=torch.long)))
    scores = method.importance(model, dict(model.named_children()), ctx, options)
    return method.prune(model, scores, Target(sparsity, "layer"), ctx, options, x[:2]).model


def error(dense: nn.Module, sparse: nn.Module, x: torch.Tensor) -> float:
    w, w2 = dense[0].weight.detach(), sparse[0].weight.detach()
    return float(torch.linalg.norm(w @ x.T - w2 @ x.T))


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_reconstruction_error_is_below_magnitudes_at_the_exact_same_count(sparsity):
    x = correlated_inputs()
    dense = single_layer()
    ours = pruned("sparsegpt", dense, x, sparsity)
    magnitude = pruned("magnitude", dense, x, sparsity)
    zeros = int((ours[0].weight == 0).sum())
    assert zeros == round(sparsity * 24 * 32) == int((magnitude[0].weight == 0).sum())
    assert error(dense, ours, x) < 0.8 * error(dense, magnitude, x)
    assert torch.equal(dense[0].weight, single_layer()[0].weight)  # the dense model is left as it was


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_nm_groups_are_valid_and_reconstruct_better_than_magnitude(n, m):
    x = correlated_inputs()
    dense = single_layer()
    ours = pruned("sparsegpt-nm", dense, x, 1 - n / m, n=n, m=m)
    magnitude = pruned("nm", dense, x, 1 - n / m, n=n, m=m)
    kept = (ours[0].weight != 0).reshape(24, -1, m).sum(-1)
    assert (kept == n).all()  # n of every m consecutive inputs of every output
    assert error(dense, ours, x) < error(dense, magnitude, x)


def test_conv1d_is_pruned_as_the_linear_layer_it_transposes():
    from transformers.pytorch_utils import Conv1D

    x = correlated_inputs(features=32)
    linear = single_layer()
    conv = nn.Sequential(Conv1D(24, 32)).eval()
    with torch.no_grad():
        conv[0].weight.copy_(linear[0].weight.T)
        conv[0].bias.copy_(linear[0].bias)
    a, b = pruned("sparsegpt", linear, x, 0.6), pruned("sparsegpt", conv, x, 0.6)
    torch.testing.assert_close(b[0].weight.T, a[0].weight, atol=1e-5, rtol=1e-4)
    c = pruned("sparsegpt-nm", conv, x, 0.5)
    assert ((c[0].weight != 0).T.reshape(24, -1, 4).sum(-1) == 2).all()  # groups run down dim 0


def test_a_global_target_with_overrides_lands_on_the_total():
    sizes = {"a": 1000, "b": 3000, "c": 6000}
    levels = layer_levels(sizes, Target(0.6, "global", {"a": 0.9}))
    assert levels["a"] == 0.9 and levels["b"] == levels["c"]
    assert sum(round(levels[k] * v) for k, v in sizes.items()) == pytest.approx(6000, abs=2)
    assert layer_levels(sizes, Target(0.6, "layer", {"a": 0.9})) == {"a": 0.9, "b": 0.6, "c": 0.6}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def hessian_from_full_pass(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = layer.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].reshape(-1, args[0].shape[-1]))
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    inputs = torch.cat(seen)
    return 2 * inputs.T @ inputs / len(inputs)


@pytest.mark.parametrize(
    "build", [Stack, lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))]
)
def test_each_layer_sees_the_outputs_of_the_layers_pruned_before_it(build):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(40, 8)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = []
    with torch.no_grad():
        for name, layer, hessian in sequential(model, layers, [x[:25], x[25:]]):
            # what a full pass through the model as it is now (earlier layers pruned) feeds this layer
            torch.testing.assert_close(hessian, hessian_from_full_pass(model, layer, x), atol=1e-4, rtol=1e-4)
            layer.weight.mul_(torch.rand(layer.weight.shape) > 0.5)  # prune it before the next is read
            names.append(name)
    assert names == list(layers)  # every layer once, in model order
    torch.manual_seed(0)
    dense = build().eval()  # the same weights, unpruned: its last layer's inputs differ
    last = list(layers)[-1]
    dense_hessian = hessian_from_full_pass(dense, dict(dense.named_modules())[last], x)
    assert not torch.allclose(hessian_from_full_pass(model, layers[last], x), dense_hessian, atol=1e-3)


class SharedInputsBlock(nn.Module):
    """A Llama-like block: q, k and v read one tensor, so do gate and up; o and down read what the
    layers before them produce."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.gate, self.up, self.down = nn.Linear(width, 16), nn.Linear(width, 16), nn.Linear(16, width)

    def forward(self, x):
        h = torch.tanh(x)
        attention = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2), dim=-1) @ self.v(h)
        x = x + self.o(attention)
        h = torch.tanh(x)
        return x + self.down(torch.relu(self.gate(h)) * self.up(h))


class SharedInputsStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(SharedInputsBlock() for _ in range(2))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(torch.tanh(x))


def test_layers_reading_the_same_inputs_share_one_replay_and_later_layers_see_them_pruned():
    torch.manual_seed(0)
    model = SharedInputsStack().eval()
    x = torch.randn(6, 5, 8)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    hessians = {}
    with torch.no_grad():
        for name, layer, hessian in sequential(model, layers, [x[:4], x[4:]]):
            # what a full pass through the model as it is now (earlier layers pruned) feeds this layer
            torch.testing.assert_close(hessian, hessian_from_full_pass(model, layer, x), atol=1e-4, rtol=1e-4)
            hessians[name] = hessian.clone()
            layer.weight.mul_(torch.rand(layer.weight.shape) > 0.5)  # prune it before the next is read
    assert list(hessians) == list(layers)
    for block in ("blocks.0", "blocks.1"):
        assert torch.equal(hessians[f"{block}.q"], hessians[f"{block}.k"])
        assert torch.equal(hessians[f"{block}.q"], hessians[f"{block}.v"])
        assert torch.equal(hessians[f"{block}.gate"], hessians[f"{block}.up"])
    # per batch: one replay for q/k/v, one for o, one for gate/up, one for down, one for the block's
    # outputs; the head is read without computing the blocks again. Layer by layer: 8, then 1 more.
    calls = []  # every call of the first block's q projection that computes it
    torch.manual_seed(0)
    model = SharedInputsStack().eval()
    model.blocks[0].q.register_forward_hook(lambda *_: calls.append(1))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    with torch.no_grad():
        for _ in sequential(model, layers, [x[:4], x[4:]]):
            pass
    assert len(calls) == 5 * 2


def test_gpt2_blocks_replayed_from_their_recorded_arguments_see_what_a_full_pass_sees():
    import transformers

    from pruning.core.masks import prunable_layers

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 64, (6, 16))
    layers = prunable_layers(model)  # 4 Conv1D per block, then the tied head
    seen = []
    with torch.no_grad():
        for name, layer, hessian in sequential(model, layers, [ids[:4], ids[4:]]):
            torch.testing.assert_close(
                hessian, hessian_from_full_pass(model, layer, ids), atol=1e-4, rtol=1e-4
            )
            layer.weight.mul_(torch.rand(layer.weight.shape) > 0.5)
            seen.append(name)
    assert seen == list(layers) and seen[-1] == "lm_head"


def test_layers_whose_inputs_it_cannot_read_are_refused_before_anything_runs():
    from pruning.errors import UserError

    method = methods.get("sparsegpt")
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(UserError, match=r"layer 0 \(Conv2d\).*use magnitude or wanda"):
        method.check(grouped, torch.zeros(1, 4, 8, 8), Target(0.5), method.options())
    attention = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(UserError, match=r"layer 0.in_proj \(MultiheadAttention\)"):
        method.check(attention, torch.zeros(1, 3, 8), Target(0.5), method.options())
    method.check(
        nn.Sequential(nn.Conv1d(2, 4, 3, padding=1)), torch.zeros(1, 2, 8), Target(0.5), method.options()
    )


def test_a_conv_layer_is_reconstructed_from_its_unfolded_inputs():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)).eval()
    x = torch.randn(64, 3, 10, 10) * torch.tensor([0.1, 1.0, 3.0]).view(1, 3, 1, 1)
    outputs = {}
    for method in ("sparsegpt", "magnitude"):
        model = pruned(method, dense, x, 0.6)
        assert int((model[0].weight == 0).sum()) == round(0.6 * 8 * 27)
        with torch.no_grad():
            outputs[method] = float(torch.linalg.norm(model(x) - dense(x)))
    assert outputs["sparsegpt"] < outputs["magnitude"]
