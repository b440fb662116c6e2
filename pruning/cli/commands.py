"""The commands: each reads its arguments, calls the engine, and prints through `output`."""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from pruning.cli import output
from pruning.cli.output import ProgressBar
from pruning.core import lab
from pruning.core import methods as registry
from pruning.core import models as sources
from pruning.errors import UserError
from pruning.runs import cluster, export, submit
from pruning.runs import sensitivity as analysis
from pruning.runs.config import RunConfig, parse_layer_sparsity
from pruning.runs.result import RunResult
from pruning.runs.store import RunRecord, Store


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"'{text}' is not a number") from None


def _numbers(text: str) -> list[float]:
    return [_number(s) for s in text.split(",") if s.strip()]


def _pairs(items: list[str]) -> dict[str, str]:
    """`--option NAME=VALUE` strings as {name: value}."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--option expects NAME=VALUE, got '{item}'")
        pairs[name] = value
    return pairs


def _options(method: str, items: list[str]) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(registry.get(method).options(_pairs(items)).items()))


# The RunConfig field each option of `run` sets, by the option's dest (the rest have the same name).
FIELDS = {"option": "options", "no_latency": "latency"}


def _fields(args: Namespace) -> dict[str, Any]:
    """The RunConfig fields the options of `run` and `sweep` give, method options as given."""
    return {
        "model": args.model,
        "data": args.data,
        "weights": args.weights,
        "task": args.task,
        "eval_samples": args.eval_samples,
        "calib_samples": args.calib_samples,
        "scope": args.scope,
        "embeddings": args.embeddings,
        "layer_sparsity": dict(parse_layer_sparsity(args.layer_sparsity)),
        "options": _pairs(args.option),
        "finetune_epochs": args.finetune_epochs,
        "schedule": args.schedule,
        "steps": args.steps,
        "seed": args.seed,
        "device": args.device,
        "latency": not args.no_latency,
        "batch_size": args.batch_size,
        "export": args.export,
    }


def _build(fields: dict[str, Any]) -> RunConfig:
    """A RunConfig from its fields, the method's options filled in with its defaults and checked."""
    options = registry.get(fields["method"]).options(fields.get("options") or {})
    layers = tuple(sorted((fields.get("layer_sparsity") or {}).items()))
    return RunConfig(**{**fields, "layer_sparsity": layers, "options": tuple(sorted(options.items()))})


def _config(args: Namespace, method: str, sparsity: float) -> RunConfig:
    return _build({**_fields(args), "method": method, "sparsity": sparsity})


def _recipe_config(args: Namespace) -> RunConfig:
    """The recipe's config with each option the command line gave in place of the recipe's value;
    per-layer sparsities and method options are replaced name by name (the recipe's method options
    are dropped when --method names another method)."""
    recipe = export.read_recipe(args.recipe)
    named = {FIELDS.get(dest, dest) for dest in args.given}
    fields = {**_fields(args), "method": args.method, "sparsity": args.sparsity}
    given = {field: value for field, value in fields.items() if field in named}
    if "sparsity" in given:
        given["sparsity"] = _number(given["sparsity"])
    merged = {**recipe, **given}
    merged["layer_sparsity"] = {**recipe.get("layer_sparsity", {}), **given.get("layer_sparsity", {})}
    kept = recipe.get("options", {}) if merged["method"] == recipe["method"] else {}
    merged["options"] = {**kept, **given.get("options", {})}
    return _build(merged)


def _execute(args: Namespace, configs: list[RunConfig]) -> list[RunRecord]:
    """Submit the runs (validated before the store is even opened), follow them to the end."""
    bar = ProgressBar(len(configs), enabled=not args.quiet)
    ids: list[str] = []
    try:
        ids = submit.submit(
            args.store, configs, args.executor, args.workers, echo=bar, debug=args.debug,
            overwrite=args.overwrite, limit=args.time_limit, ray=_ray_settings(args),
        )  # fmt: skip
        return submit.wait(Store(args.store), ids, bar)
    except KeyboardInterrupt:  # inline runs were cancelled where they ran; workers are asked here
        store = Store(args.store) if ids else None
        for run_id in ids:
            store.request_cancel(run_id)
        raise UserError("interrupted: the runs were asked to stop (see `python -m pruning runs`)") from None
    finally:
        bar.close()


def _ray_settings(args: Namespace) -> cluster.Settings:
    """Where `--executor ray` runs; the Ray options are refused with any other executor."""
    settings = cluster.Settings(args.ray_address, args.cpus_per_run, args.gpus_per_run)
    if args.executor != "ray" and settings != cluster.Settings():
        raise UserError("--ray-address, --cpus-per-run and --gpus-per-run need --executor ray")
    return settings


def _emit(args: Namespace, records: list[RunRecord], many: bool) -> None:
    outcomes = [r.result or {"run_id": r.id, "status": r.status, "error": r.error} for r in records]
    if args.json:
        output.print_json(outcomes if many else outcomes[0])
    else:
        for record, outcome in zip(records, outcomes):
            output.print_result(RunResult.from_dict(outcome)) if record.result else output.print_failure(
                outcome
            )
    if any(r.status != "succeeded" for r in records):
        sys.exit(1)


def models(args: Namespace) -> None:
    rows = [
        {
            "id": m.id,
            "description": m.description,
            "dataset": m.dataset,
            "params": sum(p.numel() for p in m.build().parameters()),
        }
        for m in sources.SAMPLE_MODELS.values()
    ]
    rows += [_lab_row(m) for m in lab.active().models.values()]
    if args.json:
        return output.print_json(rows)
    for r in rows:
        params = f"{r['params']:>9} params" if r["params"] is not None else f"{'?':>9} params"
        output.say(f"{r['id']:<22} {r['dataset'] or '-':<9} {params}  {r['description']}")


def _lab_row(entry: lab.LabModel) -> dict:
    """A lab model's row; an entry that cannot be built shows why instead of its size."""
    try:
        params, error = sum(p.numel() for p in sources.build(entry.id).parameters()), None
    except UserError as exc:
        params, error = None, str(exc)
    description = f"{entry.title} (lab: {entry.source})" + (f"; cannot build: {error}" if error else "")
    dataset = sources.default_dataset(entry.id)  # an id, or a file shown by its name
    shown = Path(dataset).name if dataset else None
    return {"id": entry.id, "description": description, "dataset": shown, "params": params,
            "label": entry.title, "lab": True, "error": error}  # fmt: skip


def methods(args: Namespace) -> None:
    rows = [m.describe() for m in registry.METHODS.values()]
    if args.json:
        return output.print_json(rows)
    for r in rows:
        opts = ", ".join(f"{p['name']}={p['default']}" for p in r["params"])
        output.say(f"{r['id']:<15} {r['granularity']:<13} {r['label']}{f'  [{opts}]' if opts else ''}")


def run(args: Namespace) -> None:
    config = _recipe_config(args) if args.recipe else _config(args, args.method, _number(args.sparsity))
    _emit(args, _execute(args, [config]), many=False)


def sweep(args: Namespace) -> None:
    levels = _numbers(args.sparsities)
    ids = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not levels or not ids:
        raise UserError("--methods and --sparsities each need at least one value")
    if args.export:
        raise UserError("--export applies to single runs; use `run --export DIR`")
    _emit(args, _execute(args, [_config(args, m, s) for m in ids for s in levels]), many=True)


def runs(args: Namespace) -> None:
    store = Store(args.store)
    store.reap()
    records = store.runs(kind=None)
    rows = [
        {
            "run_id": r.id,
            "kind": r.kind,
            "status": r.status,
            "model": r.model,
            "method": r.method,
            "target_sparsity": r.config.get("sparsity") if r.kind == "run" else None,
            "progress": r.progress,
            "created": r.created,
            "error": r.error,
            "sparsity": (r.result or {}).get("sparsity"),
            "accuracy": ((r.result or {}).get("pruned") or {}).get("accuracy"),
        }
        for r in records
    ]
    if args.json:
        return output.print_json(rows)
    for row in rows:
        accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
        target = row["target_sparsity"] if row["kind"] == "run" else row["kind"]
        output.say(
            f"{row['run_id']}  {row['status']:<9} {row['model']:<20} {row['method']:<14} {target!s:<11} ",
            end="",
        )
        output.say(accuracy)


def _record(store: Store, run_id: str) -> RunRecord:
    try:
        return store.get(run_id)
    except KeyError:
        raise UserError(
            f"no run '{run_id}' in {store.root}; list runs with `python -m pruning runs`"
        ) from None


def show(args: Namespace) -> None:
    store = Store(args.store)
    store.reap()
    r = _record(store, args.run_id)
    state = {"run_id": r.id, "kind": r.kind, "status": r.status, "progress": r.progress}
    outcome = r.result or {**state, "message": r.message, "error": r.error, "config": r.config}
    if args.json or r.kind != "run" or not r.result:
        output.print_json(outcome)
    else:
        output.print_result(RunResult.from_dict(r.result))


def cancel(args: Namespace) -> None:
    store = Store(args.store)
    r = _record(store, args.run_id)
    if r.done:
        raise UserError(f"run {r.id} already {r.status}; nothing to cancel")
    store.request_cancel(r.id)
    output.say(f"cancellation requested for {r.id}")


def doctor(args: Namespace) -> None:
    from pruning.runs.doctor import doctor as check  # only this command salvages stores

    diagnosis = check(args.store)
    if args.json:
        return output.print_json(diagnosis.to_dict())
    for line in diagnosis.lines():
        output.say(line)


def report(args: Namespace) -> None:
    from pruning.present import report as html_report  # plotly is only needed here

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out '{out}' is a folder; give the report a file name, e.g. {out / 'report.html'}")
    if bool(args.run_ids) == args.all:
        raise UserError("give the run ids to report, or --all for every succeeded run (not both)")
    store = Store(args.store)
    records = store.runs(status="succeeded") if args.all else [_record(store, i) for i in args.run_ids]
    if not records:
        raise UserError(f"no succeeded runs in {store.root} to report; run `python -m pruning demo` first")
    analyses = store.runs(status="succeeded", kind="sensitivity")
    from pruning.runs import pictures

    pruned, missing = pictures.of_records(html_report.headline_runs(records))
    for run_id, why in missing.items():
        print(f"note: no mask pictures of run {run_id}: {why}", file=sys.stderr)
    try:
        html_report.write(records, out, analyses, pruned)
    except OSError as exc:
        raise UserError(
            f"could not write the report to '{out}' ({exc.strerror or exc}); choose another --out"
        ) from exc
    output.say(args.out)
    if args.pdf:
        output.say(html_report.pdf(out, args.pdf))


def demo(args: Namespace) -> None:
    """Load the demo history into the store (detached workers), following it to the end."""
    from pruning.runs import demo as history

    store = Store(args.store)
    bar = ProgressBar(len(history.configs()) + 1, enabled=not args.quiet)
    started = time.monotonic()
    jobs = history.launch(store)
    try:
        records = submit.wait(store, jobs.jobs, bar)
    except KeyboardInterrupt:
        for job_id in jobs.jobs:
            store.request_cancel(job_id)
        raise UserError(
            "interrupted: the demo's jobs were asked to stop (see `python -m pruning runs`)"
        ) from None
    finally:
        bar.close()
    seconds = time.monotonic() - started
    counts = {
        status: sum(r.status == status for r in records)
        for status in dict.fromkeys(r.status for r in records)
    }
    if args.json:
        output.print_json(
            {"sweep_id": jobs.sweep_id, "runs": jobs.runs, "analysis": jobs.analysis, "seconds": seconds,
             "statuses": counts}
        )  # fmt: skip
    else:
        done = ", ".join(f"{n} {status}" for status, n in counts.items())
        output.say(f"demo history {jobs.sweep_id}: {len(records)} jobs ({done}) in {seconds:.0f} s")
        output.say(
            "see them with `python -m pruning runs` or in the dashboard (`streamlit run dashboard.py`)"
        )
    if any(r.status != "succeeded" for r in records):
        sys.exit(1)


def _analyse(args: Namespace) -> analysis.Sensitivity:
    """The sensitivity table of --model/--method (a job in the store, cached), with a progress bar."""
    config = submit.analysis_config(
        args.model, args.method, options=_options(args.method, args.option),
        data=args.data, weights=args.weights, seed=args.seed, task=args.task,
        eval_samples=args.eval_samples, calib_samples=args.calib_samples,
    )  # fmt: skip
    levels = analysis.parse_levels(_numbers(args.levels) if args.levels else analysis.DEFAULT_LEVELS)
    if Path(args.store, "lab.db").is_file():  # a store that does not exist yet caches nothing
        cached = submit.cached_sensitivity(Store(args.store), config, levels)
        if cached is not None:
            return cached
    bar = ProgressBar(1, enabled=not args.quiet)
    try:
        job_id = submit.submit_analysis(args.store, config, levels, executor="inline", echo=bar)
    finally:
        bar.close()
    job = Store(args.store).get(job_id)
    if job.status != "succeeded":
        raise UserError(job.error or f"the sensitivity analysis {job.status}")
    return analysis.Sensitivity.from_dict(job.result)


def sensitivity(args: Namespace) -> None:
    result = _analyse(args)
    if args.json:
        return output.print_json(result.to_dict())
    output.say(f"accuracy drop in points when only that layer is pruned (dense {result.dense_accuracy:.4f})")
    output.say(f"{'layer':<24} {'weights':>8} " + " ".join(f"{level:>6.2f}" for level in result.levels))
    for name, count in result.layers.items():
        drops = " ".join(f"{100 * d:>6.2f}" for d in result.drops(name))
        output.say(f"{name:<24} {count:>8} {drops}")


def allocate(args: Namespace) -> None:
    if args.owl:
        config = submit.analysis_config(
            args.model, "magnitude", data=args.data, weights=args.weights, seed=args.seed, task=args.task,
            calib_samples=args.calib_samples,
        )  # fmt: skip
        allocation, counts = analysis.owl_with_counts(config, _number(args.sparsity))
        model, method = args.model, "owl"
    else:
        result = _analyse(args)
        allocation = analysis.allocate(result, _number(args.sparsity))
        counts, model, method = result.layers, result.model, result.method
    achieved = sum(counts[n] * s for n, s in allocation.items()) / sum(counts.values())
    if args.json:
        out = {"model": model, "method": method, "target_sparsity": float(args.sparsity)}
        return output.print_json({**out, "sparsity": achieved, "layer_sparsity": allocation})
    for name, value in allocation.items():
        output.say(f"{name:<24} {counts[name]:>8} weights  sparsity {value:.4f}")
    output.say(f"overall sparsity {achieved:.4f} (target {args.sparsity}); run it with:")
    output.say(" ".join(f"--layer-sparsity {n}={s}" for n, s in allocation.items()))
