"""RunResult: what one run measured, as one typed object that serialises to DESIGN.md §3's JSON.

The verdicts every summary shows (masked or removed, overhead-bound) are derived here,
once, so the CLI, the dashboard and the report cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pruning.core.latency import Timing

MASKED = "masked: not faster"
OVERHEAD_BOUND = "overhead-bound"
# Below this share of the FLOPs bound, fixed per-call costs dominate the measured speedup.
OVERHEAD_SHARE = 0.5


@dataclass
class Dense:
    """The dense model's figures; `metric` is the task's (accuracy, perplexity or mse)."""

    accuracy: float | None  # classification only (lm: token accuracy)
    params: int
    nonzero_params: int
    flops: int
    size_bytes: int
    per_class_accuracy: list[float] = field(default_factory=list)
    metric: float | None = None


@dataclass
class Sizes:
    """Bytes of the pruned model: plain file, bitmask + non-zero values, gzip of the plain file."""

    dense: int
    sparse: int
    gzip: int


@dataclass
class Pruned:
    """The pruned model's figures; `params` falls only when structure was removed."""

    accuracy: float | None
    accuracy_before_finetune: float | None
    params: int
    nonzero_params: int
    flops: int
    size_bytes: Sizes
    removed: bool
    per_class_accuracy: list[float] = field(default_factory=list)
    metric: float | None = None
    metric_before_finetune: float | None = None


@dataclass
class Latency:
    """Milliseconds per batch, dense and pruned timed interleaved in one process (None: not timed),
    and the speedup with its 90% interval over the timing's rounds (`pruning.core.latency`). Results
    stored before intervals were measured have none: their speedup is dense / pruned."""

    batch_size: int
    dense: float | None = None
    pruned: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # a method's own timings (semi_structured)
    median_ratio: float | None = None  # the median of the rounds' dense / pruned ratios
    low: float | None = None
    high: float | None = None
    rounds: int | None = None

    def record(self, timing: Timing) -> None:
        """Keep what `latency.compare` measured."""
        speedup = timing.speedups["pruned"]
        self.dense, self.pruned, self.rounds = timing.ms["dense"], timing.ms["pruned"], timing.rounds
        self.median_ratio, self.low, self.high = speedup.value, speedup.low, speedup.high

    @property
    def speedup(self) -> float | None:
        if self.median_ratio is not None:
            return self.median_ratio
        if self.dense is None or self.pruned is None:
            return None
        return self.dense / self.pruned

    @property
    def spread(self) -> float | None:
        """Half-width of the 90% interval relative to the speedup (0.04: ±4%); None when unknown."""
        speedup = self.speedup
        if self.low is None or self.high is None or not speedup:
            return None
        return max(speedup - self.low, self.high - speedup) / speedup

    @property
    def excludes_one(self) -> bool:
        """The 90% interval lies wholly above or below 1: pruned and dense measurably differ."""
        return self.low is not None and self.high is not None and not self.low <= 1.0 <= self.high


@dataclass
class RunResult:
    model: str
    method: str
    granularity: str
    scope: str
    target_sparsity: float
    sparsity: float
    config: dict[str, Any]
    dense: Dense
    pruned: Pruned
    latency_ms: Latency
    layers: list[dict[str, Any]]  # {name, type, params, dense_params, nonzero, sparsity, flops, dense_flops}
    run_id: str | None = None
    status: str = "succeeded"
    seconds: float | None = None
    task: str = "classification"
    metric: str = "accuracy"  # the name of the task's metric
    higher_is_better: bool = True
    # Method- and schedule-specific keys (skipped_layers, structured, schedule_trace) and export paths.
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> bool:
        return self.pruned.removed

    @property
    def compression_ratio(self) -> float:
        """Dense non-zero parameters / pruned non-zero parameters (ShrinkBench)."""
        return self.dense.nonzero_params / max(self.pruned.nonzero_params, 1)

    @property
    def theoretical_speedup(self) -> float:
        """Dense FLOPs / pruned (effective) FLOPs: the bound a measured speedup is held against."""
        return self.dense.flops / max(self.pruned.flops, 1)

    @property
    def overhead_bound(self) -> bool:
        """Removed, but measured at under half the FLOPs bound: fixed per-call costs dominate."""
        speedup = self.latency_ms.speedup
        return self.removed and speedup is not None and speedup < OVERHEAD_SHARE * self.theoretical_speedup

    @property
    def as_fast_as_dense(self) -> bool:
        """Masked, and its latency interval does not exclude 1 (or it has none, as results stored
        before intervals): its speedup is shown as "≈1x (masked)", whatever noise the median caught."""
        return not self.removed and not self.latency_ms.excludes_one

    @property
    def verdict(self) -> str:
        """'masked: not faster', 'overhead-bound' or ''. Masked models are not faster by design."""
        if not self.removed:
            return MASKED
        return OVERHEAD_BOUND if self.overhead_bound else ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md §3 (plus derived figures and the details)."""
        latency = self.latency_ms
        return {
            "run_id": self.run_id,
            "status": self.status,
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "model": self.model,
            "method": self.method,
            "granularity": self.granularity,
            "scope": self.scope,
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "config": self.config,
            "dense": dataclasses.asdict(self.dense),
            "pruned": dataclasses.asdict(self.pruned),
            "compression_ratio": self.compression_ratio,
            "theoretical_speedup": self.theoretical_speedup,
            "latency_ms": {
                "dense": latency.dense,
                "pruned": latency.pruned,
                "batch_size": latency.batch_size,
                "speedup": latency.speedup,
                "spread": latency.spread,
                "interval": None if latency.low is None else [latency.low, latency.high],
                "rounds": latency.rounds,
                "overhead_bound": self.overhead_bound,
                **latency.extra,
            },
            "layers": self.layers,
            "seconds": self.seconds,
            **self.details,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Read `to_dict`'s output back (results stored by older versions included)."""
        known = {f.name for f in dataclasses.fields(cls)} | {"compression_ratio", "theoretical_speedup"}
        lat = dict(d["latency_ms"])
        interval = lat.pop("interval", None) or (None, None)
        dense, pruned = dict(d["dense"]), dict(d["pruned"])
        pruned["size_bytes"] = Sizes(**pruned["size_bytes"])
        dense.setdefault("metric", dense.get("accuracy"))  # results stored before tasks had metrics
        pruned.setdefault("metric", pruned.get("accuracy"))
        pruned.setdefault("metric_before_finetune", pruned.get("accuracy_before_finetune"))
        return cls(
            model=d["model"],
            method=d["method"],
            granularity=d.get("granularity", "unstructured"),
            scope=d.get("scope", "global"),
            target_sparsity=d["target_sparsity"],
            sparsity=d["sparsity"],
            config=d.get("config", {}),
            dense=Dense(**_fields(Dense, dense)),
            pruned=Pruned(**_fields(Pruned, pruned)),
            latency_ms=Latency(
                batch_size=lat.pop("batch_size", 0),
                dense=lat.pop("dense", None),
                pruned=lat.pop("pruned", None),
                median_ratio=lat.get("speedup") if interval[0] is not None else None,
                low=interval[0],
                high=interval[1],
                rounds=lat.pop("rounds", None),
                extra={k: v for k, v in lat.items() if k not in ("speedup", "spread", "overhead_bound")},
            ),
            layers=d.get("layers", []),
            run_id=d.get("run_id"),
            status=d.get("status", "succeeded"),
            seconds=d.get("seconds"),
            task=d.get("task", "classification"),
            metric=d.get("metric", "accuracy"),
            higher_is_better=d.get("higher_is_better", True),
            details={k: v for k, v in d.items() if k not in known},
        )


def _fields(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in values.items() if k in names}
