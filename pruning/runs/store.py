"""Run history: one SQLite file (`lab.db`) plus a `runs/<run_id>/` artifact folder per run.

Every process (the dashboard, each worker) opens its own `Store`; the database is in WAL mode with a
busy timeout and every write is one short `BEGIN IMMEDIATE` transaction, so several processes can
write at once. Inside a process one `Store` may be shared by threads (calls are serialised by a lock).
Do not carry an open `Store` across `fork()`: open a new one in the child.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` upgrades version i to i + 1.
Append new migrations, never edit old ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pruning.errors import UserError

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Kind = Literal["run", "sensitivity"]
STATUSES: tuple[str, ...] = get_args(Status)
DONE_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
LAYER_COLUMNS: tuple[str, ...] = ("name", "type", "params", "nonzero", "sparsity", "flops")

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE runs(id TEXT PRIMARY KEY, created REAL, model TEXT, method TEXT, config TEXT,
                      status TEXT, error TEXT, result TEXT);
    """,
    # 2: live progress, worker liveness, cancellation, sweeps, per-layer rows and a JSON cache.
    """
    ALTER TABLE runs ADD COLUMN progress REAL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN message TEXT DEFAULT '';
    ALTER TABLE runs ADD COLUMN heartbeat REAL;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER DEFAULT 0;
    ALTER TABLE runs ADD COLUMN started REAL;
    ALTER TABLE runs ADD COLUMN finished REAL;
    ALTER TABLE runs ADD COLUMN sweep_id TEXT;
    CREATE TABLE layers(run_id TEXT REFERENCES runs(id) ON DELETE CASCADE, idx INTEGER, name TEXT,
                        type TEXT, params INTEGER, nonzero INTEGER, sparsity REAL, flops INTEGER,
                        PRIMARY KEY(run_id, idx));
    CREATE TABLE cache(key TEXT PRIMARY KEY, value TEXT, created REAL);
    """,
    # 3: every background job lives here: pruning runs and sensitivity analyses.
    """
    ALTER TABLE runs ADD COLUMN kind TEXT DEFAULT 'run';
    """,
]
SCHEMA_VERSION: int = len(MIGRATIONS)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_root() -> Path:
    """`$PRUNING_LAB_HOME` if set, else `./lab`."""
    home = os.environ.get("PRUNING_LAB_HOME")
    return Path(home).expanduser() if home else Path("lab")


def new_run_id() -> str:
    """A short id that sorts by creation time (to the second) and is unique across processes."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RunRecord:
    id: str
    created: float
    model: str
    method: str
    config: dict[str, Any]
    status: Status
    error: str | None
    result: dict[str, Any] | None
    progress: float
    message: str
    heartbeat: float | None
    pid: int | None
    host: str | None
    cancel_requested: bool
    started: float | None
    finished: float | None
    sweep_id: str | None
    kind: Kind = "run"

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        fields = {field.name: row[field.name] for field in dataclasses.fields(cls)}
        fields.update(
            config=json.loads(row["config"] or "{}"),
            progress=float(row["progress"] or 0.0),
            result=json.loads(row["result"]) if row["result"] is not None else None,
            message=row["message"] or "",
            cancel_requested=bool(row["cancel_requested"]),
            kind=row["kind"] or "run",
        )
        return cls(**fields)


def _check_status(status: str, allowed: tuple[str, ...] = STATUSES) -> None:
    if status not in allowed:
        raise ValueError(f"status must be one of {', '.join(allowed)}, not {status!r}")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or it vanished just now; os.kill said it was there
    state = stat.rsplit(")", 1)[-1].split()[:1]  # the name in parentheses may contain spaces
    return state != ["Z"]


class Store:
    """The run history under `root`: `root/lab.db` and `root/runs/<run_id>/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "lab.db"
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        try:
            for pragma in (
                "busy_timeout = 10000",
                "foreign_keys = ON",
                "journal_mode = WAL",
                "synchronous = NORMAL",
            ):  # NORMAL is corruption-safe in WAL mode
                self._pragma(pragma)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _pragma(self, pragma: str, patience: float = 60.0) -> None:
        """Set a pragma. Switching a new database to WAL needs an exclusive lock, and SQLite answers
        "database is locked" at once, without its busy timeout, while another process opening the
        same new store holds it: retry for a while (seen with several workers starting at once)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self._conn.execute(f"PRAGMA {pragma}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the write lock is taken up front so it cannot deadlock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"{self.db_path} was written by a newer Pruning Lab (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade, or use another lab folder."
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _unknown(self, run_id: str) -> KeyError:
        return KeyError(f"no run with id {run_id!r} in {self.db_path}")

    def _update(self, run_id: str, sql: str, params: tuple) -> None:
        """Run an UPDATE ... WHERE id = ? (run_id last in params); KeyError if no such run."""
        with self._tx() as conn:
            if conn.execute(sql, params).rowcount == 0:
                raise self._unknown(run_id)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_run(
        self,
        config: dict[str, Any],
        sweep_id: str | None = None,
        run_id: str | None = None,
        kind: Kind = "run",
    ) -> str:
        """Record a new `queued` job for `config` (which must name a "model" and a "method"): a run,
        or another `kind` of background job. A caller may draw `run_id` with `new_run_id()` first,
        e.g. to export into `artifacts(run_id)`."""
        missing = [key for key in ("model", "method") if key not in config]
        if missing:
            raise ValueError(f"run config needs {' and '.join(repr(k) for k in missing)}")
        config_json = json.dumps(config)
        chosen = run_id
        for _attempt in range(1 if chosen else 5):
            run_id = chosen or new_run_id()
            try:
                with self._tx() as conn:
                    conn.execute(
                        "INSERT INTO runs(id, created, model, method, config, status, sweep_id, kind)"
                        " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                        (
                            run_id,
                            time.time(),
                            str(config["model"]),
                            str(config["method"]),
                            config_json,
                            sweep_id,
                            kind,
                        ),
                    )
                return run_id
            except sqlite3.IntegrityError:
                if chosen:
                    raise ValueError(f"a run with id {chosen!r} already exists") from None
                continue  # id collision: astronomically rare, just draw another
        raise RuntimeError("could not allocate a unique run id")

    def get(self, run_id: str) -> RunRecord:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise self._unknown(run_id)
        return RunRecord.from_row(rows[0])

    def runs(
        self,
        model: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        kind: Kind | None = "run",
    ) -> list[RunRecord]:
        """Jobs of one `kind` (None: every kind), newest first, optionally one model's and/or one status."""
        if status is not None:
            _check_status(status)
        filters = [
            (column, value)
            for column, value in (("model", model), ("status", status), ("kind", kind))
            if value is not None
        ]
        params: list[Any] = [value for _, value in filters]
        where = " AND ".join(f"{column} = ?" for column, _ in filters)
        sql = "SELECT * FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [RunRecord.from_row(row) for row in self._query(sql, params)]

    def mark_running(self, run_id: str, pid: int) -> bool:
        """Claim a queued run for worker `pid` on this host. False if it is no longer queued
        (for example cancelled meanwhile): the worker should then not run it."""
        now = time.time()
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, started = ?, heartbeat = ?"
                " WHERE id = ? AND status = 'queued'",
                (int(pid), socket.gethostname(), now, now, run_id),
            ).rowcount
            if not changed and conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._unknown(run_id)
        return bool(changed)

    def heartbeat(self, run_id: str) -> None:
        self._update(run_id, "UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def set_progress(self, run_id: str, fraction: float, message: str) -> None:
        """Record progress in [0, 1] (clamped) with a one-line message; also counts as a heartbeat."""
        fraction = float(fraction)
        fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
        self._update(
            run_id,
            "UPDATE runs SET progress = ?, message = ?, heartbeat = ? WHERE id = ?",
            (fraction, str(message), time.time(), run_id),
        )

    def finish(
        self, run_id: str, status: str, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """End a job as succeeded, failed or cancelled. A successful run's result "layers" list
        replaces the run's rows in `layers`, in the same transaction."""
        _check_status(status, DONE_STATUSES)
        result_json = json.dumps(result) if result is not None else None
        layer_rows = []
        if status == "succeeded" and result is not None and isinstance(result.get("layers"), list):
            for idx, layer in enumerate(result.get("layers") or []):
                layer_rows.append((run_id, idx, *(layer.get(column) for column in LAYER_COLUMNS)))
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE runs SET status = ?, result = ?, error = ?, finished = ?,"
                " progress = CASE WHEN ? THEN 1.0 ELSE progress END WHERE id = ?",
                (status, result_json, error, time.time(), status == "succeeded", run_id),
            ).rowcount
            if not changed:
                raise self._unknown(run_id)
            if status == "succeeded" and result is not None:
                conn.execute("DELETE FROM layers WHERE run_id = ?", (run_id,))
                conn.executemany(
                    "INSERT INTO layers(run_id, idx, name, type, params, nonzero, sparsity, flops)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    layer_rows,
                )

    def request_cancel(self, run_id: str) -> None:
        """Ask the worker to stop; a run still queued is cancelled at once."""
        self._update(
            run_id,
            "UPDATE runs SET cancel_requested = 1,"
            " status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,"
            " finished = CASE status WHEN 'queued' THEN ? ELSE finished END WHERE id = ?",
            (time.time(), run_id),
        )

    def cancel_requested(self, run_id: str) -> bool:
        return self.get(run_id).cancel_requested

    def reap(self, stale_after: float = 30.0) -> list[str]:
        """Mark `running` runs whose worker is gone as failed; return their ids. A worker is gone
        when its heartbeat is older than `stale_after` seconds, or its pid (on this host) has exited.
        Queued runs are left alone."""
        now, here = time.time(), socket.gethostname()
        dead: list[tuple[str, str]] = []
        for row in self._query(
            "SELECT id, pid, host, heartbeat, started, created FROM runs WHERE status = 'running'"
        ):
            last_sign = row["heartbeat"] or row["started"] or row["created"] or 0.0
            if row["pid"] and row["host"] == here and os.name != "nt" and not _pid_alive(row["pid"]):
                dead.append((row["id"], f"worker process {row['pid']} exited without reporting"))
            elif now - last_sign > stale_after:
                dead.append((row["id"], "worker process died (no heartbeat)"))
        reaped = []
        with self._tx() as conn:
            for run_id, error in dead:  # re-check status: the worker may have finished meanwhile
                if conn.execute(
                    "UPDATE runs SET status = 'failed', error = ?, finished = ?"
                    " WHERE id = ? AND status = 'running'",
                    (error, now, run_id),
                ).rowcount:
                    reaped.append(run_id)
        return reaped

    def delete(self, run_id: str) -> None:
        """Forget a run: its row, its layer rows and its artifacts folder. Unknown ids are ignored."""
        with self._tx() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if _SAFE_ID.match(run_id):
            shutil.rmtree(self.root / "runs" / run_id, ignore_errors=True)

    def artifacts(self, run_id: str) -> Path:
        """The run's artifacts folder, created if missing."""
        if not _SAFE_ID.match(run_id):
            raise ValueError(f"not a valid run id: {run_id!r}")
        folder = self.root / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def layers(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """Per-layer rows (run_id, idx, name, type, params, nonzero, sparsity, flops) of these runs,
        in the order the runs were given, then by layer index."""
        order = {run_id: position for position, run_id in enumerate(dict.fromkeys(run_ids))}
        if not order:
            return []
        marks = ", ".join("?" * len(order))
        rows = [
            dict(row)
            for row in self._query(
                f"SELECT run_id, idx, {', '.join(LAYER_COLUMNS)} FROM layers WHERE run_id IN ({marks})",
                list(order),
            )
        ]
        return sorted(rows, key=lambda row: (order[row["run_id"]], row["idx"]))

    def cache_get(self, key: str) -> Any | None:
        rows = self._query("SELECT value FROM cache WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def cache_put(self, key: str, value: Any) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cache(key, value, created) VALUES (?, ?, ?)",
                (key, json.dumps(value), time.time()),
            )
