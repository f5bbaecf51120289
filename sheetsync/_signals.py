"""Reasons to doubt a label, one small function each (pure: numpy, pandas, cleanlab).

Each signal takes the probabilities (a DataFrame: index = id, columns = classes, rows sum to 1)
and the given labels (a Series of class names on the same index) and returns a Series on that
index, in the spirit of koaning/doubtlab's reasons. :func:`priority` combines them.

Usage::

    probs = pd.DataFrame([[0.9, 0.1], [0.2, 0.8]], index=["a", "b"], columns=["i", "ii"])
    labels = pd.Series(["i", "i"], index=["a", "b"])
    confidence(probs, labels)   # a 0.9, b 0.2
    margin(probs, labels)       # a 0.8, b -0.6
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

# Cross-entropy is capped here (p = 1e-7) so that one saturated prediction does not dwarf the rest.
_EPS = 1e-7


def _given(probs: pd.DataFrame, labels: pd.Series) -> np.ndarray:
    cols = {c: i for i, c in enumerate(probs.columns)}
    idx = np.array([cols[x] for x in labels.loc[probs.index]], dtype=int)
    return idx


def predicted(probs: pd.DataFrame) -> pd.Series:
    """The class the model finds most likely."""
    return pd.Series(probs.columns[probs.to_numpy().argmax(axis=1)], index=probs.index, dtype=str)


def confidence(probs: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """The probability of the given label."""
    p = probs.to_numpy()
    return pd.Series(p[np.arange(len(p)), _given(probs, labels)], index=probs.index)


def margin(probs: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Given-label probability minus the largest other probability (negative: model disagrees)."""
    p = probs.to_numpy().copy()
    rows, given = np.arange(len(p)), _given(probs, labels)
    mine = p[rows, given]
    p[rows, given] = -np.inf
    other = p.max(axis=1) if p.shape[1] > 1 else np.zeros(len(p))
    return pd.Series(mine - other, index=probs.index)


def loss(probs: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Cross-entropy of the given label."""
    return -np.log(confidence(probs, labels).clip(lower=_EPS))


def _quietly(fn, *args, **kwargs):
    # cleanlab warns on tiny or lopsided inputs (a class with few rows); the scores are still
    # defined, and a sheet of warnings helps nobody.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def issue_score(probs: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """cleanlab's label-quality score turned around: 0 = label looks right, 1 = surely wrong.

    ``get_label_quality_scores`` with its default method (self-confidence). On the competition
    data with 5% flipped labels its default beat the normalized-margin and class-adjusted
    variants on out-of-sample probabilities (77% vs 58-63% of flips in the first 15% of rows).
    """
    from cleanlab.rank import get_label_quality_scores

    quality = _quietly(get_label_quality_scores, _given(probs, labels), probs.to_numpy(dtype=float))
    return pd.Series(1.0 - np.asarray(quality, dtype=float), index=probs.index).clip(0.0, 1.0)


def centroid_probs(class_distance: pd.DataFrame, temperature: float = 3.0) -> pd.DataFrame:
    """Class probabilities from embedding space: a softmax over minus the distances to the class
    centroids (in units of each class's spread). A second view of the same fold model, one that
    does not depend on its last layer; a class without centroid (NaN) gets probability 0."""
    d = class_distance.to_numpy(dtype=float)
    d = np.where(np.isnan(d), np.inf, d)
    nearest = np.min(d, axis=1, keepdims=True)
    nearest = np.where(np.isfinite(nearest), nearest, 0.0)
    w = np.exp(-temperature * (d - nearest))
    total = w.sum(axis=1, keepdims=True)
    q = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / d.shape[1])
    return pd.DataFrame(q, index=class_distance.index, columns=class_distance.columns)


def ensemble(*frames: pd.DataFrame) -> pd.DataFrame:
    """The mean of several probability frames (same index and columns)."""
    mean = np.mean([f.to_numpy(dtype=float) for f in frames], axis=0)
    return pd.DataFrame(mean, index=frames[0].index, columns=frames[0].columns)


def label_issues(probs: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """cleanlab's confident-learning verdict (``find_label_issues``): True = likely mislabeled."""
    from cleanlab.filter import find_label_issues

    given = _given(probs, labels)
    p = probs.to_numpy(dtype=float)
    # find_label_issues needs every class present among the labels and two rows per class.
    counts = np.bincount(given, minlength=p.shape[1])
    if len(p) < 2 or (counts < 2).any():
        return pd.Series(margin(probs, labels).to_numpy() < 0, index=probs.index)
    # n_jobs=1: cleanlab's default forks a multiprocessing.Pool, and a fork after TensorFlow
    # started its threads can deadlock (a child inherits a held lock: `watch` hung in
    # Pool.terminate). The results do not depend on n_jobs (cleanlab's docs).
    flags = _quietly(find_label_issues, given, p, filter_by="prune_by_noise_rate", n_jobs=1)
    return pd.Series(np.asarray(flags, dtype=bool), index=probs.index)


def suspected(probs: pd.DataFrame, labels: pd.Series, issues: pd.Series | None = None) -> pd.Series:
    """The class the label probably should be, for rows flagged as issues; '' elsewhere.

    Confident learning's choice: among the other classes whose probability reaches that class's
    threshold (the mean probability the model gives its own labelled members), the likeliest;
    failing that, the model's top other class.
    """
    if issues is None:
        issues = label_issues(probs, labels)
    p = probs.to_numpy(dtype=float)
    given = _given(probs, labels)
    thresholds = np.array(
        [p[given == j, j].mean() if (given == j).any() else 1.0 for j in range(p.shape[1])]
    )
    other = p.copy()
    other[np.arange(len(p)), given] = -np.inf
    above = np.where(other >= thresholds[None, :], other, -np.inf)
    pick = np.where(np.isfinite(above.max(axis=1)), above.argmax(axis=1), other.argmax(axis=1))
    names = np.asarray(probs.columns, dtype=object)[pick]
    out = np.where(issues.loc[probs.index].to_numpy(bool), names, "")
    return pd.Series(out, index=probs.index, dtype=str)


def outlier(class_distance: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Distance of each image to its given class in embedding space, in units of that class's
    typical distance (1 = a usual member; 3 = three times as far as usual)."""
    return confidence(class_distance, labels).rename(None)


def percentile(values: pd.Series) -> pd.Series:
    """Rank of each value in 0..1 (1 = largest), ties averaged; NaN stays NaN."""
    return values.rank(pct=True, method="average")
