"""Shared test fixtures: a throwaway store folder, a tiny seeded model, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

# Only there to stop a hung command, never to judge speed: a sweep that takes 10 s alone passed 120 s
# on a busy 2-core machine, and every test of the CLI module errored with it.
TIMEOUT = 600.0

# Tests run on small shared machines: one intra-op thread per process keeps OpenMP threads from
# spinning against each other (a 2-thread fine-tune ran 6x slower than 1 thread on a busy 2-core box).
# The environment variable reaches the CLI and worker subprocesses too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


class TinyNet(nn.Module):
    """Conv2d + two Linear layers on 1x6x6 inputs: small enough to check by hand."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)  # -> 4x4x4
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x.reshape(-1, 1, 6, 6)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


@pytest.fixture
def make_net() -> Callable[..., TinyNet]:
    """A factory: `make_net(seed)` builds the same weights for the same seed."""
    return _tiny_net


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A run-history folder that does not exist yet (so a test can tell whether anything was written)."""
    return tmp_path / "lab"


class Cli:
    """`python -m pruning ARGS...` from the repository root, as a user runs it."""

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pruning", *args]

    def __call__(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()
