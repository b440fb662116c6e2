"""Latency is timed while no other job of the store computes: jobs take turns through two lock files
beside lab.db (the same gate serves Ray's tasks, with its files in each machine's temporary folder).

`work.lock`: every executing worker holds it shared. `timing.lock`: a job about to time takes it
alone first, then `work.lock` alone, which it gets once every other worker has reached a progress
report: there a worker that sees `timing.lock` taken lets go of `work.lock` and waits on
`timing.lock` until the timing is done. Taking `timing.lock` first matters: flock keeps no queue,
and without it workers that let go would take `work.lock` back before the timer got it.

Each gate has its own open files, so workers in threads of one process take turns as processes do,
and a job never waits for its own lock (it lets go of its shared hold before it asks for the store
alone). The kernel releases the locks of a process that dies. A worker that reports no progress for
`patience` seconds (a long load, one long epoch) is not waited for longer: the timing goes ahead.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

PATIENCE = 120.0  # seconds a timer waits for the other workers to pause
POLL = 0.05


class TimingGate:
    """One executing worker's place at the store's gate: `with TimingGate(root) as gate:` while it
    works, `gate.checkpoint()` at each progress report, `gate.take()` ... `gate.give_back()` around
    its timing. A store whose folder cannot hold the lock files has no gate (nothing waits)."""

    def __init__(self, root: str | Path, patience: float = PATIENCE) -> None:
        self.root, self.patience = Path(root), patience
        self.work: int | None = None
        self.timing: int | None = None
        self.alone = False
        self.quiet = False  # after `take`: every other worker paused (False: patience ran out)

    def __enter__(self) -> TimingGate:
        try:
            self.work = os.open(self.root / "work.lock", os.O_RDWR | os.O_CREAT, 0o666)
            self.timing = os.open(self.root / "timing.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # a read-only or vanished folder: work without a gate
            self.close()
            return self
        self._wait_for_timers()
        fcntl.flock(self.work, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self.work, self.timing):
            if fd is not None:
                os.close(fd)  # releases this gate's locks
        self.work = self.timing = None
        self.alone = False

    def someone_timing(self) -> bool:
        """Whether a job holds `timing.lock` or waits for `work.lock` alone (never this gate's own)."""
        if self.timing is None or self.alone:
            return False
        try:
            fcntl.flock(self.timing, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.timing, fcntl.LOCK_UN)
        return False

    def checkpoint(self) -> None:
        """At a progress report: pause while another job times (a no-op for the one timing)."""
        if self.work is None or self.alone or not self.someone_timing():
            return
        fcntl.flock(self.work, fcntl.LOCK_UN)
        self._wait_for_timers()
        fcntl.flock(self.work, fcntl.LOCK_SH)

    def _wait_for_timers(self) -> None:
        fcntl.flock(self.timing, fcntl.LOCK_SH)
        fcntl.flock(self.timing, fcntl.LOCK_UN)

    def take(self) -> bool:
        """Have the store to this job alone: wait for other timers, then for every other worker to
        pause (at most `patience` s). Returns `quiet`: whether they all did."""
        if self.work is None or self.alone:
            return self.quiet
        fcntl.flock(self.work, fcntl.LOCK_UN)  # never wait for our own shared hold
        fcntl.flock(self.timing, fcntl.LOCK_EX)
        self.alone = True
        deadline = time.monotonic() + self.patience
        while True:
            try:
                fcntl.flock(self.work, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.quiet = True
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.quiet = False
                    return False
                time.sleep(POLL)

    def give_back(self) -> None:
        """Let the paused workers go on; this one works beside them again."""
        if self.work is None or not self.alone:
            return
        fcntl.flock(self.work, fcntl.LOCK_UN)
        fcntl.flock(self.timing, fcntl.LOCK_UN)
        self.alone = self.quiet = False
        self._wait_for_timers()
        fcntl.flock(self.work, fcntl.LOCK_SH)
