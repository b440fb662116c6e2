"""Prune: model, method and sparsity -> a live one-shot preview; launch full runs and sweeps."""
# ruff: noqa: E402  (the title is drawn before the engine is imported: on a cold server that takes seconds)

import streamlit as st

from pages.shared import routing

routing.through_dashboard()
st.title("Prune")

import os

import pandas as pd

from pages.shared import sources, ui
from pages.shared.text import plain
from pruning.core import methods
from pruning.errors import UserError
from pruning.present import charts, views
from pruning.runs import cluster, limits, preview, sensitivity, submit
from pruning.runs.config import SCHEDULES, RunConfig


@st.fragment  # a slider move reruns only this: the slider and the preview
def live_preview(base: RunConfig, method: methods.Method, options: dict) -> None:
    fixed = method.fixed_sparsity(options) is not None
    sparsity = st.slider(
        "Sparsity", 0.0, 0.99, 0.5, 0.01, key="sparsity", bind="query-params", disabled=fixed,
        help="fraction of the prunable weights set to zero or removed" + ("; fixed by this method" * fixed),
    )  # fmt: skip
    st.caption("Live preview: one-shot prune of the cached model, no fine-tuning, latency not measured.")
    try:
        result = preview.preview(base.replace(sparsity=method.target_sparsity(options, sparsity)))
    except UserError as exc:
        st.error(plain(exc))
        return
    if result.config.get("eval_samples"):
        st.caption(
            f"Evaluated on the first {result.config['eval_samples']:,} test samples, a cap that keeps the "
            "preview interactive; full runs evaluate all of them."
        )
    dense, pruned = result.dense, result.pruned
    a, b, c = st.columns(3)
    if result.metric == "accuracy":
        change = f"{pruned.metric - dense.metric:+.2%} vs dense {dense.metric:.2%}"
        a.metric("accuracy (pruned)", f"{pruned.metric:.2%}", change)
    else:  # perplexity or mse: lower is better
        change = f"{pruned.metric - dense.metric:+.4g} vs dense {dense.metric:.4g}"
        a.metric(f"{result.metric} (pruned)", f"{pruned.metric:.4g}", change, delta_color="inverse")
    b.metric("non-zero params", f"{pruned.nonzero_params:,}", help="counted in the pruned model")
    c.metric("params present", f"{pruned.params:,}", help=f"dense model: {dense.params:,}")
    ui.honest(result, preview=True)
    st.plotly_chart(charts.layer_sparsity(pd.DataFrame(result.layers)), key="preview_chart")


def allocation(
    model: str, method: methods.Method, weights: str | None, data: str | None, options: dict
) -> dict[str, float]:
    """'Allocate from sensitivity': per-layer sparsities for the slider's target, from the sensitivity
    of the weights, data and options the preview uses, kept per model; they are the overrides table's
    base values, which the user can still edit."""
    allocated, editor = f"allocated-{model}", f"overrides-{model}"
    if not method.elementwise:
        st.caption(
            f"Allocation from sensitivity prunes each layer alone, weight by weight, so it needs an "
            f"unstructured method; {method.id} is {method.granularity}. Type overrides below instead."
        )
        return st.session_state.get(allocated, {})
    table = ui.sensitivity(model, method.id, "prune_analyse", weights=weights, data=data, options=options)
    target = st.session_state.get("sparsity", 0.5)
    st.caption(
        f"Allocate: per-layer sparsities that prune {target:.0%} (the Sparsity slider) of all prunable "
        f"weights, more where {method.id}'s measured accuracy drop is smaller."
    )
    a, b = st.columns(2)
    if a.button("Allocate from sensitivity", key="allocate", disabled=table is None):
        try:
            st.session_state[allocated] = sensitivity.allocate(table, target)
            st.session_state.pop(editor, None)  # the editor's own edits would hide the new values
        except UserError as exc:
            st.error(plain(exc))
    if b.button("Clear overrides", key="clear_overrides"):
        st.session_state.pop(allocated, None)
        st.session_state.pop(editor, None)
    return st.session_state.get(allocated, {})


preview.single_threaded()
left, right = st.columns([2, 3], gap="large")
base, layers = None, {}
with left:
    # Ids, not labels, in the widgets: they are what the URL (query parameters) carries.
    model = sources.model_picker()
    weights, data = sources.weights_and_data(model)
    ids = list(methods.METHODS)
    default = ids.index("magnitude") if "magnitude" in ids else 0
    method = methods.get(st.selectbox("Method", ids, default, key="method", bind="query-params"))
    st.caption(f"**{method.label}** ({method.granularity}): {method.description}")
    options = ui.method_options(method)
    scope = st.radio(
        "Scope", ["global", "layer"], horizontal=True, key="scope",
        help="global: one threshold over all prunable layers; layer: the same sparsity in every layer",
    )  # fmt: skip
    try:
        options = method.options(options)
        base = RunConfig(model, method.id, 0.5, data=data, weights=weights, scope=scope)
        base = base.replace(options=tuple(sorted(options.items())))
        with st.spinner("Loading the model and its data…"):
            layers = preview.layers(base)
    except UserError as exc:
        st.error(plain(exc))
        base = None
    with st.expander("Per-layer overrides"):
        edited = st.data_editor(
            views.override_rows(layers, allocation(model, method, weights, data, options)),
            key=f"overrides-{model}", hide_index=True, disabled=["layer", "type", "weights"],
            column_config={"override": st.column_config.TextColumn(
                "sparsity override", help="blank: follow the slider and scope; else a number in [0, 1)"
            )},
        )  # fmt: skip
        try:
            overrides = views.parse_overrides(dict(zip(edited["layer"], edited["override"])))
            base = base and base.replace(layer_sparsity=tuple(sorted(overrides.items())))
        except UserError as exc:
            st.error(plain(f"Refused: {exc}"))  # quotes the layer names typed into the table
            base = None

    st.subheader("Launch in the background")
    quota = limits.Limits.from_env()
    st.caption(
        f"One launch queues at most {quota.runs} runs (a sweep: methods x levels, at most {quota.levels} "
        f"levels), each with at most {quota.epochs} fine-tune epochs and {quota.steps} steps."
    )
    a, b, c = st.columns(3)
    epochs = a.number_input("Fine-tune epochs", 0, None, 2, key="epochs")
    schedule = b.selectbox("Schedule", SCHEDULES, key="schedule", help="iterative / lottery prune in steps")
    steps = c.number_input("Steps", 1, None, 1 if schedule == "oneshot" else 5, key=f"steps-{schedule}")
    latency = st.checkbox("Measure latency (dense vs pruned, interleaved)", True, key="latency")
    run_tab, sweep_tab = st.tabs(["Full run", "Sweep"])
    with run_tab:
        if st.button("Launch run", type="primary", disabled=base is None):
            sparsity = method.target_sparsity(options, st.session_state["sparsity"])
            full = base.replace(
                sparsity=sparsity, finetune_epochs=int(epochs), schedule=schedule, steps=int(steps)
            )
            ui.launch([full.replace(latency=latency)])
    with sweep_tab:
        chosen = st.multiselect("Methods", ids, default=[method.id], key="sweep_methods")
        levels_text = st.text_input("Sparsity levels", "0.5, 0.7, 0.8, 0.9, 0.95", key="sweep_levels")
        where = st.radio("Run on", ["local processes", "Ray cluster (address)"], horizontal=True, key="where")
        ray = None
        if where == "local processes":
            workers = st.number_input("Worker processes", 1, os.cpu_count() or 1, 1, key="sweep_workers")
        else:
            workers = 1
            address = st.text_input("Ray address", "auto", key="ray_address", help="auto or ray://HOST:PORT")
            ray = cluster.Settings(address.strip() or None)
            if st.button("Connect", key="ray_connect"):
                try:
                    found = cluster.probe(ray)
                    st.session_state["ray_found"] = (address, found)
                except UserError as exc:
                    st.error(plain(str(exc)))
            if st.session_state.get("ray_found", ("",))[0] == address:
                found = st.session_state["ray_found"][1]
                st.caption(
                    f"Connected: {found['nodes']} node(s), {found['cpus']:g} CPUs, {found['gpus']:g} GPUs"
                )
        if st.button("Launch sweep", disabled=base is None):
            try:
                full = base.replace(
                    finetune_epochs=int(epochs), schedule=schedule, steps=int(steps), latency=latency
                )
                levels = views.parse_levels(levels_text)
                limits.check_levels(levels, quota)
                configs = submit.sweep_configs(
                    full, chosen, levels, lambda m: options if m == method.id else None
                )
            except UserError as exc:
                st.error(plain(f"Refused, nothing was queued: {exc}"))
            else:
                ui.launch(configs, workers=int(workers), ray=ray)

with right:
    st.subheader("Live preview")
    if base is not None:
        live_preview(base, method, options)
