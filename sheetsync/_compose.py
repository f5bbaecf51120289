"""Composition: new numerals from the strokes of others (erase the V of a VIII to get a III).

An image of a Roman numeral made of V's and I's is cut into *glyphs*: connected components of
ink, grouped by the columns they cover (a V drawn in two strokes is one glyph). Each glyph is a
``v`` (wide) or an ``i`` (narrow); when the glyphs spell the image's own label, any numeral that
keeps a subset of them in order (viii -> vii, vi, v, iii, ii, i) is made by cutting the other
glyphs' columns out and centring what is left on a canvas of the original size.

Usage::

    targets_of("viii")          # ('i', 'ii', 'iii', 'v', 'vi', 'vii')
    compose(pixels, "iii")      # pixels of a viii with its V cut out; AugmentError if not a viii
"""

from __future__ import annotations

import re

import numpy as np

from .errors import AugmentError

_VI = re.compile(r"^(v?)(i*)$")
# A glyph narrower than this fraction of its height is an I.
_I_RATIO = 0.5
# Components smaller than this share of the ink are specks: they follow the columns they sit in.
_SPECK = 0.02


def background(a: np.ndarray) -> int:
    """The most common border value: what uncovered pixels are filled with (the transforms
    in sheetsync._transforms fill with it too)."""
    border = np.concatenate([a[0].ravel(), a[-1].ravel(), a[:, 0].ravel(), a[:, -1].ravel()])
    return int(np.bincount(border.astype(np.int64)).argmax())


def targets_of(label: str) -> tuple[str, ...]:
    """Classes that erasing glyphs of a ``label`` image can make (empty if not V?I*)."""
    m = _VI.match(label)
    if not m or len(label) < 2:
        return ()
    has_v, n_i = bool(m.group(1)), len(m.group(2))
    out = {("v" if v else "") + "i" * j for v in ({False, True} if has_v else {False})
           for j in range(n_i + 1)}
    out.discard(label)
    out.discard("")
    return tuple(sorted(out))


def glyphs(a: np.ndarray) -> list[tuple[str, int, int]]:
    """(kind, x0, x1) of each glyph, left to right; x1 exclusive."""
    from scipy import ndimage

    gray = a if a.ndim == 2 else a.mean(axis=2)
    bg = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    ink = np.abs(gray.astype(np.float32) - bg) > 64
    labels, n = ndimage.label(ink, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)
    spans = sorted((b[1].start, b[1].stop, b[0].start, b[0].stop)
                   for b, s in zip(boxes, sizes, strict=True) if s >= _SPECK * sizes.sum())
    merged: list[list[int]] = []
    for x0, x1, y0, y1 in spans:
        if merged and x0 < merged[-1][1]:  # overlapping columns: the same glyph
            last = merged[-1]
            last[1], last[2], last[3] = max(last[1], x1), min(last[2], y0), max(last[3], y1)
        else:
            merged.append([x0, x1, y0, y1])
    return [("i" if (x1 - x0) < _I_RATIO * (y1 - y0) else "v", x0, x1) for x0, x1, y0, y1 in merged]


def compose(a: np.ndarray, target: str) -> np.ndarray:
    """Pixels showing ``target``, cut from an image whose glyphs spell a V?I* numeral."""
    found = glyphs(a)
    spelled = "".join(kind for kind, _, _ in found)
    m = _VI.match(target)
    if not m or not target or target not in targets_of(spelled):
        raise AugmentError(f"cannot make {target!r} from an image whose strokes read {spelled!r}")
    keep_v, keep_i = bool(m.group(1)), len(m.group(2))
    kept, n_i = [], 0
    for kind, x0, x1 in found:
        if (kind == "v" and keep_v) or (kind == "i" and n_i < keep_i):
            kept.append((x0, x1))
        n_i += kind == "i"
    cols = np.ones(a.shape[1], dtype=bool)
    for _, x0, x1 in found:
        if (x0, x1) not in kept:
            cols[x0:x1] = False
    for x0, x1 in kept:
        cols[x0:x1] = True
    # Margins stay; the gaps the erased glyphs leave are closed.
    first, last = found[0][1], found[-1][2]
    cols[:first] = True
    cols[last:] = True
    cut = a[:, cols]
    out = np.full_like(a, background(a))
    offset = (a.shape[1] - cut.shape[1]) // 2
    out[:, offset:offset + cut.shape[1]] = cut
    return out
