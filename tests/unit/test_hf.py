"""Hugging Face models from local directories (`hf:PATH`): GPT-2, BERT and ViT built from small
configs with random weights, pruned, measured with their task's metric, exported and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pruning.core import masks, models
from pruning.errors import UserError
from pruning.runs import experiment
from pruning.runs.config import RunConfig

transformers = pytest.importorskip("transformers")


def save(model, folder) -> str:
    model.save_pretrained(folder)
    return f"hf:{folder}"


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> tuple[str, str]:
    """A 2-layer GPT-2 (tied embedding and head, Conv1D layers) and next-token data."""
    root = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    spec = save(transformers.GPT2LMHeadModel(config), root / "model")
    ids = np.random.default_rng(0).integers(0, 64, size=(48, 17))
    data = root / "tokens.npz"
    np.savez(data, x_train=ids[:32, :-1], y_train=ids[:32, 1:], x_test=ids[32:, :-1], y_test=ids[32:, 1:])
    return spec, str(data)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[str, str]:
    """A 2-layer BERT sequence classifier (3 labels) and token-id sentences with labels."""
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    spec = save(transformers.BertForSequenceClassification(config), root / "model")
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, 50, size=(40, 12)), rng.integers(0, 3, size=40)
    data = root / "text.npz"
    np.savez(data, x_train=ids[:30], y_train=labels[:30], x_test=ids[30:], y_test=labels[30:])
    return spec, str(data)


def test_gpt2_prunes_every_weight_matrix_once_and_reports_perplexity(gpt2, tmp_path):
    spec, data = gpt2
    model = models.load(spec)
    layers = masks.prunable_layers(model)
    kinds = {type(m).__name__ for m in layers.values()}
    assert kinds == {"Conv1D", "Linear"}  # attention and MLP (Conv1D) and the tied head
    assert sum("c_attn" in n for n in layers) == 2 and "lm_head" in layers
    config = RunConfig(spec, "magnitude", 0.5, data=data, latency=False, export=str(tmp_path / "out"))
    d = experiment.run(config).to_dict()
    assert (d["task"], d["metric"], d["higher_is_better"]) == ("lm", "perplexity", False)
    assert d["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert d["pruned"]["metric"] > 1.0 and d["dense"]["metric"] > 1.0 and d["pruned"]["accuracy"] is not None
    assert set(json.loads((tmp_path / "out" / "config.json").read_text())["architectures"]) == {
        "GPT2LMHeadModel"
    }
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model.eval()
    ids = prep.data.test.x[:4]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, atol=3e-7, rtol=0)


@pytest.mark.parametrize("method", ["wanda", "nm"])
def test_gpt2_conv1d_layers_are_read_with_their_inputs_first(gpt2, method):
    spec, data = gpt2
    config = RunConfig(
        spec,
        method,
        0.5,
        data=data,
        scope="layer",
        latency=False,
        options=(("batches", 1),) * (method == "wanda"),
    )
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model
    c_fc = pruned.transformer.h[0].mlp.c_fc.weight  # Conv1D: (inputs 32, outputs 128)
    if method == "nm":  # 2 of every 4 consecutive inputs of each output: groups run down dim 0
        kept = (c_fc != 0).T.reshape(128, -1, 4).sum(-1)
        assert (kept == 2).all()
    else:
        assert (c_fc == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_bert_and_vit_classifiers(bert, tmp_path):
    spec, text = bert
    rng = np.random.default_rng(0)
    result = experiment.run(RunConfig(spec, "magnitude", 0.4, data=text, latency=False))
    assert (result.task, result.metric) == ("classification", "accuracy")
    assert result.sparsity == pytest.approx(0.4, abs=1e-3)
    vit = transformers.ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=4, intermediate_size=64, num_labels=2,
    )  # fmt: skip
    spec = save(transformers.ViTForImageClassification(vit), tmp_path / "vit")
    x, y = rng.normal(size=(20, 3, 16, 16)).astype(np.float32), rng.integers(0, 2, size=20)
    np.savez(tmp_path / "images.npz", x_train=x[:14], y_train=y[:14], x_test=x[14:], y_test=y[14:])
    result = experiment.run(
        RunConfig(spec, "magnitude", 0.5, data=str(tmp_path / "images.npz"), latency=False)
    )
    assert result.task == "classification" and result.sparsity == pytest.approx(0.5, abs=1e-3)


def test_a_directory_that_asks_for_remote_code_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["EvilModelForCausalLM"], "auto_map": {}})
    )
    with pytest.raises(UserError, match="does not provide; models that need their own code"):
        models.load(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="is not a Hugging Face model directory"):
        models.load(f"hf:{tmp_path / 'missing'}")


def test_a_config_transformers_refuses_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"], "n_layer": "abc"})
    )
    with pytest.raises(UserError, match=r"could not be loaded: \w+.*n_layer"):
        models.load(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["PreTrainedModel"]}))
    with pytest.raises(UserError, match="does not provide"):
        models.load(f"hf:{tmp_path}")


def test_structured_removal_of_hf_models_is_refused_in_one_line_naming_where(gpt2, bert):
    """Torch-Pruning traces Hugging Face outputs from their logits; where it cannot prune a model
    consistently the run says where, never with a traceback."""
    spec, data = gpt2
    bert_spec, text = bert
    # Today neither is removed: say exactly where, in one line (the GPT-2 trace fails inside
    # Torch-Pruning; BERT's attention keeps a fixed head size while its projections shrink).
    with pytest.raises(UserError, match=r"^Torch-Pruning cannot trace this model \(TypeError"):
        experiment.run(RunConfig(spec, "l1-channel", 0.3, data=data, latency=False))
    with pytest.raises(UserError, match=r"the pruned model fails in bert\.encoder\.layer\.\d+\.attention"):
        experiment.run(RunConfig(bert_spec, "l1-channel", 0.3, data=text, latency=False))
