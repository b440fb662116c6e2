"""How long work reports progress: a callback `(fraction in [0, 1], one-line message) -> None`.

Executors pass one that records progress in the store (and raises to cancel); tests and
one-off calls pass `no_progress`.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores every report."""
