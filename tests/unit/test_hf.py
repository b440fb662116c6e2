"""Hugging Face models from local directories (`hf:PATH`): GPT-2, BERT and ViT built from small
configs with random weights, pruned, measured with their task's metric, exported and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pruning.core import masks, methods, models, structured
from pruning.core.tasks import logits
from pruning.errors import UserError
from pruning.runs import experiment, submit
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


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> tuple[str, str]:
    """A 2-layer ViT classifier (q/k/v projections, 4 heads) and random 16x16 images."""
    root = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=2,
    )  # fmt: skip
    spec = save(transformers.ViTForImageClassification(config), root / "model")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 3, 16, 16)).astype(np.float32), rng.integers(0, 2, size=24)
    np.savez(root / "images.npz", x_train=x[:16], y_train=y[:16], x_test=x[16:], y_test=y[16:])
    return spec, str(root / "images.npz")


@pytest.mark.parametrize("family", ["gpt2", "bert", "vit"])
@pytest.mark.parametrize("method", ["magnitude", "nm", "l1-channel"])
def test_every_weight_matrix_counts_once_and_the_export_reloads_with_the_same_logits(
    family, method, request, tmp_path
):
    spec, data = request.getfixturevalue(family)
    config = RunConfig(spec, method, 0.4, data=data, latency=False, export=str(tmp_path))
    result = experiment.run(config)
    dense = models.load(spec)
    layers = masks.prunable_layers(dense)
    assert sorted(r["name"] for r in result.layers) == sorted(layers)  # each matrix once, tied ones too
    if method != "nm":
        assert result.sparsity == pytest.approx(0.4, abs=structured.TOLERANCE)
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model.eval()
    if result.removed:  # layers kept their own sizes: the torch.export program is the model
        reloaded = torch.export.load(tmp_path / "model.pt2").module()
    else:  # the same architecture: a Hugging Face directory that from_pretrained loads
        reloaded = type(dense).from_pretrained(tmp_path).eval()
    x = prep.data.test.x[:4]
    with torch.no_grad():
        torch.testing.assert_close(logits(reloaded(x)), pruned(x).logits, atol=3e-6, rtol=0)


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


def _heads_kept(dense: torch.nn.Linear, pruned: torch.nn.Linear, size: int) -> list[int]:
    """Which of the dense projection's heads each block of `size` pruned output rows came from."""
    heads = []
    for block in pruned.weight.detach().split(size):
        rows = [int((dense.weight == row).all(1).nonzero()[0]) for row in block[:, : dense.in_features]]
        assert rows == list(range(rows[0], rows[0] + size))  # a head's rows, whole and in order
        heads.append(rows[0] // size)
    return heads


def test_bert_loses_whole_heads_in_query_key_and_value_alike(bert):
    spec, _ = bert
    dense = models.load(spec).eval()
    example = torch.randint(0, 50, (2, 12))
    criterion = methods.get("l1-channel").criterion(dense, None, {})
    pruned = structured.prune(dense, example, criterion, 0.3)
    assert pruned.sparsity == pytest.approx(0.3, abs=structured.TOLERANCE)
    for i in range(2):
        name = f"bert.encoder.layer.{i}.attention.self"
        before, after = dense.get_submodule(name), pruned.model.get_submodule(name)
        assert after.num_attention_heads == pruned.heads[name] < 4
        assert after.all_head_size == after.query.out_features == 8 * after.num_attention_heads
        kept = [_heads_kept(getattr(before, p), getattr(after, p), 8) for p in ("query", "key", "value")]
        assert kept[0] == kept[1] == kept[2]
    # the hidden size (the embeddings' width) is kept; MLP channels go
    assert pruned.model.bert.embeddings.word_embeddings.embedding_dim == 32
    assert any(
        pruned.model.get_submodule(f"bert.encoder.layer.{i}.intermediate.dense").out_features < 64
        for i in range(2)
    )
    with torch.no_grad():
        assert pruned.model(example).logits.shape == (2, 3)


def test_gpt2_loses_mlp_channels_keeps_its_split_attention_and_exports_a_program(gpt2, tmp_path):
    spec, data = gpt2
    config = RunConfig(spec, "l1-channel", 0.3, data=data, latency=False, export=str(tmp_path / "out"))
    result = experiment.run(config)
    d = result.to_dict()
    assert d["pruned"]["removed"] and d["sparsity"] == pytest.approx(0.3, abs=structured.TOLERANCE)
    assert d["pruned"]["params"] < d["dense"]["params"] and d["pruned"]["metric"] > 1.0
    skipped = {row["name"]: row for row in d["skipped_layers"]}
    assert "split by position" in skipped["transformer.h.0.attn.c_attn"]["reason"]
    assert "hidden size" in skipped["transformer.h.0.mlp.c_proj"]["reason"]
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model.eval()
    c_fc = [pruned.get_submodule(f"transformer.h.{i}.mlp.c_fc") for i in range(2)]
    assert all(type(m).__name__ == "Conv1D" for m in c_fc)  # the source's layer type, put back
    assert sum(m.weight.shape[1] for m in c_fc) < 2 * 128
    assert pruned.lm_head.weight is pruned.transformer.wte.weight  # the tie survives
    assert pruned.config.use_cache  # switched off only while Torch-Pruning traced
    ids = prep.data.test.x[:4]
    reloaded = torch.export.load(tmp_path / "out" / "model.pt2").module()
    with torch.no_grad():
        torch.testing.assert_close(logits(reloaded(ids)), pruned(ids).logits, atol=3e-6, rtol=0)


def test_vit_loses_whole_heads(tmp_path):
    vit = transformers.ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    dense = models.load(save(transformers.ViTForImageClassification(vit), tmp_path / "vit")).eval()
    example = torch.randn(2, 3, 16, 16)
    criterion = methods.get("l1-channel").criterion(dense, None, {})
    pruned = structured.prune(dense, example, criterion, 0.4)
    assert pruned.sparsity == pytest.approx(0.4, abs=structured.TOLERANCE)
    assert pruned.heads and all(h < 4 for h in pruned.heads.values())
    for name, heads in pruned.heads.items():
        module = pruned.model.get_submodule(name)
        assert module.num_attention_heads == heads and module.q_proj.out_features == heads * module.head_dim
    with torch.no_grad():
        assert pruned.model(example).logits.shape == (2, 2)


SMALL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=64,
    max_position_embeddings=64,
)  # fmt: skip
OTHERS = {  # architecture -> (model class, config, what its attention is expected to do)
    "distilbert": ("DistilBertForSequenceClassification", dict(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64), "heads"),
    "roberta": ("RobertaForSequenceClassification", dict(SMALL, pad_token_id=1), "heads"),
    "llama": ("LlamaForCausalLM", dict(SMALL, num_key_value_heads=4), "heads"),
    "opt": ("OPTForCausalLM", dict(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
        max_position_embeddings=64, word_embed_proj_dim=32), "heads"),
    "llama-gqa": ("LlamaForCausalLM", dict(SMALL, num_key_value_heads=2), "grouped-query attention"),
    "gpt-neox": ("GPTNeoXForCausalLM", SMALL, "could not remove its channels consistently"),
}  # fmt: skip


@pytest.mark.parametrize("family", list(OTHERS))
def test_other_transformers_lose_whole_heads_or_keep_them_with_a_reason(family):
    cls, options, expected = OTHERS[family]
    cls = getattr(transformers, cls)
    torch.manual_seed(0)
    dense = cls(cls.config_class(**options)).eval()
    example = torch.randint(2, 60, (2, 12))
    criterion = methods.get("l1-channel").criterion(dense, None, {})
    pruned = structured.prune(dense, example, criterion, 0.3)
    assert pruned.sparsity == pytest.approx(0.3, abs=structured.TOLERANCE)
    with torch.no_grad():
        assert logits(pruned.model(example)).shape == logits(dense(example)).shape
    if expected == "heads":  # whole heads, the same ones in query, key and value
        assert pruned.heads and min(pruned.heads.values()) < 4
        name, heads = next(iter(pruned.heads.items()))
        before, after = dense.get_submodule(name), pruned.model.get_submodule(name)
        parts = next(p for p in structured.attention.SEPARATE if hasattr(before, p[0]))
        kept = [_heads_kept(getattr(before, p), getattr(after, p), 8) for p in parts]
        assert kept[0] == kept[1] == kept[2] and len(kept[0]) == heads
    else:  # the attention keeps its heads, the run says why, and the MLP channels go
        assert not pruned.heads
        assert any(expected in row["reason"] for row in pruned.skipped)
        assert sum(p.numel() for p in pruned.model.parameters()) < sum(p.numel() for p in dense.parameters())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "nm"])
def test_embeddings_are_pruned_only_when_asked_and_the_tie_holds(gpt2, method, tmp_path):
    spec, data = gpt2
    options = (("batches", 1),) * (method == "wanda")
    plain = experiment.run(RunConfig(spec, method, 0.5, data=data, latency=False, options=options))
    assert "transformer.wpe" not in {r["name"] for r in plain.layers}  # not by default
    config = RunConfig(
        spec, method, 0.5, data=data, latency=False, options=options, embeddings=True, export=str(tmp_path)
    )
    result = experiment.run(config)
    names = [r["name"] for r in result.layers]
    # the tied embedding and output layer are one tensor, listed once, under the embedding
    assert "transformer.wte" in names and "transformer.wpe" in names and "lm_head" not in names
    if method != "nm":
        assert result.sparsity == pytest.approx(0.5, abs=0.01)
    rows = {r["name"]: r for r in result.layers}
    assert rows["transformer.wpe"]["sparsity"] > 0.3
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model.eval()
    assert pruned.lm_head.weight is pruned.transformer.wte.weight
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    x = prep.data.test.x[:4]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, pruned(x).logits, atol=3e-6, rtol=0)


def test_structured_methods_refuse_embeddings_in_one_line(gpt2):
    spec, data = gpt2
    with pytest.raises(
        UserError, match=r"^structured removal keeps an embedding's width .*drop --embeddings"
    ):
        submit.validate([RunConfig(spec, "l1-channel", 0.3, data=data, latency=False, embeddings=True)])
