"""Launching runs and sweeps in the background from a UI: validate, record, spawn detached workers.

Nothing is recorded unless every group of configs passes the same validation a run
does (`experiment.prepare`, through the preview's cache, so a launch right after a
preview costs nothing). Each run exports its pruned model into its own artifacts
folder, which is what the dashboard offers for download. Workers are detached
processes (`jobs.spawn`): a Streamlit rerun, a closed tab or a server restart does
not stop them, and their state lives in the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pruning.core import methods
from pruning.errors import UserError
from pruning.runs import experiment, jobs, preview, sensitivity
from pruning.runs.config import RunConfig
from pruning.runs.store import RunRecord, Store, new_run_id


def nm_sparsity(options: Mapping[str, Any]) -> float:
    """The sparsity an N:M pattern implies (1 - n/m)."""
    return 1.0 - options["n"] / options["m"]


def target(method: methods.Method, options: Mapping[str, Any], sparsity: float) -> float:
    """The sparsity to record for `method`: N:M patterns fix it, every other method takes `sparsity`."""
    if method.granularity == "n:m" and {"n", "m"} <= set(options):
        return nm_sparsity(options)
    return sparsity


def sweep_configs(
    base: RunConfig,
    method_ids: Iterable[str],
    levels: Iterable[float],
    options_of: Callable[[str], Mapping[str, Any]] | None = None,
) -> list[RunConfig]:
    """`base` at every (method, level); a method's options come from `options_of(id)` (default: its
    defaults). An N:M method contributes one run, at the sparsity its pattern fixes."""
    configs = []
    levels = list(levels)
    for method_id in method_ids:
        method = methods.get(method_id)
        options = method.options(options_of(method_id) if options_of else None)
        wanted = dict.fromkeys(target(method, options, level) for level in levels)
        for level in wanted:
            configs.append(
                base.replace(method=method_id, sparsity=level, options=tuple(sorted(options.items())))
            )
    return configs


def validate(configs: list[RunConfig]) -> None:
    """Raise UserError for anything a run would refuse, before anything is recorded."""
    if not configs:
        raise UserError("nothing to launch: choose at least one method and one sparsity level")
    for group in experiment.groups(configs):
        prep, _ = preview.prepared(group[0])
        for config in group:
            unknown = sorted(set(config.overrides) - set(prep.layers))
            if unknown:
                raise UserError(
                    f"unknown layer(s) in per-layer sparsity: {', '.join(unknown)}; "
                    f"prunable layers are {', '.join(prep.layers)}"
                )
            experiment.check(prep, config)


def launch(store: Store, configs: list[RunConfig], workers: int = 1) -> list[str]:
    """Validate, record each config as a queued run exporting into its artifacts folder, and start
    detached workers; returns the run ids."""
    validate(configs)
    sweep_id = f"sweep-{time.time_ns()}" if len(configs) > 1 else None
    ids = []
    for config in configs:
        run_id = new_run_id()
        config = config.replace(export=str(store.artifacts(run_id).resolve()))
        ids.append(store.create_run(config.to_dict(), sweep_id=sweep_id, run_id=run_id))
    jobs.spawn(store, ids, workers=workers)
    return ids


def exported_model(record: RunRecord) -> Path | None:
    """The run's exported `model.safetensors`, if it exported one that still exists."""
    weights = ((record.result or {}).get("export") or {}).get("weights")
    return Path(weights) if weights and Path(weights).is_file() else None


def sensitivity_config(model: str, method_id: str) -> RunConfig:
    """What `python -m pruning sensitivity --model M --method ID` analyses: default options, seed 0."""
    options = methods.get(method_id).options()
    return RunConfig(model, method_id, 0.0, options=tuple(sorted(options.items())), latency=False)


def cached_sensitivity(store: Store, model: str, method_id: str) -> sensitivity.Sensitivity | None:
    """The default-levels sensitivity table of (model, method) if one was computed into `store`."""
    config = sensitivity_config(model, method_id)
    levels = sensitivity.parse_levels(sensitivity.DEFAULT_LEVELS)
    found = store.cache_get(sensitivity.cache_key(config, dict(config.options), levels))
    return sensitivity.Sensitivity.from_dict(found) if found is not None else None


def analyse_in_background(store: Store, model: str, method_id: str) -> subprocess.Popen:
    """Run `python -m pruning sensitivity` in a detached process that fills the store's cache."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(jobs.PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "pruning", "sensitivity", "--model", model, "--method", method_id]
    with open(store.root / "sensitivity.log", "ab") as log:
        return subprocess.Popen(
            [*command, "--store", str(store.root), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=jobs.PROJECT_ROOT,
            start_new_session=True,
        )
