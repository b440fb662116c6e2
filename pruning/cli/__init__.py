"""The command line (DESIGN.md §3): `python -m pruning models|methods|run|sweep|runs|show|cancel|report`,
plus `sensitivity` and `allocate`. `parser` reads the arguments, `commands` does each command
through the engine's one submit path, `output` prints (JSON on standard output, progress on
standard error)."""

from __future__ import annotations

import sys
import traceback

from pruning.cli import output
from pruning.cli.parser import parser
from pruning.core import lab
from pruning.errors import UserError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        # a user's model file that prints cannot corrupt --json output; workers inherit the lab file
        with output.own_stdout(), lab.activated(getattr(args, "lab", None), args.store):
            args.func(args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
