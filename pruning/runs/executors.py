"""Where jobs execute: here (`inline`), in detached worker processes (`process`), or as Ray tasks
(`ray`, coordinated by `cluster`).

A job is a row of the store: a pruning run, or a sensitivity analysis. Whoever executes
it records status, progress and a heartbeat (for its queued jobs too); a cancel request in
the store stops it at its next progress report; a worker that dies is found by `Store.reap`
and its jobs marked failed, queued ones included. A job past its time limit, or cancelled
but stuck in one long step, is ended by `Store.reap`, which sends its worker SIGTERM: the
worker abandons that job (`Stopped`) and goes on with the next (SIGKILL if it cannot).
Workers find their jobs in the store (`Store.adopt`), not on their command line. Runs that
share a group key (see experiment.groups) go to the same worker, so the dense model is
measured and importance computed once.
"""

from __future__ import annotations

import os
import resource
import secrets
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pruning.errors import UserError
from pruning.runs import experiment, sensitivity
from pruning.runs.cluster_task import TIMING
from pruning.runs.config import RunConfig
from pruning.runs.prepared import Loaded, prepare
from pruning.runs.store import RunRecord, Store
from pruning.runs.timing_gate import TimingGate

Executor = Literal["inline", "process", "ray"]
EXECUTORS: tuple[str, ...] = ("inline", "process", "ray")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 5.0
Echo = Callable[[str, float, str], None]  # (job id, fraction, message): a live view of progress


class Cancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM. A BaseException, so that no `except Exception` in a
    method or an exporter swallows it."""


class _Heartbeat:
    """Keeps this owner's jobs' heartbeats fresh while long steps (training, timing) run, and reaps:
    a job of its own past its time limit, or cancelled but stuck, gets this process a SIGTERM."""

    def __init__(self, store: Store, job_ids: Sequence[str]):
        self.store, self.job_ids, self.job_id = store, list(job_ids), None
        self.stoppable = False  # whether SIGTERM abandons the current job (see _stoppable)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.store.heartbeat(*self.job_ids)
                self.store.reap()
            except UserError:  # the store is busy or damaged: the main thread reports it; beat again later
                continue

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _reporter(store: Store, job_id: str, echo: Echo | None, gate: TimingGate):
    """The job's progress callback: records progress, stops a cancelled job, and takes turns at the
    store's timing gate: from "timing dense vs pruned" to the end (latency, the method's own timings)
    the job has the store's workers paused; any other report pauses while another job times."""

    def progress(fraction: float, message: str) -> None:
        store.set_progress(job_id, fraction, message)
        if echo:
            echo(job_id, fraction, message)
        if store.cancel_requested(job_id):
            raise Cancelled(job_id)
        if message == TIMING:
            gate.take()
        elif gate.alone and fraction >= 1.0:
            gate.give_back()
        else:
            gate.checkpoint()

    return progress


def peak_memory() -> int:
    """Bytes: this process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or an allocator's RuntimeError (torch's CPU allocator, CUDA's out of memory)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
    )


def _message(exc: BaseException, debug: bool) -> str:
    if isinstance(exc, UserError) and not debug:
        return str(exc)
    if out_of_memory(exc) and not debug:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"out of memory: {first} (peak memory of the process: {peak_memory() / 2**20:,.0f} MiB)"
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


@contextmanager
def _stoppable(beat: _Heartbeat) -> Iterator[None]:
    """In the main thread, SIGTERM raises `Stopped` in the current job instead of ending the process
    (elsewhere signals cannot be handled: the job is then only marked, and stops at its next report)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame) -> None:
        if beat.job_id is None:  # nothing to abandon: end as SIGTERM would
            raise SystemExit(128 + signum)
        raise Stopped(beat.job_id)

    previous = signal.signal(signal.SIGTERM, stop)
    beat.stoppable = True
    try:
        yield
    finally:
        beat.stoppable = False
        signal.signal(signal.SIGTERM, previous)


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
    with _Heartbeat(store, job_ids) as beat, _stoppable(beat), TimingGate(store.root) as gate:
        try:
            for key, group in runs.items():
                _execute_group(store, group, beat, gate, echo, debug, (loaded or {}).get(key))
            for record in records:
                if record.kind == "sensitivity":
                    job = lambda p, r=record: _analyse(store, r, p)  # noqa: E731
                    _run_job(store, record.id, beat, gate, debug, job, echo)
        except KeyboardInterrupt:  # Ctrl-C on an inline run: it and the ones still waiting are cancelled
            for job_id in job_ids:
                if not store.get(job_id).done:
                    store.request_cancel(job_id)
                    if store.get(job_id).status == "running":
                        store.finish(job_id, "cancelled", error="interrupted (Ctrl-C)")
            raise


def _execute_group(store, records, beat, gate, echo, debug, loaded) -> None:
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
        job = lambda progress, i=record.id, c=config, last=record is pending[-1]: experiment.run_one(
            prep, scores, c, i, progress, last
        ).to_dict()
        _run_job(store, record.id, beat, gate, debug, job, echo)


def _analyse(store: Store, record: RunRecord, progress) -> dict:
    config = RunConfig.from_dict(record.config)
    return sensitivity.analyse(config, record.config["levels"], store, progress).to_dict()


def _run_job(
    store: Store, job_id: str, beat: _Heartbeat, gate: TimingGate, debug: bool, job, echo: Echo | None
) -> None:
    """Claim a queued job, run `job(progress) -> result dict`, and record how it ended (unless
    `Store.reap` already did: timed out, or cancelled and stopped)."""
    if not store.mark_running(job_id, os.getpid(), stoppable=beat.stoppable):
        return  # cancelled while waiting
    beat.job_id = job_id
    try:
        store.finish(job_id, "succeeded", result=job(_reporter(store, job_id, echo, gate)))
    except Stopped:
        if not store.get(job_id).done:  # not `reap`'s signal: someone ends this worker
            store.finish(job_id, "failed", error="stopped: the worker process received SIGTERM")
            raise SystemExit(128 + signal.SIGTERM) from None
    except Cancelled:
        if not store.get(job_id).done:
            store.finish(job_id, "cancelled", error="cancelled by the user")
    except Exception as exc:
        if not store.get(job_id).done:
            store.finish(job_id, "failed", error=_message(exc, debug))
    finally:
        beat.job_id = None
        gate.give_back()
        store.let_go(job_id)


def spawn(
    store: Store,
    jobs: Mapping[str, RunConfig],
    workers: int = 1,
    entry: str = "pruning.runs.worker",
    args: Sequence[str] = (),
    together: bool = False,
) -> list[subprocess.Popen]:
    """Start detached worker processes for queued jobs (they outlive this process, e.g. a Streamlit
    rerun); jobs of one run group share a worker. Each worker finds its jobs in the store under its
    name, however many there are; jobs whose worker cannot start fail with the reason. `entry` and
    `args`: the module the workers run and its options; `together`: one worker takes every job (the
    Ray coordinator)."""
    by_key: dict[tuple, list[str]] = {}
    for job_id, config in jobs.items():
        by_key.setdefault(() if together else experiment.group_key(config), []).append(job_id)
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
        name = f"worker-{secrets.token_hex(8)}"
        store.hand_to(share, name)
        command = [sys.executable, "-m", entry, "--store", str(store.root), "--worker", name, *args]
        try:
            with open(store.artifacts(share[0]) / "worker.log", "ab") as log:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=PROJECT_ROOT,
                    start_new_session=True,
                )
        except OSError as exc:
            for job_id in share:
                if not store.get(job_id).done:
                    store.finish(job_id, "failed", error=f"could not start a worker process: {exc}")
            continue
        store.hand_to(share, name, pid=proc.pid)  # its owner from now on, even before it adopts them
        procs.append(proc)
    return procs
