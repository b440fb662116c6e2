"""Per-layer sensitivity (against torch.nn.utils.prune), its cache, allocation by hand, and the CLI."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
from torch.nn.utils import prune

from pruning.core import masks
from pruning.errors import UserError
from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.sensitivity import Sensitivity, allocate, analyse
from pruning.runs.store import Store

# A 2-layer linear model on 8 features: layer "0" is the identity plus tiny noise (56 of its 64
# weights can go without any effect), layer "1" holds the 16 weights the decision rests on.
TINY = textwrap.dedent(
    """
    import torch
    from torch import nn

    W = torch.tensor([1.0, 0.9, 1.1, 1.0, 0.95, 1.05, 1.0, 0.9])

    def model():
        net = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 2, bias=False))
        noise = 1e-4 * torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            net[0].weight.copy_(torch.eye(8) + noise * (1 - torch.eye(8)))
            net[1].weight.copy_(torch.stack([W, -W]))
        return net

    def data():
        x = torch.randn(600, 8, generator=torch.Generator().manual_seed(1))
        y = (x @ W < 0).long()
        return (x[:400], y[:400]), (x[400:], y[400:])
    """
)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return RunConfig(f"{path}:model", "magnitude", 0.0, data=f"{path}:data", latency=False)


def test_tiny_model_by_hand(tiny, tmp_path):
    result = analyse(tiny, levels=(0.5, 0.8, 0.9), store=Store(tmp_path / "lab"))
    assert result.dense_accuracy == 1.0
    assert result.layers == {"0": 64, "1": 16}
    assert [(r["layer"], r["level"]) for r in result.rows] == [
        ("0", 0.5),
        ("0", 0.8),
        ("0", 0.9),
        ("1", 0.5),
        ("1", 0.8),
        ("1", 0.9),
    ]
    assert result.drops("0")[:2] == [0.0, 0.0]  # 32 and 51 noise weights pruned: nothing changes
    assert result.drops("0")[2] > 0.05  # 58 pruned: two features are cut off
    assert min(result.drops("1")) > 0.05  # every level removes weights the decision needs
    allocation = allocate(result, 0.7)
    assert allocation["0"] > 0.8 and allocation["1"] < 0.2  # the insensitive layer is pruned more
    assert (64 * allocation["0"] + 16 * allocation["1"]) / 80 == pytest.approx(0.7, abs=0.01)
    # the allocation, used as per-layer overrides, beats the same sparsity spread evenly
    planned = experiment.run(tiny.replace(sparsity=0.7, layer_sparsity=tuple(allocation.items())))
    uniform = experiment.run(tiny.replace(sparsity=0.7, scope="layer"))
    assert planned.sparsity == pytest.approx(0.7, abs=0.01)
    assert planned.pruned.accuracy > uniform.pruned.accuracy + 0.1


def test_rows_match_torch_prune_on_one_layer_at_a_time():
    config = RunConfig("mlp-digits", "magnitude", 0.0, latency=False)
    result = analyse(config, levels=(0.5, 0.9))
    prep = experiment.prepare(config)
    for row in result.rows:
        reference = copy.deepcopy(prep.model)
        prune.l1_unstructured(masks.prunable_layers(reference)[row["layer"]], "weight", amount=row["level"])
        accuracy = prep.data.evaluate(reference, prep.data.choices).metric  # validation, not test
        assert row["accuracy"] == accuracy, row
        assert row["accuracy_drop"] == pytest.approx(result.dense_accuracy - accuracy)
    assert result.dense_accuracy == prep.data.evaluate(prep.model, prep.data.choices).metric
    assert result.split.startswith("validation") and len(prep.data.choices) < len(prep.data.train)


def test_second_call_comes_from_the_cache_until_an_input_changes(tiny, tmp_path):
    store = Store(tmp_path / "lab")
    first = analyse(tiny, levels=(0.5,), store=store)
    messages = []
    again = analyse(tiny, levels=(0.5,), store=store, progress=lambda f, m: messages.append(m))
    assert (first.cached, again.cached) == (False, True)
    assert again.rows == first.rows and again.layers == first.layers
    assert messages == ["from cache"]
    assert not analyse(tiny, levels=(0.5, 0.9), store=store).cached  # other levels
    assert not analyse(tiny.replace(method="random"), levels=(0.5,), store=store).cached  # other method
    path = tiny.model.split(":")[0]
    with open(path, "a") as f:
        f.write("\n# edited\n")
    assert not analyse(tiny, levels=(0.5,), store=store).cached  # the model file changed


def test_progress_runs_layer_by_layer(tiny):
    seen = []
    analyse(tiny, levels=(0.5,), progress=lambda f, m: seen.append((f, m)))
    assert seen[0] == (0.0, "scoring") and seen[-1] == (1.0, "done")
    assert [m for _, m in seen[1:-1]] == ["layer 0", "layer 1"]


def test_unstructured_methods_only(tiny):
    with pytest.raises(UserError, match="needs an unstructured method; 'nm' is n:m"):
        analyse(tiny.replace(method="nm"))
    with pytest.raises(UserError, match="sensitivity level must be a number in"):
        analyse(tiny, levels=(0.5, 1.5))


def hand_made(
    curves: dict[str, tuple[int, list[float]]], levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
):
    rows = [
        {"layer": name, "level": level, "accuracy": 1.0 - drop, "accuracy_drop": drop}
        for name, (_, drops) in curves.items()
        for level, drop in zip(levels, drops)
    ]
    return Sensitivity("m", "magnitude", 1.0, tuple(levels), {n: c for n, (c, _) in curves.items()}, rows)


LEVELS = [0.1 * i for i in range(1, 10)]


def test_allocation_by_hand():
    flat, steep = [0.0] * 9, [0.5 * level for level in LEVELS]
    # equal sizes: the free layer goes to the top of the grid, the sensitive one takes the rest
    assert allocate(hand_made({"a": (1000, flat), "b": (1000, steep)}), 0.5) == {"a": 0.9, "b": 0.1}
    # by parameter count: 3000 * 0.9 + 1000 * 0.5 = 0.8 * 4000
    assert allocate(hand_made({"a": (3000, flat), "b": (1000, LEVELS)}), 0.8) == {"a": 0.9, "b": 0.5}
    # equally sensitive layers get equal shares, whatever their sizes
    assert allocate(hand_made({"a": (3000, LEVELS), "b": (1000, LEVELS)}), 0.4) == {"a": 0.4, "b": 0.4}
    # two free layers share evenly rather than one taking everything
    assert allocate(hand_made({"a": (1000, flat), "b": (1000, flat)}), 0.3) == {"a": 0.3, "b": 0.3}
    assert allocate(hand_made({"a": (10, flat), "b": (10, LEVELS)}), 0.0) == {"a": 0.0, "b": 0.0}


def test_a_lucky_dip_does_not_make_a_higher_level_look_free():
    # b's zero drop at 0.5 is noise: once 0.4 cost 0.4, pruning more cannot cost nothing
    noisy = [0.1, 0.2, 0.3, 0.4, 0.0, 0.6, 0.7, 0.8, 0.9]
    assert allocate(hand_made({"a": (1000, LEVELS), "b": (1000, noisy)}), 0.25) == {"a": 0.25, "b": 0.25}


def test_allocation_hits_the_target_on_measured_curves():
    result = analyse(RunConfig("mlp-digits", "magnitude", 0.0, latency=False), levels=(0.3, 0.6, 0.9))
    total = sum(result.layers.values())
    for target in (0.3, 0.5, 0.75, 0.85):
        allocation = allocate(result, target)
        assert list(allocation) == list(result.layers)  # model order
        achieved = sum(result.layers[n] * s for n, s in allocation.items()) / total
        assert achieved == pytest.approx(target, abs=0.01)
        assert all(0.0 <= s <= 0.9 for s in allocation.values())
    with pytest.raises(UserError, match="beyond the measured levels"):
        allocate(result, 0.95)


@pytest.mark.slow  # three CLI subprocesses
def test_cli_sensitivity_and_allocate(cli, tiny, tmp_path):
    store = str(tmp_path / "lab")
    common = ["--model", tiny.model, "--data", tiny.data, "--method", "magnitude", "--store", store]
    done = cli("sensitivity", *common, "--levels", "0.5,0.9", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert table["levels"] == [0.5, 0.9] and table["layers"] == {"0": 64, "1": 16}
    assert len(table["rows"]) == 4 and table["cached"] is False
    done = cli("allocate", *common, "--levels", "0.5,0.9", "--sparsity", "0.6", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert set(plan["layer_sparsity"]) == {"0", "1"}
    assert plan["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert plan["layer_sparsity"]["0"] > plan["layer_sparsity"]["1"]
    done = cli("allocate", *common, "--levels", "0.5,0.9", "--sparsity", "0.95")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: target sparsity 0.95 is beyond")


def test_default_levels_prune_every_layer_on_an_increasing_grid(tiny):
    result = analyse(tiny)
    levels = list(result.levels)
    assert len(levels) >= 5  # enough points for an allocation to choose between
    assert all(0 < low < high < 1 for low, high in zip(levels, levels[1:]))
    assert [(r["layer"], r["level"]) for r in result.rows] == [(n, level) for n in "01" for level in levels]
