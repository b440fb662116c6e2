"""Layers: per-layer sparsity of runs side by side, one run's layers, and per-layer sensitivity."""

import streamlit as st

from pages.shared import jobs, ui
from pruning import charts, views

st.title("Layers")
history = jobs.store()
records = history.runs(status="succeeded")
if not records:
    ui.no_runs("finished runs with per-layer results")
else:
    models = list(dict.fromkeys(r.model for r in records))
    model = st.selectbox("Model", models, key="layers_model", help="layers differ between models")
    mine = [r for r in records if r.model == model]
    labels = {r.id: views.run_label(r) for r in mine}
    ids = st.multiselect(
        "Runs (columns)", list(labels), default=list(labels)[:20], format_func=labels.get, key="layers_runs"
    )
    if ids:
        frame = views.layers_frame(history.layers(ids), labels)
        st.subheader("Sparsity per layer")
        st.caption(
            "Rows: prunable layers in model order. Colour: fraction of the layer's weights pruned (0..1)."
        )
        st.plotly_chart(charts.layer_heatmap(frame), key="layers_heatmap")
    st.subheader("One run")
    one = st.selectbox("Run", list(labels), format_func=labels.get, key="layers_one")
    record = history.get(one)
    ui.honest(record.result)
    st.plotly_chart(charts.layer_bars(views.result_layers_frame(record.result)), key="layers_bars")
