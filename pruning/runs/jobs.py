"""Executing runs: in this process, or in detached worker processes that report to the store.

A worker records status, progress and a heartbeat for each run; a cancel request
in the store stops it at the next progress report; a worker that dies is found
by `Store.reap` and its run marked failed. Runs that share a group key (see
experiment.groups) go to the same worker, so importance is computed once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pruning.errors import UserError
from pruning.runs import experiment
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

Executor = Literal["inline", "process"]
EXECUTORS = ("inline", "process")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 5.0


class Cancelled(Exception):
    """Raised inside a run when its cancellation was requested."""


def submit(store: Store, configs: list[RunConfig], sweep_id: str | None = None) -> list[str]:
    """Record configs as queued runs (after they were validated by experiment.prepare)."""
    return [store.create_run(c.to_dict(), sweep_id=sweep_id) for c in configs]


class _Heartbeat:
    """Keeps the current run's heartbeat fresh while long steps (training, timing) run."""

    def __init__(self, store: Store):
        self.store, self.run_id = store, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if self.run_id:
                self.store.heartbeat(self.run_id)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _reporter(store: Store, run_id: str, echo: Callable[[str, float, str], None] | None):
    def progress(fraction: float, message: str) -> None:
        store.set_progress(run_id, fraction, message)
        if echo:
            echo(run_id, fraction, message)
        if store.cancel_requested(run_id):
            raise Cancelled(run_id)

    return progress


def execute(
    store: Store, run_ids: list[str], echo=None, debug: bool = False, prepared: dict | None = None
) -> None:
    """Run the given queued runs here, group by group, recording everything in the store.

    `prepared` maps group keys to `Prepared` groups the caller already loaded (to validate them),
    so they are not loaded a second time."""
    records = [store.get(i) for i in run_ids]
    configs = {r.id: RunConfig.from_dict(r.config) for r in records}
    by_key: dict[tuple, list[str]] = {}
    for run_id, config in configs.items():
        by_key.setdefault(experiment.group_key(config), []).append(run_id)
    with _Heartbeat(store) as beat:
        for ids in by_key.values():
            group = [configs[i] for i in ids]
            prep = (prepared or {}).get(experiment.group_key(group[0]))
            _execute_group(store, ids, group, beat, echo, debug, prep)


def _execute_group(store, ids, configs, beat, echo, debug, prep=None) -> None:
    pending = [i for i in ids if store.get(i).status == "queued"]
    if not pending:
        return
    try:
        prep = prep or experiment.prepare(configs[0])
        scores = experiment.importance(prep)
    except Exception as exc:
        for run_id in pending:
            store.finish(run_id, "failed", error=_message(exc, debug))
        return
    for run_id, config in zip(ids, configs):
        if run_id not in pending or store.get(run_id).status != "queued":
            continue  # cancelled while waiting
        if not store.mark_running(run_id, os.getpid()):
            continue  # cancelled between the check and now
        beat.run_id = run_id
        try:
            result = experiment.run_one(prep, scores, config, _reporter(store, run_id, echo))
            result["run_id"] = run_id
            if "export" in result:  # run.json was written before the run had its id
                Path(result["export"]["result"]).write_text(json.dumps(result, indent=2))
            store.finish(run_id, "succeeded", result=result)
        except Cancelled:
            store.finish(run_id, "cancelled", error="cancelled by the user")
        except Exception as exc:
            store.finish(run_id, "failed", error=_message(exc, debug))
        beat.run_id = None


def _message(exc: Exception, debug: bool) -> str:
    if isinstance(exc, UserError) and not debug:
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def spawn(store: Store, run_ids: list[str], workers: int = 1) -> list[subprocess.Popen]:
    """Start detached worker processes (they outlive this process, e.g. a Streamlit rerun)."""
    configs = {i: RunConfig.from_dict(store.get(i).config) for i in run_ids}
    by_key: dict[tuple, list[str]] = {}
    for run_id, config in configs.items():
        by_key.setdefault(experiment.group_key(config), []).append(run_id)
    shares: list[list[str]] = [[] for _ in range(max(1, min(workers, len(by_key))))]
    for n, ids in enumerate(by_key.values()):
        shares[n % len(shares)].extend(ids)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    procs = []
    for share in shares:
        log = open(store.artifacts(share[0]) / "worker.log", "ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pruning.runs.worker", "--store", str(store.root), *share],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=PROJECT_ROOT,
                start_new_session=True,
            )
        )
        log.close()
    return procs
