"""The command line's arguments: one sub-parser per command, each bound to its function."""

from __future__ import annotations

import argparse

from pruning.cli import commands
from pruning.core.tasks import TASKS
from pruning.runs.config import MAX_EPOCHS, MAX_SEED, MAX_STEPS, SCHEDULES
from pruning.runs.executors import EXECUTORS
from pruning.runs.store import default_root

# `run` needs these, unless a recipe gives them.
RECIPE_GIVES = ("--model", "--method", "--sparsity")


class _Parser(argparse.ArgumentParser):
    """A command's parser. For a command with `--recipe` (run), it also records which options the
    command line gave (`args.given`, their dests): those override the recipe's values, the recipe
    gives the rest, so `RECIPE_GIVES` are required only without a recipe."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if hasattr(parsed, "recipe"):
            parsed.given = self._given(args)
            missing = [o for o in RECIPE_GIVES if o.lstrip("-") not in parsed.given]
            if parsed.recipe is None and missing:
                self.error(f"the following arguments are required: {', '.join(missing)}")
        return parsed, extras

    def _given(self, args) -> set[str]:
        """The dests of the options in `args`: parsed again with no defaults (so abbreviations count)."""
        defaults = {action: action.default for action in self._actions}
        try:
            for action in defaults:
                action.default = argparse.SUPPRESS
            given, _ = super().parse_known_args(args, argparse.Namespace())
        finally:
            for action, default in defaults.items():
                action.default = default
        return set(vars(given)) - set(self._defaults)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=str(default_root()), help="run history folder")
    common.add_argument("--json", action="store_true", help="print JSON")
    # --debug is accepted before or after the command; the sub-command's default must not reset it.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return common


def _source(parent: argparse.ArgumentParser, model_required: bool = True) -> argparse.ArgumentParser:
    """Options naming what to prune: model, data, weights, method options, seed."""
    source = argparse.ArgumentParser(add_help=False, parents=[parent])
    source.add_argument("--model", required=model_required)
    source.add_argument("--lab", metavar="FILE", help="lab file of your models and datasets (lab.toml)")
    source.add_argument("--data")
    source.add_argument("--task", choices=list(TASKS), help="what the data is for (default: inferred)")
    source.add_argument("--weights")
    source.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="method option")
    source.add_argument("--seed", type=int, default=0, help=f"0 to {MAX_SEED}")
    source.add_argument("--eval-samples", type=int, metavar="N", help="evaluate on N samples (default: all)")
    source.add_argument("--calib-samples", type=int, metavar="N", help="calibrate on N training samples")
    source.add_argument("--quiet", action="store_true", help="no progress bar")
    return source


def _runner(source: argparse.ArgumentParser) -> argparse.ArgumentParser:
    runner = argparse.ArgumentParser(add_help=False, parents=[source])
    runner.add_argument("--scope", default="global", choices=["global", "layer"])
    runner.add_argument("--embeddings", action="store_true", help="prune nn.Embedding weights too")
    runner.add_argument("--layer-sparsity", action="append", default=[], metavar="NAME=S")
    runner.add_argument("--finetune-epochs", type=int, default=0, help=f"at most {MAX_EPOCHS}")
    runner.add_argument("--schedule", default="oneshot", choices=list(SCHEDULES))
    runner.add_argument(
        "--steps", type=int, default=1, help=f"pruning steps of a schedule, at most {MAX_STEPS}"
    )
    runner.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="auto: CUDA if any")
    runner.add_argument("--batch-size", type=int, default=256, help="batch size for latency")
    runner.add_argument("--no-latency", action="store_true", help="skip timing dense vs pruned")
    runner.add_argument("--export")
    runner.add_argument("--overwrite", action="store_true", help="let --export replace a folder's files")
    runner.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop a run that takes longer")
    runner.add_argument("--ray-address", help="--executor ray: auto, ray://HOST:PORT (default: a local Ray)")
    runner.add_argument("--cpus-per-run", type=float, default=1.0, help="--executor ray: CPUs of each task")
    runner.add_argument("--gpus-per-run", type=float, default=0.0, help="--executor ray: GPUs of each task")
    return runner


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m pruning", description="Pruning Lab from the command line.")
    top.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _common()
    source = _source(common)
    runner = _runner(source)
    listing = sub.add_parser("models", parents=[common], help="list sample and lab models")
    listing.add_argument("--lab", metavar="FILE", help="lab file of your models and datasets (lab.toml)")
    listing.set_defaults(func=commands.models)
    sub.add_parser("methods", parents=[common], help="list pruning methods").set_defaults(
        func=commands.methods
    )
    recipe_runner = _runner(_source(common, model_required=False))  # --model may come from a recipe
    run = sub.add_parser("run", parents=[recipe_runner], help="prune one model")
    recipe_help = "reproduce the run of a recipe.json that an export wrote; options given here override it"
    run.add_argument("--recipe", metavar="FILE", help=recipe_help)
    run.add_argument("--method")
    run.add_argument("--sparsity")
    run.add_argument("--executor", default="inline", choices=list(EXECUTORS))
    run.set_defaults(func=commands.run, workers=1)
    sweep = sub.add_parser("sweep", parents=[runner], help="methods x sparsity levels")
    sweep.add_argument("--methods", required=True)
    sweep.add_argument("--sparsities", required=True)
    sweep.add_argument("--executor", default="inline", choices=list(EXECUTORS))
    sweep.add_argument("--workers", type=int, default=1)
    sweep.set_defaults(func=commands.sweep)
    sub.add_parser("runs", parents=[common], help="run history").set_defaults(func=commands.runs)
    for name, help_text, func in (
        ("show", "one run's result", commands.show),
        ("cancel", "ask a run or analysis to stop", commands.cancel),
    ):
        one = sub.add_parser(name, parents=[common], help=help_text)
        one.add_argument("run_id")
        one.set_defaults(func=func)
    doctor = sub.add_parser("doctor", parents=[common], help="check the run history; salvage a damaged one")
    doctor.set_defaults(func=commands.doctor)
    demo = sub.add_parser("demo", parents=[common], help="load the demo history: sweeps and an analysis")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=commands.demo)
    report = sub.add_parser("report", parents=[common], help="HTML report of runs")
    report.add_argument("run_ids", nargs="*", help="the runs to report (or --all)")
    report.add_argument("--all", action="store_true", help="every succeeded run of the store")
    report.add_argument("--out", required=True)
    report.add_argument(
        "--pdf", metavar="FILE", help="also print it to a PDF (needs chromium and Playwright)"
    )
    report.set_defaults(func=commands.report)
    analysis = argparse.ArgumentParser(add_help=False, parents=[source])
    analysis.add_argument("--method", required=True)
    analysis.add_argument("--levels", help="comma-separated sparsity levels (default 0.1,0.2,..,0.9)")
    sensitivity = sub.add_parser("sensitivity", parents=[analysis], help="accuracy with one layer pruned")
    sensitivity.set_defaults(func=commands.sensitivity)
    allocate = sub.add_parser("allocate", parents=[analysis], help="per-layer sparsities from sensitivity")
    allocate.add_argument("--sparsity", required=True, help="global target (fraction of prunable weights)")
    allocate.add_argument(
        "--owl",
        action="store_true",
        help="outlier-weighed layerwise sparsity (Yin et al., 2024) from one calibration pass of the "
        "dense model, instead of the sensitivity analysis (for language models; --method is ignored)",
    )
    allocate.set_defaults(func=commands.allocate)
    return top
