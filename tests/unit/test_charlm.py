"""The sample language model: its corpus split by play, its architecture, its shipped weights, the
live preview on it, and the papers' ordering of magnitude, Wanda and SparseGPT reproduced on it."""

from __future__ import annotations

import pytest
import torch

from pruning.core import data, masks, models
from pruning.runs import experiment, preview
from pruning.runs.config import RunConfig
from sample_models import text
from sample_models.registry import SAMPLE_MODELS

MODEL = "charlm-shakespeare"


def test_the_held_out_play_is_never_in_the_training_text():
    plays = text.plays()
    assert text.CORPUS.stat().st_size <= 2 * 2**20 and sum(map(len, plays)) <= 2 * 2**20
    assert plays[-1].startswith("Macbeth") and len(plays) == 15
    training = "\f".join(plays[:-1])
    for i in range(0, len(plays[-1]) - 200, 20_000):  # passages of the test play, none in training
        assert plays[-1][i : i + 200] not in training
    arrays = text.arrays()
    assert text.decode(arrays["x_test"][0]) == plays[-1][:128]
    assert torch.equal(torch.as_tensor(arrays["y_train"][0][:-1]), torch.as_tensor(arrays["x_train"][0][1:]))


def test_a_small_pre_norm_decoder_with_a_tied_output_layer():
    model = models.load(MODEL)
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= params <= 3_000_000
    assert not any("head" in key or "out" in key for key in model.state_dict())  # no output weight of its own
    layers = masks.prunable_layers(model)
    assert len(layers) == 16 and all(isinstance(m, torch.nn.Linear) for m in layers.values())
    ids = torch.as_tensor(text.arrays()["x_test"][:2])
    logits = model(ids)
    assert logits.shape == (2, 128, len(text.vocabulary()))
    with torch.no_grad():  # causal: changing the last character changes no earlier prediction
        changed = ids.clone()
        changed[:, -1] = (changed[:, -1] + 1) % len(text.vocabulary())
        torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])


def test_the_shipped_weights_predict_the_held_out_play():
    dataset = data.load(SAMPLE_MODELS[MODEL].dataset)
    assert dataset.task.name == "lm" and dataset.labels <= len(text.vocabulary())
    perplexity = dataset.evaluate(models.load(MODEL), dataset.test, limit=64).metric
    assert perplexity < 12  # uniform guessing over 66 characters: 66


def test_the_live_preview_reads_a_capped_test_split():
    result = preview.preview(RunConfig(MODEL, "magnitude", 0.5))
    assert result.metric == "perplexity"
    assert 0 < result.config["eval_samples"] < len(data.load("shakespeare").test)
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert result.pruned.metric > result.dense.metric


@pytest.mark.slow
def test_sparsegpt_and_wanda_beat_magnitude_at_50_and_70_percent_without_finetuning():
    """The ordering the SparseGPT and Wanda papers report for OPT and LLaMA, at the papers' uniform
    per-layer sparsity (scope=layer), on the first 256 sequences of the held-out play."""
    perplexity = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        configs = [
            RunConfig(MODEL, method, s, scope="layer", latency=False, eval_samples=256) for s in (0.5, 0.7)
        ]
        for config, result in zip(configs, experiment.run_group(configs)):
            assert result.sparsity == pytest.approx(config.sparsity, abs=0.001)
            perplexity[method, config.sparsity] = result.pruned.metric
    for sparsity in (0.5, 0.7):
        assert perplexity["sparsegpt", sparsity] < perplexity["magnitude", sparsity]
        assert perplexity["wanda", sparsity] < perplexity["magnitude", sparsity]
