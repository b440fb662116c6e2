"""Structured pruning with physical removal (pruning/core/structured, pruning/core/methods/structured.py)."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch

from pruning.core import latency, masks, measure, methods, models, structured
from pruning.errors import UserError
from pruning.runs import experiment
from pruning.runs.config import RunConfig

STRUCTURED = ("l1-channel", "l2-channel", "taylor-channel", "bn-scale", "random-channel")
SAMPLES = ("mlp-digits", "cnn-digits", "resnet-mnist1d", "tinyformer-mnist1d")
HAS_BATCHNORM = ("cnn-digits", "resnet-mnist1d")
SUPPORTED = [(m, k) for m in SAMPLES for k in STRUCTURED if k != "bn-scale" or m in HAS_BATCHNORM]


@pytest.fixture(scope="module")
def prepared() -> dict[str, experiment.Prepared]:
    """Each sample model loaded and measured once (with l1-channel; tests swap the method)."""
    return {m: experiment.prepare(RunConfig(m, "l1-channel", 0.5, latency=False)) for m in SAMPLES}


def with_method(prep: experiment.Prepared, method_id: str, **options) -> experiment.Prepared:
    method = methods.get(method_id)
    return dataclasses.replace(prep, method=method, options=method.options(options))


def prune(
    model_id: str, sparsity: float = 0.5, method: str = "l1-channel", seed: int = 0, **kwargs
) -> structured.Pruned:
    """One-shot structural pruning of a sample model through the adapter."""
    model, example = models.load(model_id), _example(model_id)
    criterion = methods.get(method).criterion(model, methods.Context(None, seed), {})
    return structured.prune(model, example, criterion, sparsity, **kwargs)


def _example(model_id: str) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 64 if model_id.endswith("digits") else 40)


@pytest.mark.parametrize("model_id,method_id", SUPPORTED)
def test_every_structured_method_reaches_its_target_by_removing_weights(prepared, model_id, method_id):
    prep = with_method(prepared[model_id], method_id)
    target = 0.4 if model_id == "tinyformer-mnist1d" else 0.5
    result = experiment.run_one(prep, None, prep.config.replace(method=method_id, sparsity=target))
    assert result.granularity == "structured"
    assert result.sparsity == pytest.approx(target, abs=structured.TOLERANCE)
    dense, pruned = result.dense, result.pruned
    assert pruned.removed is True
    # removed, not zeroed: the weights left are (almost all) non-zero and the parameter count fell
    assert pruned.nonzero_params == pytest.approx(pruned.params, rel=1e-3)
    assert pruned.params < 0.75 * dense.params
    assert pruned.size_bytes.dense < 0.75 * dense.size_bytes
    assert pruned.flops < dense.flops
    weights = {name: layer.weight.numel() for name, layer in prep.layers.items()}
    removed = sum(row["sparsity"] * weights[row["name"]] for row in result.layers)
    assert removed / sum(weights.values()) == pytest.approx(result.sparsity)  # the rows add up


@pytest.mark.parametrize("model_id", SAMPLES)
def test_a_pruned_model_keeps_its_shapes_and_is_physically_smaller(model_id):
    dense = models.load(model_id)
    pruned = prune(model_id, 0.5)
    x = _example(model_id).repeat(3, 1)  # 6 rows: another batch size than the trace used
    with torch.no_grad():
        assert pruned.model(x).shape == dense(x).shape
    assert measure.params(pruned.model) < 0.6 * measure.params(dense)
    assert len(measure.state_bytes(pruned.model)) < 0.6 * len(measure.state_bytes(dense))
    shrunk = [
        n
        for n, m in masks.prunable_layers(pruned.model).items()
        if m.weight.shape != masks.prunable_layers(dense)[n].weight.shape
    ]
    assert len(shrunk) == len(masks.prunable_layers(dense))  # every layer lost inputs or outputs


def test_attention_heads_are_removed_whole_and_num_heads_follows():
    pruned = prune("tinyformer-mnist1d", 0.4)
    for name, module in pruned.model.named_modules():
        if name not in pruned.heads:
            continue
        assert module.num_heads == pruned.heads[name] < 4
        assert module.qkv.out_features == 3 * 16 * module.num_heads  # every head keeps its 16 dims
        assert module.proj.in_features == 16 * module.num_heads
    assert pruned.sparsity == pytest.approx(0.4, abs=structured.TOLERANCE)


def test_without_heads_every_head_shrinks_and_num_heads_stays():
    pruned = prune("tinyformer-mnist1d", 0.5, heads=False)
    dims = set()
    attention = [m for n, m in pruned.model.named_modules() if n in pruned.heads]
    assert attention
    for module in attention:
        assert module.num_heads == 4
        dims.add(module.qkv.out_features)
    assert min(dims) < 192 and all(d % 12 == 0 for d in dims)  # 3 x 4 heads of equal size


def test_layer_scope_removes_the_same_channel_ratio_everywhere():
    pruned = prune("mlp-digits", 0.5, scope="layer")
    fc1, fc2 = pruned.model.fc1, pruned.model.fc2
    assert fc1.out_features / 300 == pytest.approx(fc2.out_features / 100, abs=0.02)
    assert pruned.sparsity == pytest.approx(0.5, abs=structured.TOLERANCE)


def test_a_per_layer_sparsity_is_held_while_the_total_reaches_the_target():
    pruned = prune("mlp-digits", 0.5, overrides={"fc2": 0.8})
    assert pruned.sparsity == pytest.approx(0.5, abs=structured.TOLERANCE)
    assert pruned.overrides["fc2"]["sparsity"] == pytest.approx(0.8, abs=structured.TOLERANCE)
    assert 1 - pruned.model.fc2.weight.numel() / (300 * 100) == pytest.approx(0.8, abs=0.02)


def test_layers_that_cannot_lose_channels_are_listed_with_reasons(prepared):
    result = experiment.run_one(prepared["cnn-digits"], None, prepared["cnn-digits"].config)
    skipped = {row["name"]: row for row in result.details["skipped_layers"]}
    assert set(skipped) == {"features.0.0", "classifier"}
    assert (
        skipped["classifier"]["keeps"] == "outputs" and "model's outputs" in skipped["classifier"]["reason"]
    )
    assert skipped["features.0.0"]["keeps"] == "inputs" and "input" in skipped["features.0.0"]["reason"]
    how = result.details["structured"]
    assert how["trials"] >= 1 and 0 < how["channel_ratio"] < 1


def test_the_same_seed_prunes_the_same_random_channels():
    kept = [prune("mlp-digits", 0.5, "random-channel", seed=s).model.fc1.weight for s in (0, 0, 1)]
    assert torch.equal(kept[0], kept[1])
    assert kept[0].shape != kept[2].shape or not torch.equal(kept[0], kept[2])


def test_bn_scale_needs_batchnorm():
    with pytest.raises(UserError, match="no BatchNorm layer.*l1-channel"):
        methods.get("bn-scale").criterion(models.load("mlp-digits"), None, {})


def test_the_output_layer_cannot_get_a_per_layer_sparsity():
    with pytest.raises(
        UserError,
        match=r"layer classifier cannot lose output channels \(its outputs are the model's.*unstructured",
    ):
        prune("cnn-digits", 0.5, overrides={"classifier": 0.5})


def test_per_layer_sparsities_that_overshoot_the_target_are_refused():
    with pytest.raises(UserError, match="per-layer sparsities alone remove 0.[6-9]"):
        prune("mlp-digits", 0.5, overrides={"fc1": 0.7})


def _user_model(tmp_path, source: str) -> torch.nn.Module:
    path = tmp_path / "user_model.py"
    path.write_text(textwrap.dedent(source))
    return models.build(f"{path}:make")


def test_a_sparsity_that_would_empty_a_layer_is_refused(tmp_path):
    # 8 hidden units feed a 1000-way output layer, which cannot shrink: at most ~87% can go
    model = _user_model(
        tmp_path,
        """
        from torch import nn
        def make():
            return nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 1000))
        """,
    )
    criterion = methods.get("l1-channel").criterion(model, None, {})
    with pytest.raises(UserError, match=r"would remove every channel of layer 0 .*unstructured method"):
        structured.prune(model, torch.randn(2, 64), criterion, 0.95)


def test_layers_torch_pruning_cannot_follow_keep_their_channels_and_the_rest_is_pruned(tmp_path):
    # Heads split off with unbind on dim 2: Torch-Pruning only maps unbind on dim 0, so it fails
    # scoring attn.qkv; qkv keeps its channels, listed with the failure, and the rest is pruned.
    model = _user_model(
        tmp_path,
        """
        import torch
        from torch import nn
        class Attention(nn.Module):
            def __init__(self):
                super().__init__()
                self.num_heads, self.qkv, self.proj = 4, nn.Linear(16, 48), nn.Linear(16, 16)
            def forward(self, x):
                b, n, _ = x.shape
                q, k, v = self.qkv(x).reshape(b, n, 3, 4, 4).unbind(2)
                out = nn.functional.scaled_dot_product_attention(q, k, v)
                return self.proj(out.reshape(b, n, 16))
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed, self.attn, self.head = nn.Linear(4, 16), Attention(), nn.Linear(16, 3)
            def forward(self, x):
                return self.head(self.attn(self.embed(x.reshape(x.shape[0], 10, 4))).mean(1))
        def make():
            torch.manual_seed(0)
            return Net()
        """,
    )
    criterion = methods.get("l1-channel").criterion(model, None, {})
    example = torch.randn(2, 40)
    pruned = structured.prune(model, example, criterion, 0.5)
    assert pruned.sparsity == pytest.approx(0.5, abs=structured.TOLERANCE)
    assert pruned.model.attn.qkv.out_features == 48 and pruned.model.embed.out_features < 16
    skipped = {row["name"]: row for row in pruned.skipped}
    assert "could not remove its channels consistently (IndexError" in skipped["attn.qkv"]["reason"]
    assert pruned.model(example).shape == (2, 3)


def test_a_pruned_model_that_no_longer_runs_is_refused_naming_the_module(tmp_path):
    # A hard-coded view of 16 features: Torch-Pruning shrinks fc1, the view then fails at run time.
    model = _user_model(
        tmp_path,
        """
        import torch
        from torch import nn
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(64, 16)
            def forward(self, x):
                return self.fc1(x).view(x.shape[0], 2, 8).sum(1)
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.block, self.fc2 = Block(), nn.Linear(8, 3)
            def forward(self, x):
                return self.fc2(self.block(x))
        def make():
            torch.manual_seed(0)
            return Net()
        """,
    )
    criterion = methods.get("l1-channel").criterion(model, None, {})
    # Keeping block.fc1 whole leaves nothing else to prune: the error says so and names the layer.
    with pytest.raises(
        UserError, match=r"such as magnitude \(Torch-Pruning failed on block\.fc1: kept whole\)"
    ):
        structured.prune(model, torch.randn(2, 64), criterion, 0.5)


def test_cnn_at_half_the_weights_removed_recovers_dense_accuracy_in_three_epochs(prepared):
    prep = prepared["cnn-digits"]
    result = experiment.run_one(prep, None, prep.config.replace(sparsity=0.5, finetune_epochs=3))
    dense, pruned = result.dense, result.pruned
    assert result.sparsity == pytest.approx(0.5, abs=structured.TOLERANCE)
    assert pruned.params < 0.55 * dense.params
    assert pruned.accuracy_before_finetune < dense.accuracy - 0.05  # it did hurt
    assert pruned.accuracy >= dense.accuracy - 0.01


@pytest.mark.parametrize(
    "method_id,pruned_ms,verdict",
    [
        ("l1-channel", 8.0, "overhead-bound"),  # removed, yet slower than dense: per-call costs dominate
        ("l1-channel", 0.5, ""),  # removed and 8x faster: past half its FLOPs bound
        ("magnitude", 8.0, "masked: not faster"),  # masked: not faster by design, never overhead-bound
    ],
)
def test_latency_says_whether_a_removed_model_is_overhead_bound(
    prepared, monkeypatch, method_id, pruned_ms, verdict
):
    # A fixed clock in place of the timer, so the label does not depend on how busy the machine is.
    ratio = 4.0 / pruned_ms
    timing = latency.Timing(
        {"dense": 4.0, "pruned": pruned_ms}, {"pruned": latency.Speedup(ratio, ratio, ratio)}, 5, 0.1
    )
    monkeypatch.setattr(latency, "compare", lambda dense, pruned, example: timing)
    prep = with_method(prepared["mlp-digits"], method_id)
    scores = experiment.importance(prep) if method_id == "magnitude" else None
    result = experiment.run_one(prep, scores, prep.config.replace(method=method_id, latency=True))
    assert result.removed is (method_id == "l1-channel")
    assert 1.5 < result.theoretical_speedup < 4, result.theoretical_speedup  # about 2x fewer FLOPs
    assert result.latency_ms.speedup == pytest.approx(4.0 / pruned_ms)
    assert result.verdict == verdict
    assert result.to_dict()["latency_ms"]["overhead_bound"] is (verdict == "overhead-bound")
