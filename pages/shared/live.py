"""The Prune page's live side: the preview's accuracy with its noise, and the live curve drawn while a
background thread (`pruning.runs.curve`) computes it. While the curve is incomplete the fragment that
draws it polls every POLL_SECONDS; once complete it stops polling (one full rerun registers it again
without `run_every`). The slider's preview never waits for the curve: they share only the cache."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.shared.text import plain
from pruning.core import methods
from pruning.present import live, noise
from pruning.runs import curve as curves
from pruning.runs.config import RunConfig
from pruning.runs.result import RunResult

POLL_SECONDS = 0.25


def numbers(result: RunResult, samples: int) -> None:
    """Accuracy (with its 95% interval and the change in points, 'within noise' when it is) or the
    task's other metric, and the parameter counts."""
    dense, pruned = result.dense, result.pruned
    a, b, c = st.columns([2, 1, 1])
    if result.metric == "accuracy":
        quiet = noise.within_noise(dense.metric, pruned.metric, samples)
        change = noise.change_text(dense.metric, pruned.metric, samples)
        a.metric(
            "accuracy (pruned)", f"{pruned.metric:.1%}", change, delta_color="off" if quiet else "normal"
        )
        a.caption(
            f"{noise.interval_text(pruned.metric, samples)}; dense "
            f"{noise.interval_text(dense.metric, samples).removeprefix('95% CI ')}. One sample is "
            f"{100 / samples:.2f} pts."
        )
    else:  # perplexity or mse: lower is better
        change = f"{pruned.metric - dense.metric:+.4g} vs dense {dense.metric:.4g}"
        a.metric(f"{result.metric} (pruned)", f"{pruned.metric:.4g}", change, delta_color="inverse")
    b.metric("non-zero params", f"{pruned.nonzero_params:,}", help="counted in the pruned model")
    c.metric("params present", f"{pruned.params:,}", help=f"dense model: {dense.params:,}")


def start(base: RunConfig, method: methods.Method, options: dict) -> curves.Curve | None:
    """The live curve of the page's model, method and scope (None: the method fixes its sparsity)."""
    if method.fixed_sparsity(options) is not None:
        return None
    return curves.start(base)


def draw(base: RunConfig, slider: RunResult | None, samples: int, polling: bool) -> None:
    """The curve so far, with the slider's point; a rerun of the page once it completes, if polling."""
    curve = curves.start(base)  # asking keeps it going (an abandoned curve stops)
    if curve.error:
        st.error(plain(f"The live curve stopped: {curve.error}"))
        return
    points = pd.DataFrame(
        [vars(p) for p in curve.ordered()], columns=["level", "sparsity", "metric", "accuracy"]
    )
    cliff = curves.cliff(curve)
    marker = None if slider is None else (slider.sparsity, slider.pruned.metric)
    figure = live.live_curve(
        points,
        curve.metric,
        curve.dense,
        len(curve.levels),
        marker,
        None if cliff is None else (cliff.sparsity, cliff.metric),
        samples if curve.metric == "accuracy" else None,
        "slider (with the overrides)" if base.layer_sparsity else "slider",
    )
    st.plotly_chart(figure, key="live_curve")
    if curve.done:
        where = "no level loses more than that" if cliff is None else f"first at {cliff.level:.0%}"
        worse = "one point of accuracy" if curve.higher_is_better else "10%"
        st.caption(f"Cliff: the first level losing more than {worse} against dense; {where}.")
    if base.layer_sparsity:
        st.caption("The curve prunes by the slider and scope alone; the slider's point keeps the overrides.")
    if curve.skipped:
        st.caption(
            plain(f"Not reachable by this method here: {', '.join(f'{x:.0%}' for x in curve.skipped)}.")
        )
    elif not curve.done:
        st.caption(f"Computing the curve in the background: {len(points)} of {len(curve.levels)} levels.")
    if polling and curve.done:
        st.rerun()  # once, so the page stops polling
