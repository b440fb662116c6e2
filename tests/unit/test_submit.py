"""The one submit path: validate once before anything is stored, record with ids, hand over."""

from __future__ import annotations

import pytest

from pruning.core.methods.unstructured import Magnitude
from pruning.errors import UserError
from pruning.runs import prepared, submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

FAST = RunConfig("mlp-digits", "magnitude", 0.5, latency=False)


@pytest.fixture
def store(store_dir):
    with Store(store_dir) as opened:
        yield opened


def test_inline_submission_runs_everything_and_keeps_configs(store):
    configs = [FAST, FAST.replace(sparsity=0.6, layer_sparsity=(("fc1", 0.3),))]
    ids = submit.submit(store, configs)
    records = [store.get(i) for i in ids]
    assert [r.status for r in records] == ["succeeded", "succeeded"]
    assert [RunConfig.from_dict(r.config) for r in records] == configs
    assert len({r.sweep_id for r in records}) == 1 and records[0].sweep_id.startswith("sweep-")
    assert [r.result["run_id"] for r in records] == ids


@pytest.mark.parametrize(
    "config, message",
    [
        (FAST.replace(model="nosuch"), "unknown model 'nosuch'"),
        (FAST.replace(layer_sparsity=(("fc9", 0.5),)), "unknown layer.*fc9"),
        (FAST.replace(method="l1-channel", layer_sparsity=(("fc3", 0.5),)), "fc3 cannot lose output"),
        (FAST.replace(method="nm", schedule="iterative", steps=2), "works with unstructured methods"),
        (FAST.replace(method="bn-scale"), "has no BatchNorm layer"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(store_dir, config, message):
    with Store(store_dir) as store, pytest.raises(UserError, match=message):
        submit.submit(store, [FAST, config])  # the good one is not stored either
    with Store(store_dir) as store:
        assert store.runs() == []


def test_nothing_to_launch_is_refused(store):
    with pytest.raises(UserError, match="nothing to launch"):
        submit.submit(store, [])


def test_inline_runs_reuse_what_validation_loaded(store, monkeypatch):
    loads, scores = [], []
    real_load, original = prepared.load, Magnitude.importance
    monkeypatch.setattr(submit, "load", lambda config: loads.append(config) or real_load(config))
    monkeypatch.setattr(Magnitude, "importance", lambda *a: scores.append(1) or original(*a))
    submit.submit(store, [FAST.replace(sparsity=s) for s in (0.3, 0.6)])
    assert len(loads) == 1 and len(scores) == 1


def test_artifacts_hold_each_runs_export_written_once_with_its_id(store):
    (run_id,) = submit.submit(store, [FAST], artifacts=True)
    folder = store.artifacts(run_id)
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "prune.py", "recipe.json", "run.json"}
    assert store.get(run_id).result["export"]["weights"] == str(folder.resolve() / "model.safetensors")
    assert f'"run_id": "{run_id}"' in (folder / "run.json").read_text()


def test_sweep_configs_give_fixed_sparsity_methods_one_run():
    configs = submit.sweep_configs(FAST, ["magnitude", "nm"], [0.5, 0.8, 0.9])
    assert [(c.method, c.sparsity) for c in configs] == [
        ("magnitude", 0.5),
        ("magnitude", 0.8),
        ("magnitude", 0.9),
        ("nm", 0.5),
    ]
    assert dict(configs[-1].options) == {"n": 2, "m": 4}


def test_a_sensitivity_analysis_is_a_job_and_its_table_is_cached(store):
    config = submit.analysis_config("mlp-digits", "magnitude")
    assert submit.cached_sensitivity(store, config, [0.5]) is None
    job_id = submit.submit_analysis(store, config, [0.5], executor="inline")
    job = store.get(job_id)
    assert (job.kind, job.status) == ("sensitivity", "succeeded")
    assert submit.latest_analysis(store, config).id == job_id
    table = submit.cached_sensitivity(store, config, [0.5])
    assert table.cached and [r["layer"] for r in table.rows] == ["fc1", "fc2", "fc3"]
    with pytest.raises(UserError, match="needs an unstructured method"):
        submit.submit_analysis(store, submit.analysis_config("mlp-digits", "l1-channel"), [0.5])


def test_bad_input_does_not_even_create_the_store(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        submit.submit(tmp_path / "lab", [FAST.replace(model="nosuch")])
    with pytest.raises(UserError, match="needs an unstructured method"):
        submit.submit_analysis(tmp_path / "lab", submit.analysis_config("mlp-digits", "l1-channel"))
    assert not (tmp_path / "lab").exists()
