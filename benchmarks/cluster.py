"""The `ray` executor's throughput: an 8-point sweep of `resnet-mnist1d` with fine-tuning through Ray
(2 one-CPU tasks at a time on a local Ray of 2 CPUs) against the `inline` executor (one process,
torch's default threads), on the same machine. Run: `python -m benchmarks cluster`.

- cluster_sweep_seconds/inline, cluster_sweep_seconds/ray: wall-clock seconds of the sweep (2 methods
  x 4 levels, 1 fine-tuning epoch, no latency timing), submitted with `submit.submit` into a fresh store
  each; Ray is started before the clock starts (a cluster is long-lived) and its start is reported.
- cluster_throughput_ratio: inline seconds / ray seconds; goal >= 1.6 on a 2-core machine.
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


if __name__ == "__main__":
    main()
