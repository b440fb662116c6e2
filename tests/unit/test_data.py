"""Datasets: the bundled ones, .npz and file.py:function, and clear errors for everything else."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from pruning.core import data
from pruning.errors import UserError


class Payload:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_digits_is_a_fixed_standardised_split():
    digits = data.load("digits")
    assert (digits.name, digits.num_classes) == ("digits", 10)
    assert digits.train.x.shape == (1347, 64) and digits.test.x.shape == (450, 64)
    assert digits.train.x.dtype == torch.float32 and digits.train.y.dtype == torch.long
    assert torch.bincount(digits.test.y).min() >= 43  # stratified: every class is in the test set
    assert digits.train.x.mean().abs() < 1e-5
    again = data.load("digits")
    assert torch.equal(digits.test.x, again.test.x) and torch.equal(digits.train.y, again.train.y)


def test_mnist1d_is_generated_offline_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(data, "MNIST1D_ARGS", {"num_samples": 300, "train_split": 0.8, "seed": 7})
    first = data.load("mnist1d")
    assert first.train.x.shape == (240, 40) and first.test.x.shape == (60, 40) and first.num_classes == 10
    (cached,) = (tmp_path / "pruning-lab").glob("mnist1d-*.npz")

    import mnist1d.data

    def no_generation(*args, **kwargs):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    second = data.load("mnist1d")
    assert torch.equal(first.train.x, second.train.x) and cached.exists()


def test_loader_is_seeded():
    split = data.Split(torch.arange(100.0).unsqueeze(1), torch.arange(100) % 3)
    order = lambda seed: torch.cat([x for x, _ in split.loader(10, shuffle=True, seed=seed)]).flatten()
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    assert torch.equal(torch.cat([x for x, _ in split.loader(30)]).flatten(), torch.arange(100.0))


def test_npz_files(tmp_path):
    path = tmp_path / "toy.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(20, 5)),
        y_train=rng.integers(0, 4, 20),
        x_test=rng.normal(size=(8, 5)),
        y_test=np.array([0, 1, 2, 3, 4, 0, 1, 2]),
    )
    toy = data.load(str(path))
    assert (toy.name, toy.num_classes, len(toy.train), len(toy.test)) == ("toy", 5, 20, 8)
    assert toy.train.x.dtype == torch.float32 and toy.test.y.dtype == torch.long

    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(UserError, match="must be an .npz with arrays x_train, y_train, x_test, y_test"):
        data.load(str(tmp_path / "partial.npz"))
    with pytest.raises(UserError, match="dataset file '.*absent.npz' does not exist"):
        data.load(str(tmp_path / "absent.npz"))


def test_npz_holding_pickled_objects_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    objects = np.empty(1, dtype=object)
    objects[0] = Payload(marker)
    np.savez(tmp_path / "evil.npz", x_train=objects, y_train=[0], x_test=objects, y_test=[0])
    with pytest.raises(UserError, match="must be an .npz with arrays"):
        data.load(str(tmp_path / "evil.npz"))
    assert not marker.exists()


def test_python_function_datasets(tmp_path):
    source = tmp_path / "my_data.py"
    source.write_text(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "def tuples():\n"
        "    return (torch.randn(12, 3), torch.arange(12) % 3), (torch.randn(6, 3), torch.arange(6) % 3)\n"
        "def datasets():\n"
        "    x, y = torch.randn(10, 3), torch.arange(10) % 2\n"
        "    return TensorDataset(x, y), TensorDataset(x[:4], y[:4])\n"
        "def single():\n"
        "    return torch.zeros(3)\n"
        "def odd():\n"
        "    return 'a', 'b'\n"
    )
    pair = data.load(f"{source}:tuples")
    assert (pair.name, len(pair.train), len(pair.test), pair.num_classes) == ("my_data", 12, 6, 3)
    sets = data.load(f"{source}:datasets")
    assert len(sets.train) == 10 and sets.num_classes == 2
    x, y = sets.test.head(4)
    assert x.shape == (4, 3) and y.tolist() == [0, 1, 0, 1]
    with pytest.raises(UserError, match="must return \\(train, test\\)"):
        data.load(f"{source}:single")
    with pytest.raises(UserError, match="must be a torch Dataset or a tuple"):
        data.load(f"{source}:odd")


def test_unknown_dataset_says_what_is_accepted():
    with pytest.raises(
        UserError, match="unknown dataset 'nosuch': use one of digits, mnist1d, shakespeare, an .npz file"
    ):
        data.load("nosuch")


COUNTING_DATA = """
import torch
from torch.utils.data import Dataset

class Made(Dataset):
    # samples made on demand; every index read is recorded, so a test sees what was loaded

    def __init__(self, n, offset):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        with open(__file__ + ".reads", "a") as log:
            log.write(f"{self.offset + i} ")
        g = torch.Generator().manual_seed(self.offset + i)
        return torch.randn(64, generator=g), (self.offset + i) % 10


def make():
    return Made(600, 0), Made(300, 10_000)
"""


def test_a_user_dataset_is_read_lazily_in_batches(tmp_path):
    from pruning.runs import experiment
    from pruning.runs.config import RunConfig

    (tmp_path / "lazy.py").write_text(COUNTING_DATA)
    config = RunConfig("mlp-digits", "taylor", 0.5, data=f"{tmp_path / 'lazy.py'}:make", latency=False,
                       eval_samples=50, calib_samples=64, options=(("batches", 1),))  # fmt: skip
    result = experiment.run(config)
    assert result.sparsity == pytest.approx(0.5, abs=1e-3) and result.dense.accuracy is not None
    reads = [int(i) for i in (tmp_path / "lazy.py.reads").read_text().split()]
    beyond = [i for i in reads if i >= 10_000 + 256]  # past the example batch and the 50 evaluated
    assert sorted(beyond) == list(range(10_256, 10_300))  # each read once, batch by batch, for the classes
    loaded = data.load(f"{tmp_path / 'lazy.py'}:make")
    assert not hasattr(loaded.train, "x") and len(loaded.validation) == 60  # never materialised
