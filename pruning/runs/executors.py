"""Where jobs execute: here (`inline`), or in detached worker processes (`process`).

A job is a row of the store: a pruning run, or a sensitivity analysis. Whoever executes
it records status, progress and a heartbeat; a cancel request in the store stops it at
its next progress report; a worker that dies is found by `Store.reap` and its job
marked failed. Runs that share a group key (see experiment.groups) go to the same
worker, so the dense model is measured and importance computed once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pruning.errors import UserError
from pruning.runs import experiment, sensitivity
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Loaded, prepare
from pruning.runs.store import RunRecord, Store

Executor = Literal["inline", "process"]
EXECUTORS: tuple[str, ...] = ("inline", "process")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 5.0
Echo = Callable[[str, float, str], None]  # (job id, fraction, message): a live view of progress


class Cancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


class _Heartbeat:
    """Keeps the current job's heartbeat fresh while long steps (training, timing) run."""

    def __init__(self, store: Store):
        self.store, self.job_id = store, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if self.job_id:
                self.store.heartbeat(self.job_id)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _reporter(store: Store, job_id: str, echo: Echo | None):
    def progress(fraction: float, message: str) -> None:
        store.set_progress(job_id, fraction, message)
        if echo:
            echo(job_id, fraction, message)
        if store.cancel_requested(job_id):
            raise Cancelled(job_id)

    return progress


def _message(exc: BaseException, debug: bool) -> str:
    if isinstance(exc, UserError) and not debug:
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def execute(
    store: Store,
    job_ids: Sequence[str],
    echo: Echo | None = None,
    debug: bool = False,
    loaded: Mapping[tuple, Loaded] | None = None,
) -> None:
    """Execute queued jobs here, run groups first, recording everything in the store.

    `loaded` maps group keys to what the submitter already loaded to validate them, so it is
    not loaded a second time."""
    records = [store.get(i) for i in job_ids]
    runs: dict[tuple, list[RunRecord]] = {}
    for record in records:
        if record.kind == "run":
            runs.setdefault(experiment.group_key(RunConfig.from_dict(record.config)), []).append(record)
    with _Heartbeat(store) as beat:
        try:
            for key, group in runs.items():
                _execute_group(store, group, beat, echo, debug, (loaded or {}).get(key))
            for record in records:
                if record.kind == "sensitivity":
                    _run_job(store, record.id, beat, debug, lambda p, r=record: _analyse(store, r, p), echo)
        except KeyboardInterrupt:  # Ctrl-C on an inline run: it and the ones still waiting are cancelled
            for job_id in job_ids:
                if not store.get(job_id).done:
                    store.request_cancel(job_id)
                    if store.get(job_id).status == "running":
                        store.finish(job_id, "cancelled", error="interrupted (Ctrl-C)")
            raise


def _execute_group(store, records, beat, echo, debug, loaded) -> None:
    pending = [r for r in records if store.get(r.id).status == "queued"]
    if not pending:
        return
    configs = {r.id: RunConfig.from_dict(r.config) for r in pending}
    try:
        prep = prepare(configs[pending[0].id], loaded)
        scores = experiment.importance(prep)
    except Exception as exc:
        for record in pending:
            store.finish(record.id, "failed", error=_message(exc, debug))
        return
    for record in pending:
        config = configs[record.id]
        job = lambda progress, i=record.id, c=config: experiment.run_one(
            prep, scores, c, i, progress
        ).to_dict()
        _run_job(store, record.id, beat, debug, job, echo)


def _analyse(store: Store, record: RunRecord, progress) -> dict:
    config = RunConfig.from_dict(record.config)
    return sensitivity.analyse(config, record.config["levels"], store, progress).to_dict()


def _run_job(store: Store, job_id: str, beat: _Heartbeat, debug: bool, job, echo: Echo | None) -> None:
    """Claim a queued job, run `job(progress) -> result dict`, and record how it ended."""
    if not store.mark_running(job_id, os.getpid()):
        return  # cancelled while waiting
    beat.job_id = job_id
    try:
        store.finish(job_id, "succeeded", result=job(_reporter(store, job_id, echo)))
    except Cancelled:
        store.finish(job_id, "cancelled", error="cancelled by the user")
    except Exception as exc:
        store.finish(job_id, "failed", error=_message(exc, debug))
    finally:
        beat.job_id = None


def spawn(store: Store, jobs: Mapping[str, RunConfig], workers: int = 1) -> list[subprocess.Popen]:
    """Start detached worker processes for queued jobs (they outlive this process, e.g. a Streamlit
    rerun); jobs of one run group share a worker."""
    by_key: dict[tuple, list[str]] = {}
    for job_id, config in jobs.items():
        by_key.setdefault(experiment.group_key(config), []).append(job_id)
    shares: list[list[str]] = [[] for _ in range(max(1, min(workers, len(by_key))))]
    for n, ids in enumerate(by_key.values()):
        shares[n % len(shares)].extend(ids)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        # workers run from the project root: they find this store's lab file by its absolute path
        PRUNING_LAB_LAB=os.environ.get("PRUNING_LAB_LAB") or str((store.root / "lab.toml").resolve()),
    )
    procs = []
    for share in shares:
        with open(store.artifacts(share[0]) / "worker.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pruning.runs.worker",
                        "--store",
                        str(store.root.resolve()),
                        *share,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=PROJECT_ROOT,
                    start_new_session=True,
                )
            )
    return procs
