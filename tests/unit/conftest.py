"""Results shared by the engine's unit tests: one masked and one removed preview of mlp-digits."""

from __future__ import annotations

import copy

import pytest

from pruning.runs import preview
from pruning.runs.config import RunConfig
from pruning.runs.result import RunResult

MLP = RunConfig(model="mlp-digits", method="magnitude", sparsity=0.8, latency=False)


@pytest.fixture
def masked() -> RunResult:
    """80% magnitude: zeros stored (a copy: previews are cached and shared)."""
    return copy.deepcopy(preview.preview(MLP))


@pytest.fixture
def removed() -> RunResult:
    """50% l1-channel: structure physically removed (a copy)."""
    return copy.deepcopy(preview.preview(MLP.replace(method="l1-channel", sparsity=0.5)))
