"""Measurements checked by hand on tiny models: params, non-zeros, FLOPs, bytes, per-layer rows."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pruning.core import masks, measure, models


def tiny() -> nn.Sequential:
    """Linear(4,3) + ReLU + Linear(3,2) with known non-zero weights: 15 + 8 = 23 parameters."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.arange(1, p.numel() + 1, dtype=torch.float32).view_as(p) / 10)
    return model


def tiny_pruned() -> nn.Sequential:
    """tiny() with 4 weights of the first layer (one output row) and the last bias zeroed."""
    model = tiny()
    with torch.no_grad():
        model[0].weight[0].zero_()
        model[2].bias.zero_()
    return model


def test_params_and_nonzeros_by_hand():
    assert measure.params(tiny()) == 4 * 3 + 3 + 3 * 2 + 2 == 23
    assert measure.nonzero_params(tiny()) == 23
    assert measure.nonzero_params(tiny_pruned()) == 23 - 4 - 2
    assert measure.params(tiny_pruned()) == 23  # masked: the zeros are still there


def test_linear_flops_are_two_in_out_per_sample():
    total, per_module = measure.layer_flops(tiny(), torch.ones(5, 4))
    assert per_module["0"] == 2 * 4 * 3 * 5
    assert per_module["2"] == 2 * 3 * 2 * 5
    assert total == per_module[""] == 2 * 4 * 3 * 5 + 2 * 3 * 2 * 5


def test_conv_flops_by_hand():
    # 2 filters of 1x3x3 over a 5x5 input: 3x3 outputs each, 9 multiply-adds per output, batch 2
    total, _ = measure.layer_flops(nn.Conv2d(1, 2, 3), torch.ones(2, 1, 5, 5))
    assert total == 2 * (1 * 3 * 3) * (2 * 3 * 3) * 2


@pytest.mark.parametrize("spec", ["mlp-digits", "cnn-digits"])
def test_every_prunable_layer_has_its_own_flops(spec):
    model = models.build(spec)
    total, per_module = measure.layer_flops(model, torch.zeros(1, 64))
    layers = masks.prunable_layers(model)
    assert all(per_module[name] > 0 for name in layers)
    assert sum(per_module[name] for name in layers) <= total


def test_effective_flops_scale_each_layer_by_its_density():
    total, per_module = measure.layer_flops(tiny(), torch.ones(1, 4))
    assert measure.effective_flops(total, per_module, {"0": 8 / 12, "2": 1.0}) == 24 * 8 // 12 + 12
    assert measure.effective_flops(total, per_module, {"0": 2 / 3, "2": 1 / 3}) == 16 + 4
    assert measure.effective_flops(total, per_module, {}) == total


def test_sparse_bytes_are_a_bitmask_plus_the_nonzero_values():
    # per float tensor: ceil(numel / 8) mask bytes + 4 bytes per non-zero value
    expected = (2 + 8 * 4) + (1 + 3 * 4) + (1 + 6 * 4) + (1 + 0)
    assert measure.sparse_bytes(tiny_pruned()) == expected
    # integer buffers (BatchNorm's step count) are stored as they are
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.bias.zero_()
    assert measure.sparse_bytes(bn) == (1 + 12) + 1 + 1 + (1 + 12) + 8


def test_dense_bytes_are_the_safetensors_file(tmp_path):
    model = tiny_pruned()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    sizes = measure.size_bytes(model)
    assert sizes["dense"] == (tmp_path / "model.safetensors").stat().st_size


def test_sizes_measured_from_the_written_file_equal_those_of_the_file_in_memory():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied, as a GPT ties its embedding and output head
    state = measure.state_bytes(model)
    sizes = measure.size_bytes(model)
    assert sizes["dense"] == measure.state_size(model) == len(state)
    assert sizes["gzip"] == measure.gzipped_size(io.BytesIO(state))


def test_a_sparse_model_is_smaller_encoded_and_gzipped_than_its_dense_file():
    torch.manual_seed(0)
    dense = models.build("mlp-digits")
    pruned = copy.deepcopy(dense)
    layers = masks.prunable_layers(pruned)
    masks.apply(layers, masks.select({n: m.weight.abs() for n, m in layers.items()}, 0.9))
    d, p = measure.size_bytes(dense), measure.size_bytes(pruned)
    assert p["dense"] == d["dense"]  # zeros still take their four bytes in the plain file
    assert p["sparse"] < 0.2 * p["dense"]
    assert p["gzip"] < 0.5 * p["dense"] < d["gzip"]


def test_layer_table_rows_by_hand_in_model_order():
    dense, pruned = tiny(), tiny_pruned()
    _, per_module = measure.layer_flops(dense, torch.ones(1, 4))
    rows = measure.layer_table(masks.prunable_layers(dense), masks.prunable_layers(pruned), per_module)
    assert [(r["name"], r["type"]) for r in rows] == [("0", "Linear"), ("2", "Linear")]
    first, last = rows
    assert (first["params"], first["nonzero"], first["flops"]) == (15, 11, 16)
    assert first["sparsity"] == pytest.approx(4 / 12)
    assert (last["params"], last["nonzero"], last["sparsity"], last["flops"]) == (8, 6, 0.0, 12)
    cnn = models.build("cnn-digits")
    _, per_module = measure.layer_flops(cnn, torch.zeros(1, 64))
    layers = masks.prunable_layers(cnn)
    assert [r["name"] for r in measure.layer_table(layers, layers, per_module)] == list(layers)


def test_sparsity_counts_prunable_weights_only():
    dense, pruned = tiny(), tiny_pruned()
    # 4 of the 18 weights are zero; the zeroed bias does not count
    assert measure.sparsity(masks.prunable_layers(dense), masks.prunable_layers(pruned)) == pytest.approx(
        4 / 18
    )


def test_latency_is_measured_for_every_model():
    timed = measure.latency_ms(
        {"a": tiny(), "b": tiny_pruned()}, torch.ones(8, 4), rounds=1, min_run_time=0.01
    )
    assert set(timed) == {"a", "b"} and all(v > 0 for v in timed.values())


def test_flops_of_a_partly_pruned_layer_are_not_truncated():
    # Linear(3, 1) at batch 5: 30 FLOPs; with one of its three weights kept, 10 (not 9.999... -> 9)
    dense = nn.Linear(3, 1)
    pruned = copy.deepcopy(dense)
    with torch.no_grad():
        pruned.weight[0, :2] = 0.0
    total, per_module = measure.layer_flops(dense, torch.ones(5, 3))
    rows = measure.layer_table({"": dense}, {"": pruned}, per_module)
    assert rows[0]["flops"] == 10
    assert measure.effective_flops(total, per_module, {"": 1 - rows[0]["sparsity"]}) == 10


def test_gzip_size_is_measured_in_chunks_like_a_whole_file():
    from isal import igzip

    state = measure.state_bytes(models.load("cnn-digits"))
    whole = len(igzip.compress(state, compresslevel=2))  # one gzip file, held in memory
    assert abs(measure.gzipped_size(io.BytesIO(state)) - whole) <= 0.01 * whole
    assert measure.gzipped_size(io.BytesIO(b"")) == len(igzip.compress(b"", compresslevel=2))
