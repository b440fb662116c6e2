"""Entry point of a detached worker process: `python -m pruning.runs.worker --store ROOT --worker NAME`.

The worker's jobs are the queued ones handed to NAME in the store (`Store.hand_to`): no run id travels
on the command line, so a sweep of any size starts.

The process started is a small watcher (no torch imported) that runs the jobs in a child process and
reaps it: a child that dies without recording its jobs, as one the kernel's out-of-memory killer ends
with SIGKILL does, has them recorded failed with how it ended and its peak memory (`os.wait4`'s
resource usage), instead of the bare "exited without reporting" of a later `Store.reap`. SIGTERM and
SIGINT sent to the watcher are passed on to the child.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from pruning.runs.store import ORPHANED, Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--worker", required=True, help="the name its jobs were handed to")
    parser.add_argument("--child", action="store_true", help="run the jobs in this process")
    args = parser.parse_args()
    if args.child:
        from pruning.runs.executors import execute  # torch: only in the process that computes

        with Store(args.store) as store:
            execute(store, store.adopt(args.worker, os.getpid()))
        return
    sys.exit(watch(args.store, args.worker))


def watch(root: str, worker: str) -> int:
    """Run the worker's jobs in a child process; record what it left undone if it died. Returns
    the child's exit status (128 + the signal that ended it)."""
    with Store(root) as store:
        store.adopt(worker, os.getpid())  # ours until the child adopts them
    command = [sys.executable, "-m", "pruning.runs.worker", "--store", root, "--worker", worker, "--child"]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, frame: child.send_signal(s))
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except ChildProcessError:  # already reaped
            return 0
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with Store(root) as store:
            record_death(store, worker, child.pid, code, usage.ru_maxrss * 1024)
    return code if code >= 0 else 128 - code


def how_it_ended(code: int, peak: int) -> str:
    """'killed by SIGKILL (...) at a peak memory of 812 MiB' or 'exited with status 1 ...'."""
    memory = f"a peak memory of {peak / 2**20:,.0f} MiB"
    if code < 0:
        name = signal.Signals(-code).name
        why = " (as the kernel's out-of-memory killer ends processes)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{why} at {memory}"
    return f"exited with status {code} at {memory}"


def record_death(store: Store, worker: str, pid: int, code: int, peak: int) -> list[str]:
    """Fail the jobs handed to `worker` that its child process `pid` left undone (or that a reap
    already failed with the bare message); returns their ids."""
    ended = how_it_ended(code, peak)
    failed = []
    for record in store.runs(kind=None):
        if record.worker != worker or record.pid not in (pid, os.getpid()):
            continue
        reaped = record.status == "failed" and f"process {pid} exited" in (record.error or "")
        if record.status == "running" or (reaped and record.started):
            store.finish(record.id, "failed", error=f"worker process {pid} exited without reporting: {ended}")
        elif record.status == "queued" or reaped:
            store.finish(record.id, "failed", error=ORPHANED.format(why=f"process {pid} {ended}"))
        else:
            continue
        failed.append(record.id)
    return failed


if __name__ == "__main__":
    main()
