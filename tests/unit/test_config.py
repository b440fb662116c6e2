"""RunConfig: a frozen, validated record of a run that survives the store's JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pruning.errors import UserError
from pruning.runs.config import RunConfig, parse_layer_sparsity

FULL = RunConfig(
    model="cnn-digits",
    method="taylor",
    sparsity=0.75,
    data="digits",
    weights="w.safetensors",
    scope="layer",
    layer_sparsity=(("classifier", 0.2), ("features.0.0", 0.1)),
    options=(("batches", 8),),
    finetune_epochs=3,
    schedule="iterative",
    steps=4,
    seed=11,
    device="auto",
    latency=False,
    batch_size=32,
    export="out",
)


def test_round_trip_through_a_dict_and_json():
    assert RunConfig.from_dict(FULL.to_dict()) == FULL
    assert RunConfig.from_dict(json.loads(json.dumps(FULL.to_dict()))) == FULL  # what the store keeps
    minimal = RunConfig("mlp-digits", "magnitude", 0.5)
    assert RunConfig.from_dict(minimal.to_dict()) == minimal


def test_to_dict_is_readable():
    d = FULL.to_dict()
    assert d["layer_sparsity"] == {"classifier": 0.2, "features.0.0": 0.1}
    assert d["options"] == {"batches": 8}
    assert d["sparsity"] == 0.75 and d["scope"] == "layer"


def test_from_dict_ignores_unknown_keys_and_fills_defaults():
    config = RunConfig.from_dict({"model": "mlp-digits", "method": "random", "sparsity": 0.3, "ui_note": "x"})
    assert config == RunConfig("mlp-digits", "random", 0.3)
    assert config.scope == "global" and config.schedule == "oneshot" and config.overrides == {}


def test_configs_are_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FULL.sparsity = 0.1
    assert len({FULL, RunConfig.from_dict(FULL.to_dict())}) == 1
    assert FULL.replace(sparsity=0.5).sparsity == 0.5 and FULL.sparsity == 0.75


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sparsity": 1.0}, r"sparsity must be a number in \[0, 1\), got 1.0"),
        ({"sparsity": -0.01}, r"\[0, 1\)"),
        ({"sparsity": float("nan")}, r"got nan"),
        ({"scope": "row"}, "scope must be 'global' or 'layer'"),
        ({"schedule": "gradual"}, "schedule must be one of oneshot, iterative, lottery"),
        ({"layer_sparsity": (("fc1", 1.2),)}, "sparsity of layer fc1"),
        ({"finetune_epochs": -1}, "finetune-epochs must be an integer >= 0"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"batch_size": 0}, "batch-size must be an integer >= 1"),
        ({"device": "tpu"}, "device must be cpu, cuda or auto"),
    ],
)
def test_invalid_configs_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**{"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5, **changes})


def test_parse_layer_sparsity():
    assert parse_layer_sparsity([]) == ()
    assert parse_layer_sparsity(["fc2=0.3", "fc1=0.5", "fc2=0.4"]) == (("fc1", 0.5), ("fc2", 0.4))
    assert parse_layer_sparsity(["features.0.0=0"]) == (("features.0.0", 0.0),)


@pytest.mark.parametrize("item", ["fc1", "=0.5", "fc1=", "fc1=abc", "fc1=nan"])
def test_parse_layer_sparsity_refuses_malformed_items(item):
    with pytest.raises(
        UserError, match=f"--layer-sparsity expects NAME=S with S in \\[0, 1\\), got '{item}'"
    ):
        parse_layer_sparsity([item])


@pytest.mark.parametrize("item", ["fc1=1", "fc1=-0.2", "fc1=inf"])
def test_parse_layer_sparsity_refuses_levels_outside_the_range(item):
    with pytest.raises(UserError, match=r"sparsity of layer fc1 must be a number in \[0, 1\)"):
        parse_layer_sparsity([item])
