"""RunResult: what one run measured, as one typed object that serialises to DESIGN.md §3's JSON.

The verdicts every summary shows (masked or removed, overhead-bound) are derived here,
once, so the CLI, the dashboard and the report cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    """Milliseconds per batch, dense and pruned timed interleaved in one process (None: not timed)."""

    batch_size: int
    dense: float | None = None
    pruned: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # a method's own timings (semi_structured)

    @property
    def speedup(self) -> float | None:
        if self.dense is None or self.pruned is None:
            return None
        return self.dense / self.pruned


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
                extra={k: v for k, v in lat.items() if k not in ("speedup", "overhead_bound")},
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
