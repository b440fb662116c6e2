"""The model registry, user models and safe weight loading: bad files are refused with clear messages."""

from __future__ import annotations

import os
import pathlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

from pruning.core import masks, models
from pruning.errors import UserError


class Payload:
    """Unpickling this runs code: it creates `marker`. A safe loader must never do that."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class ShellPayload(Payload):
    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_sample_models_load_their_trained_weights():
    assert {"mlp-digits", "cnn-digits", "resnet-mnist1d", "tinyformer-mnist1d"} <= set(models.SAMPLE_MODELS)
    model = models.load("mlp-digits")
    assert not model.training
    stored = models.read_state_dict(models.SAMPLE_MODELS["mlp-digits"].weights)
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    assert models.default_dataset("mlp-digits") == "digits"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown model 'nosuch': use one of mlp-digits.*file.py:function"):
        models.build("nosuch")


def test_missing_and_unsupported_weights_files(tmp_path):
    with pytest.raises(UserError, match="weights file '.*missing.safetensors' does not exist"):
        models.read_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match="must be .safetensors, .pt or .pth"):
        models.read_state_dict(tmp_path / "w.bin")


def test_malformed_safetensors_is_refused(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="is not a valid safetensors file"):
        models.read_state_dict(path)
    path.write_bytes(b"")
    with pytest.raises(UserError, match="is not a valid safetensors file"):
        models.read_state_dict(path)


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    # guards the next test: this payload is live, so its marker staying absent there means something
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch.save", "torch.save in a dict", "raw pickle", "os.system"])
def test_a_pickled_object_is_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    if kind == "torch.save":
        torch.save(Payload(marker), path)
    elif kind == "torch.save in a dict":
        torch.save({"fc1.weight": torch.zeros(2), "evil": Payload(marker)}, path)
    elif kind == "raw pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save(ShellPayload(marker), path)
    with pytest.raises(UserError) as caught:
        models.load("mlp-digits", path)
    message = str(caught.value)
    assert "weights-only load refuses" in message and "save a plain state_dict" in message
    # one plain line; no terminal escapes, and no hint to re-load the file unsafely
    assert "\n" not in message and "\x1b" not in message
    assert "weights_only" not in message and "trust" not in message
    assert not marker.exists()


def test_plain_state_dicts_in_pt_files_load(tmp_path):
    reference = models.load("mlp-digits")
    torch.save(reference.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    for name in ("plain.pt", "checkpoint.pth"):
        model = models.load("mlp-digits", tmp_path / name)
        assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(UserError, match="does not hold a state_dict"):
        models.load("mlp-digits", tmp_path / "list.pt")


def test_mismatched_weights_list_missing_unexpected_and_mismatched_keys(tmp_path):
    state = dict(models.build("mlp-digits").state_dict())
    del state["fc1.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["fc2.weight"] = torch.zeros(5, 5)
    save_file(state, tmp_path / "other.safetensors")
    with pytest.raises(UserError) as caught:
        models.load("mlp-digits", tmp_path / "other.safetensors")
    message = str(caught.value)
    assert "do not match the model" in message
    assert "missing: fc1.bias" in message
    assert "unexpected: extra.weight" in message
    assert "shape mismatch: fc2.weight (5, 5) vs (100, 300)" in message
    assert "fc1.weight" not in message


def test_non_finite_weights_name_the_tensors(tmp_path):
    state = {k: v.clone() for k, v in models.build("mlp-digits").state_dict().items()}
    state["fc2.weight"][3, 4] = float("nan")
    state["fc3.bias"][0] = float("inf")
    save_file(state, tmp_path / "nan.safetensors")
    with pytest.raises(UserError, match=r"NaN or infinite values in: fc2.weight, fc3.bias$"):
        models.load("mlp-digits", tmp_path / "nan.safetensors")


def test_user_models_from_a_python_file(tmp_path):
    source = tmp_path / "my_model.py"
    source.write_text(
        "from torch import nn\n"
        "def small():\n"
        "    return nn.Sequential(nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 10))\n"
        "def no_layers():\n"
        "    return nn.Sequential(nn.Flatten(), nn.ReLU())\n"
        "def not_a_model():\n"
        "    return 42\n"
    )
    model = models.build(f"{source}:small")
    assert list(masks.prunable_layers(model)) == ["0", "2"]
    save_file(model.state_dict(), tmp_path / "small.safetensors")
    loaded = models.load(f"{source}:small", tmp_path / "small.safetensors")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert models.default_dataset(f"{source}:small") is None
    with pytest.raises(UserError, match="no prunable layers"):
        masks.prunable_layers(models.build(f"{source}:no_layers"))
    with pytest.raises(UserError, match="returned int, not an nn.Module"):
        models.build(f"{source}:not_a_model")
    with pytest.raises(UserError, match="has no function 'nope'"):
        models.build(f"{source}:nope")
    with pytest.raises(UserError, match="does not exist"):
        models.build(f"{tmp_path / 'absent.py'}:small")
    (tmp_path / "broken.py").write_text("def small(:\n")
    with pytest.raises(UserError, match="could not import .*SyntaxError"):
        models.build(f"{tmp_path / 'broken.py'}:small")
