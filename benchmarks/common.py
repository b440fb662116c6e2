"""What every benchmark module shares: one JSON line per figure, and interleaved timing.

A benchmark module in this package defines `main() -> None`, which measures and calls `emit` once
per figure. Figures compared with each other are timed in the same process, interleaved (`timed`).
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

GOALS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


def emit(name: str, value: float, unit: str, goal: str | None = None) -> None:
    """Print {"name", "value", "unit", "goal", "ok"}; goal "<= 1.3", ">= 3", "== 1" or None (reference)."""
    ok = None
    if goal is not None:
        op, bound = goal.split()
        ok = GOALS[op](value, float(bound))
    print(json.dumps({"name": name, "value": value, "unit": unit, "goal": goal, "ok": ok}), flush=True)


def timed(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each call, round-robin `repeats` times so machine drift hits all alike."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def gpt2_small(folder: Path, train: int, test: int) -> int:
    """A GPT-2-small-sized `hf:` directory (124M parameters, random weights, seeded) at folder/gpt2 and
    `train` + `test` random sequences of 128 tokens at folder/tokens.npz; returns the parameter bytes."""
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(folder / "gpt2")
    del model
    ids = np.random.default_rng(0).integers(0, 50257, size=(train + test, 129))
    np.savez(
        folder / "tokens.npz",
        x_train=ids[:train, :-1],
        y_train=ids[:train, 1:],
        x_test=ids[train:, :-1],
        y_test=ids[train:, 1:],
    )
    return params


def measured_cli(args: list[str]) -> tuple[float, int, dict]:
    """`python -m pruning ARGS --json` in a fresh process, as a user runs it: (seconds, peak resident
    bytes of that process, its JSON output)."""
    command = [
        sys.executable, "-c",
        "import resource, sys\nfrom pruning.cli import main\ncode = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)",
        *args, "--json",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    peak = int(done.stderr.strip().splitlines()[-1]) * 1024  # ru_maxrss is in kB on Linux
    return seconds, peak, json.loads(done.stdout)
