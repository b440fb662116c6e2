"""The lab file: entries read with paths made absolute, mistakes refused by name, and lab ids working
wherever a sample id does (models, data, submit, the command line and its workers)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pruning.cli import main as cli_main
from pruning.core import data, lab, models
from pruning.errors import UserError
from pruning.runs import submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store, default_root
from tests.lab_folder import LAB, write_lab


@pytest.fixture
def lab_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab folder (away from the working directory) made the active lab file."""
    path = write_lab(tmp_path / "ours")
    monkeypatch.setenv(lab.LAB_ENV, str(path))
    return path


def test_entries_resolve_paths_against_the_lab_folder(lab_file: Path, monkeypatch) -> None:
    folder = lab_file.parent
    monkeypatch.chdir(folder.parent)  # elsewhere: relative paths must not follow the working directory
    loaded = lab.load_lab(lab_file)
    tiny = loaded.models["tiny"]
    assert tiny.source == f"{folder / 'models' / 'net.py'}:build"
    assert tiny.weights == str(folder / "weights" / "tiny.safetensors")
    assert (tiny.data, tiny.task, tiny.title) == ("blobs", "classification", "Tiny *net* (v1)")
    assert loaded.models["bare"].title == "bare" and loaded.models["bare"].weights is None
    assert loaded.datasets["blobs"].source == str(folder / "data" / "blobs.npz")


def test_lab_ids_load_like_sample_ids(lab_file: Path) -> None:
    model = models.load("tiny")
    assert not model.training
    weights = models.read_state_dict(lab_file.parent / "weights" / "tiny.safetensors")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert models.default_dataset("tiny") == "blobs"
    assert (lab.model_task("tiny"), lab.model_task("bare"), lab.model_task("mlp-digits")) == (
        "classification",
        None,
        None,
    )
    blobs = data.load("blobs")
    assert (len(blobs.train), len(blobs.test), blobs.num_classes) == (180, 60, 3)
    assert not torch.equal(models.load("bare")[0].weight, model[0].weight)  # no weights: freshly built


def test_given_weights_win_over_the_entry(lab_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = {k: torch.zeros_like(v) for k, v in models.build("tiny").state_dict().items()}
    save_file(other, tmp_path / "zeros.safetensors")
    assert not models.load("tiny", tmp_path / "zeros.safetensors")[0].weight.any()


def test_a_lab_model_runs_through_submit(lab_file: Path, store_dir: Path) -> None:
    config = RunConfig("tiny", "magnitude", 0.5, latency=False)
    with Store(store_dir) as store:
        (run_id,) = submit.submit(store, [config])
        record = store.get(run_id)
    assert record.status == "succeeded", record.error
    assert record.config["model"] == "tiny"  # the id is stored, so the run reads as the user named it
    assert record.result["dense"]["accuracy"] > 0.8
    assert record.result["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_cli_run_with_lab_file(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write_lab(tmp_path / "ours")
    monkeypatch.delenv(lab.LAB_ENV, raising=False)
    store = str(tmp_path / "store")
    args = ["run", "--lab", str(path), "--model", "tiny", "--method", "magnitude", "--sparsity", "0.5"]
    assert cli_main([*args, "--no-latency", "--quiet", "--json", "--store", store]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["model"], result["status"]) == ("tiny", "succeeded")
    assert lab.LAB_ENV not in os.environ  # set for the command (and its workers) only

    assert cli_main(["models", "--lab", str(path), "--json", "--store", store]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"mlp-digits", "tiny", "bare"} <= set(rows)
    assert (rows["tiny"]["label"], rows["tiny"]["params"], rows["tiny"]["dataset"]) == (
        "Tiny *net* (v1)",
        131,
        "blobs",
    )
    assert rows["bare"]["dataset"] == "blobs.npz"


def test_cli_finds_lab_toml_in_the_store_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(lab.LAB_ENV, raising=False)
    write_lab(tmp_path / "store")
    assert cli_main(["models", "--json", "--store", str(tmp_path / "store")]) == 0
    assert "tiny" in {r["id"] for r in json.loads(capsys.readouterr().out)}


def test_cli_refuses_a_missing_lab_file(tmp_path: Path, capsys) -> None:
    args = ["run", "--lab", str(tmp_path / "none.toml"), "--model", "mlp-digits", "--method", "magnitude"]
    assert cli_main([*args, "--sparsity", "0.5", "--store", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: lab file '{tmp_path / 'none.toml'}' does not exist; "
        "create it or pass --lab with an existing file"
    )


@pytest.mark.slow
def test_workers_resolve_lab_ids(tmp_path: Path, cli) -> None:
    """Detached workers (another process, another working directory) find the same lab file."""
    path = write_lab(tmp_path / "ours")
    args = ["sweep", "--lab", str(path), "--model", "tiny", "--methods", "magnitude,random"]
    done = cli(*args, "--sparsities", "0.5", "--executor", "process", "--workers", "2",
               "--no-latency", "--quiet", "--json", "--store", str(tmp_path / "store"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {(r["model"], r["status"]) for r in json.loads(done.stdout)} == {("tiny", "succeeded")}


# (what to change in the lab file, a fragment of the one-sentence error)
MISTAKES = {
    "malformed": ("[models.tiny\n", "is not valid TOML"),
    "unknown section": (
        '[things.x]\nsource = "a"\n',
        "unknown sections things; use [models.ID] and [datasets.ID]",
    ),
    "unknown key": (
        '[models.x]\nsource = "mlp-digits"\nwieghts = "w.pt"\n',
        "model 'x' has unknown keys wieghts; use only data, label, source, task, weights",
    ),
    "missing source file": (
        '[models.x]\nsource = "models/gone.py:build"\n',
        "model 'x' names 'models/gone.py', which does not exist",
    ),
    "missing weights": (
        '[models.x]\nsource = "mlp-digits"\nweights = "w/gone.safetensors"\n',
        "model 'x' names 'w/gone.safetensors', which does not exist",
    ),
    "missing dataset file": (
        '[datasets.d]\nsource = "gone.npz"\n',
        "dataset 'd' names 'gone.npz', which does not exist",
    ),
    "model id clash": (
        '[models.mlp-digits]\nsource = "models/net.py:build"\n',
        "model 'mlp-digits' has the id of a sample model; give it another id",
    ),
    "dataset id clash": (
        '[datasets.digits]\nsource = "data/blobs.npz"\n',
        "dataset 'digits' has the id of a sample",
    ),
    "no source": ('[models.x]\nlabel = "X"\n', "model 'x' has no source; add source = ..."),
    "bad source": ('[models.x]\nsource = "nosuch"\n', "needs source = path/to/file.py:function, hf:PATH"),
    "bad task": ('[models.x]\nsource = "mlp-digits"\ntask = "ranking"\n', "task 'ranking'; use one of"),
    "unknown data": (
        '[models.x]\nsource = "mlp-digits"\ndata = "imagenet"\n',
        "names the dataset 'imagenet'",
    ),
    "not text": ("[models.x]\nsource = 3\n", "has non-text values for source; quote them"),
    "bad weights suffix": (
        '[models.x]\nsource = "mlp-digits"\nweights = "data/blobs.npz"\n',
        "weights that are not .safetensors, .pt or .pth",
    ),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_mistakes_are_refused_in_one_sentence(lab_file: Path, name: str) -> None:
    text, fragment = MISTAKES[name]
    lab_file.write_text(text)
    with pytest.raises(UserError) as caught:
        lab.load_lab(lab_file)
    message = str(caught.value)
    assert message.startswith(f"lab file '{lab_file}'") and fragment in message, message
    assert "\n" not in message


def test_a_broken_lab_file_never_breaks_sample_models(lab_file: Path) -> None:
    lab_file.write_text("[models.tiny\n")
    assert models.default_dataset("mlp-digits") == "digits"
    models.load("mlp-digits")
    data.load("digits")
    with pytest.raises(UserError, match="is not valid TOML"):
        models.load("tiny")


def test_edits_are_seen_and_no_file_is_an_empty_lab(lab_file: Path) -> None:
    assert set(lab.active().models) == {"tiny", "bare"}
    lab_file.write_text(LAB.replace("[models.bare]", "[models.bare2]"))
    os.utime(lab_file, ns=(1, 1))  # a new stamp even where the clock is coarse
    assert set(lab.active().models) == {"tiny", "bare2"}
    lab_file.unlink()
    assert lab.active().models == {}
    with pytest.raises(UserError, match="unknown model 'tiny'"):
        models.build("tiny")


def test_default_lab_file_is_in_the_store_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(lab.LAB_ENV, raising=False)
    monkeypatch.setenv("PRUNING_LAB_HOME", str(tmp_path / "home"))
    assert lab.default_path() == default_root() / "lab.toml"
    monkeypatch.delenv("PRUNING_LAB_HOME")
    assert lab.default_path() == default_root() / "lab.toml"


def test_the_lab_folder_can_move(lab_file: Path, tmp_path: Path, monkeypatch) -> None:
    moved = shutil.copytree(lab_file.parent, tmp_path / "moved")
    monkeypatch.setenv(lab.LAB_ENV, str(moved / "lab.toml"))
    assert lab.active().models["tiny"].weights == str(moved / "weights" / "tiny.safetensors")


def test_the_lab_knows_the_same_sample_datasets_as_the_data_module():
    from pruning.core import data, lab

    assert lab._sample_datasets() == set(data.DATASETS)
