"""Duplicate and blank images, found from file bytes and decoded pixels (Pillow, numpy, scipy).

Three levels, cheapest first:

* the same file bytes (equal sha256, the ``hash`` column);
* the same picture saved with other bytes (equal decoded pixels, e.g. re-compressed PNG);
* near-identical pictures: small grayscale thumbnails whose ink differs by a small fraction of
  the ink they hold (a resized or re-encoded copy, a few stray pixels).

Blank images (no ink: every pixel the same, or nearly) are flagged on their own.

Usage::

    thumbs = thumbnails(items["file"])
    groups = duplicate_groups(items["id"], items["hash"], thumbs)   # id -> [other ids]
    blank = blank_images(items["id"], thumbs)                       # bool Series
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
from PIL import Image

from .errors import DatasetError

# Thumbnails are small enough to search 100k images for near pairs in seconds (100k x 256
# floats), large enough that two different handwritten numerals never come this close.
THUMB_SIZE = 16
# Two thumbnails are the same picture when sum|ink_a - ink_b| < NEAR_THRESHOLD * (ink_a + ink_b).
# Ink-relative, because numerals are mostly white paper: a plain mean difference makes any two
# thin "i"s look alike. On the competition data identical copies score 0 and the closest distinct
# images (same writer, same pen) 0.098 and up; a resized or re-encoded copy stays well under 0.05.
NEAR_THRESHOLD = 0.08
# A thumbnail whose pixels span less than this (0..1 scale) holds no drawing.
BLANK_SPAN = 0.05


class Thumbnails:
    """Decoded images: a pixel digest per image and a flat grayscale thumbnail matrix."""

    def __init__(self, digests: list[str], pixels: np.ndarray):
        self.digests = digests
        self.pixels = pixels  # (n, THUMB_SIZE * THUMB_SIZE) float32 in 0..1


def thumbnail_of(file: str) -> tuple[str, np.ndarray]:
    """(pixel digest, flat THUMB_SIZE x THUMB_SIZE grayscale thumbnail as uint8) of one image."""
    with Image.open(file) as im:
        return thumbnail_from(im.convert("L"))


def thumbnail_from(gray: Image.Image) -> tuple[str, np.ndarray]:
    """:func:`thumbnail_of` an image already decoded to grayscale (mode L)."""
    full = np.asarray(gray, dtype=np.uint8)
    # The digest covers size and pixels, not the file's bytes: a re-saved copy matches.
    digest = hashlib.sha256(repr(full.shape).encode() + full.tobytes()).hexdigest()
    small = gray.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR)
    return digest, np.asarray(small, dtype=np.uint8).reshape(-1)


def thumbnails(files: Iterable[str]) -> Thumbnails:
    digests: list[str] = []
    rows: list[np.ndarray] = []
    for file in files:
        try:
            digest, small = thumbnail_of(file)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{file}: cannot be read as an image ({e})") from None
        digests.append(digest)
        rows.append(small.astype(np.float32) / 255.0)
    pixels = np.stack(rows) if rows else np.zeros((0, THUMB_SIZE * THUMB_SIZE), np.float32)
    return Thumbnails(digests, pixels)


def blank_images(ids: Sequence[str], thumbs: Thumbnails) -> pd.Series:
    """True for images with no visible drawing."""
    p = thumbs.pixels
    span = p.max(axis=1) - p.min(axis=1) if len(p) else np.zeros(0)
    return pd.Series(span < BLANK_SPAN, index=pd.Index(list(ids), name="id"), name="blank")


def near_pairs(pixels: np.ndarray, threshold: float = NEAR_THRESHOLD,
               rows: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Index pairs (i < j) of thumbnails (pixels in 0..1) whose ink differs by less than
    ``threshold`` of their ink: ``sum|ink_i - ink_j| < threshold * (total_i + total_j)``.

    ``rows``: only the pairs with at least one of these indices (the images new since the pairs
    were last found). Candidates come from a k-d tree, not from all pairs (see
    :func:`_sign_projections`); each candidate is then checked by the rule itself."""
    n = len(pixels)
    if n < 2 or threshold <= 0:  # no ink distance is below zero
        return []
    ink = 1.0 - pixels
    total = ink.sum(axis=1)
    proj = _sign_projections(ink)
    new = None if rows is None else np.unique(np.asarray(rows, dtype=int))
    if new is None or 2 * len(new) > n:
        i, j = _candidates(proj, total, threshold)
        if new is not None:  # most rows are new: finding all pairs is cheaper than querying
            mine = np.isin(i, new) | np.isin(j, new)
            i, j = i[mine], j[mine]
    else:
        i, j = _candidates_of(proj, total, threshold, new)
    return _checked(ink, total, proj, i, j, threshold)


# Any vector v of +1 / -1 weights gives |v.a - v.b| <= sum|a - b|: a pair within the rule is
# within the rule's bound on every such projection. A few projections that spread the images
# widely (2-D cosine patterns' signs, picked on the images at hand) index the k-d tree, more of
# them filter its candidates before the full check. Bounds are computed in float64 and the rule
# in float32: ROUNDING widens them so that rounding never drops a pair.
TREE_DIMS = 6
FILTER_DIMS = 32
ROUNDING = 1e-4
_Limit = TypeVar("_Limit", float, np.ndarray)


def _sign_projections(ink: np.ndarray) -> np.ndarray:
    """(n, FILTER_DIMS) projections of the ink on +-1 patterns, the most informative first."""
    side = int(round(np.sqrt(ink.shape[1])))
    u = (np.arange(side) + 0.5) * np.pi / side
    waves = np.cos(np.outer(np.arange(side), u))  # (frequency, position)
    patterns = np.einsum("ax,by->abxy", waves, waves).reshape(side * side, -1)[1:]
    signs = np.where(patterns >= 0, 1.0, -1.0)
    picked = _most_spread(ink, signs, min(FILTER_DIMS, len(signs)))
    out = np.empty((len(ink), len(picked)))
    for at in range(0, len(ink), 8192):  # float64 in slices: no full float64 copy of the ink
        out[at:at + 8192] = ink[at:at + 8192].astype(np.float64) @ signs[picked].T
    return out


def _most_spread(ink: np.ndarray, signs: np.ndarray, k: int) -> list[int]:
    """Indices of k patterns, greedily: the widest spread of the images' shapes (ink over its
    total, on a sample) not already explained by those picked (pivoted Cholesky)."""
    sample = ink[:: max(1, len(ink) // 4096)].astype(np.float64)
    sums = sample.sum(axis=1, keepdims=True)
    shapes = sample[sums[:, 0] > 0] / sums[sums[:, 0] > 0]
    if len(shapes) < 2:
        return list(range(k))
    cov = np.cov(shapes @ signs.T, rowvar=False)
    picked: list[int] = []
    for _ in range(k):
        spread = np.diag(cov).copy()
        spread[picked] = -np.inf
        best = int(np.argmax(spread))
        picked.append(best)
        if spread[best] > 0:
            column = cov[:, best] / np.sqrt(spread[best])
            cov = cov - np.outer(column, column)
    return picked


def _widen(limit: _Limit) -> _Limit:
    return limit * (1 + ROUNDING) + 1e-6


def _can_pair(total: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the images that can be in a pair: without ink, sum|a - b| is a's ink, never
    under ``threshold`` times it unless the threshold is over 1."""
    return np.flatnonzero(total > 0) if threshold <= 1 else np.arange(len(total))


def _ink_bands(total: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Indices of the inked images in bands of total ink, such that a near pair lies in one band
    or two neighbouring ones: ``|total_a - total_b| <= sum|a - b|`` bounds their ratio."""
    inked = _can_pair(total, threshold)
    if threshold >= 1 or not len(inked):
        return [inked]
    # At least 0.05 wide: narrower bands (a tiny threshold) would only build more trees.
    width = max(2 * np.arctanh(threshold) * (1 + ROUNDING), 0.05)  # log((1 + t) / (1 - t))
    band = np.floor(np.log(total[inked] / total[inked].min()) / width).astype(int)
    return [inked[band == b] for b in range(band.max() + 1)]


def _candidates(proj: np.ndarray, total: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs within the bound on the tree's projections, by band and neighbouring bands."""
    from scipy.spatial import cKDTree

    bands = _ink_bands(total, threshold)
    trees = [cKDTree(proj[b, :TREE_DIMS]) if len(b) else None for b in bands]
    top = [float(total[b].max()) if len(b) else 0.0 for b in bands]
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for k, (band, tree) in enumerate(zip(bands, trees, strict=True)):
        if tree is None:
            continue
        within = tree.query_pairs(_widen(2 * threshold * top[k]), p=np.inf, output_type="ndarray")
        found.append((band[within[:, 0]], band[within[:, 1]]))
        after = trees[k + 1] if k + 1 < len(trees) else None
        if after is not None:
            across = tree.sparse_distance_matrix(after, _widen(threshold * (top[k] + top[k + 1])),
                                                 p=np.inf, output_type="ndarray")
            found.append((band[across["i"]], bands[k + 1][across["j"]]))
    if not found:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _candidates_of(proj: np.ndarray, total: np.ndarray, threshold: float,
                   rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of these rows with any image, within the bound on the tree's projections."""
    from scipy.spatial import cKDTree

    inked = _can_pair(total, threshold)
    rows = np.intersect1d(rows, inked)
    if not len(rows) or not len(inked):
        return np.zeros(0, int), np.zeros(0, int)
    top = float(total[inked].max())
    # The partner's ink is at most (1 + threshold) / (1 - threshold) times this row's.
    most = total[rows] * (1 + threshold) / (1 - threshold) if threshold < 1 else top
    reach = _widen(threshold * (total[rows] + np.minimum(most, top)))
    found = cKDTree(proj[inked, :TREE_DIMS]).query_ball_point(
        proj[rows, :TREE_DIMS], reach, p=np.inf, return_sorted=False)
    sizes = np.fromiter((len(f) for f in found), int, len(found))
    partners = np.concatenate([np.asarray(f, dtype=int) for f in found]) if sizes.sum() else np.zeros(0, int)
    return np.repeat(rows, sizes), inked[partners]


def _checked(ink: np.ndarray, total: np.ndarray, proj: np.ndarray, i: np.ndarray, j: np.ndarray,
             threshold: float) -> list[tuple[int, int]]:
    """The candidate pairs (i != j) within the rule, as sorted (low, high) pairs."""
    out: set[tuple[int, int]] = set()
    for at in range(0, len(i), 65536):
        ci, cj = i[at:at + 65536], j[at:at + 65536]
        ci, cj = np.minimum(ci, cj), np.maximum(ci, cj)
        limit = _widen(threshold * (total[ci].astype(np.float64) + total[cj]))
        for dims in (slice(TREE_DIMS, 2 * TREE_DIMS), slice(None)):  # a cheap cut, then all
            keep = (ci != cj) & (np.abs(proj[ci, dims] - proj[cj, dims]).max(axis=1) < limit)
            ci, cj, limit = ci[keep], cj[keep], limit[keep]
        near = np.abs(ink[ci] - ink[cj]).sum(axis=1) < threshold * (total[ci] + total[cj])
        out.update(zip(ci[near].tolist(), cj[near].tolist(), strict=True))
    return sorted(out)


def duplicate_groups(
    ids: Sequence[str], hashes: Sequence[str], thumbs: Thumbnails, *, blank: pd.Series | None = None,
    near: Callable[[np.ndarray, list[str]], list[tuple[int, int]]] | None = None,
) -> dict[str, list[str]]:
    """For each id with copies, the other ids showing the same picture (blank images excluded:
    they are all alike and are flagged as blank instead). ``near(pixels, hashes)``: the near
    pairs of those rows (default :func:`near_pairs`; :mod:`sheetsync._pixelcache` keeps them
    between pushes)."""
    ids = [str(i) for i in ids]
    hashes = [str(h) for h in hashes]
    skip = set() if blank is None else set(blank.index[blank.to_numpy(bool)])
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for key in (list(hashes), thumbs.digests):
        first: dict[str, int] = {}
        for i, k in enumerate(key):
            if ids[i] in skip:
                continue
            if k in first:
                union(first[k], i)
            else:
                first[k] = i
    keep = [i for i, x in enumerate(ids) if x not in skip]
    if near is None:
        pairs = [(keep[a], keep[b]) for a, b in near_pairs(thumbs.pixels[keep])]
    else:
        # Rows with equal bytes are joined above already: compare one row per file hash.
        seen: set[str] = set()
        unique = [i for i in keep if not (hashes[i] in seen or seen.add(hashes[i]))]  # type: ignore[func-returns-value]
        pairs = [(unique[a], unique[b])
                 for a, b in near(thumbs.pixels[unique], [hashes[i] for i in unique])]
    for a, b in pairs:
        union(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(ids)):
        members[find(i)].append(i)
    groups: dict[str, list[str]] = {}
    for group in members.values():
        if len(group) > 1:
            for i in group:
                groups[ids[i]] = [ids[j] for j in group if j != i]
    return groups
