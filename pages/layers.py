"""Layers: per-layer sparsity of runs side by side, one run's layers, per-layer sensitivity, and the
per-layer sparsities that allocations (sensitivity, OWL) give a target."""

import pandas as pd
import streamlit as st

from pages.shared import jobs, pictures, routing, sources, ui
from pages.shared.text import plain
from pruning.core import methods
from pruning.errors import UserError
from pruning.present import charts, views
from pruning.runs import sensitivity
from pruning.runs.config import RunConfig

routing.through_dashboard()
st.title("Layers")
history = jobs.store()
records = history.runs(status="succeeded")
record = None
if not records:
    ui.no_runs("finished runs with per-layer results")
else:
    model = st.selectbox(
        "Model", list(dict.fromkeys(r.model for r in records)), key="layers_model", bind="query-params"
    )
    mine = [r for r in records if r.model == model]
    labels = {r.id: views.run_label(r) for r in mine}
    ids = st.multiselect(
        "Runs (columns)",
        list(labels),
        default=list(labels)[:20],
        format_func=labels.get,
        key="layers_runs",
        bind="query-params",
    )
    if ids:
        st.subheader("Sparsity per layer")
        st.caption(
            "Rows: prunable layers in model order. Colour: fraction of the layer's weights pruned (0..1)."
        )
        frame = views.layers_frame(history.layers(ids), labels)
        st.plotly_chart(charts.layer_heatmap(frame), key="layers_heatmap")
    st.subheader("One run")
    record = history.get(
        st.selectbox("Run", list(labels), format_func=labels.get, key="layers_one", bind="query-params")
    )
    result = views.run_result(record)
    ui.honest(result)
    st.plotly_chart(charts.layer_bars(views.result_layers_frame(result)), key="layers_bars")

pictures.section(record, st.session_state.get("previewed"))

st.subheader("Sensitivity")
st.caption("Accuracy drop when only one layer is pruned, at each level, the other layers dense.")
a, b = st.columns(2)
with a:  # its own key (and URL parameter): the Prune page's picker keeps its choice
    model = sources.model_picker(key="sensitivity_model")
elementwise = [m for m, method in methods.METHODS.items() if method.elementwise]
method = b.selectbox(
    "Method", elementwise, elementwise.index("magnitude"), key="sensitivity_method", bind="query-params"
)
table = ui.sensitivity(model, method, key="analyse")
if table is not None:
    rows = pd.DataFrame(table.rows)
    heat, curves = st.columns(2)
    heat.plotly_chart(charts.sensitivity_heatmap(rows, table.metric), key="sensitivity_heatmap")
    curves.plotly_chart(charts.sensitivity_curves(rows, metric=table.metric), key="sensitivity_curves")

st.subheader("Allocations")
st.caption(
    "Per-layer sparsity that a global target becomes: from the sensitivity above (more where the "
    "measured drop is smaller) and OWL (more where a layer's Wanda scores have fewer outliers)."
)
target = st.slider("Target sparsity", 0.05, 0.95, 0.5, 0.05, key="allocation_target")
allocations = {}
owl = st.toggle("OWL (one calibration pass of the model)", key="allocation_owl")
try:
    if table is not None:
        allocations["sensitivity"] = sensitivity.allocate(table, target)
    if owl:
        allocations["OWL"] = sensitivity.owl(RunConfig(model, "magnitude", 0.0, latency=False), target)
except UserError as exc:
    st.info(plain(exc))
if allocations:
    frame = pd.DataFrame(
        [
            {"layer": n, "allocation": k, "sparsity": s}
            for k, levels in allocations.items()
            for n, s in levels.items()
        ]
    )
    st.plotly_chart(charts.allocation_bars(frame, target), key="allocation_bars")
