"""Pictures of what was pruned: kept cells (a convolution's kernel summed), downsampling with its
factor, the preview's pruned weights against the preview's own counts, and channels kept per layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruning.present import pictures as draw
from pruning.runs import pictures, preview
from pruning.runs.config import RunConfig


def test_conv_cells_are_the_share_of_each_kernel_kept() -> None:
    weight = np.ones((2, 3, 2, 2), dtype=np.float32)
    weight[0, 1, 0, :] = 0  # half of kernel (0, 1)
    weight[1, 2] = 0  # all of kernel (1, 2)
    assert draw.kept_cells(weight).tolist() == [[1, 0.5, 1], [1, 1, 0]]


def test_large_layers_are_downsampled_by_a_stated_factor() -> None:
    rng = np.random.default_rng(0)
    kept = (rng.random((300, 64)) > 0.7).astype(np.float32)
    p = draw.picture("fc1", kept, max_side=100)
    assert p.factor == 3 and p.image.shape == (100, 22)  # 64 columns: 21 blocks of 3 and one of 1
    assert p.image[0, 0] == pytest.approx(kept[:3, :3].mean())
    assert p.image[5, 21] == pytest.approx(kept[15:18, 63:].mean())  # the padding is not counted
    assert p.kept == pytest.approx(kept.mean())
    assert "downsampled 3x" in p.title and "300 x 64" in p.title
    assert draw.picture("fc3", kept[:10, :10]).factor == 1


def test_preview_weights_are_what_the_preview_counted() -> None:
    torch.set_num_threads(1)
    config = RunConfig("mlp-digits", "magnitude", 0.8, latency=False)
    pruned = pictures.of_preview(config)
    result = preview.preview(config)
    assert not pruned.removed
    shown = {n: 1 - np.count_nonzero(w) / w.size for n, w in pruned.weights.items()}
    assert shown == pytest.approx({row["name"]: row["sparsity"] for row in result.layers})


def test_structured_channels_kept_and_removed() -> None:
    frame = draw.channels_frame(
        {"conv": (8, 1, 3, 3), "fc": (10, 32)}, {"conv": (5, 1, 3, 3), "fc": (10, 20)}
    )
    rows = {(r.layer, r.unit): (r.kept, r.removed) for r in frame.itertuples()}
    assert rows[("conv", "output channels")] == (5, 3)
    assert rows[("fc", "input channels")] == (20, 12)
    kept, removed = draw.channels_figure(frame).data
    assert (list(kept.y), list(removed.y)) == ([5, 10], [3, 0])
