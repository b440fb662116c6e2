"""The `ray` executor: every run is one Ray task; this process, the coordinator, writes the store.

`execute` connects to Ray (`address`: "auto", "ray://HOST:PORT", "HOST:PORT", or None to start a
local Ray), starts one task per run (`cluster_task.run_task`: it loads model and data itself and
needs no store), and, as tasks report and finish, records progress, results and failures. Cancelling
a run in the store cancels its task; a run that `Store.reap` ended (time limit) is cancelled too.

Faults: a worker process that dies is retried by Ray up to `RETRIES` times; an exception in a run is
not retried and fails that run with its message; the other runs of the batch go on.

The dashboard runs the coordinator detached (`spawn`: `python -m pruning.runs.cluster --store ...`),
so it outlives a page; the command line runs it in its own process. Ray is imported only here and
in the tasks: the dashboard and the other executors run without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning.errors import UserError
from pruning.runs import cluster_task
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

RETRIES = 2  # a crashed worker process (killed, out of memory, a lost node) is tried this many times more
POLL_SECONDS = 0.3
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTALL = "Ray is not installed here: `pip install ray==2.60.0` (it is needed only for --executor ray)"
NO_CLUSTER = (
    "no Ray cluster is running here for --ray-address auto: start one with `ray start --head` "
    "(and `ray start --address HEAD_IP:6379` on each worker machine), or leave out --ray-address "
    "to start a local Ray for this sweep"
)
_ADDRESS = re.compile(r"^(auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")


@dataclass(frozen=True)
class Settings:
    """Where and with what each run executes on Ray."""

    address: str | None = None  # auto | ray://HOST:PORT | HOST:PORT; None: a local Ray for this sweep
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def check(self) -> None:
        """UserError for settings Ray would refuse, or for Ray missing; nothing is contacted."""
        if self.address is not None and not _ADDRESS.match(self.address):
            raise UserError(f"--ray-address must be auto, ray://HOST:PORT or HOST:PORT, got '{self.address}'")
        if not self.cpus_per_run > 0 or self.cpus_per_run != self.cpus_per_run:
            raise UserError(f"--cpus-per-run must be a positive number, got {self.cpus_per_run}")
        if not self.gpus_per_run >= 0:
            raise UserError(f"--gpus-per-run must be 0 or more, got {self.gpus_per_run}")
        if importlib.util.find_spec("ray") is None:
            raise UserError(INSTALL)

    @property
    def threads(self) -> int:
        """Torch threads of a task: its CPU allotment, so tasks side by side do not oversubscribe."""
        return max(1, int(self.cpus_per_run))

    def args(self) -> list[str]:
        address = ["--ray-address", self.address] if self.address else []
        return [*address, "--cpus-per-run", str(self.cpus_per_run), "--gpus-per-run", str(self.gpus_per_run)]


def task_env() -> dict[str, str]:
    """What the tasks' processes need: the project on their path (the same folder on every machine)."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path}
    if os.environ.get("PRUNING_LAB_LAB"):
        env["PRUNING_LAB_LAB"] = os.environ["PRUNING_LAB_LAB"]
    return env


def connect(settings: Settings):
    """Ray, connected as `settings` say (kept if this process is already connected); UserError if not."""
    settings.check()
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(
            address=settings.address,
            include_dashboard=False if settings.address is None else None,
            runtime_env={"env_vars": task_env()},
            logging_level="ERROR",
            log_to_driver=False,
        )
    except ConnectionError as exc:
        if settings.address == "auto":
            raise UserError(NO_CLUSTER) from None
        raise UserError(f"cannot reach the Ray cluster at {settings.address}: {exc}") from None
    except Exception as exc:  # a ray:// address that does not answer, a version mismatch, ...
        where = settings.address or "a new local instance"
        raise UserError(f"cannot connect to Ray at {where}: {exc}") from None
    return ray


def resources(ray) -> dict[str, Any]:
    """The connected cluster's nodes, CPUs and GPUs (what the dashboard shows)."""
    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"nodes": len(nodes), "cpus": total.get("CPU", 0.0), "gpus": total.get("GPU", 0.0)}


def probe(settings: Settings, timeout: float = 60.0) -> dict[str, Any]:
    """The cluster's `resources`, asked from a short-lived process (this one never becomes a Ray
    driver: the dashboard's server stays free of it); UserError naming what is wrong."""
    settings.check()
    command = [sys.executable, "-m", "pruning.runs.cluster", "--probe", *settings.args()]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT, env=_probe_env()
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"the Ray cluster at {settings.address} did not answer in {timeout:g} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        raise UserError(lines[-1][len("error: ") :] if lines else f"cannot reach Ray: {done.stderr[-300:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _probe_env() -> dict[str, str]:
    return {**os.environ, **task_env(), "RAY_USAGE_STATS_ENABLED": "0"}


def execute(store: Store, job_ids: Sequence[str], settings: Settings, echo=None, debug: bool = False) -> None:
    """Coordinate the queued runs `job_ids` on Ray until every one is done, writing the store."""
    from pruning.runs.executors import _Heartbeat

    ray = connect(settings)
    board = cluster_task.board_class().remote()
    task = ray.remote(cluster_task.run_task).options(
        num_cpus=settings.cpus_per_run, num_gpus=settings.gpus_per_run, max_retries=RETRIES,
        retry_exceptions=False,
    )  # fmt: skip
    flights: dict[Any, str] = {}  # task ref -> run id
    with _Heartbeat(store, job_ids):
        try:
            for job_id in job_ids:
                record = store.get(job_id)
                if record.status == "queued":
                    flights[task.remote(job_id, record.config, settings.threads, board, debug)] = job_id
            while flights:
                ready, _ = ray.wait(list(flights), num_returns=len(flights), timeout=POLL_SECONDS)
                for ref in ready:
                    _record(store, flights.pop(ref), ref, ray, echo)
                _follow(store, flights, ray.get(board.read.remote()), ray, echo)
        except KeyboardInterrupt:  # Ctrl-C on the command line: every task is cancelled
            for ref, job_id in flights.items():
                ray.cancel(ref, force=True)
                if not store.get(job_id).done:
                    store.finish(job_id, "cancelled", error="interrupted (Ctrl-C)")
            raise
        finally:
            ray.kill(board)


def _follow(store: Store, flights: dict, latest: Mapping[str, tuple], ray, echo) -> None:
    """Progress of the tasks in flight into the store; cancel the tasks whose runs must stop."""
    for ref, job_id in list(flights.items()):
        record = store.get(job_id)
        if record.cancel_requested or record.done:
            ray.cancel(ref, force=True)
            del flights[ref]
            if not record.done:
                store.finish(job_id, "cancelled", error="cancelled by the user")
            continue
        if job_id not in latest:
            continue  # still waiting for a CPU
        fraction, message, node = latest[job_id]
        if record.status == "queued":
            store.mark_running(job_id, os.getpid())
        shown = f"{message} (node {node[:8]})"
        if (record.progress, record.message) != (fraction, shown):
            store.set_progress(job_id, fraction, shown)
            if echo:
                echo(job_id, fraction, message)


def _record(store: Store, job_id: str, ref, ray, echo) -> None:
    """How a finished task ended, into the store (unless the run ended meanwhile)."""
    from ray.exceptions import RayError

    if store.get(job_id).done:
        return
    try:
        outcome = ray.get(ref)
    except RayError as exc:  # the worker crashed more than RETRIES times, the node was lost, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        store.finish(job_id, "failed", error=f"the Ray task failed after {RETRIES} retries: {first}")
        return
    if store.get(job_id).status == "queued":
        store.mark_running(job_id, os.getpid())
    if "error" in outcome:
        store.finish(job_id, "failed", error=outcome["error"])
    else:
        result = outcome["result"]
        _write(RunConfig.from_dict(result["config"]).export, outcome["files"])
        store.finish(job_id, "succeeded", result=result)
    if echo:
        echo(job_id, 1.0, store.get(job_id).status)


def _write(folder: str | None, files: Mapping[str, bytes]) -> None:
    """An export made on a worker, written here (run.json last: it marks the export complete)."""
    if not folder:
        return
    for name in sorted(files, key=lambda n: n == "run.json"):
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(files[name])
        os.replace(partial, target)


def spawn(store: Store, jobs: Mapping[str, RunConfig], settings: Settings) -> None:
    """A detached coordinator process for these queued runs (the dashboard's way: it outlives a page)."""
    from pruning.runs import executors

    executors.spawn(store, jobs, entry="pruning.runs.cluster", args=settings.args(), together=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A detached Ray coordinator, or a probe of a cluster.")
    parser.add_argument("--store")
    parser.add_argument("--worker", help="the name its runs were handed to")
    parser.add_argument("--probe", action="store_true", help="print the cluster's resources as JSON")
    parser.add_argument("--ray-address")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus-per-run", type=float, default=0.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings(args.ray_address, args.cpus_per_run, args.gpus_per_run)
    if args.probe:
        try:
            print(json.dumps(resources(connect(settings))))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    with Store(args.store) as store:
        job_ids = store.adopt(args.worker, os.getpid())
        try:
            execute(store, job_ids, settings)
        except UserError as exc:  # the cluster went away since it was probed: its runs fail, saying so
            for job_id in job_ids:
                if not store.get(job_id).done:
                    store.finish(job_id, "failed", error=str(exc))
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
