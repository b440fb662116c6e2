"""The method registry, described-as-data options, and the random/magnitude/Taylor criteria."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from pruning.core import masks, methods
from pruning.core.data import Split
from pruning.core.methods import Method, Param
from pruning.errors import UserError


def calibration(seed: int = 0, n: int = 300) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 36, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_registry_ids_and_descriptions():
    assert {"random", "magnitude", "taylor"} <= set(methods.METHODS)
    for method_id, method in methods.METHODS.items():
        assert methods.get(method_id) is method
        described = json.loads(json.dumps(method.describe()))  # plain data for the UI and --json
        assert described["id"] == method_id
        assert described["granularity"] in ("unstructured", "structured", "n:m")
    (batches,) = methods.get("taylor").describe()["params"]
    assert methods.get("taylor").describe()["needs_data"] is True
    assert (batches["name"], batches["kind"], batches["default"], batches["min"], batches["max"]) == (
        "batches",
        "int",
        4,
        1,
        64,
    )
    assert methods.get("magnitude").describe()["needs_data"] is False


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown method 'nosuch': use one of .*magnitude"):
        methods.get("nosuch")


def test_options_are_parsed_and_validated():
    taylor = methods.get("taylor")
    assert taylor.options() == {"batches": 4}
    assert taylor.options({"batches": "7"}) == {"batches": 7}
    for bad, message in [
        ({"batches": "many"}, "option batches must be .*, got .many."),
        ({"batches": 0}, "between 1 and 64, got 0"),
        ({"batches": "65"}, "between 1 and 64, got 65"),
        ({"batch": 2}, r"method taylor has no option batch \(options: batches\)"),
    ]:
        with pytest.raises(UserError, match=message):
            taylor.options(bad)
    assert methods.get("magnitude").options() == {}
    with pytest.raises(UserError, match=r"no option batches \(options: none\)"):
        methods.get("magnitude").options({"batches": 2})


def test_param_kinds():
    choice = Param("norm", "choice", "l1", choices=("l1", "l2"))
    assert choice.parse("l2") == "l2"
    with pytest.raises(UserError, match="option norm must be one of l1, l2"):
        choice.parse("l3")
    flag = Param("fast", "bool", False)
    assert [flag.parse(v) for v in ("true", "1", "yes", "no", "0", True)] == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    ratio = Param("ratio", "float", 0.5, min=0.0, max=1.0)
    assert ratio.parse("0.25") == 0.25
    with pytest.raises(UserError, match="between 0.0 and 1.0"):
        ratio.parse("1.5")


def test_magnitude_scores_are_absolute_weights(make_net):
    model = make_net()
    layers = masks.prunable_layers(model)
    scores = methods.get("magnitude").importance(model, layers, methods.Context(None), {})
    for name, module in layers.items():
        assert torch.equal(scores[name], module.weight.detach().abs())


class WithNorm(nn.Module):
    """BatchNorm makes train and eval mode give different gradients."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc1, self.bn, self.fc2 = nn.Linear(36, 12), nn.BatchNorm1d(12), nn.Linear(12, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def test_taylor_equals_a_manual_sum_over_the_same_calibration_batches():
    model, ctx = WithNorm().train(), methods.Context(calibration(), seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = masks.prunable_layers(model)
    scores = methods.get("taylor").importance(model, layers, ctx, {"batches": 3})

    reference = WithNorm().eval()
    expected = {name: torch.zeros_like(m.weight) for name, m in masks.prunable_layers(reference).items()}
    for i, (x, y) in enumerate(ctx.calibration.loader(64, shuffle=True, seed=5)):
        if i == 3:
            break
        reference.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        for name, m in masks.prunable_layers(reference).items():
            expected[name] += (m.weight * m.weight.grad).abs().detach()
    assert list(scores) == ["fc1", "fc2"]
    for name in expected:
        torch.testing.assert_close(scores[name], expected[name])
    assert model.training  # its mode is restored
    for key, value in model.state_dict().items():  # and looking at gradients changed no weight or statistic
        assert torch.equal(value, before[key]), key


def test_taylor_depends_on_the_number_of_batches():
    model, ctx = WithNorm(), methods.Context(calibration(), seed=0)
    layers = masks.prunable_layers(model)
    one = methods.get("taylor").importance(model, layers, ctx, {"batches": 1})
    two = methods.get("taylor").importance(model, layers, ctx, {"batches": 2})
    assert (two["fc1"] >= one["fc1"]).all() and not torch.equal(one["fc1"], two["fc1"])


def test_taylor_without_data_says_what_to_pass():
    model = WithNorm()
    with pytest.raises(UserError, match="needs calibration data"):
        methods.get("taylor").importance(
            model, masks.prunable_layers(model), methods.Context(None), {"batches": 1}
        )


def test_random_is_seeded(make_net):
    model = make_net()
    layers = masks.prunable_layers(model)

    def keep(seed):
        scores = methods.get("random").importance(model, layers, methods.Context(None, seed=seed), {})
        return masks.select(scores, 0.5, "global")

    first, again, other = keep(1), keep(1), keep(2)
    assert all(torch.equal(first[n], again[n]) for n in layers)
    assert not all(torch.equal(first[n], other[n]) for n in layers)


class Tied(nn.Module):
    """An encoder and decoder sharing one weight (as in tied embeddings)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.encode, self.decode, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)
        self.decode.weight = self.encode.weight

    def forward(self, x):
        return self.head(self.decode(torch.relu(self.encode(x))))


@pytest.mark.parametrize("method_id", ["magnitude", "random", "taylor"])
def test_a_shared_weight_is_pruned_once(method_id):
    model = Tied()
    layers = masks.prunable_layers(model)
    assert list(layers) == ["encode", "head"]
    ctx = methods.Context(Split(torch.randn(64, 8), torch.randint(0, 4, (64,))))
    method = methods.get(method_id)
    keep = masks.select(method.importance(model, layers, ctx, method.options()), 0.5, "global")
    masks.apply(layers, keep)
    # 96 distinct weights, 48 pruned: the shared 64 are counted once, not twice
    assert int(torch.count_nonzero(model.encode.weight)) + int(torch.count_nonzero(model.head.weight)) == 48
    assert model.decode.weight is model.encode.weight


@dataclass(frozen=True)
class Block(Method):
    """A new granularity written outside the engine: keep or prune whole 1 x 4 blocks of inputs."""

    id: str = "block-test"
    label: str = "1x4 blocks (test)"
    granularity: str = "block"
    elementwise: bool = False

    def importance(self, model, layers, ctx, options):
        return {name: m.weight.detach().abs() for name, m in layers.items()}

    def select(self, scores, target, options):
        blocks = {n: s.reshape(s.shape[0], -1, 4).mean(-1) for n, s in scores.items()}
        keep = masks.select(blocks, target.sparsity, target.scope, target.overrides)
        return {n: k.repeat_interleave(4, -1).view_as(scores[n]) for n, k in keep.items()}


def test_a_new_granularity_needs_only_its_method(monkeypatch, store_dir):
    """The engine, the submit path and the results know a method only through its interface."""
    from pruning.runs import experiment, submit
    from pruning.runs.config import RunConfig
    from pruning.runs.store import Store

    monkeypatch.setitem(methods.METHODS, "block-test", Block())
    config = RunConfig("mlp-digits", "block-test", 0.5, latency=False)
    with Store(store_dir) as store:
        (run_id,) = submit.submit(store, [config])
        result = store.get(run_id).result
    assert (result["status"], result["granularity"]) == ("succeeded", "block")
    assert result["sparsity"] == pytest.approx(0.5, abs=0.01)
    prep = experiment.prepare(config)
    fc1 = experiment.prune(prep, experiment.importance(prep), config).model.fc1.weight
    assert fc1.shape[1] % 4 == 0
    groups = (fc1 != 0).reshape(fc1.shape[0], -1, 4).sum(-1)
    assert set(groups.unique().tolist()) <= {0, 4}  # whole blocks kept or pruned
    with pytest.raises(UserError, match="works with unstructured methods"):
        submit.validate([config.replace(schedule="iterative", steps=2)])


READ_ACTIVATIONS = sorted(
    m for m, method in methods.METHODS.items() if method.needs_data and not method.needs_gradients
)


def test_only_gradient_criteria_take_a_backward_pass():
    assert {m for m, method in methods.METHODS.items() if method.needs_gradients} == {
        "snip", "taylor", "taylor-channel"
    }  # fmt: skip
    assert {"wanda", "sparsegpt"} <= set(READ_ACTIVATIONS)


@pytest.mark.parametrize("method_id", READ_ACTIVATIONS)
def test_methods_that_read_activations_leave_the_dense_model_as_it_was(method_id):
    # They score the dense model itself (no copy: a copy of a 124M model is 0.5 GB more at peak),
    # so scoring and pruning must leave it exactly as loaded.
    from pruning.runs import experiment
    from pruning.runs.config import RunConfig
    from pruning.runs.prepared import importance, prepare

    method = methods.get(method_id)
    options = method.options({})
    config = RunConfig("mlp-digits", method_id, method.target_sparsity(options, 0.5))
    prep = prepare(config.replace(options=tuple(sorted(options.items()))))
    before = {k: v.clone() for k, v in prep.model.state_dict().items()}
    scores = importance(prep)
    experiment.run_one(prep, scores, prep.config)
    after = prep.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not prep.model.training
    assert all(p.grad is None for p in prep.model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in prep.model.modules())
