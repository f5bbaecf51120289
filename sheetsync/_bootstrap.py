"""How sure is an accuracy? Percentile-bootstrap intervals over the images scored (pure).

A test set of 52 images moves accuracy in steps of about 2 points, and a validation set that
changes between versions makes two scores incomparable. A score row therefore carries, for the
validation and the test images, the accuracy with a 95% bootstrap interval (resampling the
images with replacement) and a digest of the validation set (ids and labels), so that the chart
can say when two versions were validated on different images.

Usage::

    iv = bootstrap_accuracy([True, False, True, True], n_boot=2000, seed=0)
    iv.low <= iv.estimate <= iv.high
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An accuracy and its bootstrap interval over ``n`` images."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL


def bootstrap_accuracy(correct: ArrayLike, *, n_boot: int = N_BOOT, level: float = LEVEL,
                       seed: int = 0) -> Interval:
    """Mean of ``correct`` (booleans, one per image) with a percentile bootstrap interval."""
    c = np.asarray(correct, dtype=float).ravel()
    if c.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    # The resampled mean only depends on how many correct images a resample holds: a binomial
    # draw per resample is the same distribution as resampling indices, at no memory cost.
    means = rng.binomial(c.size, c.mean(), size=n_boot) / c.size if _binary(c) else (
        c[rng.integers(0, c.size, size=(n_boot, c.size))].mean(axis=1))
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(c.mean()), float(low), float(high), int(c.size), level)


def _binary(c: np.ndarray) -> bool:
    return bool(np.isin(c, (0.0, 1.0)).all())


def repeat_spread(values: Sequence[float]) -> float:
    """Standard deviation across repeated runs (seeds); 0 for a single run."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def set_digest(ids: Iterable[str], labels: Iterable[str]) -> str:
    """A short fingerprint of a set of (id, label) pairs, independent of order."""
    pairs = sorted(f"{i}\t{lab}" for i, lab in zip(ids, labels, strict=True))
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:12]


def score_fields(prefix: str, correct: ArrayLike, seed: int = 0) -> dict[str, object]:
    """Score-row fields ``<prefix>_ci_low``/``_ci_high``/``_n`` for one set of images."""
    iv = bootstrap_accuracy(correct, seed=seed)
    if iv.n == 0:
        return {f"{prefix}_ci_low": "", f"{prefix}_ci_high": "", f"{prefix}_n": 0}
    return {f"{prefix}_ci_low": round(iv.low, 4), f"{prefix}_ci_high": round(iv.high, 4),
            f"{prefix}_n": iv.n}
