"""`python -m pruning doctor`: check a run history, and salvage what can be read from a damaged one.

The check is SQLite's `PRAGMA integrity_check` and reading every run back. A damaged `lab.db` is kept:
renamed `lab.db.damaged-<time>` (with its -wal and -shm files), and every row that can still be read
is copied into a new `lab.db` in its place. Artifact folders (`runs/<id>/`) are left as they are."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruning.errors import UserError
from pruning.runs.store import Store

TABLES = ("runs", "layers", "cache")


@dataclass
class Diagnosis:
    db_path: Path
    damaged: str | None = None  # why the file was damaged (None: it was healthy)
    runs: int = 0  # runs in the (new) store
    lost: int = 0  # rows that could not be read back (-1: unknown, nothing could be listed)
    broken: list[str] = field(default_factory=list)  # runs whose stored JSON is broken (kept, flagged)
    kept: Path | None = None  # where the damaged file now is

    def lines(self) -> list[str]:
        if self.damaged is None:
            head = f"{self.db_path}: ok ({self.runs} runs, integrity_check ok)"
        else:
            lost = "an unknown number of rows" if self.lost < 0 else f"{self.lost} rows"
            head = (
                f"{self.db_path} was damaged ({self.damaged}): salvaged {self.runs} runs into a new "
                f"{self.db_path.name}, lost {lost}; the damaged file is kept as {self.kept}"
            )
        if not self.broken:
            return [head]
        return [head, f"{len(self.broken)} runs have unreadable stored JSON (shown with an error; "
                      f"delete them if unwanted): {', '.join(self.broken)}"]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"db": str(self.db_path), "healthy": self.damaged is None, "damaged": self.damaged,
                "runs": self.runs, "lost": self.lost, "broken": self.broken,
                "kept": str(self.kept) if self.kept else None}  # fmt: skip


def _read_only(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    return conn


def _problem(db_path: Path) -> str | None:
    """integrity_check's first complaint, or why the file cannot be read as a database; None if ok."""
    try:
        conn = _read_only(db_path)
        try:
            answer = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if answer != ["ok"]:
                return f"integrity_check: {answer[0]}"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if version == 0 and tables or tables and "runs" not in tables:
        raise UserError(
            f"{db_path} is an SQLite database of another program, not a damaged run history: "
            "move it away or choose another --store"
        )
    return None


def _rows(conn: sqlite3.Connection, table: str) -> tuple[list[dict[str, Any]], int]:
    """The rows of `table` that can be read, and how many could not (-1: not even the list)."""
    try:
        rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table}")]
    except sqlite3.DatabaseError:
        return [], -1
    rows, lost = [], 0
    for rowid in rowids:
        try:
            rows.extend(dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,)))
        except sqlite3.DatabaseError:
            lost += 1
    return rows, lost


def _salvage(db_path: Path) -> dict[str, tuple[list[dict[str, Any]], int]]:
    try:
        conn = _read_only(db_path)
    except sqlite3.DatabaseError:
        return {table: ([], -1) for table in TABLES}
    try:
        return {table: _rows(conn, table) for table in TABLES}
    finally:
        conn.close()


def _broken(store: Store) -> list[str]:
    return [r.id for r in store.runs(kind=None) if r.error and "broken JSON" in r.error.split(";")[0]]


def doctor(root: str | Path) -> Diagnosis:
    """Check the store under `root`; salvage it into a new one if it is damaged (the old file kept)."""
    db_path = Path(root).expanduser().absolute() / "lab.db"
    if db_path.is_dir():
        raise UserError(f"{db_path} is a folder, not a run history database: move it away, then run again")
    if not db_path.is_file():
        raise UserError(f"there is no run history at {db_path}: give the folder with --store")
    problem = _problem(db_path)
    if problem is None:
        with Store(db_path.parent) as store:
            return Diagnosis(db_path, runs=len(store.runs(kind=None)), broken=_broken(store))
    salvaged = _salvage(db_path)
    kept = db_path.with_name(f"{db_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db_path}{suffix}").exists():
            Path(f"{db_path}{suffix}").rename(f"{kept}{suffix}")
    with Store(db_path.parent) as store:
        for table in TABLES:
            rows = salvaged[table][0]
            if table == "runs":  # a row must at least name its model and method to be listed
                rows = [r for r in rows if r.get("id") and r.get("model") is not None and _is_json(r)]
            store.restore(table, rows)
        runs = len(store.runs(kind=None))
        found, unreadable = salvaged["runs"]
        lost = -1 if unreadable < 0 else unreadable + len(found) - runs
        return Diagnosis(db_path, problem, runs, lost, _broken(store), kept)


def _is_json(row: dict[str, Any]) -> bool:
    """Keep a row whose JSON is broken (the store flags it); drop one whose columns are not text."""
    return all(row.get(c) is None or isinstance(row.get(c), str) for c in ("config", "result"))
