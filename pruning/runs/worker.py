"""Entry point of a detached worker process: `python -m pruning.runs.worker --store ROOT RUN_ID...`."""

from __future__ import annotations

import argparse

from pruning.runs.executors import execute
from pruning.runs.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("run_ids", nargs="+")
    args = parser.parse_args()
    with Store(args.store) as store:
        execute(store, args.run_ids)


if __name__ == "__main__":
    main()
