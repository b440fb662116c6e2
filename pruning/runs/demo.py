"""The demo history: what a first visitor loads with one button, and `python -m pruning demo` makes.

Sweeps of three methods (two unstructured, one structured) at six sparsity levels on two sample
models, each run fine-tuned for one epoch with its latency measured against the dense model on the
CPU, plus one per-layer sensitivity analysis. Everything goes through `submit` (validated once,
recorded under one sweep id, so the jobs sidebar shows it as one job) and runs in detached workers.

Sized for a 2-core machine: the two digits models train an epoch in about a second, `random` shows
what choosing the weights is worth, and `l1-channel` is the one that removes structure, so its runs
are the ones that can be smaller as a plain file and faster.
"""

from __future__ import annotations

from dataclasses import dataclass

from pruning.runs import submit
from pruning.runs.config import RunConfig
from pruning.runs.executors import Executor
from pruning.runs.store import RunRecord, Store

MODELS: tuple[str, ...] = ("cnn-digits", "mlp-digits")  # the slower first: workers take groups in turn
METHODS: tuple[str, ...] = ("magnitude", "random", "l1-channel")
LEVELS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
FINETUNE_EPOCHS = 1
ANALYSIS = ("cnn-digits", "magnitude")  # (model, method) of the sensitivity analysis
ANALYSIS_LEVELS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
WORKERS = 2


@dataclass(frozen=True)
class Demo:
    """The jobs of one demo history: its runs and its analysis share `sweep_id`."""

    sweep_id: str
    runs: list[str]
    analysis: str

    @property
    def jobs(self) -> list[str]:
        return [*self.runs, self.analysis]


def configs() -> list[RunConfig]:
    """Every run of the demo: each model x method x level, fine-tuned, latency timed on the CPU."""
    out = []
    for model in MODELS:
        base = RunConfig(model, METHODS[0], LEVELS[0], finetune_epochs=FINETUNE_EPOCHS, device="cpu")
        out += submit.sweep_configs(base, METHODS, LEVELS)
    return out


def launch(store: Store, executor: Executor = "process", workers: int = WORKERS) -> Demo:
    """Validate and record the demo's runs and analysis under one sweep id, and hand them to
    `executor` (`process`: detached workers, returns at once; `inline`: returns when done)."""
    sweep_id = submit.new_sweep_id("demo")
    runs = submit.submit(store, configs(), executor, workers, sweep_id=sweep_id)
    model, method = ANALYSIS
    config = submit.analysis_config(model, method, device="cpu")
    analysis = submit.submit_analysis(store, config, ANALYSIS_LEVELS, executor=executor, sweep_id=sweep_id)
    return Demo(sweep_id, runs, analysis)


def jobs(store: Store, sweep_id: str) -> list[RunRecord]:
    """The jobs recorded under `sweep_id` (runs and analyses), oldest first."""
    return list(reversed(store.runs(kind=None, sweep_id=sweep_id)))
