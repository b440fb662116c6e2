"""Tasks and their metrics, against values computed by hand and with torch.nn.functional."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from pruning.core import data as datasets
from pruning.core import tasks
from pruning.core.data import Split
from pruning.errors import UserError


def test_classification_accuracy_and_per_class_accuracy():
    always_zero = nn.Linear(2, 3)
    with torch.no_grad():
        always_zero.weight.zero_()
        always_zero.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    split = Split(torch.zeros(4, 2), torch.tensor([0, 0, 1, 2]))
    result = tasks.CLASSIFICATION.evaluate(always_zero, split, num_classes=4)
    assert (result.metric, result.accuracy, result.per_class_accuracy) == (0.5, 0.5, [1.0, 0.0, 0.0, 0.0])


class Bigram(nn.Module):
    """Token ids in, (batch, positions, vocabulary) logits out, wrapped as Hugging Face does."""

    def __init__(self, vocab: int = 7):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, vocab)

    def forward(self, ids):
        class Output:
            logits = self.head(self.embed(ids))

        return Output()


def test_lm_perplexity_is_exp_of_the_mean_next_token_loss():
    torch.manual_seed(0)
    model = Bigram()
    ids = torch.randint(0, 7, (40, 6))
    split = Split(ids[:, :-1], ids[:, 1:])
    result = tasks.LM.evaluate(model, split)  # several batches: LM batches are small
    with torch.no_grad():
        logits = model(split.x).logits
    expected = nn.functional.cross_entropy(logits.reshape(-1, 7), split.y.reshape(-1))
    assert result.metric == pytest.approx(math.exp(expected.item()), rel=1e-5)
    assert result.accuracy == pytest.approx((logits.argmax(-1) == split.y).float().mean().item())
    assert tasks.LM.evaluate(model, split, limit=3).metric != result.metric  # a cap reads fewer


def test_regression_mse_and_which_way_is_better():
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.zero_()
    split = Split(torch.tensor([[1.0], [2.0]]), torch.tensor([3.0, 4.0]))
    assert tasks.REGRESSION.evaluate(model, split).metric == pytest.approx(((2 - 3) ** 2 + 0) / 2)
    assert tasks.REGRESSION.worse_by(1.0, 1.5) == 0.5 and tasks.CLASSIFICATION.worse_by(
        0.9, 0.8
    ) == pytest.approx(0.1)


def test_tasks_are_inferred_from_the_data_and_can_be_declared(tmp_path):
    ids = np.random.default_rng(0).integers(0, 50, size=(30, 9))
    np.savez(
        tmp_path / "lm.npz",
        x_train=ids[:20, :-1],
        y_train=ids[:20, 1:],
        x_test=ids[20:, :-1],
        y_test=ids[20:, 1:],
    )
    lm = datasets.load(str(tmp_path / "lm.npz"))
    assert lm.task is tasks.LM and lm.train.x.dtype == torch.long  # token ids stay integer
    x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x_train=x[:20], y_train=x[:20, 0] * 2, x_test=x[20:], y_test=x[20:, 0] * 2)
    regression = datasets.load(str(tmp_path / "reg.npz"))
    assert regression.task is tasks.REGRESSION and regression.num_classes == 0
    assert datasets.with_task(regression, "regression") is regression
    assert datasets.load("digits").task is tasks.CLASSIFICATION
    with pytest.raises(UserError, match="unknown task 'ranking'"):
        tasks.get("ranking")


def test_the_validation_split_is_a_seeded_tenth_of_train():
    digits = datasets.load("digits")
    assert len(digits.validation) == round(0.1 * len(digits.train))
    rows = {tuple(r.tolist()) for r in digits.train.x}
    assert all(tuple(r.tolist()) in rows for r in digits.validation.x)  # carved from train, not test
    assert torch.equal(datasets.load("digits").validation.x, digits.validation.x)  # same seed, same rows


def test_a_declared_task_wins_and_the_cli_takes_it(tmp_path, capsys):
    from pruning.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    counts = rng.integers(0, 5, size=60)  # integer targets that are quantities, not classes
    np.savez(tmp_path / "counts.npz", x_train=x[:40], y_train=counts[:40], x_test=x[40:], y_test=counts[40:])
    (tmp_path / "reg.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(3, 1)\n")
    args = ["run", "--model", f"{tmp_path / 'reg.py'}:make", "--data", str(tmp_path / "counts.npz")]
    args += [
        "--method",
        "magnitude",
        "--sparsity",
        "0.3",
        "--json",
        "--quiet",
        "--store",
        str(tmp_path / "lab"),
    ]
    assert main([*args, "--task", "regression", "--finetune-epochs", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["task"], result["metric"], result["higher_is_better"]) == ("regression", "mse", False)
    assert result["pruned"]["accuracy"] is None and result["pruned"]["metric"] > 0
    with pytest.raises(SystemExit):  # argparse refuses an unknown task with its usage line
        main([*args, "--task", "ranking"])


@pytest.mark.parametrize(
    "config, message",
    [
        ({"task": "lm"}, "task 'lm': lm needs token ids in"),
        ({"task": "regression"}, "task 'regression': regression needs one output per target value"),
    ],
)
def test_a_task_the_model_cannot_serve_is_refused_before_anything_is_stored(tmp_path, config, message):
    from pruning.runs import submit
    from pruning.runs.config import RunConfig

    with pytest.raises(UserError, match=message):
        submit.submit(tmp_path / "lab", [RunConfig("mlp-digits", "magnitude", 0.5, **config)])
    assert not (tmp_path / "lab").exists()


def test_fewer_outputs_than_classes_is_refused(tmp_path):
    from pruning.runs import submit
    from pruning.runs.config import RunConfig

    (tmp_path / "five.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(64, 5)\n")
    with pytest.raises(UserError, match="the model has 5 outputs but the data has 10 classes"):
        submit.validate([RunConfig(f"{tmp_path / 'five.py'}:make", "magnitude", 0.5, data="digits")])
