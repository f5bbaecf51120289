"""What the picture itself says, without any model: how much ink, whether it is cut off at the
frame, how much of it is specks (Pillow, numpy, scipy).

Reasons a reviewer removes an image are often visible in the pixels: nearly no ink (blank or a
smudge), strokes running off the edge of the frame (a numeral cut off, or a photo of a grid),
ink scattered in many small specks (noise, a scanned texture), a drawing made of dots or dashes
rather than strokes (no connected piece holds much of the ink: ``largest_piece``). Each measure
is one column, computed once per image at a fixed working size.

Usage::

    pic = picture_stats(items["file"], index=items["id"])   # one row per image
    pic["border_ink"]   # share of the frame's edge covered by ink (0 = clean margin)
    pic["largest_piece"] < DOTTED   # drawn in dots or dashes
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

# Pixels darker than this are ink (the images hold 0, 64 and 255).
INK = 128
# Working size: the longer side scaled to this many pixels (enough to see strokes and specks).
SIDE = 160
# Components smaller than this share of the image area are specks.
SPECK = 2e-4
COLUMNS = ("ink", "border_ink", "speck_share", "components", "largest_piece")
# A numeral written in strokes has a few connected pieces (at most about five for viii), so its
# largest piece holds a good share of the ink; below this share it is drawn in dots or dashes.
# On the competition data: 26 images, 17 of them removed or fixed by the human review.
DOTTED = 0.2


def ink_mask(path: str) -> np.ndarray:
    """The image at the working size, True where there is ink."""
    from PIL import Image

    with Image.open(path) as raw:
        return ink_mask_of(raw.convert("L"))


def ink_mask_of(im: Any) -> np.ndarray:
    """:func:`ink_mask` of an image already decoded to grayscale (a PIL image, mode L)."""
    from PIL import Image

    scale = SIDE / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    # Nearest keeps thin strokes dark instead of averaging them into the background.
    return np.asarray(im.resize(size, Image.Resampling.NEAREST)) < INK


def stats(ink: np.ndarray) -> dict[str, float]:
    """The measures of one ink mask (True = ink)."""
    from scipy import ndimage

    h, w = ink.shape
    edge = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    labels, n = ndimage.label(ink)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0)
    total = float(ink.sum())
    specks = float(sizes[sizes < SPECK * h * w].sum()) if n else 0.0
    # Pieces touching at a corner are one piece: a thin diagonal stroke is still a stroke.
    pieces, m = ndimage.label(ink, structure=np.ones((3, 3)))
    largest = float(np.bincount(pieces.ravel())[1:].max()) if m else 0.0
    return {
        "ink": total / (h * w),
        "border_ink": float(edge.mean()),
        "speck_share": specks / total if total else 0.0,
        "components": float(n),
        "largest_piece": largest / total if total else 1.0,
    }


def picture_stats(files: Iterable[str], index: Iterable[str]) -> pd.DataFrame:
    """:data:`COLUMNS` for each image file, on ``index``."""
    rows = [stats(ink_mask(str(f))) for f in files]
    return pd.DataFrame(rows, index=pd.Index([str(i) for i in index], name="id"),
                        columns=list(COLUMNS))
