"""The Layers page's 'What was pruned': a picture of one layer's kept and removed weights, of a run
(from its exported weights) or of the Prune page's preview, and for structured pruning the channels
and heads kept per layer."""

from __future__ import annotations

import streamlit as st

from pages.shared.text import plain
from pruning.present import pictures as draw
from pruning.present import views
from pruning.runs import pictures
from pruning.runs.config import RunConfig
from pruning.runs.store import RunRecord

SOURCES = {"run": "the run chosen above", "preview": "the Prune page's preview"}


def section(record: RunRecord | None, previewed: dict | None) -> None:
    st.subheader("What was pruned")
    source = st.radio(
        "Of", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="pictures_of", bind="query-params"
    )
    if source == "run":
        if record is None:
            st.info("No finished run yet: pick **the Prune page's preview**, or launch a run.")
            return
        exported = views.exported_model(record)
        if exported is None:
            st.info(
                "This run kept no weights (runs launched from the dashboard keep them; from the command "
                "line, add --export), so there is nothing to draw."
            )
            return
        pruned = pictures.of_run(record.config, record.result or {}, exported)
        what = plain(views.run_label(record))
    else:
        if previewed is None:
            st.info("Open **Prune** first: its live preview is what this draws.")
            return
        config = RunConfig.from_dict(previewed)
        with st.spinner("Pruning the preview's model again…"):
            pruned = pictures.of_preview(config)
        what = plain(f"{config.model} · {config.method} · {config.sparsity:.0%} · {config.scope}")
    st.caption(f"{what}: {'structure removed' if pruned.removed else 'masked (zeros kept in place)'}.")
    layers = list(pruned.dense_shapes)
    layer = st.selectbox("Layer", layers, key="pictures_layer", bind="query-params")
    if layer in pruned.weights:
        st.plotly_chart(draw.mask_figure(draw.picture(layer, pruned.weights[layer])), key="mask_picture")
    if pruned.removed:
        shapes = {name: w.shape for name, w in pruned.weights.items()}
        frame = draw.channels_frame(pruned.dense_shapes, shapes, pruned.heads)
        units = [u for u in ("output channels", "input channels", "heads") if u in set(frame["unit"])]
        for column, unit in zip(st.columns(len(units)), units):
            column.plotly_chart(draw.channels_figure(frame, unit), key=f"channels_{unit}")
