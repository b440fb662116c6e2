"""Figure builders on synthetic frames: curves, Pareto frontier, dense marker, fixed-scale heatmaps."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest

from pruning.present import charts


def runs(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """A runs_frame-shaped table: (curve, non-zero params, accuracy) per succeeded run."""
    return pd.DataFrame(
        [
            {
                "run_id": f"run-{i}",
                "status": "succeeded",
                "curve": curve,
                "nonzero_params": nonzero,
                "metric_name": "accuracy",
                "higher_is_better": True,
                "metric": accuracy,
                "metric_before_finetune": accuracy - 0.1,
                "metric_dense": 0.97,
                "nonzero_dense": 1000,
                "compression_ratio": 1000 / nonzero,
                "hover": f"run run-{i}",
                "honest_label": "masked: not faster",
            }
            for i, (curve, nonzero, accuracy) in enumerate(rows)
        ]
    )


def test_pareto_front_matches_brute_force() -> None:
    rng = random.Random(0)
    frame = pd.DataFrame(
        {"size": [rng.randint(1, 50) for _ in range(60)], "acc": [rng.random() for _ in range(60)]}
    )

    def dominated(i: int) -> bool:
        a = frame.loc[i]
        return any(
            b["size"] <= a["size"] and b["acc"] >= a["acc"] and (b["size"] < a["size"] or b["acc"] > a["acc"])
            for j, b in frame.iterrows()
            if j != i
        )

    expected = {i for i in frame.index if not dominated(i)}
    front = charts.pareto_front(frame, "size", "acc")
    assert set(front.index) == expected
    assert list(front["size"]) == sorted(front["size"])


def test_pareto_front_when_lower_metric_is_better() -> None:
    frame = pd.DataFrame({"size": [1, 2, 4, 8], "perplexity": [90.0, 40.0, 45.0, 20.0]})
    front = charts.pareto_front(frame, "size", "perplexity", higher_y_is_better=False)
    assert list(front.index) == [0, 1, 3]  # 4 params at 45 is beaten by 2 params at 40


def test_a_perplexity_chart_has_a_log_y_axis_and_says_so() -> None:
    frame = runs([("magnitude", 100, 30.0), ("magnitude", 50, 60.0)])
    frame["metric_name"], frame["higher_is_better"], frame["metric_dense"] = "perplexity", False, 20.0
    figure = charts.accuracy_vs_size(frame)
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.title.text == "test perplexity"
    front = next(t for t in figure.data if t.name == "Pareto frontier")
    assert list(front.y) == [60.0, 30.0]  # both: fewer parameters, or lower perplexity


def test_pareto_front_when_higher_x_is_better() -> None:
    frame = pd.DataFrame({"ratio": [1, 2, 4, 8], "acc": [0.9, 0.95, 0.8, 0.5]})
    assert list(charts.pareto_front(frame, "ratio", "acc", lower_x_is_better=False).index) == [1, 2, 3]


def test_accuracy_vs_size_has_one_curve_per_method_a_frontier_and_the_dense_model() -> None:
    frame = runs(
        [("magnitude", 500, 0.96), ("magnitude", 100, 0.9), ("random", 500, 0.7), ("random", 100, 0.2)]
    )
    fig = charts.accuracy_vs_size(frame, "nonzero_params")
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"Pareto frontier", "magnitude", "random", "dense model"}
    assert fig.data[0].name == "Pareto frontier"  # drawn underneath the curves
    assert list(traces["magnitude"].x) == [100, 500]  # sorted along x
    assert list(traces["Pareto frontier"].y) == [0.9, 0.96]
    assert list(traces["dense model"].x) == [1000] and list(traces["dense model"].y) == [0.97]
    assert "masked: not faster" in traces["random"].hovertext[0]


def test_compression_axis_is_logarithmic_and_dense_sits_at_one() -> None:
    fig = charts.accuracy_vs_size(
        runs([("magnitude", 500, 0.96), ("magnitude", 50, 0.8)]), "compression_ratio"
    )
    assert fig.layout.xaxis.type == "log"
    dense = next(t for t in fig.data if t.name == "dense model")
    assert list(dense.x) == [1.0]
    front = next(t for t in fig.data if t.name == "Pareto frontier")
    assert list(front.x) == [2.0, 20.0]  # both points: more compression, less accuracy


def test_both_accuracies_draw_a_dotted_twin() -> None:
    fig = charts.accuracy_vs_size(runs([("magnitude", 500, 0.96), ("magnitude", 100, 0.9)]), accuracy="both")
    twin = next(t for t in fig.data if t.name == "magnitude (before fine-tune)")
    assert twin.line.dash == "dot"
    assert list(twin.y) == pytest.approx([0.8, 0.86])


def test_layer_heatmap_keeps_model_order_and_a_fixed_scale() -> None:
    names = ["features.0", "fc10", "fc2", "classifier"]  # not alphabetical: model order must win
    frame = pd.DataFrame(
        [
            {"run": run, "idx": i, "name": name, "sparsity": s}
            for run, sparsity in (("a", 0.2), ("b", 0.9))
            for (i, name), s in zip(enumerate(names), itertools.repeat(sparsity))
        ]
    )
    (trace,) = charts.layer_heatmap(frame).data
    assert list(trace.y) == names and list(trace.x) == ["a", "b"]
    assert (trace.zmin, trace.zmax) == (0, 1)
    assert [list(row) for row in trace.z] == [[0.2, 0.9]] * 4


def test_sensitivity_curves_draw_one_line_per_layer_in_model_order() -> None:
    drops = {"fc2": (0.0, 0.01, 0.05), "fc10": (0.01, 0.1, 0.6), "classifier": (0.0, 0.02, 0.3)}
    rows = [
        {"layer": layer, "level": level, "accuracy": 0.9 - drop, "accuracy_drop": drop}
        for level, i in ((0.95, 2), (0.5, 0), (0.8, 1))  # levels out of order: the lines must sort them
        for layer, values in drops.items()
        for drop in [values[i]]
    ]
    frame = pd.DataFrame(rows)
    fig = charts.sensitivity_curves(frame)
    assert [t.name for t in fig.data] == ["fc2", "fc10", "classifier"]  # model order, not alphabetical
    for trace, values in zip(fig.data, drops.values()):
        assert list(trace.x) == [0.5, 0.8, 0.95]
        assert list(trace.y) == pytest.approx(values)
    assert len({t.line.color for t in fig.data}) == 3
    accuracy = charts.sensitivity_curves(frame, "accuracy")
    assert list(accuracy.data[1].y) == pytest.approx([0.89, 0.8, 0.3])
    assert accuracy.layout.yaxis.title.text == "validation accuracy"  # choices never read the test split
    lm = charts.sensitivity_curves(frame, metric="perplexity")
    assert lm.layout.yaxis.title.text == "perplexity increase"
