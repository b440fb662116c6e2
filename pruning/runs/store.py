"""Run history: one SQLite file (`lab.db`) plus a `runs/<run_id>/` artifact folder per run.

Every process (the dashboard, each worker) opens its own `Store`; the database is in WAL mode with a
busy timeout and every write is one short `BEGIN IMMEDIATE` transaction, so several processes can
write at once. Inside a process one `Store` may be shared by threads (calls are serialised by a lock).
Do not carry an open `Store` across `fork()`: open a new one in the child.

Every job that is not done has an owner: the process that created it (`pid`, `host`) until a worker
adopts it (`adopt`) or claims it (`mark_running`). `reap` ends the jobs whose owner is gone, queued
ones included ("orphaned"), and stops those past their time limit or cancelled but still running.
A damaged, foreign or unreadable `lab.db` is one `UserError` naming the file and what to do
(`python -m pruning doctor` salvages what can be read).

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` upgrades version i to i + 1.
Append new migrations, never edit old ones.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
import secrets
import shutil
import signal
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
    # 4: owners and stopping: the worker a queued job was handed to, a wall-clock limit, when cancel
    # was asked, when a stop signal was sent (cleared once the worker let go), whether it takes one.
    """
    ALTER TABLE runs ADD COLUMN worker TEXT;
    ALTER TABLE runs ADD COLUMN time_limit REAL;
    ALTER TABLE runs ADD COLUMN cancel_at REAL;
    ALTER TABLE runs ADD COLUMN stop_sent REAL;
    ALTER TABLE runs ADD COLUMN stoppable INTEGER DEFAULT 0;
    """,
]
SCHEMA_VERSION: int = len(MIGRATIONS)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ORPHANED = "orphaned: the process that owned it ({why}) before it ran"


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
    worker: str | None = None
    time_limit: float | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        """The record of a row; a row whose stored JSON is broken keeps its other fields and says so
        in `error` (one bad row must not hide the others)."""
        fields = {field.name: row[field.name] for field in dataclasses.fields(cls)}
        damaged = []
        config, result = {}, None
        try:
            config = json.loads(row["config"] or "{}")
        except (TypeError, ValueError):
            damaged.append("config")
        try:
            result = json.loads(row["result"]) if row["result"] is not None else None
        except (TypeError, ValueError):
            damaged.append("result")
        error = row["error"]
        if damaged:
            note = f"the stored {' and '.join(damaged)} of this run cannot be read (broken JSON)"
            error = f"{note}; {error}" if error else note
        fields.update(
            model=str(row["model"]),
            method=str(row["method"]),
            config=config if isinstance(config, dict) else {},
            progress=float(row["progress"] or 0.0),
            result=result if isinstance(result, dict) else None,
            error=error,
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


def unusable(db_path: Path, exc: BaseException) -> UserError:
    """One line for a run history that cannot be used, saying what to do."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if "readonly" in text or code == sqlite3.SQLITE_READONLY or _read_only(db_path):
        todo = "make it and its folder writable, or choose another --store"
        return UserError(f"the run history {db_path} is read-only ({text}): {todo}")
    if "full" in text or code == sqlite3.SQLITE_FULL or getattr(exc, "errno", None) == errno.ENOSPC:
        return UserError(f"no space left for the run history {db_path} ({text}): free some space, then retry")
    if "locked" in text:
        return UserError(f"the run history {db_path} is locked by another process ({text}): retry later")
    return UserError(
        f"the run history {db_path} is damaged or not a Pruning Lab database ({text}): run "
        f"`python -m pruning doctor --store {db_path.parent}` to check it and salvage its readable runs "
        "into a new one (the old file is kept), or choose another --store"
    )


def _read_only(db_path: Path) -> bool:
    """Whether the database or its folder cannot be written (SQLite may only say "unable to open")."""
    try:
        on_read_only_device = bool(os.statvfs(db_path.parent).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        on_read_only_device = False
    writable = os.access(db_path.parent, os.W_OK) and (not db_path.exists() or os.access(db_path, os.W_OK))
    return on_read_only_device or not writable


def _signal(pid: int | None, signum: int) -> None:
    if pid and pid != 0 and _pid_alive(pid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it ended on its own meanwhile


class Store:
    """The run history under `root`: `root/lab.db` and `root/runs/<run_id>/`. `root` is made absolute,
    so a worker started elsewhere opens the same store."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.db_path = self.root / "lab.db"
        self._lock = threading.RLock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create the run history folder {self.root} ({exc.strerror}): choose another --store"
            ) from None
        if self.db_path.is_dir():
            raise UserError(
                f"{self.db_path} is a folder, not a run history database: move it away or choose "
                "another --store"
            )
        try:
            self._conn = sqlite3.connect(
                self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise unusable(self.db_path, exc) from None
        self._conn.row_factory = sqlite3.Row
        try:
            with self._reported():
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

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """SQLite's errors about the file itself as one UserError (constraint errors pass through)."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as exc:
            raise unusable(self.db_path, exc) from None

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
        with self._lock, self._reported():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock, self._reported():
            return self._conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"{self.db_path} was written by a newer Pruning Lab (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade, or use another lab folder."
                )
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if version == 0 and tables:
                raise UserError(
                    f"{self.db_path} is an SQLite database of another program (tables: "
                    f"{', '.join(tables[:5])}): move it away or choose another --store"
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
        time_limit: float | None = None,
    ) -> str:
        """Record a new `queued` job for `config` (which must name a "model" and a "method"): a run,
        or another `kind` of background job, owned by this process until a worker adopts it. A caller
        may draw `run_id` with `new_run_id()` first, e.g. to export into `artifacts(run_id)`.
        `time_limit`: seconds it may run before `reap` stops it."""
        chosen = run_id
        for _attempt in range(1 if chosen else 5):
            run_id = chosen or new_run_id()
            try:
                self.create_runs([(run_id, config)], sweep_id, kind, time_limit)
                return run_id
            except sqlite3.IntegrityError:
                if chosen:
                    raise ValueError(f"a run with id {chosen!r} already exists") from None
                continue  # id collision: astronomically rare, just draw another
        raise RuntimeError("could not allocate a unique run id")

    def create_runs(
        self,
        jobs: list[tuple[str, dict[str, Any]]],
        sweep_id: str | None = None,
        kind: Kind = "run",
        time_limit: float | None = None,
    ) -> None:
        """Record (run_id, config) pairs as queued jobs in one transaction: all of them or, when
        anything fails (a full disk), none."""
        for _, config in jobs:
            missing = [key for key in ("model", "method") if key not in config]
            if missing:
                raise ValueError(f"run config needs {' and '.join(repr(k) for k in missing)}")
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
        now, pid, here = time.time(), os.getpid(), socket.gethostname()
        rows = [
            (run_id, now, str(c["model"]), str(c["method"]), json.dumps(c), sweep_id, kind, pid, here, now,
             time_limit)
            for run_id, c in jobs
        ]  # fmt: skip
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO runs(id, created, model, method, config, status, sweep_id, kind, pid, host,"
                " heartbeat, time_limit) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def hand_to(self, run_ids: list[str], worker: str, pid: int | None = None) -> None:
        """Hand queued jobs to the worker named `worker` (and, once known, its `pid`): it finds them
        with `adopt`, so no id travels on its command line."""
        with self._tx() as conn:
            conn.executemany(
                "UPDATE runs SET worker = ?, pid = COALESCE(?, pid), host = ?"
                " WHERE id = ? AND status = 'queued'",
                [(worker, pid, socket.gethostname(), run_id) for run_id in run_ids],
            )

    def adopt(self, worker: str, pid: int) -> list[str]:
        """The queued jobs handed to `worker`, now owned by process `pid`, oldest first."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET pid = ?, host = ?, heartbeat = ? WHERE worker = ? AND status = 'queued'",
                (int(pid), socket.gethostname(), time.time(), worker),
            )
            rows = conn.execute(
                "SELECT id FROM runs WHERE worker = ? AND status = 'queued' ORDER BY created, rowid",
                (worker,),
            ).fetchall()
        return [row[0] for row in rows]

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
        sweep_id: str | None = None,
    ) -> list[RunRecord]:
        """Jobs of one `kind` (None: every kind), newest first, optionally one model's, one status's
        and/or one sweep's (the jobs submitted together)."""
        if status is not None:
            _check_status(status)
        filters = [
            (column, value)
            for column, value in (
                ("model", model),
                ("status", status),
                ("kind", kind),
                ("sweep_id", sweep_id),
            )
            if value is not None
        ]
        params: list[Any] = [value for _, value in filters]
        where = " AND ".join(f"{column} = ?" for column, _ in filters)
        sql = "SELECT * FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [RunRecord.from_row(row) for row in self._query(sql, params)]

    def mark_running(self, run_id: str, pid: int, stoppable: bool = False) -> bool:
        """Claim a queued run for worker `pid` on this host. False if it is no longer queued
        (for example cancelled meanwhile): the worker should then not run it. `stoppable`: the
        worker turns SIGTERM into abandoning the job (`reap` may then send it one)."""
        now = time.time()
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, started = ?, heartbeat = ?,"
                " stoppable = ? WHERE id = ? AND status = 'queued'",
                (int(pid), socket.gethostname(), now, now, int(stoppable), run_id),
            ).rowcount
            if not changed and conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._unknown(run_id)
        return bool(changed)

    def heartbeat(self, *run_ids: str) -> None:
        """Say that the owner of these jobs is alive (jobs already done are left alone)."""
        now = time.time()
        with self._tx() as conn:
            for start in range(0, len(run_ids), 500):  # SQLite caps the parameters of one statement
                chunk = run_ids[start : start + 500]
                conn.execute(
                    f"UPDATE runs SET heartbeat = ? WHERE id IN ({', '.join('?' * len(chunk))})"
                    " AND status IN ('queued', 'running')",
                    (now, *chunk),
                )

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
        """Ask the worker to stop; a run still queued is cancelled at once. A running one that does not
        stop by itself is stopped by `reap` after its grace period."""
        now = time.time()
        self._update(
            run_id,
            "UPDATE runs SET cancel_requested = 1, cancel_at = COALESCE(cancel_at, ?),"
            " status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,"
            " finished = CASE status WHEN 'queued' THEN ? ELSE finished END WHERE id = ?",
            (now, now, run_id),
        )

    def cancel_requested(self, run_id: str) -> bool:
        return self.get(run_id).cancel_requested

    def let_go(self, run_id: str) -> None:
        """The worker abandoned the job it was told to stop: it needs no SIGKILL."""
        with self._tx() as conn:
            conn.execute("UPDATE runs SET stop_sent = NULL WHERE id = ?", (run_id,))

    def reap(self, stale_after: float = 30.0, grace: float = 10.0) -> list[str]:
        """End the jobs that have no live owner or must stop; return their ids.

        A queued job whose owner (its creator, or the worker it was handed to) exited on this host,
        or, owned elsewhere, sent no heartbeat for `stale_after` seconds, fails as orphaned. A running
        job fails when its worker exited or its heartbeat is stale, fails as timed out past its
        `time_limit`, and is cancelled when a cancel request is `grace` seconds old. A stoppable worker
        on this host that must stop gets SIGTERM, and SIGKILL if it did not let go `grace` s later."""
        now, here = time.time(), socket.gethostname()
        ending: list[tuple[str, str, int, str, str, bool]] = []  # id, was, pid, status, error, stop it
        for row in self._query(
            "SELECT id, status, pid, host, heartbeat, started, created, time_limit, cancel_requested,"
            " cancel_at, stoppable FROM runs WHERE status IN ('queued', 'running')"
        ):
            pid = row["pid"]
            local = bool(pid) and row["host"] == here and os.name != "nt"
            gone = local and not _pid_alive(pid)
            stale = now - (row["heartbeat"] or row["started"] or row["created"] or 0.0) > stale_after
            stoppable = local and bool(row["stoppable"])
            end = None
            if row["status"] == "queued":
                if gone:
                    end = ("failed", ORPHANED.format(why=f"process {pid} exited"), False)
                elif stale and not local:
                    end = ("failed", ORPHANED.format(why=f"no heartbeat for {stale_after:g} s"), False)
            elif gone:
                end = ("failed", f"worker process {pid} exited without reporting", False)
            elif stale:
                end = ("failed", "worker process died (no heartbeat)", False)
            elif row["time_limit"] and now - (row["started"] or now) > row["time_limit"]:
                error = f"timed out: still running after its time limit of {row['time_limit']:g} s"
                end = ("failed", error, stoppable)
            elif row["cancel_requested"] and row["cancel_at"] and now - row["cancel_at"] > grace:
                end = ("cancelled", "cancelled by the user (the worker was stopped)", stoppable)
            if end:
                ending.append((row["id"], row["status"], pid, *end))
        reaped, stop = [], []
        with self._tx() as conn:
            for run_id, was, pid, status, error, signal_it in ending:  # re-check: it may have ended meanwhile
                if conn.execute(
                    "UPDATE runs SET status = ?, error = ?, finished = ?, cancel_requested = 1,"
                    " stop_sent = CASE WHEN ? THEN ? ELSE stop_sent END WHERE id = ? AND status = ?",
                    (status, error, now, signal_it, now, run_id, was),
                ).rowcount:
                    reaped.append(run_id)
                    if signal_it:
                        stop.append(pid)
        for pid in stop:
            _signal(pid, signal.SIGTERM)
        self._kill_stuck(now - grace, here)
        return reaped

    def _kill_stuck(self, before: float, here: str) -> None:
        """SIGKILL the workers on this host told to stop before `before` that did not let go."""
        for row in self._query(
            "SELECT id, pid, host FROM runs WHERE stop_sent IS NOT NULL AND stop_sent < ?", (before,)
        ):
            with self._tx() as conn:
                claimed = conn.execute(
                    "UPDATE runs SET stop_sent = NULL WHERE id = ? AND stop_sent IS NOT NULL", (row["id"],)
                ).rowcount
            if claimed and row["host"] == here:
                _signal(row["pid"], signal.SIGKILL)

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

    def restore(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert rows salvaged from another store (`doctor`): only this schema's columns, existing keys
        kept. Returns how many rows were inserted."""
        if table not in ("runs", "layers", "cache"):
            raise ValueError(f"no table {table!r} to restore")
        columns = [r[1] for r in self._query(f"PRAGMA table_info({table})")]
        inserted = 0
        with self._tx() as conn:
            for row in rows:
                names = [c for c in columns if c in row]
                marks = ", ".join("?" * len(names))
                inserted += conn.execute(
                    f"INSERT OR IGNORE INTO {table}({', '.join(names)}) VALUES ({marks})",
                    [row[c] for c in names],
                ).rowcount
        return inserted
