"""Pure Plotly figure builders: (DataFrame) -> go.Figure, shared by the dashboard and the HTML report.

Inputs are the tidy frames of `pruning.present.views`; nothing here reads the store or
imports Streamlit, so every figure can be built and checked in a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

Accuracy = Literal["after", "before", "both"]
# The task's metric (accuracy, perplexity or mse) after and before fine-tuning: the y axis.
ACCURACY_COLUMNS = {"after": "metric", "before": "metric_before_finetune"}
PALETTE = qualitative.Plotly
HOVER = "%{hovertext}<br>%{meta} %{y:.4f}<br>x %{x:,.4g}<extra>%{fullData.name}</extra>"


@dataclass(frozen=True)
class Axis:
    title: str
    dense: str | None  # the runs_frame column holding the dense model's value (None: 1.0)
    log: bool = False
    lower_is_better: bool = True


X_AXES: dict[str, Axis] = {
    "nonzero_params": Axis("non-zero parameters", "nonzero_dense"),
    "flops": Axis("effective FLOPs per sample", "flops_dense"),
    "bytes_sparse": Axis("bytes on disk, sparse encoding (dense: plain file)", "bytes_dense"),
    "latency_ms": Axis("measured latency per batch (ms)", "latency_dense_ms"),
    "compression_ratio": Axis("compression ratio (dense / non-zero params, log)", None, True, False),
}


def _colors(names) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def pareto_front(
    frame: pd.DataFrame, x: str, y: str, lower_x_is_better: bool = True, higher_y_is_better: bool = True
) -> pd.DataFrame:
    """The points no other point beats on both x (size) and y (the metric), sorted by x."""
    points = frame.dropna(subset=[x, y]).sort_values(
        [x, y], ascending=[lower_x_is_better, not higher_y_is_better]
    )
    sign = 1.0 if higher_y_is_better else -1.0
    best, keep = float("-inf"), []
    for index, value in (sign * points[y]).items():
        if value > best:
            keep.append(index)
            best = value
    return points.loc[keep].sort_values(x)


def accuracy_vs_size(
    runs: pd.DataFrame, x: str = "nonzero_params", accuracy: Accuracy = "after"
) -> go.Figure:
    """The task's metric (accuracy, perplexity, mse) against a size measure: one curve per method (and
    schedule / fine-tuning), the Pareto frontier highlighted, the dense model marked. `runs` is
    `views.runs_frame` of one model's succeeded runs."""
    axis = X_AXES[x]
    y = ACCURACY_COLUMNS["after" if accuracy == "both" else accuracy]
    data = runs[runs["status"] == "succeeded"].dropna(subset=[x, y])
    metric = str(data["metric_name"].iloc[0]) if len(data) else "accuracy"
    higher = bool(data["higher_is_better"].iloc[0]) if len(data) else True
    fig = go.Figure()
    colors = _colors(data["curve"])
    for curve, points in data.groupby("curve", sort=True):
        points = points.sort_values(x)
        for which in ["after", "before"] if accuracy == "both" else [accuracy]:
            column = ACCURACY_COLUMNS[which]
            dotted = accuracy == "both" and which == "before"
            fig.add_trace(
                go.Scatter(
                    x=points[x],
                    y=points[column],
                    mode="lines+markers",
                    name=f"{curve} (before fine-tune)" if dotted else curve,
                    line={"color": colors[curve], "dash": "dot" if dotted else "solid"},
                    marker={"size": 9, "symbol": "circle-open" if dotted else "circle"},
                    customdata=points["run_id"],  # what a click on the point selects
                    hovertext=points["hover"] + "<br>" + points["honest_label"].fillna(""),
                    meta=metric,
                    hovertemplate=HOVER,
                )
            )
    front = pareto_front(data, x, y, axis.lower_is_better, higher)
    if len(front):
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=front[y],
                mode="lines+markers",
                name="Pareto frontier",
                line={"color": "rgba(0,0,0,0.35)", "width": 8},
                marker={"size": 16, "symbol": "circle-open", "color": "black", "line": {"width": 2}},
                hoverinfo="skip",
            )
        )
        fig.data = (fig.data[-1],) + fig.data[:-1]  # drawn underneath the curves
    _dense_marker(fig, data, x, axis, metric)
    fig.update_layout(
        xaxis_title=axis.title,
        yaxis_title=f"test {metric}" + (" (dotted: before fine-tune)" if accuracy == "both" else ""),
        legend_title_text="curve",
        margin={"t": 30},
    )
    if axis.log:
        fig.update_xaxes(type="log")
    if metric == "perplexity":  # perplexity spans orders of magnitude as sparsity grows
        fig.update_yaxes(type="log")
    return legible(fig)  # the dense line's label and the legend clear of the curves


def _dense_marker(fig: go.Figure, data: pd.DataFrame, x: str, axis: Axis, metric: str) -> None:
    if data.empty:
        return
    accuracy = float(data["metric_dense"].median())
    dense_x = 1.0 if axis.dense is None else data[axis.dense].median()
    fig.add_hline(y=accuracy, line={"dash": "dash", "color": "grey"}, annotation_text=f"dense {metric}")
    if pd.notna(dense_x):
        fig.add_trace(
            go.Scatter(
                x=[dense_x],
                y=[accuracy],
                mode="markers",
                name="dense model",
                marker={
                    "symbol": "star",
                    "size": 18,
                    "color": "gold",
                    "line": {"width": 1, "color": "black"},
                },
                hovertemplate=f"dense model<br>{metric} %{{y:.4f}}<br>x %{{x:,.4g}}<extra></extra>",
            )
        )


def layer_heatmap(layers: pd.DataFrame) -> go.Figure:
    """Per-layer sparsity: layers in model order (top to bottom) x runs, on a fixed 0..1 colour scale.
    `layers` is `views.layers_frame` (columns run, idx, name, sparsity)."""
    order = layers.sort_values("idx").drop_duplicates("name")["name"].tolist()
    runs = list(dict.fromkeys(layers["run"]))
    table = layers.pivot_table(index="name", columns="run", values="sparsity", aggfunc="first")
    table = table.reindex(index=order, columns=runs)
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=runs,
            y=order,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"title": {"text": "sparsity"}},
            hovertemplate="layer %{y}<br>run %{x}<br>sparsity %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="layer (model order)")
    fig.update_xaxes(title="run")
    fig.update_layout(margin={"t": 30}, height=max(300, 28 * len(order) + 120))
    return fig


def layer_bars(layers: pd.DataFrame) -> go.Figure:
    """One run's layers: dense parameters next to the parameters that remain (non-zero)."""
    fig = go.Figure(
        [
            go.Bar(x=layers["name"], y=layers["dense_params"], name="dense", marker_color="lightgrey"),
            go.Bar(
                x=layers["name"],
                y=layers["nonzero"],
                name="remaining (non-zero)",
                marker_color=PALETTE[0],
                customdata=layers["sparsity"],
                hovertemplate="%{x}<br>%{y:,} remaining<br>sparsity %{customdata:.1%}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(barmode="group", yaxis_title="parameters", xaxis_title="layer", margin={"t": 30})
    return fig


def layer_sparsity(layers: pd.DataFrame) -> go.Figure:
    """Sparsity of each layer (0..1) in model order: the live preview's chart."""
    fig = go.Figure(
        go.Bar(
            x=layers["name"],
            y=layers["sparsity"],
            marker={"color": layers["sparsity"], "colorscale": "Viridis", "cmin": 0, "cmax": 1},
            hovertemplate="%{x}<br>sparsity %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(yaxis={"range": [0, 1], "title": "sparsity"}, xaxis_title="layer", margin={"t": 30})
    return fig


def _worse(metric: str) -> str:
    """How a metric getting worse is said: accuracy drops, perplexity and mse rise."""
    return "accuracy drop" if metric == "accuracy" else f"{metric} increase"


def sensitivity_heatmap(sensitivity: pd.DataFrame, metric: str = "accuracy") -> go.Figure:
    """Layer x sparsity level -> how much worse the task's metric gets when only that layer is pruned
    to that level. `sensitivity` has the rows of `sensitivity.Sensitivity`: layer (model order as
    given), level, accuracy_drop (the metric's worsening, whatever the metric)."""
    worse = _worse(metric)
    order = list(dict.fromkeys(sensitivity["layer"]))
    table = sensitivity.pivot_table(index="layer", columns="level", values="accuracy_drop", aggfunc="first")
    table = table.reindex(index=order).sort_index(axis=1)
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=[f"{level:.2f}" for level in table.columns],
            y=order,
            zmin=0,
            zmax=max(float(sensitivity["accuracy_drop"].max()), 1e-9),
            colorscale="Reds",
            colorbar={"title": {"text": worse}},
            hovertemplate=f"layer %{{y}}<br>sparsity %{{x}}<br>{worse} %{{z:.4f}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="layer (model order)")
    fig.update_xaxes(title="sparsity of that layer alone", type="category")
    fig.update_layout(margin={"t": 30}, height=max(300, 28 * len(order) + 120))
    return fig


def sensitivity_curves(
    sensitivity: pd.DataFrame,
    y: Literal["accuracy_drop", "accuracy"] = "accuracy_drop",
    metric: str = "accuracy",
) -> go.Figure:
    """One line per layer (legend in model order, as given): `y` against the sparsity of that layer
    alone, the other layers dense. `sensitivity` has the rows of `sensitivity.Sensitivity`."""
    title = _worse(metric) if y == "accuracy_drop" else f"validation {metric}"
    fig = go.Figure()
    for i, (layer, points) in enumerate(sensitivity.groupby("layer", sort=False)):
        points = points.sort_values("level")
        fig.add_trace(
            go.Scatter(
                x=points["level"],
                y=points[y],
                mode="lines+markers",
                name=str(layer),
                line={"color": PALETTE[i % len(PALETTE)]},
                hovertemplate=f"layer {layer}<br>sparsity %{{x:.2f}}<br>{title} %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title="sparsity of that layer alone", range=[0, 1])
    fig.update_layout(yaxis_title=title, legend_title_text="layer", margin={"t": 30})
    return fig


def accuracy_vs_sparsity(runs: pd.DataFrame) -> go.Figure:
    """The task's metric against the achieved sparsity: one curve per method (and schedule /
    fine-tuning), the dense model as a dashed line. `runs` is `views.runs_frame` of one model's runs."""
    data = runs[runs["status"] == "succeeded"].dropna(subset=["sparsity", "metric"])
    metric = str(data["metric_name"].iloc[0]) if len(data) else "accuracy"
    fig = go.Figure()
    colors = _colors(data["curve"])
    for curve, points in data.groupby("curve", sort=True):
        points = points.sort_values("sparsity")
        fig.add_trace(
            go.Scatter(
                x=points["sparsity"],
                y=points["metric"],
                mode="lines+markers",
                name=str(curve),
                line={"color": colors[curve]},
                hovertext=points["hover"] + "<br>" + points["honest_label"].fillna(""),
                meta=metric,
                hovertemplate=HOVER.replace("x %{x:,.4g}", "sparsity %{x:.1%}"),
            )
        )
    if len(data):
        dense = float(data["metric_dense"].median())
        fig.add_hline(y=dense, line={"dash": "dash", "color": "grey"}, annotation_text=f"dense {metric}")
    fig.update_xaxes(title="sparsity (share of prunable weights zeroed or removed)", tickformat=".0%")
    fig.update_layout(yaxis_title=f"test {metric}", legend_title_text="curve", margin={"t": 30})
    if metric == "perplexity":
        fig.update_yaxes(type="log")
    return legible(fig)


def legible(fig: go.Figure) -> go.Figure:
    """Labels that never overlap: tick labels tilt and push the margins out when long, the legend sits
    below the plot, and the dense line's label, drawn where the curves end, moves into the right margin.
    Returns `fig`, changed in place."""
    fig.update_xaxes(automargin=True, tickangle=-35 if _long_ticks(fig) else None)
    fig.update_yaxes(automargin=True)
    right = 30
    for note in fig.layout.annotations or ():
        if note.xref in ("x domain", "paper") and str(note.text or "").startswith("dense "):
            # the dense line's label sat where the curves end: it moves into the right margin, beside
            # the line (the legend is below the plot)
            note.update(x=1, xanchor="left", xshift=4, yanchor="middle", showarrow=False)
            right = max(right, 8 * len(str(note.text)) + 10)
    if sum(1 for trace in fig.data if trace.showlegend is not False) > 1:
        below = {"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0}
        fig.update_layout(legend=below, margin={"b": 140})
    fig.update_layout(margin={"r": right})
    return fig


def _long_ticks(fig: go.Figure) -> bool:
    """Whether the figure's categorical x labels are many or long enough to collide lying flat."""
    labels = [str(x) for trace in fig.data if trace.type == "heatmap" for x in (trace.x or ())]
    return len(labels) > 6 and max(map(len, labels), default=0) * len(labels) > 120


def allocation_bars(allocations: pd.DataFrame, target: float | None = None) -> go.Figure:
    """Per-layer sparsity of one or more allocations (sensitivity-based, OWL, ...) side by side:
    `allocations` has columns layer, allocation, sparsity, layers in model order; the global target
    as a dashed line. Fixed 0..1 axis, so allocations of different runs compare by eye."""
    fig = go.Figure()
    names = list(dict.fromkeys(allocations["allocation"]))
    colors = _colors(names)
    for name in names:
        rows = allocations[allocations["allocation"] == name]
        fig.add_trace(
            go.Bar(
                x=rows["layer"],
                y=rows["sparsity"],
                name=str(name),
                marker={"color": colors[name]},
                hovertemplate="%{x}<br>sparsity %{y:.3f}<extra>" + str(name) + "</extra>",
            )
        )
    if target is not None:
        dashed = {"dash": "dash", "color": "grey"}
        fig.add_hline(y=target, line=dashed, annotation_text=f"target {target:.0%}")
    fig.update_layout(
        barmode="group", yaxis={"range": [0, 1], "title": "sparsity"}, xaxis_title="layer", margin={"t": 30}
    )
    return legible(fig)
