"""One local Ray for the whole test session (2 CPUs, no dashboard, no usage stats), in a temp folder
of its own so it never touches another Ray on the machine; shut down when the session ends."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from pruning.runs import cluster


@pytest.fixture(scope="session")
def ray_session():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay short
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=folder,
        runtime_env={"env_vars": cluster.task_env()},
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `before_ray` run before any test of the session starts a Ray instance."""
    items.sort(key=lambda item: item.get_closest_marker("before_ray") is None)
