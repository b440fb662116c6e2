"""A run never records a sparsity other than the one asked: a target below the zeros the model
already holds is refused before anything is stored, and a pruning that misses its target by more
than the method's tolerance fails the run, before any fine-tuning, naming both figures."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from pruning.cli import main
from pruning.core import methods, models
from pruning.core.methods.base import Method
from pruning.errors import UserError
from pruning.runs import experiment
from pruning.runs.config import RunConfig


def test_a_target_below_the_zeros_already_held_is_refused_before_anything_is_stored(tmp_path, capsys):
    model = models.load("mlp-digits")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(torch.rand_like(p) > 0.6)  # 60% of every weight matrix is zero already
    weights = tmp_path / "sparse.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    store = tmp_path / "store"
    argv = ["run", "--model", "mlp-digits", "--weights", str(weights), "--method", "magnitude"]
    code = main([*argv, "--sparsity", "0.3", "--no-latency", "--quiet", "--store", str(store)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not store.exists()
    assert lines[0].startswith("error: 0.6")
    assert lines[0].endswith(
        "prunable weights are already zero, more than the sparsity 0.30 asked: ask --sparsity 0.60 or more"
    )


def test_a_pruning_that_misses_its_target_fails_the_run_naming_both_figures(monkeypatch):
    # A method whose selection keeps half of what it should remove: the run must not pass as 0.8.
    def select(self, scores, target, options):
        half = type(target)(target.sparsity / 2, target.scope, target.overrides)
        return Method.select(self, scores, half, options)

    monkeypatch.setattr(type(methods.get("magnitude")), "select", select)
    config = RunConfig("mlp-digits", "magnitude", 0.8, latency=False, finetune_epochs=1)
    with pytest.raises(
        UserError,
        match=r"^magnitude reached sparsity 0\.400, not the 0\.80 asked \(tolerance 0\.01\); lower",
    ):
        experiment.run(config)


def test_per_layer_sparsities_that_put_the_target_out_of_reach_are_refused_before_anything_is_stored(
    tmp_path, capsys
):
    # fc1 holds 19,200 of mlp-digits' 50,200 weights: kept at 0.3, the model can reach at most 0.73
    store = tmp_path / "store"
    argv = ["run", "--model", "mlp-digits", "--method", "magnitude", "--sparsity", "0.8"]
    code = main([*argv, "--layer-sparsity", "fc1=0.3", "--no-latency", "--quiet", "--store", str(store)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not store.exists()
    assert lines == [
        "error: with these per-layer sparsities the model's sparsity can only be between 0.11 and 0.73, "
        "not 0.80: change --sparsity or the per-layer values"
    ]
