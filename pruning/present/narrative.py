"""The story of a model's runs in plain words, built only from measured figures.

`headline` picks, among one model's succeeded runs, the smallest that stays close to the dense model
(within 1 point of accuracy, or 10% of a lower-is-better metric such as perplexity): smallest by the
bytes it would be kept in, the plain file when structure was removed and the sparse encoding when it
was only masked. `story` words it, then the sweep and the most and least sensitive layers.

The project's rule holds in every sentence: a masked model is never called faster or smaller as a
plain file; a speed is a measured latency ratio, "about as fast" within 5% of 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pruning.present import views
from pruning.runs.store import RunRecord

CLOSE_POINTS = 0.01  # a higher-is-better metric (accuracy) within 1 point of dense
CLOSE_RATIO = 0.10  # a lower-is-better metric (perplexity, mse) within 10% of dense
SAME = 0.05  # ratios within 5% of 1 are "about the same"


@dataclass(frozen=True)
class Headline:
    """Dense against one pruned run of the same model: what the headline row shows."""

    model: str
    run_id: str
    method: str
    sparsity: float
    removed: bool
    metric_name: str
    metric_dense: float
    metric: float
    finetune_epochs: int
    file_ratio: float  # dense plain file / pruned plain file (1.0 for a masked run)
    sparse_ratio: float  # dense plain file / pruned sparse encoding
    speedup: float | None  # measured latency, dense / pruned; None: not measured
    device: str  # "cpu", "cuda" or "auto" as configured

    @property
    def size_ratio(self) -> float:
        """How much smaller it is kept: the plain file if removed, the sparse encoding if masked."""
        return self.file_ratio if self.removed else self.sparse_ratio

    @property
    def metric_change(self) -> float:
        return self.metric - self.metric_dense


def frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """`views.runs_frame` of the succeeded runs, with each run's configured device."""
    records = [r for r in records if r.kind == "run" and r.status == "succeeded" and r.result]
    runs = views.runs_frame(records)
    runs["device"] = [str(r.config.get("device", "auto")) for r in records]
    return runs


def close_to_dense(runs: pd.DataFrame) -> pd.Series:
    """Which runs stay within 1 point (accuracy) or 10% (lower-is-better metrics) of dense."""
    higher = runs["higher_is_better"].astype(bool)
    within_points = runs["metric"] >= runs["metric_dense"] - CLOSE_POINTS
    within_ratio = runs["metric"] <= runs["metric_dense"] * (1 + CLOSE_RATIO)
    return (higher & within_points) | (~higher & within_ratio)


def headline(runs: pd.DataFrame) -> Headline | None:
    """The smallest run of one model's `frame` within 1 point of dense (None: no run is)."""
    close = runs[close_to_dense(runs)].copy() if len(runs) else runs
    if close.empty:
        return None
    close["kept_bytes"] = close["bytes_file"].where(close["removed"].astype(bool), close["bytes_sparse"])
    close["score"] = close["metric"].where(close["higher_is_better"].astype(bool), -close["metric"])
    best = close.sort_values(["kept_bytes", "score"], ascending=[True, False]).iloc[0]
    speedup = best["speedup"]
    return Headline(
        model=str(best["model"]),
        run_id=str(best["run_id"]),
        method=str(best["method"]),
        sparsity=float(best["sparsity"]),
        removed=bool(best["removed"]),
        metric_name=str(best["metric_name"]),
        metric_dense=float(best["metric_dense"]),
        metric=float(best["metric"]),
        finetune_epochs=int(best["finetune_epochs"] or 0),
        file_ratio=float(best["bytes_dense"]) / max(float(best["bytes_file"]), 1.0),
        sparse_ratio=float(best["bytes_dense"]) / max(float(best["bytes_sparse"]), 1.0),
        speedup=None if pd.isna(speedup) else float(speedup),
        device=str(best.get("device", "auto")),
    )


def metric_text(name: str, value: float) -> str:
    """A metric as people read it: accuracy in percent, others as numbers."""
    return f"{value:.1%}" if name == "accuracy" else f"{value:.4g}"


def change_text(name: str, change: float) -> str:
    """A change of the metric: accuracy in points (signed), others as a signed number."""
    return f"{100 * change:+.1f} points" if name == "accuracy" else f"{change:+.4g}"


def speed_text(speedup: float | None, device: str) -> str:
    where = "on this CPU" if device == "cpu" else "on the machine that ran it"
    if speedup is None:
        return "its speed was not measured"
    if speedup >= 1 + SAME:
        return f"{speedup:.1f}x faster {where}"
    if speedup <= 1 - SAME:
        return f"{1 / speedup:.1f}x slower {where}"
    return f"about as fast {where} (measured {speedup:.2f}x)"


def _epochs(n: int) -> str:
    return "without fine-tuning" if n == 0 else f"after {n} epoch{'s' if n != 1 else ''} of fine-tuning"


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _moved(h: Headline) -> str:
    before, after = metric_text(h.metric_name, h.metric_dense), metric_text(h.metric_name, h.metric)
    if before == after:
        return f"{h.metric_name} stayed at {after} {_epochs(h.finetune_epochs)}"
    return f"{h.metric_name} moved from {before} to {after} {_epochs(h.finetune_epochs)}"


def headline_sentence(h: Headline) -> str:
    if h.removed:
        size = (
            f"{h.file_ratio:.1f}x smaller on disk"
            if h.file_ratio >= 1 + SAME
            else "about the same size on disk"
        )
        return (
            f"Removing {h.sparsity:.0%} of {_possessive(h.model)} prunable weights ({h.method}: whole "
            f"channels or neurons) made it {speed_text(h.speedup, h.device)} and {size}; {_moved(h)}."
        )
    timed = f" (timed at {h.speedup:.2f}x the dense speed)" if h.speedup is not None else ""
    return (
        f"Zeroing {h.sparsity:.0%} of {_possessive(h.model)} prunable weights ({h.method}) leaves them "
        f"masked: the zeros are still stored and computed, so its plain file is no smaller and it is not "
        f"made faster{timed}; stored with a sparse encoding it takes {h.sparse_ratio:.1f}x less space; "
        f"{_moved(h)}."
    )


def sweep_sentence(runs: pd.DataFrame) -> str | None:
    """How the methods compare at the highest sparsity that at least two of them reached."""
    methods = list(dict.fromkeys(runs.sort_values("method")["method"]))
    low, high = runs["target_sparsity"].min(), runs["target_sparsity"].max()
    levels = f"sparsity {low:.0%}" if low == high else f"sparsities from {low:.0%} to {high:.0%}"
    text = (
        f"{len(runs)} run{'s' if len(runs) != 1 else ''} of {len(methods)} "
        f"method{'s' if len(methods) != 1 else ''} ({', '.join(methods)}) at {levels}."
    )
    shared = runs.groupby("target_sparsity")["method"].nunique()
    shared = shared[shared >= 2]
    if shared.empty:
        return text
    level = float(shared.index.max())
    at = runs[runs["target_sparsity"] == level].copy()
    at["score"] = at["metric"].where(at["higher_is_better"].astype(bool), -at["metric"])
    at = at.sort_values("score", ascending=False)
    best, worst = at.iloc[0], at.iloc[-1]
    name = str(best["metric_name"])
    return (
        f"{text} At {level:.0%}, {best['method']} kept {name} at {metric_text(name, best['metric'])} "
        f"while {worst['method']} reached {metric_text(name, worst['metric'])}."
    )


def sensitivity_sentence(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str | None:
    """The most and least sensitive layers at the highest level analysed (rows of a Sensitivity)."""
    if not rows:
        return None
    table = pd.DataFrame(list(rows))
    level = float(table["level"].max())
    at = table[table["level"] == level].sort_values("accuracy_drop", ascending=False)
    most, least = at.iloc[0], at.iloc[-1]
    worse = "points of accuracy" if metric == "accuracy" else f"of {metric}"

    def cost(drop: float) -> str:
        return f"{100 * drop:.1f} {worse}" if metric == "accuracy" else f"{drop:+.4g} {worse}"

    return (
        f"Pruning one layer alone to {level:.0%}: {most['layer']} costs "
        f"{cost(float(most['accuracy_drop']))}, the most of any layer; {least['layer']} costs "
        f"{cost(float(least['accuracy_drop']))}."
    )


def story(
    runs: pd.DataFrame, sensitivity: Sequence[Mapping[str, Any]] = (), metric: str = "accuracy"
) -> list[str]:
    """A model's story in a few sentences: the headline (or that no run stays close to dense), the
    sweep, and the layers' sensitivity when an analysis exists. `runs`: one model's `frame`."""
    if runs.empty:
        return []
    found = headline(runs)
    model = str(runs["model"].iloc[0])
    if found is not None:
        sentences = [headline_sentence(found)]
        if not found.removed:  # the smallest is masked: say what removing structure measured too
            removed = headline(runs[runs["removed"].astype(bool)])
            if removed is not None:
                said = headline_sentence(removed)
                sentences.append("With structure removed instead, " + said[0].lower() + said[1:])
    else:
        sentences = [f"No pruned run of {model} stays within 1 point of the dense model."]
    sentences += [s for s in (sweep_sentence(runs), sensitivity_sentence(sensitivity, metric)) if s]
    return sentences
