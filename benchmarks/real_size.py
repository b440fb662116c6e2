"""Real-size models on this machine: a ResNet-50 (25.6M parameters) and a GPT-2-small-sized language
model (124M parameters, random weights, a local `hf:` directory). Run: `python -m benchmarks real_size`.

- real_size/resnet50_preview_step: median seconds of a live-preview step (a new sparsity on the
  cached model: `preview.preview`, magnitude, default caps) on 64x64 images, after the first.
- real_size/resnet50_preview_samples: how many test samples the default cap let a preview read.
- real_size/gpt2_124m_oneshot_run: seconds of `python -m pruning run` (magnitude 50%, no fine-tuning,
  no latency, evaluation capped at 16 sequences of 128 tokens) in a fresh process, export included.
- real_size/gpt2_124m_peak_memory: that process's peak resident memory over the model's parameter
  bytes (everything it holds: Python, torch and transformers, the model, which the run prunes in
  place, its masks or scores of one layer at a time, an evaluation batch's logits).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, gpt2_small, measured_cli
from pruning.runs import preview
from pruning.runs.config import RunConfig


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resnet50_preview(folder: Path) -> None:
    (folder / "resnet.py").write_text(
        "import torch\nfrom tests.unit.architectures import resnet50\n"
        "def make():\n    torch.manual_seed(0)\n    return resnet50(num_classes=10)\n"
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=1200)
    np.savez(folder / "images.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    base = RunConfig(f"{folder / 'resnet.py'}:make", "magnitude", 0.5, data=str(folder / "images.npz"))
    start = time.perf_counter()
    first = preview.preview(base)
    note(f"resnet50: first preview (load, measure, score) {time.perf_counter() - start:.1f} s")
    steps = []
    for sparsity in (0.55, 0.6, 0.65, 0.7, 0.75, 0.8):
        start = time.perf_counter()
        preview.preview(base.replace(sparsity=sparsity))
        steps.append(time.perf_counter() - start)
    emit("real_size/resnet50_preview_step", round(statistics.median(steps), 3), "s", "<= 2")
    emit("real_size/resnet50_preview_samples", first.config["eval_samples"] or 1000, "samples")
    preview.clear()


def gpt2_run(folder: Path) -> None:
    params = gpt2_small(folder, train=32, test=16)
    seconds, peak, result = measured_cli([
        "run", "--model", f"hf:{folder / 'gpt2'}", "--data", str(folder / "tokens.npz"),
        "--method", "magnitude", "--sparsity", "0.5", "--eval-samples", "16", "--no-latency",
        "--batch-size", "1", "--quiet", "--store", str(folder / "lab"), "--export", str(folder / "out"),
    ])  # fmt: skip
    note(f"gpt2: {seconds:.1f} s, peak {peak / 2**20:.0f} MiB, parameters {params / 2**20:.0f} MiB, "
         f"perplexity {result['dense']['metric']:.1f} -> {result['pruned']['metric']:.1f}")  # fmt: skip
    emit("real_size/gpt2_124m_oneshot_run", round(seconds, 1), "s", "<= 60")
    emit("real_size/gpt2_124m_peak_memory", round(peak / params, 2), "x parameter bytes", "<= 3")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        resnet50_preview(Path(tmp))
        gpt2_run(Path(tmp))


if __name__ == "__main__":
    main()
