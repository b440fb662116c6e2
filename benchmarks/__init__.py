"""Performance benchmarks of Pruning Lab: `python -m benchmarks [module ...]` prints one JSON line per figure.

Every module here except `common` defines `main()`, which emits lines through `benchmarks.common.emit`:
{"name", "value", "unit", "goal", "ok"}. `ok` says whether the goal is met (null for reference figures
without a goal). A benchmark is a measurement, not a test: a missed goal prints `"ok": false` and the
command still exits 0; it exits 1 only when a benchmark itself crashed.

For steadier numbers on a busy machine, pin the thread count for all figures alike: `OMP_NUM_THREADS=1`.
"""
