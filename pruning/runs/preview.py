"""The live preview: a fast one-shot prune of a cached dense model, for the dashboard's sliders.

The expensive part of a run (loading the model and data, measuring the dense model,
computing importance scores) depends only on `experiment.group_key`, so it is done
once per key and kept; each slider position then only selects, applies, evaluates
and summarises a copy (`experiment.run_one` with no fine-tuning, latency or export).
The result has the same keys as a run's result; latency stays unmeasured. Unless the config
caps it, a preview evaluates as many test samples as one dense evaluation can read in
PREVIEW_SECONDS (all of them for the sample models); the cap is in the result's config.

Thread-safe: Streamlit serves each browser session in its own thread. A lock per
group key makes concurrent sessions share one preparation, and the cached dense
model is only ever read (run_one prunes a deep copy).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch

from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Loaded, Prepared, importance, load, prepare
from pruning.runs.result import RunResult

PREVIEW_SECONDS = 0.4  # what one preview's evaluation may take: the cap on its test samples follows
MIN_PREVIEW_SAMPLES = 64
MAX_PREPARED = 6  # dense models (+ data + scores) kept; the sample models are a few MB each
MAX_RESULTS = 256  # recent previews kept, so moving a slider back is instant

_lock = threading.Lock()
_key_locks: dict[Hashable, threading.Lock] = {}
_prepared: OrderedDict[Hashable, tuple[Prepared, dict[str, torch.Tensor] | None]] = OrderedDict()
_results: OrderedDict[Hashable, RunResult] = OrderedDict()


def _remember(cache: OrderedDict, key: Hashable, value: Any, limit: int) -> None:
    with _lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


def _recall(cache: OrderedDict, key: Hashable) -> Any | None:
    with _lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        return None


def prepared(config: RunConfig) -> tuple[Prepared, dict[str, torch.Tensor] | None]:
    """The prepared dense model and its importance scores for `config`'s group (cached).
    Raises UserError for a config that a run would refuse (unknown model, layer, option...)."""
    key = experiment.group_key(config)
    with _lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one preparation per key, however many sessions ask at once
        cached = _recall(_prepared, key)
        if cached is None:
            loaded = load(config)
            if config.eval_samples is None:
                loaded.config = config.replace(eval_samples=evaluation_cap(loaded))
            prep = prepare(loaded.config, loaded)
            cached = (prep, importance(prep))
            _remember(_prepared, key, cached, MAX_PREPARED)
    return cached


def evaluation_cap(loaded: Loaded) -> int | None:
    """How many test samples a preview evaluates: as many as fit in PREVIEW_SECONDS, timed on a
    small batch of the dense model (at least MIN_PREVIEW_SAMPLES); None: the whole test split."""
    test = loaded.data.test
    probe = min(len(test), MIN_PREVIEW_SAMPLES)
    start = time.perf_counter()
    loaded.data.evaluate(loaded.model, test, limit=probe)
    per_sample = (time.perf_counter() - start) / max(probe, 1)
    cap = max(MIN_PREVIEW_SAMPLES, int(PREVIEW_SECONDS / max(per_sample, 1e-9)))
    return None if cap >= len(test) else cap


def layers(config: RunConfig) -> dict[str, dict[str, Any]]:
    """Prunable layers of `config`'s model in model order: name -> {type, params}."""
    prep, _ = prepared(config)
    return {name: {"type": type(m).__name__, "params": m.weight.numel()} for name, m in prep.layers.items()}


def evaluated_samples(config: RunConfig) -> int:
    """How many test samples a preview of `config` evaluates (what an accuracy's interval is over)."""
    prep, _ = prepared(config)
    total, cap = len(prep.data.test), prep.config.eval_samples
    return total if cap is None else min(total, cap)


def _key(config: RunConfig) -> tuple:
    return (experiment.group_key(config), config.sparsity, config.scope, config.layer_sparsity)


def _oneshot(config: RunConfig) -> RunConfig:
    return config.replace(finetune_epochs=0, latency=False, export=None, schedule="oneshot", steps=1)


def preview(config: RunConfig) -> RunResult:
    """One-shot prune at `config`'s sparsity, scope and overrides: the run result without latency.
    The result is shared with later callers: read it, do not change it."""
    config = _oneshot(config)
    key = _key(config)
    cached = _recall(_results, key)
    if cached is not None:
        return cached
    prep, scores = prepared(config)
    result = experiment.run_one(prep, scores, config.replace(eval_samples=prep.config.eval_samples))
    _remember(_results, key, result, MAX_RESULTS)
    return result


def single_threaded() -> None:
    """Run torch on one intra-op thread in this (server) process. Streamlit serves each session in a
    thread of its own, the sample models are too small to gain from intra-op parallelism, and while
    workers fine-tune on the same few cores torch's spinning threads slow every forward pass down
    (on a busy 2-core machine a resnet-mnist1d preview took 0.7 s on one thread, 1.1-1.8 s on two)."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


_warming: list[threading.Thread] = []


def warm(configs: list[RunConfig]) -> threading.Thread:
    """Prepare `configs` (and preview each at its sparsity) in one background thread, in order, once
    per process: the dashboard's first visitor then finds the sample models loaded. A config that
    fails is skipped (its page shows the error when asked). Returns the thread."""
    with _lock:
        if _warming:
            return _warming[0]
        thread = threading.Thread(target=_warm, args=(list(configs),), daemon=True, name="preview-warm-up")
        _warming.append(thread)
    thread.start()
    return thread


def _warm(configs: list[RunConfig]) -> None:
    single_threaded()
    for config in configs:
        try:
            preview(config)
        except Exception:  # noqa: S112 (a warm-up has no one to tell; the page reports it when asked)
            continue


def clear() -> None:
    """Forget every cached model and preview (for tests, or after sample weights changed)."""
    with _lock:
        _prepared.clear()
        _results.clear()
        _key_locks.clear()
