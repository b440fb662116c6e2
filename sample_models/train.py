"""Train the sample models deterministically and save their weights as safetensors.

    python -m sample_models.train [MODEL_ID ...]

Seeded, single-threaded for reproducibility; prints each model's test metric (accuracy, or perplexity for
the language model) and its training time.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from safetensors.torch import save_file

from pruning.core import data
from pruning.core.train import TrainConfig, fit
from sample_models.registry import SAMPLE_MODELS


def train(model_id: str) -> dict:
    spec = SAMPLE_MODELS[model_id]
    torch.manual_seed(0)
    model = spec.build()
    dataset = data.load(spec.dataset)
    start = time.perf_counter()
    fit(model, dataset.train, TrainConfig(**spec.recipe), seed=0, task=dataset.task)
    seconds = time.perf_counter() - start
    state = {
        k: (v.to(spec.stored_dtype) if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, spec.weights)
    model.load_state_dict(state)  # the metric of the weights as shipped
    metric = dataset.evaluate(model, dataset.test).metric
    return {"model": model_id, dataset.task.metric: round(metric, 4), "train_seconds": round(seconds, 1)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for model_id in sys.argv[1:] or list(SAMPLE_MODELS):
        print(json.dumps(train(model_id)), flush=True)
