"""The report's computations: split coverage, confusion matrix, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from sheetsync._bootstrap import bootstrap_accuracy, score_fields, set_digest
from sheetsync._confusion import confusion, per_class_accuracy
from sheetsync._coverage import clusters_of, split_coverage


def _blobs(n_per: int, centres: list[tuple[float, float]], seed: int = 0, dims: int = 32):
    """Gaussian blobs in ``dims`` dimensions; the first two dimensions are the 'map'."""
    rng = np.random.default_rng(seed)
    xs, blob = [], []
    for b, (cx, cy) in enumerate(centres):
        x = rng.normal(0, 1, (n_per, dims))
        x[:, 0] += cx
        x[:, 1] += cy
        xs.append(x)
        blob += [b] * n_per
    return np.concatenate(xs), np.asarray(blob)


CENTRES = [(0, 0), (30, 0), (0, 30), (30, 30)]


def test_coverage_flags_a_val_split_lacking_a_whole_cluster():
    emb, blob = _blobs(200, CENTRES)
    rng = np.random.default_rng(1)
    is_val = rng.random(len(blob)) < 0.3
    is_val[blob == 3] = False  # val has no image of the fourth cluster
    coords = emb[:, :2]
    clusters = clusters_of(coords, n_clusters=4)
    cov = split_coverage(emb, coords, is_val, clusters, blob.astype(str))
    assert not cov.covers
    assert cov.verdict.startswith("No:")
    assert len(cov.gaps) == 1
    gap = cov.gaps[0]
    inside = clusters == gap.cluster
    assert set(blob[inside]) == {3}
    assert gap.n_val == 0 and gap.n_train == 200 and gap.expected_val > 40
    assert abs(gap.x - 30) < 2 and abs(gap.y - 30) < 2
    # Nearest neighbours of the missing cluster's images are all train.
    assert cov.no_val_neighbour > cov.no_val_neighbour_expected + 0.15
    assert cov.auc > 0.6


def test_coverage_accepts_a_random_val_split():
    emb, blob = _blobs(200, CENTRES)
    is_val = np.random.default_rng(2).random(len(blob)) < 0.3
    coords = emb[:, :2]
    cov = split_coverage(emb, coords, is_val, clusters_of(coords), blob.astype(str))
    assert cov.gaps == []
    assert cov.auc < 0.6
    assert cov.covers and cov.verdict.startswith("Yes:")
    assert abs(cov.no_val_neighbour - cov.no_val_neighbour_expected) < 0.1


def test_clusters_are_numbered_by_size():
    emb, _ = _blobs(50, [(0, 0)], seed=3)
    big, _ = _blobs(150, [(40, 40)], seed=4)
    coords = np.concatenate([emb, big])[:, :2]
    c = clusters_of(coords, n_clusters=2)
    assert (c[50:] == 0).all() and (c[:50] == 1).all()


def test_confusion_matrix_counts_and_per_class_accuracy():
    labels = ["i", "i", "i", "ii", "ii", "iii"]
    predicted = ["i", "ii", "i", "ii", "i", "iii"]
    cm = confusion(labels, predicted, ["i", "ii", "iii", "iv"])
    assert cm.loc["i", "i"] == 2 and cm.loc["i", "ii"] == 1
    assert cm.loc["ii", "i"] == 1 and cm.loc["ii", "ii"] == 1
    assert cm.loc["iii", "iii"] == 1
    assert cm.to_numpy().sum() == 6 and cm.loc["iv"].sum() == 0
    acc = per_class_accuracy(cm)
    assert acc["i"] == pytest.approx(2 / 3) and acc["ii"] == 0.5 and acc["iii"] == 1.0
    assert np.isnan(acc["iv"])


def test_confusion_rejects_unknown_classes():
    with pytest.raises(ValueError, match="not classes: v"):
        confusion(["i"], ["v"], ["i", "ii"])


def test_bootstrap_interval_matches_the_binomial_spread():
    correct = np.r_[np.ones(40), np.zeros(12)]  # 52 test images, 76.9% right
    iv = bootstrap_accuracy(correct, seed=0)
    assert iv.estimate == pytest.approx(40 / 52)
    assert iv.low < iv.estimate < iv.high
    # Normal approximation: +-1.96 * sqrt(p(1-p)/n) = +-0.115 for n = 52.
    half = 1.96 * np.sqrt(iv.estimate * (1 - iv.estimate) / 52)
    assert (iv.high - iv.low) / 2 == pytest.approx(half, abs=0.02)
    big = bootstrap_accuracy(np.r_[np.ones(4000), np.zeros(1200)], seed=0)
    assert (big.high - big.low) < (iv.high - iv.low) / 5  # 100x the images, 10x narrower


def test_bootstrap_of_non_binary_values_and_empty():
    iv = bootstrap_accuracy([0.2, 0.4, 0.6, 0.8], seed=1)
    assert 0.2 <= iv.low < 0.5 < iv.high <= 0.8
    assert np.isnan(bootstrap_accuracy([]).estimate)
    assert score_fields("test", []) == {"test_ci_low": "", "test_ci_high": "", "test_n": 0}


def test_set_digest_ignores_order_but_not_labels():
    assert set_digest(["a", "b"], ["i", "ii"]) == set_digest(["b", "a"], ["ii", "i"])
    assert set_digest(["a", "b"], ["i", "ii"]) != set_digest(["a", "b"], ["ii", "ii"])


def test_coverage_gives_no_verdict_on_too_few_images():
    emb, blob = _blobs(10, [(0, 0)])
    is_val = np.zeros(10, bool)
    is_val[:3] = True
    cov = split_coverage(emb, emb[:, :2], is_val, np.zeros(10, int), blob.astype(str))
    assert not cov.judged and not cov.covers
    assert cov.verdict.startswith("Cannot tell: the check needs at least 5 train and 5 val")


def test_default_regions_find_a_small_missing_style():
    centres = [(30 * (k % 4), 30 * (k // 4)) for k in range(11)]
    emb, blob = _blobs(100, centres, seed=5)
    keep = (blob < 10) | (np.arange(len(blob)) % 2 == 0)  # the 11th style: 50 images
    emb, blob = emb[keep], blob[keep]
    is_val = np.random.default_rng(6).random(len(blob)) < 0.28
    is_val[blob == 10] = False
    coords = emb[:, :2]
    clusters = clusters_of(coords)  # default number of regions
    cov = split_coverage(emb, coords, is_val, clusters, blob.astype(str))
    assert [set(blob[clusters == g.cluster]) for g in cov.gaps] == [{10}]
    assert not cov.covers
