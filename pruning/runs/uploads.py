"""Files people upload through the dashboard: weights and datasets, checked, then kept in the store.

What a browser sends is data, never code: weights are read as `.safetensors` or as a `.pt`/`.pth`
state_dict through `models.read_state_dict` (`torch.load(..., weights_only=True)`), datasets as an
`.npz` without pickles or a CSV converted to one. A file is checked with the command line's own
loaders before anything is kept, and is kept at `<store>/uploads/<sha256 prefix>/<name>`: the store
picks the folder, the browser only suggests a file name, which is cut down to safe characters. The
same content lands in the same place, so uploading a file twice keeps one copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pruning.core import data as datasets
from pruning.core import models
from pruning.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
DATA_SUFFIXES = (".npz", ".csv")
DIGEST_CHARS = 16
TEST_SHARE = 0.2  # a CSV is one table: this share of its rows (seeded shuffle) becomes the test split
CSV_SEED = 0


@dataclass(frozen=True)
class Upload:
    path: Path
    kind: Literal["weights", "data"]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def title(self) -> str:
        """The file name and its content's short digest: two uploads of one name stay apart."""
        return f"{self.path.name} ({self.path.parent.name[:8]})"


def folder(root: str | Path) -> Path:
    return Path(root) / "uploads"


def safe_name(name: str, suffixes: tuple[str, ...]) -> str:
    """The browser's file name reduced to letters, digits, '.', '-' and '_', without any folder part;
    its suffix must be one of `suffixes`."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1])
    suffix = next((s for s in suffixes if base.lower().endswith(s)), None)
    if suffix is None:
        raise UserError(f"'{name}' must be a {', '.join(suffixes)} file; upload one of those")
    stem = base[: -len(suffix)].lstrip(".")[:80] or "upload"  # no hidden files
    return stem + suffix  # the suffix in lower case: the loaders go by it


def keep_weights(root: str | Path, name: str, content: bytes, model: str) -> Upload:
    """Keep a weights file once it loads into `model` (read safely, names and shapes matching)."""
    name = safe_name(name, WEIGHT_SUFFIXES)
    digest = hashlib.sha256(content).hexdigest()
    return _keep(root, name, content, digest, "weights", lambda path: models.load(model, path))


def keep_data(root: str | Path, name: str, content: bytes, label: str | None = None) -> Upload:
    """Keep a dataset: an `.npz` with x_train, y_train, x_test, y_test as it is, a CSV converted to
    one (`label` names the target column; the other columns are the inputs)."""
    name = safe_name(name, DATA_SUFFIXES)
    digest = hashlib.sha256(content + (f"\0{label}".encode() if name.endswith(".csv") else b"")).hexdigest()
    if name.endswith(".csv"):
        if not label:
            raise UserError(f"'{name}' is a CSV: choose its label column")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **csv_arrays(content, label, name))
        name, content = name[: -len(".csv")] + ".npz", buffer.getvalue()
    return _keep(root, name, content, digest, "data", lambda path: datasets.load(str(path)))


def csv_columns(content: bytes, name: str = "the CSV") -> list[str]:
    """The columns of a CSV, for choosing its label column."""
    return list(_read_csv(content, name).columns)


def csv_arrays(content: bytes, label: str, name: str = "the CSV") -> dict[str, np.ndarray]:
    """A CSV as .npz arrays: every column but `label` as float32 inputs; integer labels kept, text
    labels numbered in sorted order, other numbers kept as regression targets."""
    frame = _read_csv(content, name)
    if label not in frame.columns:
        raise UserError(
            f"'{name}' has no column '{label}'; choose one of {', '.join(map(str, frame.columns))}"
        )
    inputs = frame.drop(columns=[label])
    text = [str(c) for c in inputs.columns if inputs[c].dtype.kind not in "biuf"]
    if text or inputs.empty:
        problem = f"non-numeric input columns {', '.join(text)}" if text else "no input columns"
        raise UserError(f"'{name}' has {problem}; inputs must be numbers (encode them before uploading)")
    if frame.isna().any().any() or len(frame) < 2:
        raise UserError(f"'{name}' has empty cells or fewer than 2 rows; fill or drop them before uploading")
    target = frame[label]
    if target.dtype.kind in "biu":
        y = target.to_numpy(np.int64)
    elif target.dtype.kind == "f":
        y = target.to_numpy(np.float32)
    else:
        y = np.unique(target.astype(str), return_inverse=True)[1].astype(np.int64)
    x = inputs.to_numpy(np.float32)
    order = np.random.default_rng(CSV_SEED).permutation(len(x))
    test = max(1, round(TEST_SHARE * len(x)))
    train, held = order[test:], order[:test]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[held], "y_test": y[held]}


def listing(root: str | Path) -> list[Upload]:
    """The kept uploads, newest first."""
    found = [p for p in folder(root).glob("*/*") if p.is_file() and not p.parent.name.startswith(".")]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [Upload(p, "weights" if p.name.endswith(WEIGHT_SUFFIXES) else "data") for p in found]


def _read_csv(content: bytes, name: str):
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(content))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(
            f"'{name}' could not be read as CSV ({exc}); save it as plain comma-separated text"
        ) from exc


def _keep(
    root: str | Path, name: str, content: bytes, digest: str, kind: str, check: Callable[[Path], object]
) -> Upload:
    """Check the bytes in a private folder of the store, then move them to the folder named by the
    digest of what was uploaded (a CSV's with its label column: its .npz is not byte-reproducible)."""
    final = folder(root) / digest[:DIGEST_CHARS] / name
    if final.is_file():  # checked when it was first kept
        return Upload(final, kind)
    incoming = folder(root) / ".incoming" / secrets.token_hex(8)
    incoming.mkdir(parents=True)
    try:
        path = incoming / name
        path.write_bytes(content)
        try:
            check(path)
        except UserError as exc:  # the loaders name the file by its path: show the user's name instead
            raise UserError(str(exc).replace(str(path), name)) from None
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    return Upload(final, kind)
