"""Language models on this machine. Run: `python -m benchmarks lm`.

- lm/sparsegpt_gpt2_124m_oneshot_run: seconds of `python -m pruning run --method sparsegpt` at 50% on
  a GPT-2-small-sized `hf:` model (124M parameters, random weights) with 128 calibration sequences
  of 128 tokens, no fine-tuning, evaluation capped at 16 sequences, in a fresh process.
- lm/sparsegpt_gpt2_124m_peak_memory: that process's peak resident memory over the model's parameter
  bytes (everything it holds: Python, torch and transformers, the model pruned in place, one
  layer's Hessian and working copy, the block inputs of the calibration set).
- lm/wanda_sweep_over_evaluations: on charlm-shakespeare, the seconds of a 20-level Wanda sweep
  (one calibration, 20 prunings, each evaluated and summarised) over those of 20 plain evaluations
  of the dense model, both on the same 128 test sequences, interleaved, on one thread (as the
  live preview runs: on two cores shared with other work, two threads made an evaluation 3.6x slower).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import emit, gpt2_small, measured_cli, timed
from pruning.runs import experiment
from pruning.runs.config import RunConfig

LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.97,)  # 20 levels


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sparsegpt_gpt2(folder: Path) -> None:
    params = gpt2_small(folder, train=128, test=16)
    seconds, peak, result = measured_cli([
        "run", "--model", f"hf:{folder / 'gpt2'}", "--data", str(folder / "tokens.npz"),
        "--method", "sparsegpt", "--sparsity", "0.5", "--option", "samples=128", "--eval-samples", "16",
        "--no-latency", "--batch-size", "1", "--quiet", "--store", str(folder / "lab"),
    ])  # fmt: skip
    note(f"gpt2 sparsegpt: {seconds:.1f} s, peak {peak / 2**20:.0f} MiB, params {params / 2**20:.0f} MiB, "
         f"sparsity {result['sparsity']:.3f}")  # fmt: skip
    emit("lm/sparsegpt_gpt2_124m_oneshot_run", round(seconds, 1), "s", "<= 600")
    emit("lm/sparsegpt_gpt2_124m_peak_memory", round(peak / params, 2), "x parameter bytes", "<= 3")


def wanda_sweep() -> None:
    base = RunConfig("charlm-shakespeare", "wanda", 0.5, latency=False, eval_samples=128)
    configs = [base.replace(sparsity=level) for level in LEVELS]
    prep = experiment.prepare(base)

    def evaluations():
        for _ in LEVELS:
            prep.evaluate(prep.model)

    seconds = timed({"sweep": lambda: list(experiment.run_group(configs)), "evaluations": evaluations}, 2)
    sweep, plain = min(seconds["sweep"]), min(seconds["evaluations"])
    note(f"charlm wanda: 20-level sweep {sweep:.1f} s, 20 evaluations {plain:.1f} s")
    emit("lm/wanda_sweep_over_evaluations", round(sweep / plain, 2), "x", "<= 1.5")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sparsegpt_gpt2(Path(tmp))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wanda_sweep()
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
