"""Experiments end to end in this process: results, sweeps sharing importance, fine-tuning, user files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pruning.core import masks
from pruning.core.methods.unstructured import Magnitude
from pruning.errors import UserError
from pruning.runs import experiment, submit
from pruning.runs.config import RunConfig


def test_a_sweep_computes_importance_once(monkeypatch):
    calls = []
    original = Magnitude.importance

    def counted(self, model, layers, ctx, options):
        calls.append(list(layers))
        return original(self, model, layers, ctx, options)

    monkeypatch.setattr(Magnitude, "importance", counted)
    levels = [0.2, 0.5, 0.8, 0.95]
    configs = [RunConfig("mlp-digits", "magnitude", s, latency=False) for s in levels]
    assert len(experiment.groups(configs)) == 1
    results = list(experiment.run_group(configs))
    assert len(calls) == 1
    assert [r.target_sparsity for r in results] == levels
    assert [r.sparsity for r in results] == pytest.approx(levels, abs=1e-3)
    nonzero = [r.pruned.nonzero_params for r in results]
    assert nonzero == sorted(nonzero, reverse=True) and len(set(nonzero)) == len(levels)


def test_groups_split_by_what_changes_the_scores():
    base = RunConfig("mlp-digits", "taylor", 0.5)
    configs = [base, base.replace(sparsity=0.7), base.replace(seed=1), base.replace(method="magnitude")]
    assert [len(g) for g in experiment.groups(configs)] == [2, 1, 1]


def test_result_follows_the_json_contract_and_is_measured():
    config = RunConfig("mlp-digits", "magnitude", 0.6, scope="layer", layer_sparsity=(("fc3", 0.2),))
    result = experiment.run(config.replace(latency=False))
    assert (result.status, result.granularity, result.scope) == (
        "succeeded",
        "unstructured",
        "layer",
    )
    rows = {r["name"]: r for r in result.layers}
    assert list(rows) == ["fc1", "fc2", "fc3"]
    assert rows["fc1"]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert rows["fc3"]["sparsity"] == pytest.approx(0.2, abs=1e-3)
    dense, pruned = result.dense, result.pruned
    params = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert dense.params == pruned.params == dense.nonzero_params == params  # masked: all still there
    pruned_weights = round(0.6 * 19200) + round(0.6 * 30000) + round(0.2 * 1000)
    assert pruned.nonzero_params == dense.params - pruned_weights
    # FLOPs: each Linear is 2*in*out per sample; effective FLOPs scale by each layer's density
    assert dense.flops == 2 * (64 * 300 + 300 * 100 + 100 * 10)
    assert pruned.flops == pytest.approx(sum(r["flops"] for r in result.layers), abs=2)  # rounding
    assert rows["fc1"]["flops"] == round(2 * 64 * 300 * (1 - rows["fc1"]["sparsity"]))
    assert result.theoretical_speedup == pytest.approx(dense.flops / pruned.flops)
    assert 0.5 < pruned.accuracy <= 1.0 and pruned.accuracy == pruned.accuracy_before_finetune
    assert pruned.removed is False and result.latency_ms.dense is None


def test_ninety_percent_with_fine_tuning_stays_within_a_point_and_masks_stay_fixed(tmp_path):
    """The Show criterion: mlp-digits, magnitude, global, 90%, 10 fine-tune epochs, within 1.0 point."""
    config = RunConfig(
        "mlp-digits", "magnitude", 0.9, finetune_epochs=10, latency=False, export=str(tmp_path)
    )
    prep = experiment.prepare(config)
    scores = experiment.importance(prep)
    result = experiment.run_one(prep, scores, config)
    dense, pruned = result.dense.accuracy, result.pruned.accuracy
    assert dense == pytest.approx(0.9756, abs=1e-3)  # the shipped weights
    assert pruned >= dense - 0.01, (dense, pruned)
    assert result.pruned.accuracy_before_finetune < dense - 0.1 < pruned  # fine-tuning recovered it
    assert result.sparsity == pytest.approx(0.9, abs=1e-3)

    keep = masks.select(scores, 0.9, "global")  # the masks chosen before fine-tuning
    tuned = load_file(tmp_path / "model.safetensors")
    for name, mask in keep.items():
        weight, before = tuned[f"{name}.weight"], prep.model.state_dict()[f"{name}.weight"]
        assert (weight[~mask] == 0).all(), name  # pruned weights stayed exactly zero
        assert not torch.equal(weight[mask], before[mask]), name  # the kept ones were trained
    assert int(torch.count_nonzero(prep.model.fc1.weight)) == 19200  # the shared dense model is untouched


def test_user_model_with_npz_and_python_data(tmp_path):
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "import torch\nfrom torch import nn\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))\n"
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    np.savez(tmp_path / "toy.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    (tmp_path / "toy_data.py").write_text(
        "import numpy as np\n"
        f"def load():\n    d = np.load({str(tmp_path / 'toy.npz')!r})\n"
        "    return (d['x_train'], d['y_train']), (d['x_test'], d['y_test'])\n"
    )
    spec = f"{model_file}:make"
    for data in (str(tmp_path / "toy.npz"), f"{tmp_path / 'toy_data.py'}:load"):
        result = experiment.run(
            RunConfig(spec, "magnitude", 0.5, data=data, finetune_epochs=2, latency=False)
        )
        assert result.status == "succeeded" and result.sparsity == pytest.approx(0.5, abs=1e-3)
        assert [r["name"] for r in result.layers] == ["0", "2"]
        assert result.dense.params == 6 * 32 + 32 + 32 * 3 + 3
    with pytest.raises(UserError, match="has no default dataset: pass --data"):
        experiment.prepare(RunConfig(spec, "magnitude", 0.5))
    with pytest.raises(UserError, match="cannot run on dataset 'digits'"):
        experiment.prepare(RunConfig(spec, "magnitude", 0.5, data="digits"))


def test_submit_refuses_bad_input_before_any_work():
    for config, message in [
        (RunConfig("nosuch", "magnitude", 0.5), "unknown model 'nosuch'"),
        (RunConfig("mlp-digits", "nosuch", 0.5), "unknown method 'nosuch'"),
        (RunConfig("mlp-digits", "magnitude", 0.5, data="nosuch"), "unknown dataset 'nosuch'"),
        (RunConfig("mlp-digits", "magnitude", 0.5, layer_sparsity=(("fc9", 0.5),)), "unknown layer.*fc9"),
        (RunConfig("mlp-digits", "taylor", 0.5, options=(("batches", 0),)), "between 1 and 64"),
    ]:
        with pytest.raises(UserError, match=message):
            submit.validate([config])


def test_latency_is_measured_dense_and_pruned_in_the_same_run():
    prep = experiment.prepare(RunConfig("mlp-digits", "magnitude", 0.5, batch_size=16))
    result = experiment.run_one(prep, experiment.importance(prep), prep.config)
    latency = result.latency_ms
    assert latency.batch_size == 16 and latency.dense > 0 and latency.pruned > 0
    # the speedup is the median of interleaved rounds' ratios, inside its own 90% interval
    assert latency.rounds >= 5 and latency.low <= latency.speedup <= latency.high


def test_the_last_run_prunes_the_dense_model_itself_unless_latency_compares_the_two():
    config = RunConfig("mlp-digits", "magnitude", 0.7, latency=False)
    prep = experiment.prepare(config)
    scores = experiment.importance(prep)
    dense = {k: v.clone() for k, v in prep.model.state_dict().items()}
    copied = experiment.run_one(prep, scores, config)
    timed = experiment.run_one(prep, scores, config.replace(latency=True), last=True)
    assert timed.latency_ms.dense > 0 and timed.latency_ms.pruned > 0
    for key, value in prep.model.state_dict().items():  # both runs pruned a copy
        assert torch.equal(value, dense[key]), key
    keep = masks.select(scores, 0.7, "global")
    in_place = experiment.run_one(prep, scores, config, last=True)
    for name, layer in masks.prunable_layers(prep.model).items():  # the same masks, on the model itself
        assert torch.equal(layer.weight, dense[f"{name}.weight"] * keep[name]), name
    figures = lambda r: {k: v for k, v in r.to_dict().items() if k not in ("seconds", "run_id")}
    assert figures(in_place) == figures(copied)


TIED_MODEL = """
import torch
from torch import nn

class Tied(nn.Module):
    '''Two uses of one weight, as a GPT ties its embedding and output head.'''

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.b.weight = self.a.weight
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))

def make():
    torch.manual_seed(0)
    return Tied()
"""


def test_a_tied_weight_is_pruned_once_counted_once_and_exported_with_its_tie(tmp_path):
    (tmp_path / "tied.py").write_text(TIED_MODEL)
    spec = f"{tmp_path / 'tied.py'}:make"
    config = RunConfig(spec, "magnitude", 0.5, data="digits", latency=False, export=str(tmp_path / "out"))
    result = experiment.run(config)
    assert [r["name"] for r in result.layers] == ["a", "out"]  # one prunable tensor for a and b
    assert result.sparsity == pytest.approx(0.5, abs=1e-3)
    assert result.dense.params == 64 * 64 + 64 + 64 + 64 * 10 + 10  # the shared weight once
    rows = {r["name"]: r for r in result.layers}
    assert rows["a"]["dense_flops"] == 2 * (2 * 64 * 64)  # both uses multiply
    from safetensors.torch import load_file

    from pruning.core import models

    fresh = models.build(spec)
    fresh.load_state_dict(load_file(tmp_path / "out" / "model.safetensors"))  # strict, same keys
    assert fresh.b.weight is fresh.a.weight
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config)
    x = torch.randn(5, 64)
    torch.testing.assert_close(fresh(x), pruned.model(x), atol=3e-7, rtol=0)


ENCODER_MODEL = """
import torch
from torch import nn

class Encoder(nn.Module):
    '''An nn.TransformerEncoder classifier on MNIST-1D's 40 samples, as 10 tokens of 4.'''

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.reshape(x.shape[0], -1, 4))).mean(1))

def make():
    torch.manual_seed(0)
    return Encoder()
"""


@pytest.mark.parametrize("method", ["magnitude", "wanda", "taylor"])
def test_transformer_encoder_attention_weights_are_in_scope(tmp_path, method):
    (tmp_path / "encoder.py").write_text(ENCODER_MODEL)
    spec = f"{tmp_path / 'encoder.py'}:make"
    options = (("batches", 1),) if method != "magnitude" else ()
    config = RunConfig(
        spec, method, 0.5, data="mnist1d", scope="layer", options=options, finetune_epochs=1,
        latency=False, export=str(tmp_path / "out"),
    )  # fmt: skip
    result = experiment.run(config)
    rows = {r["name"]: r for r in result.layers}
    assert rows["encoder.layers.0.self_attn.in_proj"]["params"] == 3 * 32 * 32  # q, k and v
    for name, row in rows.items():
        assert row["sparsity"] == pytest.approx(0.5, abs=0.01), name  # held through fine-tuning
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    from safetensors.torch import load_file

    from pruning.core import models

    fresh = models.build(spec)
    fresh.load_state_dict(load_file(tmp_path / "out" / "model.safetensors"))
    weight = fresh.encoder.layers[1].self_attn.in_proj_weight
    assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_device_auto_runs_where_it_can_and_cuda_without_a_gpu_says_what_to_do():
    result = experiment.run(RunConfig("mlp-digits", "magnitude", 0.5, latency=False))  # device auto
    assert result.config["device"] == "auto" and result.sparsity == pytest.approx(0.5, abs=1e-3)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available here; use --device cpu"):
            submit.validate([RunConfig("mlp-digits", "magnitude", 0.5, device="cuda")])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_run_fine_tunes_measures_and_exports_like_a_cpu_run(tmp_path):
    config = RunConfig(
        "cnn-digits", "taylor", 0.5, finetune_epochs=1, device="cuda", export=str(tmp_path / "out")
    )
    result = experiment.run(config)
    assert result.sparsity == pytest.approx(0.5, abs=1e-3) and result.latency_ms.pruned > 0
    cpu = experiment.run(config.replace(device="cpu", export=None, latency=False))
    assert result.dense.accuracy == pytest.approx(cpu.dense.accuracy, abs=1e-6)
    from safetensors.torch import load_file

    assert all(t.device.type == "cpu" for t in load_file(tmp_path / "out" / "model.safetensors").values())


def test_eval_and_calibration_caps_read_what_they_say():
    capped = RunConfig("mlp-digits", "taylor", 0.5, latency=False, eval_samples=100, calib_samples=64)
    prep = experiment.prepare(capped)
    assert len(prep.calibration) == 64 and len(prep.ctx.calibration) == 64
    result = experiment.run(capped)
    first = prep.data.evaluate(prep.model, prep.data.test, limit=100)
    assert result.dense.metric == first.metric and result.config["eval_samples"] == 100
    full = experiment.prepare(capped.replace(calib_samples=None))
    assert not torch.equal(experiment.importance(prep)["fc1"], experiment.importance(full)["fc1"])
    with pytest.raises(UserError, match="eval-samples must be an integer >= 1"):
        RunConfig("mlp-digits", "taylor", 0.5, eval_samples=0)
