"""The live curve's figure: the task's metric against achieved sparsity, one point per computed level,
with the dense reference, a marker at the slider and the cliff annotated. Pure: (DataFrame) -> Figure.

`points` has columns `sparsity` and `metric` (`runs.curve.Point`s as rows); accuracy curves get 95%
Wilson error bars when the number of evaluated samples is known.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from pruning.present import noise

CURVE, SLIDER, CLIFF, DENSE = "#1f77b4", "#d62728", "#ff7f0e", "#7f7f7f"


def _value(metric: str, value: float) -> str:
    return f"{value:.1%}" if metric == "accuracy" else f"{value:.4g}"


def live_curve(
    points: pd.DataFrame,
    metric: str = "accuracy",
    dense: float | None = None,
    levels: int | None = None,
    slider: tuple[float, float | None] | None = None,
    cliff: tuple[float, float] | None = None,
    samples: int | None = None,
    slider_name: str = "slider",
) -> go.Figure:
    """`slider`: (sparsity, metric or None while the preview is not known); `cliff`: (sparsity, metric)
    of the first level past the cliff; `levels`: how many levels the whole curve has."""
    points = points.sort_values("sparsity")
    fig = go.Figure()
    error = None
    if metric == "accuracy" and samples and len(points):
        bounds = [noise.wilson(a, samples) for a in points["metric"]]
        error = dict(
            type="data",
            symmetric=False,
            array=[high - a for a, (_, high) in zip(points["metric"], bounds)],
            arrayminus=[a - low for a, (low, _) in zip(points["metric"], bounds)],
            thickness=1,
            width=2,
        )
    fig.add_trace(
        go.Scatter(
            x=points["sparsity"],
            y=points["metric"],
            mode="lines+markers",
            name="one-shot, no fine-tuning",
            line=dict(color=CURVE),
            error_y=error,
            hovertemplate=f"sparsity %{{x:.1%}}<br>{metric} %{{y:.4g}}<extra></extra>",
        )
    )
    if dense is not None:
        fig.add_hline(
            y=dense,
            line=dict(color=DENSE, dash="dash", width=1),
            annotation_text=f"dense {_value(metric, dense)}",
            annotation_position="bottom left",
        )
    if slider is not None:
        x, y = slider
        fig.add_vline(x=x, line=dict(color=SLIDER, width=1, dash="dot"))
        if y is not None:
            fig.add_trace(
                go.Scatter(
                    x=[x],
                    y=[y],
                    mode="markers",
                    name=slider_name,
                    marker=dict(color=SLIDER, size=11, symbol="diamond"),
                )
            )
    if cliff is not None:
        x, y = cliff
        drop = "1 point" if metric == "accuracy" or (dense is not None and dense <= 1) else "10%"
        fig.add_annotation(
            x=x, y=y, text=f"cliff: loses > {drop} at {x:.0%}", showarrow=True, arrowhead=2,
            ax=-40, ay=-40 if metric != "accuracy" else 40, font=dict(color=CLIFF), arrowcolor=CLIFF,
        )  # fmt: skip
    shown = f"{len(points)} of {levels} levels" if levels else f"{len(points)} levels"
    fig.update_layout(
        title=dict(text=f"{metric} vs sparsity ({shown})", font=dict(size=14)),
        xaxis=dict(title="sparsity (achieved)", range=[0, 1], tickformat=".0%"),
        yaxis=dict(title=metric, tickformat=".0%" if metric == "accuracy" else None),
        legend=dict(orientation="h", y=-0.25),
        margin=dict(t=40, b=10, l=10, r=10),
        height=340,
    )
    return fig
