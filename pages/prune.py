"""Prune: model, method and sparsity -> a live one-shot preview; launch full runs and sweeps."""
# ruff: noqa: E402  (the title is drawn before the engine is imported: on a cold server that takes seconds)

import streamlit as st

from pages.shared import routing

routing.through_dashboard()
st.title("Prune")

import os

import pandas as pd

from pages.shared import live, overrides, sources, ui
from pages.shared.text import plain
from pruning.core import methods
from pruning.errors import UserError
from pruning.present import charts, views
from pruning.runs import cluster, limits, preview, submit
from pruning.runs.config import SCHEDULES, RunConfig

PREVIEWED = "previewed"  # session state: the config of the last preview


@st.fragment  # a slider move reruns only this: the slider, the preview and the curve's marker
def live_preview(base: RunConfig, method: methods.Method, options: dict, partial: bool) -> None:
    fixed = method.fixed_sparsity(options) is not None
    sparsity = st.slider(
        "Sparsity", 0.0, 0.99, 0.5, 0.01, key="sparsity", bind="query-params", disabled=fixed,
        help="fraction of the prunable weights set to zero or removed" + ("; fixed by this method" * fixed),
    )  # fmt: skip
    st.caption("Live preview: one-shot prune of the cached model, no fine-tuning, latency not measured.")
    if partial:
        st.warning("An override is refused (see Per-layer overrides): this preview leaves it out.")
    config = base.replace(sparsity=method.target_sparsity(options, sparsity))
    st.session_state[PREVIEWED] = config.to_dict()  # what the Layers page draws as pictures
    try:
        result = preview.preview(config)
        samples = preview.evaluated_samples(base)
    except UserError as exc:
        st.error(plain(exc))
        return
    if result.config.get("eval_samples"):
        st.caption(
            f"Evaluated on the first {result.config['eval_samples']:,} test samples, a cap that keeps the "
            "preview interactive; full runs evaluate all of them."
        )
    live.numbers(result, samples)
    ui.honest(result, preview=True)
    bars, whole = st.columns([2, 3])
    with bars:
        st.plotly_chart(charts.layer_sparsity(pd.DataFrame(result.layers)), key="preview_chart")
    with whole:
        curve = live.start(base, method, options)
        if curve is None:
            st.caption("This method fixes its sparsity: there is no curve over levels to draw.")
        else:  # its own fragment, polling while the curve is computed: polls redraw the curve alone
            polling = not curve.done
            every = live.POLL_SECONDS if polling else None
            st.fragment(run_every=every)(live.draw)(base, result, samples, polling)


preview.single_threaded()
left, right = st.columns([2, 3], gap="large")
base, layers, shown = None, {}, None
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
        "Scope", ["global", "layer"], horizontal=True, key="scope", bind="query-params",
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
    partial = False
    with st.expander("Per-layer overrides", expanded=bool(st.query_params.get(overrides.PARAM))):
        valid, partial = overrides.table(model, method, layers, weights, data, options)
    shown = base and base.replace(layer_sparsity=tuple(sorted(valid.items())))
    base = None if partial else shown  # what launches: nothing while a cell is refused

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
        # The button beside the methods, not under them: their open list covered a button below, and the
        # first click picked a method instead of launching.
        pick, press = st.columns([3, 2], vertical_alignment="bottom")
        chosen = pick.multiselect("Methods", ids, default=[method.id], key="sweep_methods")
        sweep = press.button("Launch sweep", type="primary", disabled=base is None)
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
        if sweep:
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

    ui.launched()

with right:
    st.subheader("Live preview")
    if shown is not None:
        live_preview(shown, method, options, partial)
