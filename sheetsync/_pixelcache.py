"""What the review reads from each image's pixels, decoded once per file content, not per push.

Two things come from the pixels of every image at each push: the picture measures
(:mod:`sheetsync._picture`) and the duplicate thumbnail and pixel digest
(:mod:`sheetsync._duplicates`). Both depend on the file's bytes only, so they are kept by
file hash in ``.sheetsync/pixels.npz``: a pull that moves or relabels files decodes nothing
again. Images not in the cache are decoded in a pool of threads (Pillow and numpy release the
GIL for most of the work; threads never fork a process that has loaded TensorFlow). After each
push the file holds the images of that push only, so it stays the size of the dataset.

Usage::

    pixels = pixel_features(items["file"], items["hash"], cache=store.pixel_cache)
    pixels.stats            # _picture.COLUMNS, one row per item
    pixels.thumbnails       # _duplicates.Thumbnails
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import _duplicates, _picture
from .errors import DatasetError

_SMALL = _duplicates.THUMB_SIZE * _duplicates.THUMB_SIZE


@dataclass(frozen=True)
class Pixels:
    stats: pd.DataFrame  # _picture.COLUMNS, index = ids
    thumbnails: _duplicates.Thumbnails
    decoded: int  # images decoded (not found in the cache)


def _measure(file: str) -> tuple[np.ndarray, str, np.ndarray]:
    """(picture measures, pixel digest, 16x16 thumbnail as uint8) of one image file."""
    from PIL import Image

    try:
        with Image.open(file) as im:  # decoded once for both
            gray = im.convert("L")
        digest, small = _duplicates.thumbnail_from(gray)
        ink = _picture.ink_mask_of(gray)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{file}: cannot be read as an image ({e})") from None
    stats = _picture.stats(ink)
    return np.array([stats[c] for c in _picture.COLUMNS], np.float64), digest, small


def pixel_features(file_column: Iterable[object], hash_column: Iterable[object],
                   id_column: Iterable[object], cache: Path | None = None) -> Pixels:
    """The picture measures and duplicate thumbnails of the files (and their file hashes)."""
    files = [str(f) for f in file_column]
    hashes = [str(h) for h in hash_column]
    ids = [str(i) for i in id_column]
    known = _read(cache)
    todo = sorted({h: f for f, h in zip(files, hashes, strict=True) if h not in known}.items())
    if len(todo) < 32:
        fresh = [_measure(f) for _, f in todo]
    else:
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            fresh = list(pool.map(_measure, [f for _, f in todo]))
    known.update((h, m) for (h, _), m in zip(todo, fresh, strict=True))
    rows = [known[h] for h in hashes]
    stats = pd.DataFrame(np.stack([r[0] for r in rows]) if rows else np.zeros((0, 5)),
                         index=pd.Index(ids, name="id"), columns=list(_picture.COLUMNS))
    small = np.stack([r[2] for r in rows]) if rows else np.zeros((0, _SMALL), np.uint8)
    thumbs = _duplicates.Thumbnails([r[1] for r in rows],
                                    small.astype(np.float32).reshape(len(rows), -1) / 255.0)
    if cache is not None and (todo or set(known) != set(hashes)):
        _write(cache, {h: known[h] for h in hashes})
    return Pixels(stats, thumbs, len(todo))


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _read(path: Path | None) -> dict[str, tuple[np.ndarray, str, np.ndarray]]:
    if path is None or not path.exists():
        return {}
    with contextlib.suppress(OSError, ValueError, KeyError, EOFError):
        with np.load(path, allow_pickle=False) as z:
            hashes, stats, digests, small = z["hashes"], z["stats"], z["digests"], z["small"]
            if stats.shape[1:] != (len(_picture.COLUMNS),) or small.shape[1:] != (_SMALL,):
                return {}  # written by another version of the measures: measure again
            return {str(h): (stats[k], str(digests[k]), small[k]) for k, h in enumerate(hashes)}
    return {}  # a damaged cache is only lost time


def _write(path: Path, entries: dict[str, tuple[np.ndarray, str, np.ndarray]]) -> None:
    keys = list(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.npz")
    try:
        np.savez(tmp, hashes=np.array(keys, dtype=str),
                 stats=np.stack([entries[k][0] for k in keys]) if keys else np.zeros((0, 5)),
                 digests=np.array([entries[k][1] for k in keys], dtype=str),
                 small=(np.stack([entries[k][2] for k in keys]) if keys
                        else np.zeros((0, _SMALL), np.uint8)))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written only costs time


def cached_near_pairs(cache: Path | None) -> Callable[[np.ndarray, list[str]], list[tuple[int, int]]]:
    """:func:`sheetsync._duplicates.near_pairs` that remembers the pairs by file hash (in
    ``pixels.pairs.npz`` beside ``cache``): a push compares only the images new since the last
    one with the others (a query per new image instead of a search of all pairs)."""

    def near(pixels: np.ndarray, hashes: list[str]) -> list[tuple[int, int]]:
        path = None if cache is None else cache.with_suffix(".pairs.npz")
        before, known = _read_pairs(path)
        index = {h: k for k, h in enumerate(hashes)}
        fresh = np.array([k for k, h in enumerate(hashes) if h not in before], dtype=int)
        if not before:
            pairs = set(_duplicates.near_pairs(pixels))
        else:
            pairs = {(min(index[a], index[b]), max(index[a], index[b]))
                     for a, b in known if a in index and b in index}
            if len(fresh):
                pairs |= set(_duplicates.near_pairs(pixels, rows=fresh))
        out = sorted(pairs)
        if path is not None and (len(fresh) or set(hashes) != before):
            _write_pairs(path, hashes, [(hashes[i], hashes[j]) for i, j in out])
        return out

    return near


def _pairs_version() -> str:
    # Pairs found with other settings are not these pairs.
    return f"{_duplicates.THUMB_SIZE} {_duplicates.NEAR_THRESHOLD}"


def _read_pairs(path: Path | None) -> tuple[set[str], list[tuple[str, str]]]:
    if path is None or not path.exists():
        return set(), []
    with contextlib.suppress(OSError, ValueError, KeyError, EOFError):
        with np.load(path, allow_pickle=False) as z:
            if str(z["version"]) != _pairs_version():
                return set(), []
            pairs = z["pairs"].reshape(-1, 2)
            return {str(h) for h in z["hashes"]}, [(str(a), str(b)) for a, b in pairs]
    return set(), []


def _write_pairs(path: Path, hashes: list[str], pairs: list[tuple[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, version=np.array(_pairs_version()), hashes=np.array(hashes, dtype=str),
                 pairs=np.array(pairs, dtype=str).reshape(-1, 2))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
