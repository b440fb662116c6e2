"""How sure an accuracy is: its 95% Wilson interval over the evaluated samples, and whether a
difference lies inside that noise. On a 450-sample test set one sample is 0.22 points, so two
accuracies a few tenths apart are not different results.

Accuracies are fractions in [0, 1]; differences are shown in percentage points ("pts").
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(accuracy: float, samples: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion `accuracy` observed on `samples` trials."""
    if samples <= 0:
        return 0.0, 1.0
    p, n = accuracy, samples
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def within_noise(dense: float, pruned: float, samples: int) -> bool:
    """True when `pruned` lies inside the dense accuracy's 95% interval on the same samples."""
    low, high = wilson(dense, samples)
    return low <= pruned <= high


def points(difference: float) -> str:
    """A difference of two accuracies in percentage points, signed: '-1.8 pts'."""
    return f"{difference * 100:+.1f} pts"


def interval_text(accuracy: float, samples: int) -> str:
    """'95% CI 96.1-98.6% (450 samples)'."""
    low, high = wilson(accuracy, samples)
    return f"95% CI {low:.1%}–{high:.1%} ({samples:,} samples)"


def change_text(dense: float, pruned: float, samples: int) -> str:
    """The change against dense in points, with 'within noise' when it is."""
    text = f"{points(pruned - dense)} vs dense {dense:.1%}"
    return text + (" (within noise)" if within_noise(dense, pruned, samples) else "")
