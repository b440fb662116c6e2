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


def _draw(expected: tuple[str, ...], recent: int) -> None:
    history = store()
    history.reap()
    active = _active(history)
    if tuple(r.id for r in active) != expected:
        st.rerun()  # a job started or ended: redraw the page (its charts may have new runs)
    if not active:
        st.caption("No active jobs.")
    for r in active:
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
    for r in [r for r in history.runs(limit=recent + len(active), kind=None) if r.done][:recent]:
        line = f"{STATUS_ICONS[r.status]} {describe(r)} — {r.status}"
        if r.status == "succeeded" and r.kind == "run" and r.result:
            line += f" · accuracy {r.result['pruned']['accuracy']:.2%}"
        elif r.error:
            line += f": {plain(r.error.splitlines()[0])}"
        st.markdown(line)
