"""Regenerate the README's measured figures from a fresh benchmark run: `python -m benchmarks.readme`.

Runs each benchmark module in its own process (the engine, structural and dashboard modules on one
intra-op thread, as their figures are stated), keeps every JSON line in `benchmarks/last-run.jsonl`,
and rewrites the README between its `figures:begin` and `figures:end` markers with one table per
module: nothing in that part of the README is typed by hand. Run it on an idle machine.
`--from FILE` rewrites the README from an earlier run's JSON lines instead of measuring again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LAST_RUN = REPO / "benchmarks" / "last-run.jsonl"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
# module -> intra-op threads (None: torch's default, all cores)
MODULES = {
    "accuracy": None,
    "engine": 1,
    "structured": 1,
    "dashboard": 1,
    "live_curve": 1,
    "real_size": None,
    "nm": None,
    "cluster": None,
}


def measure() -> list[dict]:
    rows = []
    for module, threads in MODULES.items():
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        print(f"benchmarks {module} ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", module], cwd=REPO, env=env, capture_output=True, text=True
        )
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0:
            lines.append({"name": f"{module}: crashed", "value": None, "unit": done.stderr.strip()[-200:]})
        rows += [{"module": module, "threads": threads, **line} for line in lines]
    return rows


def _cell(value) -> str:
    return "-" if value is None else str(value)


def tables(rows: list[dict], when: str) -> str:
    cores = os.cpu_count()
    parts = [
        f"Measured {when} on {cores} CPU cores ({platform.machine()}, {platform.system()}), no GPU, by "
        "`python -m benchmarks.readme`, which ran every module below and wrote this section. Figures "
        "compared with each other were measured side by side in one process; goals are the issues'. "
        "Raw figures: `benchmarks/last-run.jsonl`.",
    ]
    for module in dict.fromkeys(r["module"] for r in rows):
        mine = [r for r in rows if r["module"] == module]
        threads = mine[0]["threads"]
        parts.append(f"\n`{module}`" + (f" (OMP_NUM_THREADS={threads})" if threads else "") + ":\n")
        parts.append("| figure | value | unit | goal | met |\n| --- | --- | --- | --- | --- |")
        for r in mine:
            met = {True: "yes", False: "**no**", None: ""}[r.get("ok")]
            parts.append(
                f"| {r['name']} | {_cell(r['value'])} | {r['unit']} | {_cell(r.get('goal'))} | {met} |"
            )
    return "\n".join(parts)


def rewrite(rows: list[dict], when: str) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: README.md has no {BEGIN} ... {END} section to rewrite")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{tables(rows, when)}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__)
    parser.add_argument("--from", dest="source", help="JSON lines of an earlier run (default: measure now)")
    args = parser.parse_args()
    if args.source:
        rows = [json.loads(line) for line in Path(args.source).read_text().splitlines() if line.strip()]
        when = dt.datetime.fromtimestamp(Path(args.source).stat().st_mtime).strftime("%Y-%m-%d")
    else:
        rows = measure()
        LAST_RUN.write_text("".join(json.dumps(r) + "\n" for r in rows))
        when = dt.date.today().isoformat()
    rewrite(rows, when)
    print(f"README.md: {len(rows)} figures", file=sys.stderr)


if __name__ == "__main__":
    main()
