"""Compare: accuracy against size, one curve per method, the Pareto frontier and the dense model marked."""

import streamlit as st

from pages.shared import jobs, routing, ui
from pages.shared.text import plain
from pruning.present import charts, views

ACCURACY = {"after": "after fine-tuning", "before": "before fine-tuning", "both": "both"}

routing.through_dashboard()
st.title("Compare")
history = jobs.store()
history.reap()
runs = views.runs_frame(history.runs(status="succeeded"))
if runs.empty:
    ui.no_runs("finished runs to compare")
    st.stop()

a, b, c = st.columns(3)
model = a.selectbox(
    "Model",
    runs["model"].value_counts().index.tolist(),
    key="compare_model",
    bind="query-params",
    help="accuracy is comparable only within one model and dataset",
)
x = b.selectbox(
    "Size (x axis)",
    list(charts.X_AXES),
    format_func=lambda k: charts.X_AXES[k].title,
    key="compare_x",
    bind="query-params",
)
accuracy = c.radio(
    "Accuracy",
    list(ACCURACY),
    format_func=ACCURACY.get,
    horizontal=True,
    key="compare_accuracy",
    bind="query-params",
)
shown = runs[runs["model"] == model]
missing = int(shown[x].isna().sum())
if missing == len(shown):
    st.info(
        f"None of the {len(shown)} runs of {plain(model)} has a {charts.X_AXES[x].title}; "
        "launch runs with **Measure latency** on, or pick another x axis."
    )
    st.stop()
if missing:
    st.caption(f"{missing} run(s) without a {charts.X_AXES[x].title} are left out.")

event = st.plotly_chart(
    charts.accuracy_vs_size(shown, x, accuracy),
    key="compare_chart",
    on_select="rerun",
    selection_mode="points",
)
chosen = [p["customdata"] for p in event.selection.points if isinstance(p.get("customdata"), str)]
if chosen:
    for run_id in dict.fromkeys(chosen):
        record = history.get(run_id)
        epochs = record.config.get("finetune_epochs", 0)
        st.markdown(f"**{jobs.describe(record)}** ({epochs} fine-tune epochs)")
        ui.honest(views.run_result(record))
else:
    st.caption("Click a point (or box-select several) to see those runs' numbers side by side.")
    columns = {
        "run_id": "run",
        "curve": "curve",
        "accuracy": "accuracy",
        **{f"honest_{k}": t for k, t in views.HONEST_TITLES.items()},
        "honest_label": "note",
    }
    st.dataframe(shown[list(columns)].rename(columns=columns), hide_index=True)
