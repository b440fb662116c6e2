"""Datasets: the bundled sample datasets and user-supplied ones, as tensor pairs.

The datasets we ship, `.npz` files and tuples are held as tensors (`Split`): they are small and a
sweep evaluates the same test set many times. A user's `torch.utils.data.Dataset` is read lazily in
batches (`DatasetSplit`), never materialised whole. Both answer `len`, `batches`, `loader`, `head`
and `subset`, which is all the engine asks of a split.
Integer inputs (token ids) stay integer; float targets mean regression (see `tasks`).

Every dataset also has a `validation` split for choices made from data (sensitivity,
allocation): a seeded tenth of the training split. The test split is only for reporting.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pruning.core import lab, tasks
from pruning.core.tasks import CLASSIFICATION, Evaluation, Task
from pruning.errors import UserError


@dataclass(frozen=True)
class Split:
    """Samples held as two tensors (the bundled datasets, `.npz` files, tuples)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def loader(self, batch_size: int = 256, shuffle: bool = False, seed: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(
            TensorDataset(self.x, self.y), batch_size=batch_size, shuffle=shuffle, generator=generator
        )

    def batches(
        self, batch_size: int, limit: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first `limit` samples (all by default) in order, `batch_size` at a time."""
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield self.x[start : min(start + batch_size, n)], self.y[start : min(start + batch_size, n)]

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[:n], self.y[:n]

    def subset(self, indices: torch.Tensor) -> Split:
        return Split(self.x[indices], self.y[indices])


class DatasetSplit:
    """A user's `torch.utils.data.Dataset`, read lazily in batches and never held whole: only the
    samples a step needs are loaded (evaluation, a calibration batch, a training batch)."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def loader(self, batch_size: int = 256, shuffle: bool = False, seed: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(
            self.dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=_collate
        )

    def batches(
        self, batch_size: int, limit: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield _collate([self.dataset[i] for i in range(start, min(start + batch_size, n))])

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _collate([self.dataset[i] for i in range(min(n, len(self)))])

    def subset(self, indices: torch.Tensor) -> DatasetSplit:
        return DatasetSplit(torch.utils.data.Subset(self.dataset, indices.tolist()))


def _collate(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pairs as two tensors, with the dtypes of `_split` (integer ids stay integer)."""
    xs, ys = zip(*samples)
    x, y = torch.stack([torch.as_tensor(v) for v in xs]), torch.stack([torch.as_tensor(v) for v in ys])
    return (x if not x.is_floating_point() else x.float()), (y if not y.is_floating_point() else y.float())


VALIDATION_SHARE = 0.1
VALIDATION_SEED = 0


@dataclass(frozen=True)
class Data:
    name: str
    train: Split | DatasetSplit
    test: Split | DatasetSplit
    num_classes: int  # 0 unless the task is classification
    task: Task = CLASSIFICATION
    validation: Split | DatasetSplit | None = None  # a seeded share of `train`, for choices from data
    labels: int = 0  # 1 + the largest integer target (classes, token ids); 0 for float targets

    def evaluate(self, model: nn.Module, split: Split, limit: int | None = None) -> Evaluation:
        """The task's metric of `model` over `split` (its first `limit` samples when given)."""
        return self.task.evaluate(model, split, self.num_classes, limit)

    @property
    def choices(self) -> Split:
        """The split that choices made from data read (never the test split)."""
        return self.validation if self.validation is not None else self.train


def _split(x, y, what: str = "the data") -> Split:
    """Tensors from arrays: integer inputs stay integer (token ids), the rest float32; integer targets
    are class or token ids (int64), float targets regression values (float32). `what` names the
    arrays in errors ("'d.npz' x_train, y_train")."""
    x, y = np.asarray(x), np.asarray(y)
    for role, array in (("inputs", x), ("targets", y)):
        if array.dtype.kind not in "biuf":  # strings, objects, complex numbers, dates
            raise UserError(
                f"{what}: {role} have dtype {array.dtype}; inputs and targets must be real numbers "
                "(integer ids or labels, floats): convert them before loading"
            )
        if array.ndim == 0:
            raise UserError(f"{what}: {role} are a single value; give one row per sample")
    if len(x) != len(y):
        raise UserError(f"{what}: {len(x)} input samples but {len(y)} targets; give one target per sample")
    x = torch.as_tensor(x, dtype=torch.long if np.issubdtype(x.dtype, np.integer) else torch.float32)
    y = torch.as_tensor(y, dtype=torch.long if np.issubdtype(y.dtype, np.integer) else torch.float32)
    return Split(x, y)


def with_task(data: Data, task: str | None) -> Data:
    """`data` as the declared task (None: as inferred)."""
    return (
        data if task is None or task == data.task.name else assemble(data.name, data.train, data.test, task)
    )


def assemble(
    name: str, train: Split | DatasetSplit, test: Split | DatasetSplit, task: str | None = None
) -> Data:
    """A dataset with its task (declared, else inferred from its first samples) and its validation
    split, after one pass over every sample (`_scan`): a dataset a run would trip over later is
    refused here, before anything is stored."""
    for split_name, split in (("train", train), ("test", test)):
        if not len(split):
            raise UserError(
                f"the {split_name} split of dataset '{name}' is empty; it needs at least one sample"
            )
    kind = tasks.get(task) if task else tasks.infer(*_read(name, "train", lambda: train.head(64)))
    labels = _scan(name, {"train": train, "test": test}, kind)
    classes = labels if kind is CLASSIFICATION else 0
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    chosen = order[: max(1, round(VALIDATION_SHARE * len(train)))]
    return Data(name, train, test, classes, kind, train.subset(chosen), labels)


def _read(name: str, split: str, read):
    """`read()`, with a user dataset's own failure (a broken `__getitem__`) as one error line."""
    try:
        return read()
    except UserError:
        raise
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise UserError(f"reading the {split} split of dataset '{name}' failed: {problem}") from exc


def _batches(name: str, split_name: str, split: Split | DatasetSplit) -> Iterator[tuple]:
    """The split's batches in order, read one at a time (a lazy dataset is never held whole)."""
    batches = split.batches(4096)
    while (batch := _read(name, split_name, lambda: next(batches, None))) is not None:
        yield batch


def _scan(name: str, splits: dict[str, Split | DatasetSplit], task: Task) -> int:
    """Check every sample, batch by batch: real-number dtypes, the same sample shapes in every split,
    finite values, integer non-negative targets for classification and lm. Returns 1 + the largest
    integer target (0 for float targets)."""
    shapes, labels = None, 0
    for split_name, split in splits.items():
        where = f"the {split_name} split of dataset '{name}'"
        start = 0
        for x, y in _batches(name, split_name, split):
            if x.is_complex() or not (x.is_floating_point() or x.dtype in INTEGERS):
                raise UserError(f"{where} has inputs of dtype {x.dtype}; inputs must be real numbers")
            if shapes is None:
                shapes = (x.shape[1:], y.shape[1:], split_name)
            elif (x.shape[1:], y.shape[1:]) != shapes[:2]:
                raise UserError(
                    f"{where} has samples shaped {tuple(x.shape[1:])} with targets {tuple(y.shape[1:])}, but "
                    f"the {shapes[2]} split has {tuple(shapes[0])} with targets {tuple(shapes[1])}; "
                    "every split needs the same shapes"
                )
            for role, t in (("inputs", x), ("targets", y)):
                if t.is_floating_point() and not torch.isfinite(t).all():
                    first = start + int((~torch.isfinite(t)).reshape(len(t), -1).any(1).nonzero()[0])
                    raise UserError(
                        f"{where} has NaN or infinite {role} (first at sample {first}); "
                        "remove or replace them before pruning"
                    )
            if task.name != "regression":
                if y.is_floating_point():
                    raise UserError(
                        f"{where} has float targets, but task '{task.name}' needs integer class or token "
                        "ids; convert them to integers, or declare --task regression"
                    )
                if y.numel() and int(y.min()) < 0:
                    first = start + int((y < 0).reshape(len(y), -1).any(1).nonzero()[0])
                    raise UserError(
                        f"{where} has a negative target {int(y.min())} (first at sample {first}); "
                        f"task '{task.name}' needs ids 0, 1, 2, ..."
                    )
                labels = max(labels, 1 + int(y.max()) if y.numel() else 0)
            start += len(y)
    return labels


INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits' borders) stay at zero
    return (train - mean) / std, (test - mean) / std


@functools.cache  # tensors are never modified in place; a sweep or preview reloads for free
def digits() -> Data:
    """scikit-learn's bundled 8x8 digits: fixed stratified 75/25 split, standardised."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    x_tr, x_te = _standardise(x_tr.astype(np.float32), x_te.astype(np.float32))
    return assemble("digits", _split(x_tr, y_tr), _split(x_te, y_te), "classification")


MNIST1D_ARGS = {"num_samples": 12000, "train_split": 10000 / 12000, "seed": 42}


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "pruning-lab"


def mnist1d() -> Data:
    """MNIST-1D generated offline with the `mnist1d` package (never its download path).

    Generation takes a few seconds, so the arrays are cached on disk (and in memory)
    keyed by the generator arguments.
    """
    return _mnist1d(json.dumps(MNIST1D_ARGS, sort_keys=True), str(_cache_dir()))


@functools.cache
def _mnist1d(args_json: str, cache_dir: str) -> Data:
    key = hashlib.sha256(args_json.encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"mnist1d-{key}.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        for name, value in json.loads(args_json).items():
            setattr(args, name, value)
        d = make_dataset(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        os.replace(tmp, path)
    with np.load(path) as d:
        x_tr, x_te = _standardise(d["x"].astype(np.float32), d["x_test"].astype(np.float32))
        return assemble("mnist1d", _split(x_tr, d["y"]), _split(x_te, d["y_test"]), "classification")


@functools.cache
def shakespeare() -> Data:
    """The sample language model's corpus (`sample_models/text.py`): 128-character windows of 14 of
    Shakespeare's plays for training, a held-out play for testing; task lm."""
    from sample_models import text

    d = text.arrays()
    return assemble("shakespeare", _split(d["x_train"], d["y_train"]), _split(d["x_test"], d["y_test"]), "lm")


DATASETS = {"digits": digits, "mnist1d": mnist1d, "shakespeare": shakespeare}


def _from_tuple_or_dataset(obj, what: str) -> Split | DatasetSplit:
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        try:
            x, y = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in obj)
        except (RuntimeError, TypeError) as exc:  # sparse or meta tensors have no plain values
            raise UserError(f"{what} must be a tuple (X, y) of plain tensors or arrays ({exc})") from exc
        return _split(x, y, what)
    if isinstance(obj, torch.utils.data.Dataset):
        try:
            len(obj)
            _collate([obj[0]])
        except Exception as exc:
            raise UserError(
                f"{what} must be a map-style Dataset of (x, y) pairs, with a length "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return DatasetSplit(obj)  # read lazily: never materialised whole
    raise UserError(f"{what} must be a torch Dataset or a tuple (X, y) of tensors")


def load_python_object(spec: str, what: str):
    """Import `path/to/file.py:function` and call it with no arguments."""
    path, _, func = spec.rpartition(":")
    if not path.endswith(".py") or not func:
        raise UserError(f"{what} '{spec}' must look like path/to/file.py:function")
    if not Path(path).is_file():
        raise UserError(f"{what} file '{path}' does not exist")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"could not import '{path}': {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(module, func, None)):
        raise UserError(f"'{path}' has no function '{func}'")
    try:
        return getattr(module, func)()
    except UserError:
        raise
    except (Exception, MemoryError) as exc:  # a torch allocation that does not fit is a RuntimeError
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise UserError(f"{what} function '{spec}' failed: {problem}; fix it and run again") from exc


MEMORY_BUDGET_ENV = "PRUNING_LAB_MEMORY_BUDGET"
MEMORY_SHARE = 0.5  # of physical memory, by default: a run holds the dense model, copies and batches


def memory_budget() -> int:
    """Bytes one model or one dataset may take in memory: $PRUNING_LAB_MEMORY_BUDGET (bytes, or with a
    K, M, G or T suffix), else half of the physical memory."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if not text:
        return int(MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text, re.IGNORECASE)
    if not found:
        raise UserError(f"{MEMORY_BUDGET_ENV} must be a size such as 8G or 512M, got '{text}'")
    return int(float(found.group(1)) * 1024 ** "_KMGT".index(found.group(2).upper() or "_"))


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def check_memory(needed: int, what: str) -> None:
    """Refuse `what` when it would take more than the memory budget, before it is loaded."""
    budget = memory_budget()
    if needed > budget:
        raise UserError(
            f"{what} needs {_size(needed)} in memory, over the budget of {_size(budget)}; use a smaller "
            f"one, or raise {MEMORY_BUDGET_ENV} (e.g. {MEMORY_BUDGET_ENV}=32G) if the machine has the memory"
        )


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(spec: str) -> tuple[Split, Split]:
    """The four arrays of an .npz file, after checking from the zip's headers alone (nothing is
    decompressed) that they are there and fit the memory budget."""
    if not Path(spec).is_file():
        raise UserError(f"dataset file '{spec}' does not exist")
    expected = f"'{spec}' must be an .npz with arrays {', '.join(NPZ_ARRAYS)} of numbers"
    how = "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
    if not zipfile.is_zipfile(spec):
        raise UserError(f"{expected} (it is not a zip of .npy arrays); {how}")
    with zipfile.ZipFile(spec) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    missing = [name for name in NPZ_ARRAYS if f"{name}.npy" not in sizes]
    if missing:
        raise UserError(f"{expected} (it has no {', '.join(missing)}); {how}")
    check_memory(sum(sizes[f"{name}.npy"] for name in NPZ_ARRAYS), f"dataset '{spec}' (uncompressed)")
    try:
        with np.load(spec, allow_pickle=False) as d:
            arrays = {name: d[name] for name in NPZ_ARRAYS}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{expected} ({str(exc).splitlines()[0]}); {how}") from exc
    return tuple(
        _split(arrays[f"x_{part}"], arrays[f"y_{part}"], f"'{spec}' x_{part}, y_{part}")
        for part in ("train", "test")
    )


def load(spec: str) -> Data:
    """A sample dataset id, `file.py:function` returning (train, test), or an .npz file."""
    spec = lab.dataset_source(spec)  # a lab file's dataset id: its source
    if spec in DATASETS:
        return DATASETS[spec]()
    if spec.endswith(".npz"):
        train, test = _read_npz(spec)
    elif ".py:" in spec:
        pair = load_python_object(spec, "dataset")
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise UserError(f"'{spec}' must return (train, test)")
        train, test = (_from_tuple_or_dataset(p, f"'{spec}' {n}") for p, n in zip(pair, ("train", "test")))
    else:
        known = ", ".join(DATASETS)
        raise UserError(f"unknown dataset '{spec}': use one of {known}, an .npz file or file.py:function")
    return assemble(Path(spec.split(":")[0]).stem, train, test)
