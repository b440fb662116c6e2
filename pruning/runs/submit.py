"""One way to start jobs, whoever asks (the command line, the dashboard, a script).

`submit` validates every config once, before anything is stored (loading each group's
model and data the way a run does), records the jobs with their ids (so a run can
export into its own artifacts folder and write every file once), and hands them to an
executor: `inline` runs them here and returns when they are done, `process` starts
detached workers and returns at once (see `wait`), `ray` makes each run a Ray task (see `cluster`),
coordinated here or, `detach`ed, by a process of its own. Sensitivity analyses are jobs too.

The jobs are recorded in one transaction (all or none), owned by this process until a worker
adopts them, so a submitter or worker that dies leaves nothing waiting for ever (`Store.reap`).
A wall-clock limit per job comes from `time_limit` or `$PRUNING_LAB_TIME_LIMIT` (seconds).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pruning.core import methods
from pruning.errors import UserError
from pruning.runs import cluster, executors, experiment, export, sensitivity
from pruning.runs.config import RunConfig
from pruning.runs.executors import Echo, Executor
from pruning.runs.prepared import Loaded, load
from pruning.runs.store import RunRecord, Store, new_run_id


def sweep_configs(
    base: RunConfig,
    method_ids: Iterable[str],
    levels: Iterable[float],
    options_of: Callable[[str], Mapping[str, Any]] | None = None,
) -> list[RunConfig]:
    """`base` at every (method, level); a method's options come from `options_of(id)` (default: its
    defaults). A method whose pattern fixes the sparsity (N:M) contributes one run."""
    configs = []
    levels = list(levels)
    for method_id in method_ids:
        method = methods.get(method_id)
        options = method.options(options_of(method_id) if options_of else None)
        for level in dict.fromkeys(method.target_sparsity(options, level) for level in levels):
            configs.append(
                base.replace(method=method_id, sparsity=level, options=tuple(sorted(options.items())))
            )
    return configs


TIME_LIMIT_ENV = "PRUNING_LAB_TIME_LIMIT"


def time_limit(seconds: float | None = None) -> float | None:
    """The wall-clock limit of each job: `seconds`, else `$PRUNING_LAB_TIME_LIMIT`, else none."""
    if seconds is None:
        text = os.environ.get(TIME_LIMIT_ENV, "").strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"the time limit must be a positive number of seconds, got {seconds}")
    return float(seconds)


def validate(configs: Sequence[RunConfig], overwrite: bool = False) -> dict[tuple, Loaded]:
    """Raise UserError for anything a run would refuse (the export folders first: that check is
    cheap); returns what was loaded, per group key. `overwrite`: exports may replace files."""
    if not configs:
        raise UserError("nothing to launch: choose at least one method and one sparsity level")
    for folder in dict.fromkeys(c.export for c in configs if c.export):
        export.check_destination(folder, overwrite)
    loaded = {}
    for group in experiment.groups(configs):
        first = load(group[0])
        for config in group:
            experiment.check(first, config)
        loaded[experiment.group_key(group[0])] = first
    return loaded


def _opened(store: Store | str | Path) -> Store:
    """The store, opened (created) only once everything was validated: bad input leaves no trace."""
    return store if isinstance(store, Store) else Store(store)


def submit(
    store: Store | str | Path,
    configs: Sequence[RunConfig],
    executor: Executor = "inline",
    workers: int = 1,
    artifacts: bool = False,
    echo: Echo | None = None,
    debug: bool = False,
    overwrite: bool = False,
    limit: float | None = None,
    ray: cluster.Settings | None = None,
    detach: bool = False,
    sweep_id: str | None = None,
) -> list[str]:
    """Validate, record each config as a queued run and execute or hand them over; returns the ids.
    `store` may be a path: it is opened (created) only after every config passed validation.
    `artifacts`: each run exports its pruned model into its own artifacts folder (the dashboard's
    downloads). `overwrite`: an export may replace the files of a folder that is not empty.
    `limit`: seconds each run may take (default: `time_limit()`). `ray`: where and how the `ray`
    executor runs them; `detach`: its coordinator is a process of its own (the dashboard's way).
    `sweep_id`: the group the jobs are recorded in (default: a new one when there are several), so the
    jobs sidebar shows them as one job with one progress bar and one cancel."""
    if executor not in executors.EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(executors.EXECUTORS)}, got '{executor}'")
    ray = ray or cluster.Settings()
    if executor == "ray":
        ray.check()
    limit = time_limit(limit)
    loaded = validate(configs, overwrite)
    if executor == "ray":  # a cluster that cannot be reached is refused before anything is stored
        cluster.probe(ray) if detach else cluster.connect(ray)
    store = _opened(store)
    ids = [new_run_id() for _ in configs]
    if artifacts:
        configs = [c.replace(export=str(store.artifacts(i).resolve())) for i, c in zip(ids, configs)]
    sweep_id = sweep_id or (new_sweep_id() if len(configs) > 1 else None)
    store.create_runs([(i, c.to_dict()) for i, c in zip(ids, configs)], sweep_id, time_limit=limit)
    jobs = dict(zip(ids, configs))
    if executor == "ray":
        cluster.spawn(store, jobs, ray) if detach else cluster.execute(store, ids, ray, echo, debug)
    else:
        _hand_over(store, jobs, executor, workers, echo, debug, loaded)
    return ids


def new_sweep_id(prefix: str = "sweep") -> str:
    """An id for jobs submitted together (a sweep, the demo history)."""
    return f"{prefix}-{time.time_ns()}"


def _hand_over(store, jobs: dict[str, RunConfig], executor, workers, echo, debug, loaded=None) -> None:
    if executor == "inline":
        executors.execute(store, list(jobs), echo=echo, debug=debug, loaded=loaded)
    else:
        executors.spawn(store, jobs, workers=workers)


def wait(store: Store, ids: Sequence[str], echo: Echo | None = None, poll: float = 0.5) -> list[RunRecord]:
    """Wait until every job is done (finding dead workers on the way); returns their records."""
    while True:
        store.reap()
        records = [store.get(i) for i in ids]
        for r in records:
            if echo:
                echo(r.id, 1.0 if r.done else r.progress, r.status if r.done else r.message)
        if all(r.done for r in records):
            return records
        time.sleep(poll)


def analysis_config(model: str, method_id: str, **fields: Any) -> RunConfig:
    """What a sensitivity analysis of (model, method) reads; default options and seed 0 unless given."""
    options = methods.get(method_id).options(dict(fields.pop("options", ())))
    return RunConfig(model, method_id, 0.0, options=tuple(sorted(options.items())), latency=False, **fields)


def cached_sensitivity(
    store: Store, config: RunConfig, levels: Sequence[float] = sensitivity.DEFAULT_LEVELS
) -> sensitivity.Sensitivity | None:
    """The sensitivity table of `config` at `levels` if one was computed into `store`."""
    options = methods.get(config.method).options(dict(config.options))
    found = store.cache_get(sensitivity.cache_key(config, options, sensitivity.parse_levels(levels)))
    return sensitivity.Sensitivity.from_dict({**found, "cached": True}) if found is not None else None


def submit_analysis(
    store: Store | str | Path,
    config: RunConfig,
    levels: Sequence[float] = sensitivity.DEFAULT_LEVELS,
    executor: Executor = "process",
    echo: Echo | None = None,
    sweep_id: str | None = None,
) -> str:
    """Validate, record and hand over a sensitivity analysis as a job; returns its id. `sweep_id`:
    the group of jobs it belongs to (the demo history's), if any."""
    levels = sensitivity.parse_levels(levels)
    sensitivity.check(load(config))
    store = _opened(store)
    job_id = store.create_run(
        {**config.to_dict(), "levels": list(levels)},
        sweep_id,
        kind="sensitivity",
        time_limit=time_limit(),
    )
    _hand_over(store, {job_id: config}, executor, 1, echo, False)
    return job_id


def latest_analysis(store: Store, config: RunConfig) -> RunRecord | None:
    """The newest sensitivity job of exactly what `config` analyses (model, weights, data, method,
    options, seed, ...: its group key), whatever its status."""
    key = experiment.group_key(config)
    for record in store.runs(model=config.model, kind="sensitivity"):
        if experiment.group_key(RunConfig.from_dict(record.config)) == key:
            return record
    return None
