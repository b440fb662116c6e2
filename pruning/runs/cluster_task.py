"""What runs on Ray's workers: one run per task, the progress board, and a node gate for timing.

A task loads the model and data itself from its config (a sample id or a path: nothing pickled
travels in), runs `experiment.run_one` with torch using as many threads as its CPU allotment, and
returns the result as a plain dict. It never opens the store: progress goes to a `Board` actor that
the coordinator reads. An export is written to a temporary folder on the worker and its files come
back as bytes, for the coordinator to write where the config says.

Latency is timed with the node to itself: a task that reaches timing asks the node's `Gate` for the
node; the other tasks on that node pause at their next progress report (and new ones wait to
start) until it is done, and it times with as many threads as the node has CPUs. A run's exception is
returned as a failure (Ray never retries it); a crashed worker process is Ray's to retry.

Everything here imports Ray lazily: the module is importable without it."""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

GATE_NAMESPACE = "pruning-lab"
TIMING = "timing dense vs pruned"  # the progress message run_one gives right before it times
REPORT_EVERY = 0.2  # seconds between progress messages sent to the board
WAIT_STEP = 0.05


class Board:
    """Latest (fraction, message, node id) of each run in flight, written by tasks, read by the
    coordinator. A Ray actor class (see `actor_classes`)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, str, str]] = {}

    def report(self, run_id: str, fraction: float, message: str, node: str) -> None:
        self.latest[run_id] = (fraction, message, node)

    def read(self) -> dict[str, tuple[float, str, str]]:
        return dict(self.latest)


class Gate:
    """One per node: tasks hold it shared while they work and one at a time alone to time latency.
    A Ray actor class: its calls are serialised, so waiting is polling (`enter`, `may_time`)."""

    def __init__(self) -> None:
        self.working: set[str] = set()
        self.timing: deque[str] = deque()  # tasks waiting to time, first in line first
        self.holder: str | None = None

    def enter(self, token: str) -> bool:
        """Start (or resume) work beside others, unless a task is timing or waiting to."""
        if self.holder is None and not self.timing:
            self.working.add(token)
            return True
        return token in self.working

    def busy(self) -> bool:
        return self.holder is not None or bool(self.timing)

    def leave(self, token: str) -> None:
        self.working.discard(token)
        if token in self.timing:
            self.timing.remove(token)
        if self.holder == token:
            self.holder = None

    def want(self, token: str) -> None:
        self.working.discard(token)
        if token not in self.timing and self.holder != token:
            self.timing.append(token)

    def may_time(self, token: str) -> bool:
        if self.holder == token:
            return True
        if self.holder is None and self.timing and self.timing[0] == token and not self.working:
            self.holder = self.timing.popleft()
            return True
        return False


def actor_classes():
    """(Board, Gate) as Ray actor classes; no CPU reserved for them, so they never take a run's place."""
    import ray

    return ray.remote(num_cpus=0)(Board), ray.remote(num_cpus=0)(Gate)


def _node_cpus(ray, node: str) -> int:
    for entry in ray.nodes():
        if entry.get("NodeID") == node:
            return max(1, int(entry.get("Resources", {}).get("CPU", 1)))
    return 1


class _Reporter:
    """The progress callback of a run inside a task: reports to the board (throttled), pauses while
    another task on this node times latency, and takes the node alone for its own timing."""

    def __init__(self, ray, run_id: str, board, gate, node: str, threads: int):
        self.ray, self.run_id, self.board, self.gate, self.node = ray, run_id, board, gate, node
        self.threads, self.sent, self.alone = threads, 0.0, False

    def _wait(self, call) -> None:
        while not self.ray.get(call()):
            time.sleep(WAIT_STEP)

    def start(self) -> None:
        self._wait(lambda: self.gate.enter.remote(self.run_id))

    def __call__(self, fraction: float, message: str) -> None:
        import torch

        now = time.monotonic()
        if now - self.sent >= REPORT_EVERY or fraction >= 1.0 or message == TIMING:
            self.board.report.remote(self.run_id, fraction, message, self.node)
            self.sent = now
        if message == TIMING:  # from here to the end (latency, the method's own timings) alone
            self.gate.want.remote(self.run_id)
            self._wait(lambda: self.gate.may_time.remote(self.run_id))
            self.alone = True
            torch.set_num_threads(_node_cpus(self.ray, self.node))
        elif self.alone and fraction >= 1.0:
            torch.set_num_threads(self.threads)
        elif not self.alone and self.ray.get(self.gate.busy.remote()):
            self.gate.leave.remote(self.run_id)
            self._wait(lambda: self.gate.enter.remote(self.run_id))

    def finish(self) -> None:
        self.alone = False
        self.ray.get(self.gate.leave.remote(self.run_id))


def gate_of(ray, node: str):
    """This node's gate (created by the first task that asks; it outlives the coordinator)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    _, gate_class = actor_classes()
    return gate_class.options(
        name=f"gate-{node}",
        namespace=GATE_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote()


def run_task(run_id: str, config: dict[str, Any], threads: int, board, debug: bool) -> dict[str, Any]:
    """One run on a Ray worker: {"result": RunResult dict, "files": {relative path: bytes}} or
    {"error": message}. The result's "ray_node_id" says where it ran."""
    import ray
    import torch

    from pruning.errors import UserError
    from pruning.runs import experiment
    from pruning.runs.config import RunConfig
    from pruning.runs.prepared import importance, prepare

    torch.set_num_threads(threads)
    node = ray.get_runtime_context().get_node_id()
    reporter = _Reporter(ray, run_id, board, gate_of(ray, node), node, threads)
    reporter.start()
    wanted = RunConfig.from_dict(config)
    try:
        with tempfile.TemporaryDirectory(prefix="pruning-export-") as scratch:
            here = wanted.replace(export=str(Path(scratch) / "export")) if wanted.export else wanted
            prep = prepare(here)
            result = experiment.run_one(prep, importance(prep), here, run_id, reporter).to_dict()
            files = {}
            if wanted.export:
                root = Path(here.export)
                files = {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}
                result = {**_moved(result, str(root), wanted.export), "config": wanted.to_dict()}
                files["run.json"] = json.dumps(result, indent=2).encode()  # as export writes it
        result["ray_node_id"] = node
        return {"result": result, "files": files}
    except Exception as exc:  # a run's own failure: recorded, not retried
        if isinstance(exc, UserError) and not debug:
            return {"error": str(exc)}
        return {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
    finally:
        reporter.finish()


def _moved(value: Any, old: str, new: str) -> Any:
    """`value` with every string path under `old` moved under `new` (the export's paths in a result)."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    return value
