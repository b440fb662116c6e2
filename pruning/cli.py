"""The command line (DESIGN.md §3): python -m pruning models|methods|run|sweep|runs|show|cancel|report."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback

from pruning.core import methods, models
from pruning.errors import UserError
from pruning.runs import experiment, jobs
from pruning.runs.config import RunConfig, parse_layer_sparsity
from pruning.runs.store import Store, default_root


class ProgressBar:
    """A one-line progress bar on standard error (standard output stays clean for --json)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.last = total, enabled, 0.0
        self.done: dict[str, float] = {}

    def __call__(self, run_id: str, fraction: float, message: str) -> None:
        self.done[run_id] = fraction
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and fraction < 1.0):
            return
        self.last = now
        overall = sum(self.done.values()) / max(self.total, 1)
        bar = "#" * int(30 * overall)
        sys.stderr.write(f"\r[{bar:<30}] {overall:6.1%} {run_id} {message[:40]:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"'{text}' is not a number") from None


def _options(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--option expects NAME=VALUE, got '{item}'")
        pairs.append((name, value))
    return tuple(sorted(pairs))


def _config(args, method: str, sparsity: float) -> RunConfig:
    options = methods.get(method).options(dict(_options(args.option)))
    return RunConfig(
        model=args.model,
        method=method,
        sparsity=sparsity,
        data=args.data,
        weights=args.weights,
        scope=args.scope,
        layer_sparsity=parse_layer_sparsity(args.layer_sparsity),
        options=tuple(sorted(options.items())),
        finetune_epochs=args.finetune_epochs,
        schedule=args.schedule,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        latency=not args.no_latency,
        batch_size=args.batch_size,
        export=args.export,
    )


def _execute(args, configs: list[RunConfig]) -> list[dict]:
    """Validate every group, record the runs, execute them, and return their results."""
    prepared = {}
    for group in experiment.groups(configs):
        prep = experiment.prepare(group[0])  # raises UserError before anything is stored
        for config in group:
            experiment.check(prep, config)
        prepared[experiment.group_key(group[0])] = prep
    store = Store(args.store)
    ids = jobs.submit(store, configs, sweep_id=f"sweep-{time.time_ns()}" if len(configs) > 1 else None)
    bar = ProgressBar(len(ids), enabled=not args.quiet)
    try:
        if args.executor == "inline":
            jobs.execute(store, ids, echo=bar, debug=args.debug, prepared=prepared)
        else:
            jobs.spawn(store, ids, workers=args.workers)
            _wait(store, ids, bar)
    except KeyboardInterrupt:
        for run_id in ids:
            store.request_cancel(run_id)
        raise UserError("interrupted: the runs were asked to stop (see `python -m pruning runs`)") from None
    finally:
        bar.close()
    records = [store.get(i) for i in ids]
    return [r.result or {"run_id": r.id, "status": r.status, "error": r.error} for r in records]


def _wait(store: Store, ids: list[str], bar: ProgressBar) -> None:
    while True:
        store.reap()
        records = [store.get(i) for i in ids]
        for r in records:
            bar(r.id, 1.0 if r.done else r.progress, r.status if r.done else r.message)
        if all(r.done for r in records):
            return
        time.sleep(0.5)


def _print_result(result: dict) -> None:
    if result.get("status") != "succeeded":
        print(f"{result['run_id']}  {result['status']}: {result.get('error', '')}")
        return
    d, p, lat = result["dense"], result["pruned"], result["latency_ms"]
    kind = "removed" if p["removed"] else "masked (zeros stored; not faster)"
    speed = f"{lat['speedup']:.2f}x measured" if lat.get("speedup") else "not measured"
    print(
        f"{result['run_id']}  {result['model']}  {result['method']}  sparsity {result['sparsity']:.3f} "
        f"(target {result['target_sparsity']:.3f}, {kind})"
    )
    print(
        f"  accuracy  {d['accuracy']:.4f} dense -> {p['accuracy_before_finetune']:.4f} pruned "
        f"-> {p['accuracy']:.4f} fine-tuned"
    )
    print(
        f"  params    {d['params']} dense, {p['params']} present, {p['nonzero_params']} non-zero "
        f"(compression {result['compression_ratio']:.2f}x)"
    )
    print(
        f"  bytes     {p['size_bytes']['dense']} file, {p['size_bytes']['sparse']} sparse encoding, "
        f"{p['size_bytes']['gzip']} gzip (dense file {d['size_bytes']})"
    )
    print(
        f"  speed     {speed} at batch {lat['batch_size']}; FLOPs bound {result['theoretical_speedup']:.2f}x"
    )


def cmd_models(args) -> None:
    rows = [
        {
            "id": m.id,
            "description": m.description,
            "dataset": m.dataset,
            "params": sum(p.numel() for p in m.build().parameters()),
        }
        for m in models.SAMPLE_MODELS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:<22} {r['dataset']:<9} {r['params']:>9} params  {r['description']}")


def cmd_methods(args) -> None:
    rows = [m.describe() for m in methods.METHODS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            opts = ", ".join(f"{p['name']}={p['default']}" for p in r["params"])
            print(f"{r['id']:<15} {r['granularity']:<13} {r['label']}{f'  [{opts}]' if opts else ''}")


def cmd_run(args) -> None:
    results = _execute(args, [_config(args, args.method, _number(args.sparsity))])
    _emit(args, results[0])


def cmd_sweep(args) -> None:
    levels = [_number(s) for s in args.sparsities.split(",") if s.strip()]
    ids = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not levels or not ids:
        raise UserError("--methods and --sparsities each need at least one value")
    configs = [_config(args, m, s) for m in ids for s in levels]
    if args.export:
        raise UserError("--export applies to single runs; use `run --export DIR`")
    _emit(args, _execute(args, configs))


def _emit(args, results) -> None:
    if args.json:
        print(json.dumps(results, indent=2, default=_json_default))
    else:
        for r in results if isinstance(results, list) else [results]:
            _print_result(r)
    failed = [
        r for r in (results if isinstance(results, list) else [results]) if r.get("status") != "succeeded"
    ]
    if failed:
        sys.exit(1)


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def cmd_runs(args) -> None:
    store = Store(args.store)
    store.reap()
    records = store.runs()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "run_id": r.id,
                        "status": r.status,
                        "model": r.model,
                        "method": r.method,
                        "target_sparsity": r.config.get("sparsity"),
                        "progress": r.progress,
                        "created": r.created,
                        "error": r.error,
                        "sparsity": (r.result or {}).get("sparsity"),
                        "accuracy": ((r.result or {}).get("pruned") or {}).get("accuracy"),
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return
    for r in records:
        acc = ((r.result or {}).get("pruned") or {}).get("accuracy")
        acc_text = f"{acc:.4f}" if acc is not None else "-"
        print(f"{r.id}  {r.status:<9} {r.model:<20} {r.method:<14} {r.config.get('sparsity'):<5} {acc_text}")


def _record(store: Store, run_id: str):
    try:
        return store.get(run_id)
    except KeyError:
        raise UserError(
            f"no run '{run_id}' in {store.root}; list runs with `python -m pruning runs`"
        ) from None


def cmd_show(args) -> None:
    store = Store(args.store)
    store.reap()
    r = _record(store, args.run_id)
    result = r.result or {
        "run_id": r.id,
        "status": r.status,
        "progress": r.progress,
        "message": r.message,
        "error": r.error,
        "config": r.config,
    }
    if args.json:
        print(json.dumps(result, indent=2, default=_json_default))
    else:
        _print_result(result) if r.result else print(json.dumps(result, indent=2))


def cmd_cancel(args) -> None:
    store = Store(args.store)
    r = _record(store, args.run_id)
    if r.done:
        raise UserError(f"run {r.id} already {r.status}; nothing to cancel")
    store.request_cancel(r.id)
    print(f"cancellation requested for {r.id}")


def cmd_report(args) -> None:
    from pruning.present import report

    store = Store(args.store)
    records = [_record(store, i) for i in args.run_ids]
    report.write(records, args.out)
    print(args.out)


def _analyse(args):
    """The sensitivity table of --model/--method (cached in the store), with a progress bar."""
    from pruning.runs import sensitivity

    options = methods.get(args.method).options(dict(_options(args.option)))
    config = RunConfig(
        model=args.model,
        method=args.method,
        sparsity=0.0,
        data=args.data,
        weights=args.weights,
        options=tuple(sorted(options.items())),
        seed=args.seed,
        latency=False,
    )
    levels = [_number(s) for s in args.levels.split(",") if s.strip()] if args.levels else None
    bar = ProgressBar(1, enabled=not args.quiet)
    try:
        return sensitivity.analyse(
            config, levels or sensitivity.DEFAULT_LEVELS, Store(args.store), lambda f, m: bar("", f, m)
        )
    finally:
        bar.close()


def cmd_sensitivity(args) -> None:
    result = _analyse(args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(f"accuracy drop in points when only that layer is pruned (dense {result.dense_accuracy:.4f})")
    print(f"{'layer':<24} {'weights':>8} " + " ".join(f"{level:>6.2f}" for level in result.levels))
    for name, count in result.layers.items():
        drops = " ".join(f"{100 * d:>6.2f}" for d in result.drops(name))
        print(f"{name:<24} {count:>8} {drops}")


def cmd_allocate(args) -> None:
    from pruning.runs import sensitivity

    result = _analyse(args)
    allocation = sensitivity.allocate(result, _number(args.sparsity))
    counts = result.layers
    achieved = sum(counts[n] * s for n, s in allocation.items()) / sum(counts.values())
    if args.json:
        out = {"model": result.model, "method": result.method, "target_sparsity": float(args.sparsity)}
        print(json.dumps({**out, "sparsity": achieved, "layer_sparsity": allocation}, indent=2))
        return
    for name, value in allocation.items():
        print(f"{name:<24} {counts[name]:>8} weights  sparsity {value:.4f}")
    print(f"overall sparsity {achieved:.4f} (target {args.sparsity}); run it with:")
    print(" ".join(f"--layer-sparsity {n}={s}" for n, s in allocation.items()))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m pruning", description="Pruning Lab from the command line.")
    top.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=str(default_root()), help="run history folder")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    sub.add_parser("models", parents=[common], help="list sample models").set_defaults(func=cmd_models)
    sub.add_parser("methods", parents=[common], help="list pruning methods").set_defaults(func=cmd_methods)
    runner = argparse.ArgumentParser(add_help=False, parents=[common])
    runner.add_argument("--model", required=True)
    runner.add_argument("--data")
    runner.add_argument("--weights")
    runner.add_argument("--scope", default="global", choices=["global", "layer"])
    runner.add_argument("--layer-sparsity", action="append", default=[], metavar="NAME=S")
    runner.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="method option")
    runner.add_argument("--finetune-epochs", type=int, default=0)
    runner.add_argument("--schedule", default="oneshot", choices=["oneshot", "iterative", "lottery"])
    runner.add_argument("--steps", type=int, default=1)
    runner.add_argument("--seed", type=int, default=0)
    runner.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    runner.add_argument("--batch-size", type=int, default=256, help="batch size for latency")
    runner.add_argument("--no-latency", action="store_true", help="skip timing dense vs pruned")
    runner.add_argument("--export")
    runner.add_argument("--quiet", action="store_true", help="no progress bar")
    run = sub.add_parser("run", parents=[runner], help="prune one model")
    run.add_argument("--method", required=True)
    run.add_argument("--sparsity", required=True)
    run.set_defaults(func=cmd_run, executor="inline", workers=1)
    sweep = sub.add_parser("sweep", parents=[runner], help="methods x sparsity levels")
    sweep.add_argument("--methods", required=True)
    sweep.add_argument("--sparsities", required=True)
    sweep.add_argument("--executor", default="inline", choices=list(jobs.EXECUTORS))
    sweep.add_argument("--workers", type=int, default=1)
    sweep.set_defaults(func=cmd_sweep)
    sub.add_parser("runs", parents=[common], help="run history").set_defaults(func=cmd_runs)
    show = sub.add_parser("show", parents=[common], help="one run's result")
    show.add_argument("run_id")
    show.set_defaults(func=cmd_show)
    cancel = sub.add_parser("cancel", parents=[common], help="ask a run to stop")
    cancel.add_argument("run_id")
    cancel.set_defaults(func=cmd_cancel)
    report = sub.add_parser("report", parents=[common], help="HTML report of runs")
    report.add_argument("run_ids", nargs="+")
    report.add_argument("--out", required=True)
    report.set_defaults(func=cmd_report)
    analysis = argparse.ArgumentParser(add_help=False, parents=[common])
    for flag in ("--model", "--method"):
        analysis.add_argument(flag, required=True)
    analysis.add_argument("--data")
    analysis.add_argument("--weights")
    analysis.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="method option")
    analysis.add_argument("--seed", type=int, default=0)
    analysis.add_argument("--levels", help="comma-separated sparsity levels (default 0.1,0.2,..,0.9)")
    analysis.add_argument("--quiet", action="store_true", help="no progress bar")
    sensitivity = sub.add_parser("sensitivity", parents=[analysis], help="accuracy with one layer pruned")
    sensitivity.set_defaults(func=cmd_sensitivity)
    allocate = sub.add_parser("allocate", parents=[analysis], help="per-layer sparsities from sensitivity")
    allocate.add_argument("--sparsity", required=True, help="global target (fraction of prunable weights)")
    allocate.set_defaults(func=cmd_allocate)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
