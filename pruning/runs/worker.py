"""Entry point of a detached worker process: `python -m pruning.runs.worker --store ROOT --worker NAME`.

The worker's jobs are the queued ones handed to NAME in the store (`Store.hand_to`): no run id travels
on the command line, so a sweep of any size starts."""

from __future__ import annotations

import argparse
import os

from pruning.runs.executors import execute
from pruning.runs.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--worker", required=True, help="the name its jobs were handed to")
    args = parser.parse_args()
    with Store(args.store) as store:
        execute(store, store.adopt(args.worker, os.getpid()))


if __name__ == "__main__":
    main()
