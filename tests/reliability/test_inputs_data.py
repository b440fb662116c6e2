"""Datasets a run would trip over are refused before anything is stored, each in one `error:` line:
wrong dtypes, lengths and shapes, NaN or infinite values, labels a task cannot use, files that are
not .npz archives, data functions that raise, and archives that expand beyond the memory budget
(read from the zip's headers, never decompressed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pruning.cli import main

MODEL = (
    "import torch\nfrom torch import nn\ndef net():\n    torch.manual_seed(0)\n    return nn.Linear(6, 3)\n"
)


def arrays(**changes) -> dict[str, np.ndarray]:
    """A small three-class dataset of six features, with `changes` in place of its arrays."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    return {"x_train": x[:40], "y_train": y[:40], "x_test": x[40:], "y_test": y[40:], **changes}


def refused(tmp_path: Path, capsys, data: str, *extra: str) -> str:
    """The one error line of `run` on `data`, after checking that nothing was stored."""
    (tmp_path / "net.py").write_text(MODEL)
    store = tmp_path / "lab"
    argv = ["run", "--model", f"{tmp_path / 'net.py'}:net", "--data", data, "--method", "magnitude"]
    code = main([*argv, "--sparsity", "0.5", "--finetune-epochs", "1", "--no-latency", "--quiet",
                 "--store", str(store), *extra])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert not store.exists()
    return lines[0]


def npz(tmp_path: Path, **changes) -> str:
    path = tmp_path / "toy.npz"
    np.savez(path, **arrays(**changes))
    return str(path)


def test_infinite_training_inputs_are_refused(tmp_path, capsys):
    x = arrays()["x_train"].copy()
    x[7, 2] = np.inf
    assert refused(tmp_path, capsys, npz(tmp_path, x_train=x)) == (
        "error: the train split of dataset 'toy' has NaN or infinite inputs (first at sample 7); "
        "remove or replace them before pruning"
    )


def test_nan_test_inputs_are_refused(tmp_path, capsys):
    x = arrays()["x_test"].copy()
    x[4, 0] = np.nan
    assert refused(tmp_path, capsys, npz(tmp_path, x_test=x)) == (
        "error: the test split of dataset 'toy' has NaN or infinite inputs (first at sample 4); "
        "remove or replace them before pruning"
    )


def test_float_labels_are_not_truncated_into_classes(tmp_path, capsys):
    data = npz(tmp_path, y_train=arrays()["y_train"] + 0.5, y_test=arrays()["y_test"] + 0.5)
    assert refused(tmp_path, capsys, data, "--task", "classification") == (
        "error: the train split of dataset 'toy' has float targets, but task 'classification' needs "
        "integer class or token ids; convert them to integers, or declare --task regression"
    )


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_split_is_refused(tmp_path, capsys, split):
    empty = {f"x_{split}": np.zeros((0, 6), np.float32), f"y_{split}": np.zeros(0, np.int64)}
    assert refused(tmp_path, capsys, npz(tmp_path, **empty)) == (
        f"error: the {split} split of dataset 'toy' is empty; it needs at least one sample"
    )


def test_negative_labels_are_refused(tmp_path, capsys):
    assert refused(tmp_path, capsys, npz(tmp_path, y_train=arrays()["y_train"] - 1)).startswith(
        "error: the train split of dataset 'toy' has a negative target -1 (first at sample "
    )


def test_one_hot_labels_are_refused_by_the_task(tmp_path, capsys):
    one_hot = {f"y_{s}": np.eye(3, dtype=np.int64)[arrays()[f"y_{s}"]] for s in ("train", "test")}
    data = npz(tmp_path, **one_hot)
    assert refused(tmp_path, capsys, data) == (
        f"error: dataset '{data}' does not fit this model as task 'classification': classification needs "
        "outputs (batch, classes) and one label per sample, got outputs (2, 3) for targets (2, 3); "
        "check --data or declare the right --task"
    )


def test_string_labels_are_refused(tmp_path, capsys):
    data = npz(tmp_path, y_train=arrays()["y_train"].astype(str))
    assert refused(tmp_path, capsys, data) == (
        f"error: '{data}' x_train, y_train: targets have dtype <U21; inputs and targets must be real "
        "numbers (integer ids or labels, floats): convert them before loading"
    )


def test_complex_inputs_are_refused(tmp_path, capsys):
    data = npz(tmp_path, x_test=arrays()["x_test"].astype(np.complex64))
    assert refused(tmp_path, capsys, data) == (
        f"error: '{data}' x_test, y_test: inputs have dtype complex64; inputs and targets must be real "
        "numbers (integer ids or labels, floats): convert them before loading"
    )


def test_an_npy_file_named_npz_is_refused(tmp_path, capsys):
    path = tmp_path / "renamed.npz"
    with open(path, "wb") as f:
        np.save(f, arrays()["x_train"])
    assert refused(tmp_path, capsys, str(path)) == (
        f"error: '{path}' must be an .npz with arrays x_train, y_train, x_test, y_test of numbers (it is "
        "not a zip of .npy arrays); save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
        "y_test=...)"
    )


def test_mismatched_lengths_are_refused(tmp_path, capsys):
    data = npz(tmp_path, y_train=arrays()["y_train"][:30])
    assert refused(tmp_path, capsys, data) == (
        f"error: '{data}' x_train, y_train: 40 input samples but 30 targets; give one target per sample"
    )


def test_training_data_that_would_only_fail_while_fine_tuning_is_refused(tmp_path, capsys):
    wider = np.concatenate([arrays()["x_train"], arrays()["x_train"][:, :1]], axis=1)
    assert refused(tmp_path, capsys, npz(tmp_path, x_train=wider)) == (
        "error: the test split of dataset 'toy' has samples shaped (6,) with targets (), but the train "
        "split has (7,) with targets (); every split needs the same shapes"
    )


def test_a_data_function_that_raises_is_one_line(tmp_path, capsys):
    (tmp_path / "data.py").write_text("def load():\n    raise RuntimeError('no such bucket')\n")
    spec = f"{tmp_path / 'data.py'}:load"
    assert refused(tmp_path, capsys, spec) == (
        f"error: dataset function '{spec}' failed: RuntimeError: no such bucket; fix it and run again"
    )


def test_an_npz_that_expands_beyond_the_memory_budget_is_refused_unread(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bomb.npz"
    big = np.zeros((4000, 1000), np.float32)  # 16 MB of zeros: a few kB compressed
    np.savez_compressed(path, **arrays(x_train=big, y_train=np.zeros(4000, np.int64)))
    assert path.stat().st_size < 200_000
    monkeypatch.setenv("PRUNING_LAB_MEMORY_BUDGET", "8M")
    assert refused(tmp_path, capsys, str(path)) == (
        f"error: dataset '{path}' (uncompressed) needs 15 MB in memory, over the budget of 8 MB; use a "
        "smaller one, or raise PRUNING_LAB_MEMORY_BUDGET (e.g. PRUNING_LAB_MEMORY_BUDGET=32G) if the "
        "machine has the memory"
    )


def test_a_memory_budget_that_is_not_a_size_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRUNING_LAB_MEMORY_BUDGET", "lots")
    assert refused(tmp_path, capsys, npz(tmp_path)) == (
        "error: PRUNING_LAB_MEMORY_BUDGET must be a size such as 8G or 512M, got 'lots'"
    )
