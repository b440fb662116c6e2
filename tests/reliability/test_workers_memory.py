"""A worker that runs out of memory is recorded failed with its peak memory, in one line, and the
process that submitted the run stays up (a worker killed outright: tests/unit/test_executors.py)."""

from __future__ import annotations

import re

import pytest

from pruning.runs import submit
from pruning.runs.config import RunConfig
from pruning.runs.store import Store

GREEDY_MODEL = """
import torch
from torch import nn


class Greedy(nn.Module):
    '''Fine once; from its fourth training step on, asks the allocator for a petabyte.'''

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.steps = 0

    def forward(self, x):
        if self.training:
            self.steps += 1
            if self.steps > 3:
                torch.empty(1 << 50, dtype=torch.uint8)
        return self.fc(x.flatten(1))


def make():
    return Greedy()
"""


@pytest.mark.slow
def test_a_worker_out_of_memory_is_recorded_failed_with_its_peak_memory(tmp_path):
    source = tmp_path / "greedy.py"
    source.write_text(GREEDY_MODEL)
    config = RunConfig(f"{source}:make", "magnitude", 0.5, data="digits", finetune_epochs=1, latency=False)
    (run_id,) = submit.submit(tmp_path / "lab", [config], executor="process")
    with Store(tmp_path / "lab") as store:
        (record,) = submit.wait(store, [run_id])
    assert record.status == "failed"
    assert re.fullmatch(
        r"out of memory: .*can't allocate memory.* \(peak memory of the process: [\d,]+ MiB\)", record.error
    ), record.error
