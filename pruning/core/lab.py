"""The lab file: the operator's own models and datasets, by id, usable wherever a sample id is.

`lab.toml` in the store folder, or the file given with `--lab FILE` (the CLI hands it to the
workers it starts as $PRUNING_LAB_LAB):

    [models.our-cnn]
    source = "models/cnn.py:build"        # or "hf:checkpoints/bert-small", or a sample model id
    weights = "weights/cnn.safetensors"   # optional
    data = "data/images.npz"              # a dataset id below, a sample dataset id, .npz or file.py:function
    task = "classification"               # optional when it can be inferred
    label = "Our CNN (v3)"                # optional: what the dashboard's picker shows
    [datasets.images]
    source = "data/images.npz"

Relative paths resolve against the lab file's folder, so the file means the same from any working
directory. Everything is checked when the file is read (keys, files, ids), so a mistake is reported
once, naming the entry, before any run is recorded. A sample id never reads the lab file: a broken
file cannot break the sample models.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pruning.errors import UserError
from sample_models.registry import SAMPLE_MODELS

LAB_ENV = "PRUNING_LAB_LAB"  # the active lab file; set by the CLI's --lab, inherited by its workers
FILE_NAME = "lab.toml"
# The names DESIGN.md §8 fixes; listed here rather than imported so that reading the lab file
# needs no PyTorch.
TASKS = ("classification", "lm", "regression")
# Ids travel in URLs and command lines, and must never look like a path or a `file.py:function`.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MODEL_KEYS = {"source", "weights", "data", "task", "label"}
DATASET_KEYS = {"source"}
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclass(frozen=True)
class LabModel:
    """A model of the lab file, its paths already absolute."""

    id: str
    source: str  # path/to/file.py:function, hf:PATH or a sample model id
    weights: str | None = None
    data: str | None = None  # a lab or sample dataset id, an .npz file or file.py:function
    task: str | None = None
    label: str | None = None

    @property
    def title(self) -> str:
        return self.label or self.id


@dataclass(frozen=True)
class LabDataset:
    id: str
    source: str  # an .npz file, file.py:function or a sample dataset id


@dataclass(frozen=True)
class Lab:
    path: Path | None  # None: there is no lab file
    models: dict[str, LabModel] = field(default_factory=dict)
    datasets: dict[str, LabDataset] = field(default_factory=dict)


def default_path() -> Path:
    """The lab file in use: $PRUNING_LAB_LAB, else lab.toml in the store folder. The store folder is
    `runs.store.default_root()`'s rule ($PRUNING_LAB_HOME, else ./lab), repeated here because the core
    never imports `pruning.runs`; tests/unit/test_lab.py checks that the two agree."""
    if os.environ.get(LAB_ENV):
        return Path(os.environ[LAB_ENV]).expanduser()
    home = os.environ.get("PRUNING_LAB_HOME")
    return (Path(home).expanduser() if home else Path("lab")) / FILE_NAME


def load_lab(path: str | Path) -> Lab:
    """Read and check a lab file; raises UserError naming what is wrong and where."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"lab file '{path}' does not exist; create it or pass --lab with an existing file")
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"lab file '{path}' is not valid TOML ({exc}); fix it as the README shows") from exc
    unknown = sorted(set(content) - {"models", "datasets"})
    if unknown:
        raise UserError(
            f"lab file '{path}' has unknown sections {', '.join(unknown)}; use [models.ID] and [datasets.ID]"
        )
    where = _Where(path, content)
    datasets = {
        i: LabDataset(i, where.dataset(f"dataset '{i}'", e["source"]))
        for i, e in where.entries("datasets", DATASET_KEYS)
    }
    models = {i: where.model(i, e, datasets) for i, e in where.entries("models", MODEL_KEYS)}
    return Lab(path, models, datasets)


_cache: dict[Path, tuple[tuple[int, int], Lab]] = {}


def active() -> Lab:
    """The lab file in use, parsed once per change of the file (its mtime and size); no file: empty."""
    path = default_path().resolve()
    try:
        stat = path.stat()
    except OSError:
        return Lab(None)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, load_lab(path))
        _cache[path] = cached
    return cached[1]


@contextmanager
def activated(lab_file: str | Path | None, store: str | Path) -> Iterator[None]:
    """The CLI's `--lab FILE` (checked now), else lab.toml in `--store`'s folder, as the lab file of
    this process and of the workers it starts, until the block ends. An active file already set in
    the environment is kept when no --lab is given."""
    before = os.environ.get(LAB_ENV)
    if lab_file is not None:
        path = Path(lab_file).expanduser().resolve()
        load_lab(path)  # an explicit file that is broken is the first error to show
    elif before:
        path = Path(before)
    else:
        path = (Path(store).expanduser() / FILE_NAME).resolve()
    os.environ[LAB_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LAB_ENV, None)
        else:
            os.environ[LAB_ENV] = before


def model(spec: str) -> LabModel | None:
    """The lab model with id `spec`; None for anything else (sample ids and paths never read the file)."""
    if spec in SAMPLE_MODELS or not ID.fullmatch(spec):
        return None
    return active().models.get(spec)


def model_source(spec: str) -> str:
    """What to build: a lab model's source; any other spec unchanged."""
    entry = model(spec)
    return entry.source if entry else spec


def model_weights(spec: str, weights: str | Path | None) -> str | Path | None:
    """The weights to load: the ones given, else a lab model's own (None: the source's default)."""
    entry = model(spec)
    return weights if weights is not None or entry is None else entry.weights


def model_data(spec: str) -> str | None:
    """A lab model's dataset; None for other models or when the entry names none."""
    entry = model(spec)
    return entry.data if entry else None


def model_task(spec: str) -> str | None:
    """A lab model's declared task; None for other models or when the entry declares none."""
    entry = model(spec)
    return entry.task if entry else None


def dataset_source(spec: str) -> str:
    """What to load: a lab dataset's source; any other spec unchanged."""
    if not ID.fullmatch(spec) or spec in _sample_datasets():
        return spec
    entry = active().datasets.get(spec)
    return entry.source if entry else spec


def _sample_datasets() -> set[str]:
    """The bundled datasets' ids: those the sample models train on (`data.DATASETS` serves exactly
    these; data.py imports this module, so they are read from the registry, and a test checks)."""
    return {model.dataset for model in SAMPLE_MODELS.values()}


@dataclass(frozen=True)
class _Where:
    """Checks the entries of one lab file and makes their paths absolute against its folder."""

    path: Path
    content: dict

    def fail(self, what: str, problem: str) -> UserError:
        return UserError(f"lab file '{self.path}': {what} {problem}")

    def entries(self, section: str, keys: set[str]) -> Iterator[tuple[str, dict]]:
        table = self.content.get(section, {})
        if not isinstance(table, dict):
            raise self.fail(f"[{section}]", f"must hold tables such as [{section}.ID]")
        samples = SAMPLE_MODELS if section == "models" else _sample_datasets()
        kind = section[:-1]
        for entry_id, entry in table.items():
            what = f"{kind} '{entry_id}'"
            if not ID.fullmatch(entry_id):
                raise self.fail(what, "needs an id of letters, digits, '.', '-' or '_'; rename it")
            if entry_id in samples:
                raise self.fail(what, f"has the id of a sample {kind}; give it another id")
            if not isinstance(entry, dict):
                raise self.fail(what, f"must be a table [{section}.{entry_id}] with a source")
            unknown = sorted(set(entry) - keys)
            if unknown:
                allowed = ", ".join(sorted(keys))
                raise self.fail(what, f"has unknown keys {', '.join(unknown)}; use only {allowed}")
            bad = sorted(k for k, v in entry.items() if not isinstance(v, str))
            if bad:
                raise self.fail(what, f"has non-text values for {', '.join(bad)}; quote them")
            if "source" not in entry:
                raise self.fail(what, "has no source; add source = ...")
            yield entry_id, entry

    def file(self, what: str, text: str) -> Path:
        found = (self.path.parent / Path(text).expanduser()).resolve()
        if not found.exists():
            raise self.fail(what, f"names '{text}', which does not exist (looked for '{found}')")
        return found

    def python(self, what: str, text: str) -> str:
        file, _, function = text.rpartition(":")
        return f"{self.file(what, file)}:{function}"

    def dataset(self, what: str, text: str, lab_ids: dict | None = None) -> str:
        if text in (lab_ids or {}) or text in _sample_datasets():
            return text
        if text.endswith(".npz"):
            return str(self.file(what, text))
        if ".py:" in text:
            return self.python(what, text)
        raise self.fail(
            what, f"names the dataset '{text}': use a dataset id of this file, a sample dataset, "
            "an .npz file or file.py:function",
        )  # fmt: skip

    def model(self, entry_id: str, entry: dict, datasets: dict[str, LabDataset]) -> LabModel:
        what, source = f"model '{entry_id}'", entry["source"]
        if source.startswith("hf:"):
            source = f"hf:{self.file(what, source[3:])}"
        elif ".py:" in source:
            source = self.python(what, source)
        elif source not in SAMPLE_MODELS:
            raise self.fail(what, "needs source = path/to/file.py:function, hf:PATH or a sample model id")
        weights = entry.get("weights")
        if weights is not None:
            if not weights.endswith(WEIGHT_SUFFIXES):
                raise self.fail(what, "has weights that are not .safetensors, .pt or .pth")
            weights = str(self.file(what, weights))
        task = entry.get("task")
        if task is not None and task not in TASKS:
            raise self.fail(what, f"has task '{task}'; use one of {', '.join(TASKS)}")
        data = self.dataset(what, entry["data"], datasets) if "data" in entry else None
        return LabModel(entry_id, source, weights, data, task, entry.get("label"))
