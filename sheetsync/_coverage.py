"""Does the validation split cover the training data? Checks on the model's embeddings (pure).

Three views of the same question, all computed on every image (never on a sample):

* a classifier two-sample test: a logistic regression tries to tell train from val images by
  their (PCA-reduced) embeddings, scored out of fold; an AUC near 0.5 means it cannot, so val
  looks like train; the p-value is the normal approximation of the Mann-Whitney statistic;
* nearest-neighbour coverage: the share of train images with no val image among their ``k``
  nearest neighbours, against the same share after shuffling the split labels (what a val split
  drawn at random from the same images would give);
* regions: the 2-D map is cut into clusters (k-means), and a cluster is *uncovered* when it holds
  far fewer val images than its size predicts (under a quarter of the expected count, binomial
  p < 0.01), so the report can draw where val is missing.

Usage::

    cov = split_coverage(embeddings, coords, is_val, clusters, labels)
    cov.covers, cov.verdict, [g.cluster for g in cov.gaps]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

AUC_SAME = 0.6  # below this a classifier barely tells the splits apart
GAP_RATIO = 0.25  # a region holds under a quarter of the val images its size predicts
GAP_P = 0.01
MIN_REGION = 10  # smaller regions are too small to judge
K_NEIGHBOURS = 10
MIN_SPLIT = 5  # fewer images in a split: no verdict


@dataclass(frozen=True)
class RegionGap:
    """A map region (cluster) where the validation split is missing."""

    cluster: int
    n_train: int
    n_val: int
    expected_val: float
    p_value: float
    x: float
    y: float
    top_labels: str  # the region's commonest labels, e.g. "iv 40, vi 12"


@dataclass(frozen=True)
class Coverage:
    auc: float
    auc_p: float
    no_val_neighbour: float  # share of train images without a val image among k neighbours
    no_val_neighbour_expected: float  # the same after shuffling the split labels
    gaps: list[RegionGap] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    # Why no verdict is given although the check ran ("": it stands): the model behind the
    # embeddings is too weak (sheetsync._reviewsheet.weakness), so its space says nothing.
    withheld: str = ""

    @property
    def judged(self) -> bool:
        """Enough images in both splits for the checks to mean anything."""
        return self.n_train >= MIN_SPLIT and self.n_val >= MIN_SPLIT and not np.isnan(self.auc)

    @property
    def covers(self) -> bool:
        return self.judged and not self.withheld and not self.gaps and self.auc < AUC_SAME

    @property
    def verdict(self) -> str:
        if self.withheld:
            return (f"No verdict: the model is too weak: {self.withheld}. Its embedding space "
                    "says nothing about whether the validation split covers the training data. "
                    "Train longer (`sheetsync train --epochs 30`) and run the report again.")
        if not self.judged:
            return (f"Cannot tell: the check needs at least {MIN_SPLIT} train and {MIN_SPLIT} val "
                    f"images (here {self.n_train} and {self.n_val}).")
        head = ("Yes: the validation split covers the training data." if self.covers else
                "No: the validation split does not cover the training data.")
        parts = [head, f"A classifier tells train from val images apart with AUC {self.auc:.2f} "
                       f"(0.5 = indistinguishable; p = {self.auc_p:.2g})."]
        if self.gaps:
            n_tr = sum(g.n_train for g in self.gaps)
            n_va = sum(g.n_val for g in self.gaps)
            exp = sum(g.expected_val for g in self.gaps)
            parts.append(f"{len(self.gaps)} region(s) of the map ({', '.join(f'#{g.cluster}' for g in self.gaps)}) "
                         f"hold {n_tr} train images but only {n_va} val images ({exp:.0f} expected).")
        parts.append(f"{self.no_val_neighbour:.0%} of train images have no val image among their "
                     f"{K_NEIGHBOURS} nearest neighbours ({self.no_val_neighbour_expected:.0%} if val "
                     f"were drawn at random from the same images).")
        return " ".join(parts)


def clusters_of(coords: np.ndarray, n_clusters: int | None = None, seed: int = 0) -> np.ndarray:
    """k-means cluster ids of the 2-D map points, numbered by size (0 = largest)."""
    from sklearn.cluster import KMeans

    n = len(coords)
    if n == 0:
        return np.zeros(0, np.int64)
    k = n_clusters or int(np.clip(n // 50, 2, 30))  # ~50 images a region: small gaps show
    k = max(1, min(k, n))
    raw = KMeans(k, n_init=4, random_state=seed).fit_predict(np.asarray(coords, np.float64))
    order = np.argsort(-np.bincount(raw, minlength=k), kind="stable")
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    return rank[raw]


def classifier_auc(embeddings: np.ndarray, is_val: np.ndarray, seed: int = 0,
                   max_points: int = 20000) -> tuple[float, float]:
    """Out-of-fold AUC of a logistic regression telling val from train, and its p-value."""
    from scipy.stats import norm
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(is_val, bool)
    x = np.asarray(embeddings, np.float64)
    if y.sum() < MIN_SPLIT or (~y).sum() < MIN_SPLIT:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if len(y) > max_points:  # a sample is plenty for an AUC, and keeps 100k images fast
        keep = np.sort(rng.choice(len(y), max_points, replace=False))
        x, y = x[keep], y[keep]
    dims = int(min(50, x.shape[1], len(y) // 10 or 1))
    model = make_pipeline(StandardScaler(), PCA(dims, random_state=seed),
                          LogisticRegression(max_iter=1000, class_weight="balanced"))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=folds, method="decision_function")
    auc = float(roc_auc_score(y, scores))
    n1, n0 = int(y.sum()), int((~y).sum())
    se = np.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    return auc, float(norm.sf((auc - 0.5) / se))


def no_val_neighbour_share(embeddings: np.ndarray, is_val: np.ndarray, k: int = K_NEIGHBOURS,
                           seed: int = 0, max_points: int = 20000) -> tuple[float, float]:
    """Share of train images with no val image among their k nearest neighbours: observed, and
    with the split labels shuffled (the share a random val split would give)."""
    from sklearn.neighbors import NearestNeighbors

    y = np.asarray(is_val, bool)
    x = np.asarray(embeddings, np.float32)
    rng = np.random.default_rng(seed)
    if len(y) > max_points:
        keep = np.sort(rng.choice(len(y), max_points, replace=False))
        x, y = x[keep], y[keep]
    if y.sum() == 0 or (~y).sum() == 0:
        return float("nan"), float("nan")
    k = min(k, len(y) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]

    def share(v: np.ndarray) -> float:
        return float((~v[nn].any(axis=1))[~v].mean())

    return share(y), share(rng.permutation(y))


def region_gaps(coords: np.ndarray, is_val: np.ndarray, clusters: np.ndarray,
                labels: np.ndarray) -> list[RegionGap]:
    """Clusters with far fewer val images than their size predicts (see module docstring)."""
    from scipy.stats import binom

    y = np.asarray(is_val, bool)
    p_val = y.mean() if len(y) else 0.0
    gaps = []
    for c in np.unique(clusters):
        inside = clusters == c
        n, n_val = int(inside.sum()), int(y[inside].sum())
        expected = n * p_val
        if n < MIN_REGION or n_val >= GAP_RATIO * expected:
            continue
        p = float(binom.cdf(n_val, n, p_val))
        if p >= GAP_P:
            continue
        top = pd.Series(labels[inside]).value_counts().head(3)
        xy = np.asarray(coords)[inside].mean(axis=0)
        gaps.append(RegionGap(int(c), n - n_val, n_val, float(expected), p, float(xy[0]),
                              float(xy[1]), ", ".join(f"{k} {v}" for k, v in top.items())))
    return gaps


def split_coverage(embeddings: np.ndarray, coords: np.ndarray, is_val: np.ndarray,
                   clusters: np.ndarray, labels: np.ndarray, seed: int = 0) -> Coverage:
    """All three checks of the module docstring for train (``~is_val``) against val."""
    y = np.asarray(is_val, bool)
    auc, p = classifier_auc(embeddings, y, seed)
    nv, nv_expected = no_val_neighbour_share(embeddings, y, seed=seed)
    gaps = region_gaps(coords, y, np.asarray(clusters), np.asarray(labels))
    return Coverage(auc, p, nv, nv_expected, gaps, int((~y).sum()), int(y.sum()))
