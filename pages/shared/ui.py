"""Widgets shared by the pages: the run summary (`honest`), method controls rendered from a method's
`Param` descriptions, the launch action and the empty state."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from typing import Any

import streamlit as st

from pages.shared import sources
from pages.shared.jobs import store
from pruning.core import methods
from pruning.errors import UserError
from pruning.present import views
from pruning.runs import limits, submit
from pruning.runs import sensitivity as analysis
from pruning.runs.config import RunConfig
from pruning.runs.result import MASKED, OVERHEAD_BOUND, RunResult

LAUNCHED = "launched"  # session state: the last launch's confirmation


def honest(result: RunResult, preview: bool = False) -> None:
    """The four honest numbers side by side, with the masked / overhead-bound label."""
    numbers = views.honest_numbers(result)
    if preview:
        numbers["speedup"] = numbers["speedup"].replace("not measured", "not measured in preview")
    for column, (key, title) in zip(st.columns(4), views.HONEST_TITLES.items()):
        with column.container(border=True):  # long values wrap here; st.metric would cut them off
            st.caption(title)
            st.markdown(f"**{numbers[key]}**")
    if numbers["label"] == MASKED:
        st.caption(
            "**masked: not faster.** Pruned weights are stored as zeros; the plain file and the "
            "latency stay those of the dense model. Only the sparse encoding and gzip shrink."
        )
    elif numbers["label"] == OVERHEAD_BOUND:
        st.caption(
            "**overhead-bound:** structure was removed, but the measured speedup is under half "
            "the FLOPs bound."
        )


def method_options(method: methods.Method) -> dict[str, Any]:
    """One control per `Param` of the method (int/float/choice/bool), returning {name: value}; each is
    bound to the URL (`?option-METHOD-NAME=...`), so a copied link keeps the method's options."""
    values, bind = {}, "query-params"
    for p in method.params:
        key, label = f"option-{method.id}-{p.name}", p.name.replace("_", " ")
        low = None if p.min is None else (int(p.min) if p.kind == "int" else float(p.min))
        high = None if p.max is None else (int(p.max) if p.kind == "int" else float(p.max))
        if p.kind == "bool":
            values[p.name] = st.checkbox(label, bool(p.default), help=p.help, key=key, bind=bind)
        elif p.kind == "choice":
            index = list(p.choices).index(p.default) if p.default in p.choices else 0
            values[p.name] = st.selectbox(label, p.choices, index=index, help=p.help, key=key, bind=bind)
        elif p.kind == "int":
            values[p.name] = st.number_input(
                label, low, high, int(p.default), 1, help=p.help, key=key, bind=bind
            )
        else:
            values[p.name] = st.number_input(
                label, low, high, float(p.default), format="%g", help=p.help, key=key, bind=bind
            )
    return values


def launch(configs: list, workers: int = 1, ray=None) -> list[str]:
    """Start runs in background workers, or as tasks of the Ray cluster `ray` (a `cluster.Settings`;
    a detached coordinator), within the launch quotas (`runs.limits`); a refused launch queues nothing
    and is shown as an error, not raised."""
    executor = "ray" if ray else "process"
    try:
        limits.check_launch(configs, limits.Limits.from_env())
        ids = submit.submit(store(), configs, executor, workers=workers, artifacts=True, ray=ray, detach=True)
    except UserError as exc:
        st.session_state.pop(LAUNCHED, None)  # the last confirmation is not this launch's
        st.error(sources.plain(f"Refused, nothing was queued: {exc}"))
        return []
    models = ", ".join(dict.fromkeys(sources.plain(c.model) for c in configs))
    chosen = ", ".join(dict.fromkeys(c.method for c in configs))
    levels = len({c.sparsity for c in configs})
    what = "1 run" if len(ids) == 1 else f"a sweep of {len(ids)} runs ({chosen} at {levels} levels)"
    if len(ids) == 1:
        what += f" ({chosen} at {configs[0].sparsity:.0%})"
    st.session_state[LAUNCHED] = (
        f"Queued {what} on {models}, at {time.strftime('%H:%M:%S')}. Follow the progress under "
        "**Jobs** in the sidebar; finished runs appear on **Compare**, **Layers** and **Runs**."
    )
    return ids


def launched() -> None:
    """The last launch's confirmation: it stays until the next launch (reruns drew it once before)."""
    if LAUNCHED in st.session_state:
        st.success(st.session_state[LAUNCHED], icon=":material/check_circle:")


def no_runs(what: str) -> None:
    """The empty state: what is missing and how to get it."""
    st.info(
        f"No {what} yet. Open **Prune**, pick a model and a method, and press **Launch run** "
        "(or **Launch sweep**); or from a terminal: "
        "`python -m pruning sweep --model mlp-digits --methods magnitude,random --sparsities 0.5,0.8,0.9`."
    )


def sensitivity(
    model: str,
    method_id: str,
    key: str,
    weights: str | None = None,
    data: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> analysis.Sensitivity | None:
    """The cached sensitivity of (model, method) on these weights and data with these options (None:
    the model's own, the method's defaults), captioned with what was analysed. Without one: say so and
    offer to analyse it as a background job (button `key`, shown in the sidebar's jobs with progress
    and cancel); while the job runs, poll the store until its table lands."""
    history = store()
    try:
        config = submit.analysis_config(model, method_id, weights=weights, data=data, options=options or {})
        table = submit.cached_sensitivity(history, config)
    except UserError as exc:
        st.error(sources.plain(str(exc)))
        return None
    shown = sources.plain(model)  # a lab id or a path: text from outside
    if table is not None:
        st.caption(f"Analysed {shown} with {method_id} — {_inputs(config)}.")
        return table
    job = submit.latest_analysis(history, config)
    if job is not None and (job.config.get("weights"), job.config.get("data")) != (weights, data):
        job = None  # latest_analysis matches model, method and options only: that job read other files
    if job is not None and not job.done:
        doing = f"Analysing {shown} with {method_id}"
        st.progress(job.progress, text=f"{doing}: {sources.plain(job.message or job.status)}")
        st.caption(f"{doing} — {_inputs(config)}.")
        _wait_for_analysis(job.id)
        return None
    if job is not None and job.status == "failed":
        failed = sources.plain((job.error or "").strip().split("\n")[0])  # may quote paths; no traceback
        st.error(f"The last sensitivity analysis of {shown} with {method_id} failed: {failed}")
    st.info(
        f"No sensitivity analysis of {shown} with {method_id} yet — {_inputs(config)}. It prunes each "
        f"layer alone at {len(analysis.DEFAULT_LEVELS)} levels; or run it from a terminal:"
    )
    st.code(_command(config), language="bash", wrap_lines=True)
    if st.button("Analyse in the background", key=key):
        try:
            submit.submit_analysis(history, config)
        except UserError as exc:
            st.error(sources.plain(str(exc)))
        else:
            st.rerun()
    return None


def _inputs(config: RunConfig) -> str:
    """The weights, data and options an analysis reads, in words (escaped: paths come from outside)."""
    weights = sources.choice_title(config.model, sources.WEIGHTS, config.weights)
    data = sources.choice_title(config.model, sources.DATA, config.data)
    options = ", ".join(f"{name}={value}" for name, value in config.options)
    return sources.plain(f"weights: {weights}; data: {data}" + (f"; options: {options}" if options else ""))


def _command(config: RunConfig) -> str:
    """The command line that computes the same table into the same store (non-default options only)."""
    words = ["python", "-m", "pruning", "sensitivity", "--model", config.model, "--method", config.method]
    for flag, value in (("--weights", config.weights), ("--data", config.data)):
        if value is not None:
            words += [flag, str(value)]
    defaults = methods.get(config.method).options({})
    for name, value in config.options:
        if value != defaults.get(name):
            words += ["--option", f"{name}={value}"]
    return shlex.join(words)


@st.fragment(run_every=2)
def _wait_for_analysis(job_id: str) -> None:
    history = store()
    history.reap()
    if history.get(job_id).done:
        st.rerun()
