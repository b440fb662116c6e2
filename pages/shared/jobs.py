"""The run history and the jobs panel, shared by dashboard.py's sidebar and the pages.

Light on purpose (Streamlit and the store only, no PyTorch): dashboard.py imports it before the
pages load the engine, so the navigation and the jobs list draw at once on a cold start.
"""

from __future__ import annotations

import streamlit as st

from pages.shared.confirm import confirmed_button
from pages.shared.text import plain
from pruning.runs.store import RunRecord, Store, default_root

STATUS_ICONS = {  # Material icons ship with Streamlit: no emoji font needed
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}


@st.cache_resource(show_spinner=False)
def _open(root: str) -> Store:
    return Store(root)


def store() -> Store:
    """The run history ($PRUNING_LAB_HOME, else ./lab), one shared connection per root."""
    return _open(str(default_root().expanduser().resolve()))


def describe(record: RunRecord) -> str:
    """A job in one line of Markdown; the model and method are escaped (a model may be any path a
    command-line user typed)."""
    what = f"{plain(record.model)} · {plain(record.method)}"
    if record.kind != "run":
        return f"{plain(record.kind)} · {what} · `{record.id}`"
    sparsity = record.config.get("sparsity", 0)
    sparsity = f"{sparsity:.2f}" if isinstance(sparsity, (int, float)) else plain(sparsity)
    return f"{what} · {sparsity} · `{record.id}`"


def jobs_panel(recent: int = 3) -> None:
    """Active jobs with a progress bar and a cancel button each, then the last `recent` finished runs.
    Polls the store every second while jobs are active (every 5 s when idle) and reruns the whole page
    when the set of active jobs changes, so a finished run shows up wherever the user is. The state
    lives in the store: jobs outlive page switches, reloads and server restarts."""
    history = store()
    history.reap()
    active = tuple(r.id for r in _active(history))
    (_busy if active else _idle)(active, recent)


def _active(history: Store) -> list[RunRecord]:
    return history.runs(status="running", kind=None) + history.runs(status="queued", kind=None)


@st.fragment(run_every=1)
def _busy(expected: tuple[str, ...], recent: int) -> None:
    _draw(expected, recent)


@st.fragment(run_every=5)
def _idle(expected: tuple[str, ...], recent: int) -> None:
    _draw(expected, recent)


def _groups(history: Store, records: list[RunRecord]) -> list[list[RunRecord]]:
    """`records` as the sidebar lists them: a job alone, or every job of its sweep (the jobs submitted
    together, done ones included, oldest first) as one group, in the order of the records' first."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.sweep_id is None:
            groups[r.id] = [r]
        elif r.sweep_id not in groups:
            groups[r.sweep_id] = list(reversed(history.runs(kind=None, sweep_id=r.sweep_id)))
    return list(groups.values())


def describe_sweep(jobs: list[RunRecord]) -> str:
    """A sweep in one line of Markdown: what it is, its models and methods (escaped), how far it is."""
    what = "Demo history" if (jobs[0].sweep_id or "").startswith("demo-") else "Sweep"
    models = ", ".join(plain(m) for m in sorted({r.model for r in jobs}))
    methods = ", ".join(plain(m) for m in sorted({r.method for r in jobs if r.kind == "run"}))
    counts = {s: sum(r.status == s for r in jobs) for s in STATUS_ICONS if any(r.status == s for r in jobs)}
    state = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{what} · {models} · {methods} · {len(jobs)} jobs: {state}"


def _cancel_all(run_ids: tuple[str, ...]) -> None:
    history = store()
    for run_id in run_ids:
        history.request_cancel(run_id)


def _draw(expected: tuple[str, ...], recent: int) -> None:
    history = store()
    history.reap()
    active = _active(history)
    if tuple(r.id for r in active) != expected:
        st.rerun()  # a job started or ended: redraw the page (its charts may have new runs)
    if not active:
        st.caption("No active jobs.")
    for group in _groups(history, active):
        (_draw_job if len(group) == 1 else _draw_sweep)(history, group)
    finished = [r for r in history.runs(limit=recent + len(active), kind=None) if r.done]
    shown = 0
    for group in _groups(history, finished):
        if shown == recent:
            break
        if len(group) > 1 and not all(r.done for r in group):
            continue  # still listed above, as an active sweep
        st.markdown(_finished_sweep(group) if len(group) > 1 else _finished_job(group[0]))
        shown += 1


def _draw_job(history: Store, group: list[RunRecord]) -> None:
    (r,) = group
    text = f"{STATUS_ICONS[r.status]} {describe(r)} — {r.status}" + (
        f": {plain(r.message)}" if r.message else ""
    )
    st.progress(min(max(r.progress, 0.0), 1.0), text=text)
    confirmed_button(
        "Cancelling…" if r.cancel_requested else "Cancel",
        f"cancel-{r.id}",
        f"Cancel {describe(r)}? Its work so far is lost.",
        "Yes, cancel it",
        history.request_cancel,
        (r.id,),
        disabled=r.cancel_requested,
    )


def _draw_sweep(history: Store, jobs: list[RunRecord]) -> None:
    """One progress bar (the jobs' mean progress, done ones full) and one cancel for a whole sweep."""
    progress = sum(1.0 if r.done else min(max(r.progress, 0.0), 1.0) for r in jobs) / len(jobs)
    text = f"{STATUS_ICONS['running']} {describe_sweep(jobs)}"
    running = [r for r in jobs if r.status == "running"]
    if running:
        text += f" — now {describe(running[0])}" + (
            f": {plain(running[0].message)}" if running[0].message else ""
        )
    st.progress(progress, text=text)
    waiting = tuple(r.id for r in jobs if not r.done)
    asked = all(r.cancel_requested for r in jobs if not r.done)
    confirmed_button(
        "Cancelling…" if asked else f"Cancel all {len(waiting)} unfinished",
        f"cancel-sweep-{jobs[0].sweep_id}",
        f"Cancel the {len(waiting)} unfinished jobs of this sweep? Their work so far is lost; finished "
        "runs are kept.",
        "Yes, cancel them",
        _cancel_all,
        (waiting,),
        disabled=asked,
    )


def _finished_job(r: RunRecord) -> str:
    line = f"{STATUS_ICONS[r.status]} {describe(r)} — {r.status}"
    if r.status == "succeeded" and r.kind == "run" and r.result:
        line += f" · accuracy {r.result['pruned']['accuracy']:.2%}"
    elif r.error:
        line += f": {plain(r.error.splitlines()[0])}"
    return line


def _finished_sweep(jobs: list[RunRecord]) -> str:
    statuses = {r.status for r in jobs}
    icon = STATUS_ICONS[next(s for s in ("failed", "cancelled", "succeeded") if s in statuses)]
    return f"{icon} {describe_sweep(jobs)}"
