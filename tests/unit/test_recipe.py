"""recipe.json and prune.py (pruning/runs/export.py, pruning/runs/snippet.py): an export's recipe
reproduces its run through `run --recipe`, and its snippet applies the same pruning with
`torch.nn.utils.prune` or Torch-Pruning to a fresh model, without Pruning Lab."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import re
import runpy
from pathlib import Path

import pytest
import torch

from pruning.cli import commands
from pruning.cli import main as cli_main
from pruning.cli.parser import parser
from pruning.core import masks, models
from pruning.runs import export, preview, snippet
from pruning.runs.config import RunConfig
from sample_models.architectures import CNN, MLP

MASKED = ["run", "--model", "mlp-digits", "--method", "magnitude", "--sparsity", "0.5"]
REMOVED = ["run", "--model", "cnn-digits", "--method", "l1-channel", "--sparsity", "0.5"]


def cli(*args: str) -> tuple[int, str, str]:
    """`python -m pruning ARGS` in this process (a start-up saved): exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli_main([*args, "--quiet", "--no-latency"] if args[0] == "run" else list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A masked run exported to A, its recipe run again into B, a removed run exported to C."""
    root = tmp_path_factory.mktemp("recipe")
    store = ["--store", str(root / "lab")]
    for args in (
        [*MASKED, "--export", str(root / "A"), *store],
        ["run", "--recipe", str(root / "A" / "recipe.json"), "--export", str(root / "B"), "--json", *store],
        [*REMOVED, "--export", str(root / "C"), *store],
    ):
        status, out, err = cli(*args)
        assert status == 0, err
        if "--json" in args:
            (root / "B.json").write_text(out)
    return root


def result(directory: Path) -> dict:
    return json.loads((directory / "run.json").read_text())


def zero_fractions(model: torch.nn.Module) -> dict[str, float]:
    return {n: float((m.weight == 0).float().mean()) for n, m in masks.prunable_layers(model).items()}


def test_an_export_writes_the_recipe_and_the_snippet(root):
    files = {"model.safetensors", "run.json", "recipe.json", "prune.py"}
    assert {p.name for p in (root / "A").iterdir()} == files
    saved = result(root / "A")
    names = {
        "weights": "model.safetensors",
        "result": "run.json",
        "recipe": "recipe.json",
        "snippet": "prune.py",
    }
    assert {k: Path(v).name for k, v in saved["export"].items()} == names
    recipe = json.loads((root / "A" / "recipe.json").read_text())
    config = {k: v for k, v in saved["config"].items() if k != "export"}
    assert recipe == {"recipe_version": export.RECIPE_VERSION, **config}
    assert {"recipe.json", "prune.py", "model.pt2", "model.onnx"} <= {p.name for p in (root / "C").iterdir()}


def test_a_recipe_reproduces_the_run(root):
    first, again = result(root / "A"), json.loads((root / "B.json").read_text())
    assert again["status"] == "succeeded" and again["run_id"] != first["run_id"]
    assert again["sparsity"] == first["sparsity"]
    assert [(r["name"], r["sparsity"]) for r in again["layers"]] == [
        (r["name"], r["sparsity"]) for r in first["layers"]
    ]
    assert again["pruned"]["accuracy"] == first["pruned"]["accuracy"]
    assert (root / "B" / "model.safetensors").read_bytes() == (root / "A" / "model.safetensors").read_bytes()
    assert {**again["config"], "export": None} == {**first["config"], "export": None}


def recipe_file(path: Path, **changes) -> Path:
    fields = {"model": "mlp-digits", "method": "magnitude", "sparsity": 0.5, "scope": "layer"}
    fields.update({"layer_sparsity": {"fc1": 0.2, "fc2": 0.3}, "options": {}, "seed": 3, **changes})
    path.write_text(json.dumps({"recipe_version": export.RECIPE_VERSION, **fields}))
    return path


def config_of(*args: str) -> RunConfig:
    return commands._recipe_config(parser().parse_args(["run", *args]))


def test_options_given_on_the_command_line_override_the_recipe(tmp_path):
    recipe = str(recipe_file(tmp_path / "r.json"))
    assert config_of("--recipe", recipe) == RunConfig(
        "mlp-digits", "magnitude", 0.5, scope="layer", layer_sparsity=(("fc1", 0.2), ("fc2", 0.3)), seed=3
    )
    # an abbreviation counts, and so does a value equal to the option's default (--scope global)
    changed = config_of(
        "--recipe", recipe, "--spars", "0.7", "--scope", "global", "--layer-sparsity", "fc2=0.4"
    )
    assert (changed.sparsity, changed.scope, changed.seed) == (0.7, "global", 3)
    assert changed.layer_sparsity == (("fc1", 0.2), ("fc2", 0.4))  # replaced name by name
    elsewhere = config_of("--recipe", recipe, "--export", str(tmp_path / "out"), "--no-latency")
    assert (elsewhere.export, elsewhere.latency, elsewhere.sparsity) == (str(tmp_path / "out"), False, 0.5)


def test_method_options_follow_the_method(tmp_path):
    recipe = str(recipe_file(tmp_path / "r.json", method="taylor", options={"batches": 2}))
    assert dict(config_of("--recipe", recipe).options) == {"batches": 2}
    assert dict(config_of("--recipe", recipe, "--option", "batches=5").options) == {"batches": 5}
    assert config_of("--recipe", recipe, "--method", "random").options == ()  # taylor's are dropped


def test_without_a_recipe_model_method_and_sparsity_stay_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["run", "--model", "mlp-digits"])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("error: the following arguments are required: --method, --sparsity")
    )
    with pytest.raises(SystemExit):
        parser().parse_args(["sweep", "--methods", "magnitude", "--sparsities", "0.5"])
    assert "required: --model" in capsys.readouterr().err


BAD_RECIPES = {
    "missing": (None, "does not exist: give the recipe.json"),
    "not json": ("{model: mlp-digits", "is not JSON"),
    "a result": (json.dumps({"model": "mlp-digits"}), "is not a recipe (no recipe_version"),
    "no sparsity": (json.dumps({"recipe_version": 1, "model": "m", "method": "magnitude"}), "lacks sparsity"),
    "wrong version": ({"recipe_version": 99}, "has recipe_version 99, this Pruning Lab reads version 1"),
    "unknown key": ({"export": "out", "colour": "red"}, "unknown keys: colour, export (give --export"),
    "no method": ({"method": None}, "method must be a string, got null"),
    "wrong type": ({"steps": "2"}, 'steps must be an integer, got "2"'),
    "invalid value": ({"sparsity": 1.5}, "sparsity must be a number in [0, 1), got 1.5: fix it in the file"),
    "bad layer value": ({"layer_sparsity": {"fc1": "x"}}, "has a value of the wrong type"),
    "unknown method option": ({"options": {"heads": True}}, "method magnitude has no option heads"),
}


@pytest.mark.parametrize("name", BAD_RECIPES)
def test_a_bad_recipe_is_one_error_line_and_nothing_is_stored(tmp_path, name):
    content, fragment = BAD_RECIPES[name]
    path = tmp_path / "recipe.json"
    if isinstance(content, dict):
        recipe_file(path, **content)
    elif content is not None:
        path.write_text(content)
    status, out, err = cli("run", "--recipe", str(path), "--store", str(tmp_path / "lab"))
    lines = err.strip().splitlines()
    assert status == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith(f"error: recipe {path}"), err
    assert fragment in lines[0]
    assert not (tmp_path / "lab").exists()


def test_the_recipe_holds_every_config_field_but_export():
    assert set(export.RECIPE_TYPES) == {f.name for f in dataclasses.fields(RunConfig)} - {"export"}


def imports_no_project_code(code: str) -> bool:
    return not re.search(r"^\s*(from|import)\s+(pruning|sample_models)\b", code, re.MULTILINE)


def test_the_masked_snippet_zeroes_the_runs_per_layer_sparsities(root):
    path, run = root / "A" / "prune.py", result(root / "A")
    assert imports_no_project_code(path.read_text())
    model = models.load("mlp-digits")
    assert type(model) is MLP
    runpy.run_path(str(path))["prune_model"](model)
    reached = zero_fractions(model)
    assert reached == pytest.approx({r["name"]: r["sparsity"] for r in run["layers"]}, abs=1e-3)
    # magnitude: the same masks as the run's own (no ties among these float weights)
    exported = models.load("mlp-digits", root / "A" / "model.safetensors")
    for name, layer in masks.prunable_layers(model).items():
        assert torch.equal(layer.weight == 0, masks.prunable_layers(exported)[name].weight == 0), name
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())  # permanent by default


def test_another_criterion_gets_its_amounts_with_magnitude_and_says_so():
    run = preview.preview(RunConfig(model="mlp-digits", method="random", sparsity=0.6, latency=False))
    code = snippet.render(run, models.load("mlp-digits"), torch.zeros(2, 64))
    assert "not the run's own criterion ('random')" in code
    namespace: dict = {}
    exec(compile(code, "prune.py", "exec"), namespace)
    model = namespace["prune_model"](models.load("mlp-digits"), permanent=False)
    assert {n: m.weight_mask.dtype for n, m in masks.prunable_layers(model).items()}  # torch's masks kept
    assert zero_fractions(model) == pytest.approx({r["name"]: r["sparsity"] for r in run.layers}, abs=1e-3)


def test_the_structured_snippet_removes_about_the_runs_share_with_torch_pruning(root):
    path, run = root / "C" / "prune.py", result(root / "C")
    code = path.read_text()
    assert imports_no_project_code(code) and "MagnitudeImportance(p=1)" in code
    assert "OUTPUT_LAYERS = [\n    'classifier',\n]" in code
    model = models.load("cnn-digits")
    assert type(model) is CNN
    before = sum(p.numel() for p in model.parameters())
    runpy.run_path(str(path))["prune_model"](model)
    after = sum(p.numel() for p in model.parameters())
    share = 1 - run["pruned"]["params"] / run["dense"]["params"]
    assert 1 - after / before == pytest.approx(share, rel=0.1)
    assert model(torch.randn(3, 64)).shape == (3, 10)


def test_text_from_the_run_enters_the_snippet_only_as_literals(tmp_path, masked):
    evil = f'x"""\nopen({str(tmp_path / "pwned")!r}, "w")\n#'
    run = copy.deepcopy(masked)
    run.config["model"] = evil
    namespace: dict = {}
    exec(
        compile(snippet.render(run, models.load("mlp-digits"), torch.zeros(2, 64)), "prune.py", "exec"),
        namespace,
    )
    assert namespace["RUN"]["model"] == evil
    assert not (tmp_path / "pwned").exists()
