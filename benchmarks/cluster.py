"""The `ray` executor's throughput: an 8-point sweep of `resnet-mnist1d` with fine-tuning through Ray
(2 one-CPU tasks at a time on a local Ray of 2 CPUs) against the `inline` executor (one process,
torch's default threads), on the same machine. Run: `python -m benchmarks cluster`.

- cluster_sweep_seconds/inline, cluster_sweep_seconds/ray: wall-clock seconds of the sweep (2 methods
  x 4 levels, 1 fine-tuning epoch, no latency timing), submitted with `submit.submit` into a fresh store
  each; Ray is started before the clock starts (a cluster is long-lived) and its start is reported.
- cluster_throughput_ratio: inline seconds / ray seconds; goal >= 1.6 on a 2-core machine.
- cluster_run_seconds/threads=1, /threads=N: one point of the sweep alone (model and data already
  loaded), with torch on 1 thread and on the default N; cluster_throughput_bound: N * t(N) / t(1),
  the most that N one-thread tasks side by side can give over one N-thread process (their ideal,
  before start-up and sharing the memory bus); cluster_ratio_of_bound: the ratio over that bound.
"""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks.common import emit
from pruning.runs import cluster, submit
from pruning.runs.config import RunConfig

BASE = RunConfig("resnet-mnist1d", "magnitude", 0.5, finetune_epochs=1, seed=0, latency=False)
METHODS = ("magnitude", "random")
LEVELS = (0.3, 0.5, 0.7, 0.9)


def _sweep(executor: str, folder: str) -> float:
    configs = submit.sweep_configs(BASE, METHODS, LEVELS)
    start = time.perf_counter()
    ids = submit.submit(os.path.join(folder, executor), configs, executor)
    seconds = time.perf_counter() - start
    from pruning.runs.store import Store

    failed = [
        r.id for r in (Store(os.path.join(folder, executor)).get(i) for i in ids) if r.status != "succeeded"
    ]
    if failed:
        raise RuntimeError(f"{executor}: runs {failed} did not succeed")
    return seconds


def _one_run_seconds(threads: int) -> float:
    import torch

    from pruning.runs import experiment
    from pruning.runs.prepared import importance, prepare

    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        prep = prepare(BASE)
        experiment.run_one(prep, importance(prep), BASE, "warm-up", lambda *_: None)
        start = time.perf_counter()
        experiment.run_one(prep, importance(prep), BASE, "timed", lambda *_: None)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(default)


def main() -> None:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": cluster.task_env()},
                 logging_level="ERROR", log_to_driver=False)  # fmt: skip
        emit("cluster_ray_start_seconds", time.perf_counter() - start, "s")
        try:
            inline = _sweep("inline", folder)
            on_ray = _sweep("ray", folder)
        finally:
            ray.shutdown()
    emit("cluster_sweep_seconds/inline", inline, "s")
    emit("cluster_sweep_seconds/ray", on_ray, "s")
    emit("cluster_throughput_ratio", inline / on_ray, "x", ">= 1.6")
    import torch

    cpus = torch.get_num_threads()
    one, many = _one_run_seconds(1), _one_run_seconds(cpus)
    emit("cluster_run_seconds/threads=1", one, "s")
    emit(f"cluster_run_seconds/threads={cpus}", many, "s")
    bound = cpus * many / one
    emit("cluster_throughput_bound", bound, "x")
    emit("cluster_ratio_of_bound", inline / on_ray / bound, "x")


if __name__ == "__main__":
    main()
