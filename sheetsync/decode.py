"""Image decoding and the decode cache, apart from training.

Each image is decoded and resized once, exactly as ``image_dataset_from_directory`` does it
(decode as RGB, bilinear resize to 32x32, aspect ratio not kept), and the float32 tensor is
cached on disk keyed by the file's sha256, so after a ``pull`` only new or changed images are
decoded again. TensorFlow is imported only when something has to be decoded.

Usage::

    x = load_images(files, hashes, cache_dir=store.decode_cache)   # (n, 32, 32, 3) float32
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .model import IMAGE_SIZE

# Bumped whenever the decoded tensor for the same bytes could change (size, resize method).
CACHE_FORMAT = f"img{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}-bilinear-f32-v1"
DECODE_BATCH = 64


_decoded = 0  # images decoded from files by this process (the tests count cache misses)


def decoded_count() -> int:
    """How many image files this process has decoded so far (cache hits do not count)."""
    return _decoded


def load_images(
    files: Sequence[str | Path],
    hashes: Sequence[str],
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The images as an (n, 32, 32, 3) float32 array, pixel-identical to what
    ``image_dataset_from_directory(image_size=(32, 32))`` yields (decode as RGB, bilinear resize,
    aspect ratio not kept).

    With ``cache_dir``, each decoded tensor is stored as ``<cache_dir>/<format>/<hh>/<hash>.npy``
    and never decoded again while the file's hash is unchanged. ``progress(done, todo)`` reports
    the images that actually had to be decoded.
    """
    names = [str(f) for f in files]
    hashes = [str(h) for h in hashes]
    if len(names) != len(hashes):
        raise ValueError("files and hashes differ in length")
    out = np.empty((len(names), *IMAGE_SIZE, 3), np.float32)
    store = Path(cache_dir) / CACHE_FORMAT if cache_dir is not None else None

    # Identical bytes decode identically: decode each hash once.
    todo: dict[str, str] = {}
    for i, (f, h) in enumerate(zip(names, hashes, strict=True)):
        if store is not None and h not in todo:
            try:
                out[i] = np.load(_cache_file(store, h), allow_pickle=False)
                continue
            except (FileNotFoundError, ValueError, OSError):
                pass  # missing or torn entry: decode again
        todo.setdefault(h, f)

    decoded: dict[str, np.ndarray] = {}
    if todo:
        decoded = _decode_files(list(todo.values()), progress)
        decoded = dict(zip(todo.keys(), decoded.values(), strict=True))
        if store is not None:
            for h, arr in decoded.items():
                _write_atomic(_cache_file(store, h), arr)
    for i, h in enumerate(hashes):
        if h in decoded:
            out[i] = decoded[h]
    return out


def _cache_file(store: Path, h: str) -> Path:
    if not h or "/" in h or "\\" in h or h.startswith("."):
        raise ValueError(f"not a file hash: {h!r}")
    return store / h[:2] / f"{h}.npy"


def _write_atomic(path: Path, arr: np.ndarray) -> None:
    # Write-then-rename, so an interrupted run never leaves a torn cache entry behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _decode_one(path: Any) -> Any:
    import tensorflow as tf

    # The same three ops keras.utils.image_dataset_from_directory runs (its _load_image_tf).
    img = tf.io.read_file(path)
    img = tf.image.decode_image(img, channels=3, expand_animations=False)
    img = tf.image.resize(img, IMAGE_SIZE, method="bilinear")
    img.set_shape((*IMAGE_SIZE, 3))
    return img


def _decode_files(
    files: list[str], progress: Callable[[int, int], None] | None
) -> dict[str, np.ndarray]:
    """Decode ``files`` in parallel with tf.data; returns {file: array} in ``files`` order."""
    global _decoded
    import tensorflow as tf

    for f in files:
        if not os.path.isfile(f):
            raise DatasetError(f"image file not found: {f}")
    ds = (
        tf.data.Dataset.from_tensor_slices(files)
        .map(_decode_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(DECODE_BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )
    out: dict[str, np.ndarray] = {}
    try:
        for batch in ds:
            arr = batch.numpy()
            for f, a in zip(files[len(out) : len(out) + len(arr)], arr, strict=True):
                out[f] = a
            _decoded += len(arr)
            if progress is not None:
                progress(len(out), len(files))
    except tf.errors.OpError:
        # tf.data does not say which file failed: find it, to name it.
        for f in files[len(out) :]:
            try:
                _decode_one(tf.constant(f))
            except tf.errors.OpError as e:
                raise DatasetError(f"cannot decode image {f}: {e.message}") from None
        raise
    return out
