"""Whole runs on architectures written as their authors wrote them (tests/unit/architectures.py,
after torchvision): magnitude, N:M and a structured method through the engine, sparsity counted over
every weight matrix once, and exports that reload into a fresh model with identical outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pruning.core import masks, models
from pruning.runs import experiment
from pruning.runs.config import RunConfig

pytestmark = pytest.mark.slow  # a dozen whole runs on 32x32 images: about half a minute

BUILDERS = {
    "resnet18": "resnet18_cifar(10, width=16)",
    "mobilenet-v2": "MobileNetV2(10, width_mult=0.5)",
    "vgg16-bn": "vgg16_bn(10, scale=0.25, pool=1, hidden=64)",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    lines = ["import torch", "from tests.unit import architectures as arch", ""]
    for name, call in BUILDERS.items():
        lines += [
            f"def {name.replace('-', '_')}():",
            "    torch.manual_seed(0)",
            f"    return arch.{call}",
            "",
        ]
    (root / "nets.py").write_text("\n".join(lines))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, size=96)
    np.savez(root / "images.npz", x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    return root


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("method", ["magnitude", "nm", "l1-channel"])
def test_a_run_counts_every_weight_once_and_its_export_reloads(folder, name, method, tmp_path):
    spec = f"{folder / 'nets.py'}:{name.replace('-', '_')}"
    config = RunConfig(
        spec, method, 0.5, data=str(folder / "images.npz"), latency=False, export=str(tmp_path)
    )
    result = experiment.run(config)
    dense = models.build(spec)
    weights = sum(m.weight.numel() for m in masks.prunable_layers(dense).values())
    assert sum(masks.prunable_layers(dense)[r["name"]].weight.numel() for r in result.layers) == weights
    if method == "nm":  # every layer whose inputs fit 2:4 is half pruned, the others listed with a reason
        skipped = {row["name"] for row in result.details["skipped_layers"]}
        assert all(r["sparsity"] == pytest.approx(0.5) for r in result.layers if r["name"] not in skipped)
    else:
        assert result.sparsity == pytest.approx(0.5, abs=0.02 if method == "l1-channel" else 1e-3)
    x = torch.from_numpy(np.load(folder / "images.npz")["x_test"][:4])
    prep = experiment.prepare(config)
    pruned = experiment.prune(prep, experiment.importance(prep), config).model.eval()
    if result.removed:  # the architecture changed: the torch.export program reloads with plain PyTorch
        reloaded = torch.export.load(tmp_path / "model.pt2").module()  # exported in eval mode
    else:  # same architecture: the plain state_dict loads strictly into a fresh copy
        reloaded = models.build(spec).eval()
        reloaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), pruned(x), atol=3e-7, rtol=0)
