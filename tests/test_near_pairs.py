"""Near-duplicate pairs: the k-d tree search of ``near_pairs`` returns exactly the pairs that
checking the rule on all pairs returns, on thumbnails of drawn numerals with planted copies."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import dcai_root
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sheetsync import _duplicates
from sheetsync._duplicates import NEAR_THRESHOLD, near_pairs, thumbnail_from
from sheetsync.demo import draw_numeral

NUMERALS = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]


class AllPairs:
    """The rule checked on every pair: the reference (the same float32 sums as the module)."""

    def __init__(self, pixels: np.ndarray):
        ink = 1.0 - pixels
        self.total = ink.sum(axis=1)
        self.l1 = np.empty((len(ink), len(ink)), np.float32)
        for at in range(0, len(ink), 64):
            self.l1[at:at + 64] = np.abs(ink[at:at + 64, None, :] - ink[None, :, :]).sum(axis=2)

    def pairs(self, threshold: float, rows: np.ndarray | None = None) -> list[tuple[int, int]]:
        near = self.l1 < threshold * (self.total[:, None] + self.total[None, :])
        i, j = np.nonzero(np.triu(near, 1))
        out = list(zip(i.tolist(), j.tolist(), strict=True))
        if rows is not None:
            new = set(np.asarray(rows).tolist())
            out = [(a, b) for a, b in out if a in new or b in new]
        return out


def thumb(im: Image.Image) -> np.ndarray:
    return thumbnail_from(im.convert("L"))[1].astype(np.float32) / 255.0


def drawn(n: int, seed: int) -> np.ndarray:
    """Thumbnails of n drawn numerals; about a third are near copies of earlier ones (resized,
    or a few pixels changed: some just inside the threshold, some just outside), plus a blank
    image and an all-black one."""
    rng = random.Random(seed)
    images: list[Image.Image] = []
    rows: list[np.ndarray] = []
    for k in range(n):
        if k == 3:
            rows.append(np.ones(_duplicates.THUMB_SIZE ** 2, np.float32))  # blank: no ink
        elif k == 5:
            rows.append(np.zeros(_duplicates.THUMB_SIZE ** 2, np.float32))  # all ink
        elif images and rng.random() < 0.35:
            source = rng.randrange(len(images))
            if rng.random() < 0.4:
                im = images[source]
                rows.append(thumb(im.resize((im.width - rng.randint(1, 6), im.height - 2))))
            else:
                copy = thumb(images[source]).copy()
                spots = rng.sample(range(copy.size), rng.randint(0, 24))
                copy[spots] = [rng.randint(0, 255) / 255.0 for _ in spots]
                rows.append(copy.astype(np.float32))
        else:
            images.append(draw_numeral(rng.choice(NUMERALS), rng))
            rows.append(thumb(images[-1]))
    return np.stack(rows) if rows else np.zeros((0, _duplicates.THUMB_SIZE ** 2), np.float32)


def strokes(n: int, seed: int) -> np.ndarray:
    """Thumbnails like the loop benchmark's images (three horizontal, three vertical strokes on
    48x48): many close pairs, totals of ink in several bands; every fifth one a stroke moved
    by one pixel from an earlier one."""
    rng = np.random.default_rng(seed)
    rows = []
    places: list[np.ndarray] = []
    for k in range(n):
        if places and k % 5 == 0:
            at = places[int(rng.integers(len(places)))].copy()
            at[int(rng.integers(6))] += 1
        else:
            at = rng.integers(4, 44, 6)
        places.append(at)
        pixels = np.full((48, 48), 255, np.uint8)
        pixels[at[:3, None], 4:44] = 0
        pixels[4:44, at[3:]] = 0
        rows.append(thumb(Image.fromarray(pixels, "L")))
    return np.stack(rows)


THRESHOLDS = [-0.1, 0.0, 1e-3, 0.03, NEAR_THRESHOLD, 0.2, 0.5, 0.999, 1.0, 1.7]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 60, 400, pytest.param(1500, marks=pytest.mark.slow)])
def test_near_pairs_are_the_rule_on_all_pairs(n: int) -> None:
    pixels = drawn(n, seed=n)
    reference = AllPairs(pixels)
    # Past 0.5 nearly every pair is a candidate: the small sizes try those.
    thresholds = [t for t in THRESHOLDS if n <= 400 or t <= 0.5]
    found = {t: near_pairs(pixels, t) for t in thresholds}
    for t in thresholds:
        assert found[t] == reference.pairs(t), t
    if n >= 400:  # the planted copies are found, and not everything is near
        assert 0 < len(found[NEAR_THRESHOLD]) < len(found[0.5]) < n * (n - 1) // 2


def test_near_pairs_on_stroke_images_like_the_benchmark() -> None:
    pixels = strokes(2000, seed=1)
    reference = AllPairs(pixels)
    assert reference.total.max() / reference.total.min() > 1.3  # more than one band of ink
    for t in (0.03, NEAR_THRESHOLD, 0.15):
        assert near_pairs(pixels, t) == reference.pairs(t), t
    assert len(near_pairs(pixels)) >= 100


def test_a_threshold_at_a_pairs_own_ratio() -> None:
    """The rule is strict: a pair exactly at the threshold is out, one rounding step above in.
    The search's bounds must not drop a pair the rule keeps, whatever the rounding."""
    pixels = drawn(300, seed=7)
    reference = AllPairs(pixels)
    ink = 1.0 - pixels
    total = ink.sum(axis=1)
    pairs = near_pairs(pixels, 0.3)
    assert len(pairs) >= 20
    # Eight pairs spread over the list: the default run stays quick (4 searches a pair).
    for a, b in pairs[:: max(1, len(pairs) // 8)]:
        ratio = float(np.abs(ink[a] - ink[b]).sum() / (total[a] + total[b]))
        for t in (ratio, np.nextafter(ratio, 0.0), np.nextafter(ratio, 1.0),
                  float(np.nextafter(np.float32(ratio), np.float32(1.0)))):
            assert near_pairs(pixels, float(t)) == reference.pairs(float(t)), (a, b, t)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), threshold=st.floats(0.0, 1.2),
       share=st.floats(0.0, 1.0))
def test_new_rows_get_the_pairs_that_touch_them(seed: int, threshold: float, share: float) -> None:
    pixels, reference = POOL[seed % 2]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(pixels), int(share * len(pixels)), replace=True)  # repeats allowed
    assert near_pairs(pixels, threshold, rows=rows) == reference.pairs(threshold, rows)


POOL = [(p, AllPairs(p)) for p in (drawn(250, seed=11), strokes(250, seed=12))]


def test_no_new_rows_no_pairs() -> None:
    assert near_pairs(POOL[0][0], rows=np.zeros(0, int)) == []
    assert near_pairs(POOL[0][0][:1]) == [] and near_pairs(POOL[0][0][:0], rows=np.zeros(0, int)) == []


@pytest.mark.slow
@pytest.mark.dcai
def test_near_pairs_on_the_competition_images() -> None:
    files = sorted(str(p) for p in dcai_root().rglob("*.png"))
    pixels = _duplicates.thumbnails(files).pixels
    reference = AllPairs(pixels)
    for t in (NEAR_THRESHOLD, 0.15):
        assert near_pairs(pixels, t) == reference.pairs(t), t
    rows = np.arange(0, len(pixels), 7)
    assert near_pairs(pixels, rows=rows) == reference.pairs(NEAR_THRESHOLD, rows)
