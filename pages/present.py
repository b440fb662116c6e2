"""Present: the story of the run history as slides, read-only, for people who will not touch sliders.

Per model (most runs first): the headline (dense against the smallest run within 1 point of dense)
with the narrative, accuracy against size, sparsity per layer, and per-layer sensitivity when an
analysis exists. `?present=1` (or the sidebar's toggle) hides every control but the slide buttons
(arrow keys too); `?slide=N` is the slide shown, so a copied URL reopens the same view.
"""

import pandas as pd
import streamlit as st

from pages.shared import jobs, routing
from pages.shared.text import plain
from pruning.present import charts, narrative, views

KINDS = {
    "headline": "The headline",
    "curve": "Accuracy against size",
    "layers": "Sparsity per layer",
    "sensitivity": "Sensitivity per layer",
}

routing.through_dashboard()
presenting = st.query_params.get("present") == "1"
history = jobs.store()
records = history.runs(status="succeeded")
runs = narrative.frame(records)
analyses = {}
for job in history.runs(status="succeeded", kind="sensitivity"):
    analyses.setdefault(job.model, job.result or {})  # the newest per model
models = runs["model"].value_counts().index.tolist() if not runs.empty else []
slides = [(model, kind) for model in models for kind in KINDS if kind != "sensitivity" or analyses.get(model)]

if not slides:
    st.title("Present")
    st.info(
        "Nothing to present yet: the slides are drawn from finished runs. Load the demo history (the "
        "button shown on an empty history) or launch a sweep on the Prune page."
    )
    st.stop()


def _go(to: int) -> None:
    st.query_params["slide"] = str(to + 1)


try:
    index = min(max(int(st.query_params.get("slide", "1")) - 1, 0), len(slides) - 1)
except ValueError:
    index = 0
model, kind = slides[index]
mine = runs[runs["model"] == model]
st.title(f"{plain(model)}: {KINDS[kind]}")
st.caption(f"Slide {index + 1} of {len(slides)} · {len(mine)} finished runs of {plain(model)}")

if kind == "headline":
    found = narrative.headline(mine)
    if found is not None:
        a, b, c = st.columns(3)
        kept = "plain file" if found.removed else "sparse encoding (masked)"
        a.metric(f"Size: dense / pruned, {kept}", f"{found.size_ratio:.1f}x smaller")
        b.metric(
            "Measured speedup" + ("" if found.removed else " (masked: not made faster)"),
            "not measured" if found.speedup is None else f"{found.speedup:.2f}x",
        )
        c.metric(
            f"Test {found.metric_name}",
            narrative.metric_text(found.metric_name, found.metric),
            narrative.change_text(found.metric_name, found.metric_change),
            delta_color="normal" if mine["higher_is_better"].iloc[0] else "inverse",
        )
        st.caption(
            f"Dense against {plain(found.method)} at {found.sparsity:.0%} sparsity (run "
            f"{plain(found.run_id)}), the smallest run within 1 point of the dense model."
        )
    analysis = analyses.get(model) or {}
    sentences = narrative.story(mine, analysis.get("rows", []), analysis.get("metric", "accuracy"))
    st.markdown("\n\n".join(plain(s) for s in sentences))
elif kind == "curve":
    figure = charts.accuracy_vs_size(mine, "compression_ratio", "after")
    st.plotly_chart(figure, key=f"present_curve_{index}")
    st.caption("Each point is one run; the dashed line is the dense model. Masked runs are not faster.")
elif kind == "layers":
    ordered = [r for r in records if r.model == model]
    ordered.sort(key=lambda r: (r.method, r.config.get("sparsity", 0)))
    labels = {r.id: views.run_label(r) for r in ordered}
    frame = views.layers_frame(history.layers(list(labels)), labels)
    st.plotly_chart(charts.layer_heatmap(frame), key=f"present_layers_{index}")
else:
    analysis = analyses[model]
    rows = pd.DataFrame(analysis["rows"])
    st.plotly_chart(
        charts.sensitivity_heatmap(rows, analysis.get("metric", "accuracy")), key=f"present_sens_{index}"
    )
    st.caption("How much worse the model gets when only that layer is pruned to that level.")

back, position, forward, leave = st.columns([1, 2, 1, 1])
back.button(
    "Previous", key="present_prev", on_click=_go, args=(index - 1,), disabled=index == 0, shortcut="left"
)
position.caption("Arrow keys ← → move between slides.")
forward.button(
    "Next",
    key="present_next",
    on_click=_go,
    args=(index + 1,),
    disabled=index == len(slides) - 1,
    shortcut="right",
)
if presenting and leave.button("Exit presentation", key="present_exit"):
    st.switch_page("pages/present.py", query_params={"slide": str(index + 1)})
