"""OWL allocation: outlier ratios from Wanda scores, sparsities by hand, landing on the target."""

from __future__ import annotations

import json
import textwrap

import pytest

from pruning.runs.config import RunConfig
from pruning.runs.sensitivity import allocate_owl, owl

# Two layers side by side, not chained: layer "loud" reads inputs where one feature is 40 times the
# others (its Wanda scores have outliers), layer "quiet" reads the same inputs but that feature's
# weights are zero.
TWO = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.loud, self.quiet = nn.Linear(16, 16), nn.Linear(16, 16)
            with torch.no_grad():
                self.quiet.weight[:, 0] = 0

        def forward(self, x):
            return self.loud(x) + self.quiet(x)

    def model():
        torch.manual_seed(0)
        return Two()

    def data():
        x = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
        x[:, 0] *= 40
        return (x[:200], torch.randn(200, 16)), (x[200:], torch.randn(100, 16))
    """
)


def test_more_outliers_less_sparsity_by_hand():
    ratios = {"a": 0.01, "b": 0.03, "c": 0.02}
    levels = allocate_owl(ratios, {"a": 100, "b": 100, "c": 100}, 0.5, limit=0.08)
    assert levels == pytest.approx({"a": 0.58, "b": 0.42, "c": 0.5})


def test_unequal_layers_land_on_the_target_by_weight_count():
    ratios = {"a": 0.0, "b": 0.05, "c": 0.01, "d": 0.02}
    counts = {"a": 1000, "b": 4000, "c": 250, "d": 2500}
    for target in (0.3, 0.5, 0.7, 0.95):
        levels = allocate_owl(ratios, counts, target)
        pruned = sum(counts[n] * s for n, s in levels.items()) / sum(counts.values())
        assert pruned == pytest.approx(target, abs=2e-4)
        assert levels["a"] >= levels["c"] >= levels["d"] >= levels["b"]
        assert all(0.0 <= s <= 0.99 for s in levels.values())
        assert max(levels.values()) - min(levels.values()) <= 0.16 + 1e-9  # within 2 * limit


def test_equal_ratios_give_every_layer_the_target():
    assert allocate_owl({"a": 0.02, "b": 0.02}, {"a": 10, "b": 30}, 0.6) == {"a": 0.6, "b": 0.6}


def test_a_layer_on_loud_inputs_keeps_more_weights(tmp_path):
    (tmp_path / "two.py").write_text(TWO)
    spec = str(tmp_path / "two.py")
    config = RunConfig(f"{spec}:model", "magnitude", 0.0, data=f"{spec}:data", latency=False)
    levels = owl(config, 0.5)
    assert levels["loud"] < 0.5 < levels["quiet"]
    assert (levels["loud"] + levels["quiet"]) / 2 == pytest.approx(0.5, abs=1e-4)


def test_allocations_are_drawn_side_by_side_in_model_order_on_a_fixed_axis():
    import pandas as pd

    from pruning.present import charts

    counts = {"b.0": 100, "a.1": 300, "c.2": 100}
    owl_levels = allocate_owl({"b.0": 0.01, "a.1": 0.0, "c.2": 0.05}, counts, 0.6)
    rows = [{"layer": n, "allocation": "OWL", "sparsity": s} for n, s in owl_levels.items()]
    rows += [{"layer": n, "allocation": "uniform", "sparsity": 0.6} for n in counts]
    figure = charts.allocation_bars(pd.DataFrame(rows), target=0.6)
    assert [t.name for t in figure.data] == ["OWL", "uniform"]
    assert list(figure.data[0].x) == ["b.0", "a.1", "c.2"]  # model order, not sorted
    assert list(figure.data[0].y) == [owl_levels[n] for n in counts]
    assert tuple(figure.layout.yaxis.range) == (0, 1)
    assert figure.layout.shapes[0].y0 == 0.6 and figure.layout.barmode == "group"


@pytest.mark.slow  # CLI subprocesses
def test_cli_allocate_owl(cli, tmp_path):
    (tmp_path / "two.py").write_text(TWO)
    spec = str(tmp_path / "two.py")
    common = ["allocate", "--model", f"{spec}:model", "--data", f"{spec}:data", "--method", "wanda"]
    done = cli(*common, "--sparsity", "0.5", "--owl", "--json", "--store", str(tmp_path / "lab"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["method"] == "owl" and plan["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert plan["layer_sparsity"]["loud"] < 0.5 < plan["layer_sparsity"]["quiet"]
    assert not (tmp_path / "lab").exists()  # an allocation stores nothing
    refused = cli(*common, "--sparsity", "1.2", "--owl")
    assert refused.returncode == 2 and refused.stderr.strip().startswith("error: target sparsity")
