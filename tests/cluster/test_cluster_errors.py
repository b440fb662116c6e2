"""Refusals of the `ray` executor: one `error:` line before any work, nothing stored.

This file runs before the others of this folder (which start the session's Ray): `auto` must find
no cluster on the machine."""

from __future__ import annotations

import importlib.util

import pytest

from pruning.errors import UserError
from pruning.runs import cluster, submit
from pruning.runs.config import RunConfig

FAST = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)


@pytest.mark.slow
@pytest.mark.before_ray  # run first in the session: the session's own Ray would be found by auto
def test_auto_with_no_cluster_names_what_to_start(cli, store_dir):
    from ray._private.services import find_gcs_addresses

    assert not find_gcs_addresses(), "a Ray instance is already running on this machine: stop it first"
    done = cli(
        "sweep", "--model", "mlp-digits", "--methods", "magnitude", "--sparsities", "0.5",
        "--executor", "ray", "--ray-address", "auto", "--store", str(store_dir),
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"error: {cluster.NO_CLUSTER}"]
    assert "ray start --head" in done.stderr
    assert not store_dir.exists()


@pytest.mark.slow
def test_ray_options_need_the_ray_executor(cli, store_dir):
    done = cli(
        "run", "--model", "mlp-digits", "--method", "magnitude", "--sparsity", "0.5",
        "--ray-address", "auto", "--store", str(store_dir),
    )  # fmt: skip
    assert done.returncode != 0
    needs = "error: --ray-address, --cpus-per-run and --gpus-per-run need --executor ray"
    assert done.stderr.strip() == needs
    assert not store_dir.exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        (cluster.Settings("x"), "--ray-address must be auto, ray://HOST:PORT or HOST:PORT, got 'x'"),
        (cluster.Settings(cpus_per_run=0), "--cpus-per-run must be a positive number, got 0"),
        (cluster.Settings(gpus_per_run=-1), "--gpus-per-run must be 0 or more, got -1"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_stored(store_dir, settings, message):
    with pytest.raises(UserError) as refused:
        submit.submit(store_dir, [FAST], "ray", ray=settings)
    assert str(refused.value) == message
    assert not store_dir.exists()


def test_without_ray_installed_the_error_says_how_to_install_it(store_dir, monkeypatch):
    real = importlib.util.find_spec
    missing = lambda name, *args: None if name == "ray" else real(name, *args)
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(UserError) as refused:
        submit.submit(store_dir, [FAST], "ray")
    assert str(refused.value) == cluster.INSTALL
    assert "pip install ray" in str(refused.value)
    assert not store_dir.exists()
