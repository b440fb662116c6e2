"""What runs on Ray's workers: one run per task, the progress board, and a node gate for timing.

A task loads the model and data itself from its config (a sample id or a path: nothing pickled
travels in), runs `experiment.run_one` with torch using as many threads as its CPU allotment, and
returns the result as a plain dict. It never opens the store: progress goes to a `Board` actor that
the coordinator reads. An export is written to a temporary folder on the worker and its files come
back as bytes, for the coordinator to write where the config says.

Latency is timed with the machine to itself: the tasks of a machine take turns through a
`TimingGate` whose lock files are in the machine's temporary folder. A task that reaches timing takes
it; the other tasks pause at their next progress report (and new ones wait to start) until it is
done, and it times with as many threads as its node has CPUs. The gate is files, not an actor, so no
task ever blocks in `ray.get` (Ray would lend its CPU to another task meanwhile). A run's exception is
returned as a failure (Ray never retries it); a crashed worker process is Ray's to retry.

Everything here imports Ray lazily: the module is importable without it."""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from pruning.runs.timing_gate import TimingGate

GATE_NAMESPACE = "pruning-lab"
TIMING = "timing dense vs pruned"  # the progress message run_one gives right before it times
REPORT_EVERY = 0.2  # seconds between progress messages sent to the board


class Board:
    """Latest (fraction, message, node id) of each run in flight, written by tasks, read by the
    coordinator. A Ray actor class (see `board_class`)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, str, str]] = {}

    def report(self, run_id: str, fraction: float, message: str, node: str) -> None:
        self.latest[run_id] = (fraction, message, node)

    def read(self) -> dict[str, tuple[float, str, str]]:
        return dict(self.latest)


def board_class():
    """`Board` as a Ray actor class; no CPU reserved for it, so it never takes a run's place."""
    import ray

    return ray.remote(num_cpus=0)(Board)


def node_gate_folder() -> Path:
    """Where this node's timing gate keeps its lock files: one folder per machine, so every task on
    it (from any sweep, any Ray node started on it) takes turns with the others."""
    folder = Path(tempfile.gettempdir()) / "pruning-lab-ray-gate"
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        pass  # TimingGate then works without a gate (nothing waits), as it does for a read-only store
    return folder


def _node_cpus(ray, node: str) -> int:
    for entry in ray.nodes():
        if entry.get("NodeID") == node:
            return max(1, int(entry.get("Resources", {}).get("CPU", 1)))
    return 1


class _Reporter:
    """The progress callback of a run inside a task: reports to the board (throttled, never waiting
    for an answer), pauses while another task on this machine times latency, and takes the machine
    alone for its own timing. The gate is `TimingGate`'s lock files, not an actor: a task that waited
    in `ray.get` would hand its CPU back to Ray, which would start another task beside it."""

    def __init__(self, ray, run_id: str, board, gate: TimingGate, node: str, threads: int):
        self.ray, self.run_id, self.board, self.gate, self.node = ray, run_id, board, gate, node
        self.threads, self.sent = threads, 0.0

    def __call__(self, fraction: float, message: str) -> None:
        import torch

        now = time.monotonic()
        if now - self.sent >= REPORT_EVERY or fraction >= 1.0 or message == TIMING:
            self.board.report.remote(self.run_id, fraction, message, self.node)
            self.sent = now
        if message == TIMING:  # from here to the end (latency, the method's own timings) alone
            self.gate.take()
            torch.set_num_threads(_node_cpus(self.ray, self.node))
        elif self.gate.alone and fraction >= 1.0:
            self.gate.give_back()
            torch.set_num_threads(self.threads)
        else:
            self.gate.checkpoint()


def run_task(run_id: str, config: dict[str, Any], threads: int, board, debug: bool) -> dict[str, Any]:
    """One run on a Ray worker: {"result": RunResult dict, "files": {relative path: bytes}} or
    {"error": message}. The result's "ray_node_id" says where it ran."""
    import ray
    import torch

    from pruning.runs.config import RunConfig

    torch.set_num_threads(threads)
    node = ray.get_runtime_context().get_node_id()
    wanted = RunConfig.from_dict(config)
    with TimingGate(node_gate_folder()) as gate:
        return _run(ray, run_id, wanted, _Reporter(ray, run_id, board, gate, node, threads), node, debug)


def _run(ray, run_id: str, wanted, reporter: _Reporter, node: str, debug: bool) -> dict[str, Any]:
    from pruning.errors import UserError
    from pruning.runs import experiment
    from pruning.runs.prepared import importance, prepare

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


def _moved(value: Any, old: str, new: str) -> Any:
    """`value` with every string path under `old` moved under `new` (the export's paths in a result)."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    return value
