"""`python -m benchmarks` runs every benchmark module; `python -m benchmarks engine ...` the ones named."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

NOT_BENCHMARKS = {"common", "__main__", "browser", "readme"}  # helpers, not figures


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name not in NOT_BENCHMARKS
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [name for name in names if name not in available()]
    if unknown:
        print(
            f"error: no benchmark module {', '.join(unknown)}; choose from {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for name in names:
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"error: benchmark module(s) {', '.join(failed)} crashed (traceback above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
