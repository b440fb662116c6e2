"""Runs: the history table, selection (kept in the URL), config diff, cancel, delete and downloads."""

import streamlit as st

from pages.shared import jobs, routing, ui
from pages.shared.confirm import confirmed_button
from pages.shared.text import plain
from pruning.present import report, views
from pruning.runs import pictures

TABLE = views.titled(
    "run_id status model method target_sparsity sparsity accuracy_dense accuracy_before_finetune accuracy "
    "metric_name metric honest_removed honest_bytes honest_speedup honest_label created".split()
)
PERCENT = st.column_config.NumberColumn(format="percent")

routing.through_dashboard()
st.title("Runs")
history = jobs.store()
history.reap()
records = history.runs()
if not records:
    ui.no_runs("runs")
    st.stop()

frame = views.runs_frame(records)
st.dataframe(
    frame.reindex(columns=list(TABLE)).rename(columns=TABLE),
    hide_index=True,
    column_config={TABLE[c]: PERCENT for c in list(TABLE)[4:9]},
    key="runs_table",
)
st.download_button("Download CSV", frame.drop(columns=["hover"]).to_csv(index=False), "runs.csv", "text/csv")

selected = st.multiselect(
    "Selected runs",
    [r.id for r in records],
    key="runs",
    bind="query-params",
    help="run ids, kept in the page's URL: share the link to show the same runs",
)
if not selected:
    st.caption("Select runs to compare their configs, cancel, delete or download them.")
    st.stop()
chosen = [history.get(i) for i in selected]


def cancel(ids: list[str]) -> None:
    for run_id in ids:
        history.request_cancel(run_id)


def forget(ids: list[str]) -> None:
    for run_id in ids:
        history.delete(run_id)
    st.session_state["runs"] = []


for record in chosen:
    st.markdown(f"**{jobs.describe(record)}** — {record.status}")
    if record.status == "succeeded":
        ui.honest(views.run_result(record))
        weights = views.exported_model(record)
        if weights is not None:
            st.download_button(
                "Download pruned model (safetensors)",
                lambda p=weights: p.read_bytes(),
                f"{record.id}.safetensors",
                "application/octet-stream",
                key=f"model-{record.id}",
            )
    elif record.done:  # the first line only: a traceback (server paths) stays in the store, for the CLI
        error = (record.error or record.status).strip().splitlines() or [record.status]
        st.error(plain(error[0]))  # errors quote paths and names from outside
        if len(error) > 1:
            st.caption(f"Details on the server: `python -m pruning show {record.id}`")
    else:
        st.progress(record.progress, text=plain(record.message or record.status))

st.subheader("Configs")
only = st.toggle("only differing config fields", key="only_differing")
st.dataframe(views.config_diff(chosen, only_differing=only))

a, b, c = st.columns(3)
active = [r.id for r in chosen if not r.done]
with a:
    confirmed_button(
        f"Cancel {len(active)} active run(s)",
        "cancel_selected",
        f"Cancel {len(active)} active run(s)? Their work so far is lost; they may be someone else's.",
        "Yes, cancel them",
        cancel,
        (active,),
        disabled=not active,
    )
finished = [r.id for r in chosen if r.done]
with b:
    confirmed_button(
        f"Delete {len(finished)} finished run(s)",
        "delete_selected",
        f"Delete {len(finished)} run(s) for good: their results, per-layer rows and artifacts "
        "(exported models)? Active runs are not deleted: cancel them first.",
        "Yes, delete them",
        forget,
        (finished,),
        disabled=not finished,
    )
c.download_button(
    "Download HTML report",
    lambda: report.render(chosen, (), pictures.of_records(report.headline_runs(chosen))[0]),
    "pruning-report.html",
    "text/html",
    key="report",
)
