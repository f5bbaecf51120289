"""Class-preserving augmentation for the cross-validation folds (out-of-sample scores only).

A Roman numeral survives some transformations and not others: mirrored left-right, i, ii, iii,
v and x stay what they are and iv becomes vi (and vi iv); upside down, i, ii, iii, ix and x stay;
a small rotation or shift keeps every class. Training the fold models on such variants (drawn
afresh every epoch) makes their out-of-sample probabilities sharper on the images they never
saw, which is all the review order needs. The fixed model's own training (``sheetsync train``)
is never augmented: the competition fixes that recipe.

The same transformations, at fixed sizes, are also the fold models' test-time views
(:func:`test_views`): each held-out image is scored as it is and shifted or turned a little,
and its probabilities are the mean. On two folds of the competition data this raised the AUC of
(1 - p(given label)) against the human review from 0.840 to 0.855 and from 0.886 to 0.898
(bench/bench_left_out.py).

Usage::

    aug = class_preserving(["i", "ii", "iii", "iv", "v", "vi"])   # a tf.data batch transform
    ds = aug(ds)                          # ds yields (images [b, 32, 32, 3] 0..255, one-hot [b, C])
    views = test_views(x)                 # x: images (n, 32, 32, 3) -> 6 arrays of that shape
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .augment import ROMAN_TABLE

# What each flip turns a numeral into; a class missing here is never flipped that way. One
# source of truth: the class table of `sheetsync augment` (sheetsync.augment.ROMAN_TABLE).
HFLIP: Mapping[str, str] = ROMAN_TABLE["hflip"]
VFLIP: Mapping[str, str] = ROMAN_TABLE["vflip"]
# Small enough that a numeral stays readable and inside the 32x32 frame.
MAX_DEGREES = 10.0
MAX_SHIFT = 2.0  # pixels of the 32x32 input
FLIP_P = 0.5
# Test-time views, (degrees, dx, dy) each: inside the training range, so the models have seen
# such versions; flips are left out because they change some classes into others.
TEST_VIEWS: tuple[tuple[float, float, float], ...] = (
    (0.0, 1.5, 0.0), (0.0, -1.5, 0.0), (0.0, 0.0, 1.5), (0.0, 0.0, -1.5), (6.0, 0.0, 0.0),
    (-6.0, 0.0, 0.0),
)
SETTINGS = {"augment": "class-preserving-v1", "degrees": MAX_DEGREES, "shift": MAX_SHIFT,
            "test_views": [list(v) for v in TEST_VIEWS]}


def flip_table(classes: Sequence[str], mapping: Mapping[str, str]) -> np.ndarray:
    """For each class index, the class index after the flip, or -1 where the flip is not allowed."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(mapping.get(c, ""), -1) for c in classes], dtype=np.int32)


def class_preserving(classes: Sequence[str], seed: int = 123) -> Callable[[Any], Any]:
    """A transform of a batched ``tf.data.Dataset`` of (images, one-hot labels)."""
    import tensorflow as tf

    h = tf.constant(flip_table(classes, HFLIP))
    v = tf.constant(flip_table(classes, VFLIP))
    n_classes = len(classes)

    def flip(x: Any, c: Any, table: Any, axis: int, rng: Any) -> tuple[Any, Any]:
        target = tf.gather(table, c)
        do = (rng < FLIP_P) & (target >= 0)
        x = tf.where(do[:, None, None, None], tf.reverse(x, axis=[axis]), x)
        return x, tf.where(do, target, c)

    def step(x: Any, y: Any) -> tuple[Any, Any]:
        b = tf.shape(x)[0]
        c = tf.argmax(y, axis=1, output_type=tf.int32)
        u = tf.random.uniform((b, 2))
        x, c = flip(x, c, h, 2, u[:, 0])
        x, c = flip(x, c, v, 1, u[:, 1])
        shape = x.shape
        x = _rotate_shift(x, b)
        # The transform loses the static image size; without it the XLA-compiled train step
        # is traced for unknown shapes and runs about 10x slower.
        x.set_shape(shape)
        return x, tf.one_hot(c, n_classes, dtype=y.dtype)

    def transform(ds: Any) -> Any:
        tf.random.set_seed(seed)
        return ds.map(step, num_parallel_calls=tf.data.AUTOTUNE)

    return transform


def _rotate_shift(x: Any, b: Any) -> Any:
    """A random small rotation about the centre and shift per image."""
    import tensorflow as tf

    angle = tf.random.uniform((b,), -1.0, 1.0) * MAX_DEGREES
    dx = tf.random.uniform((b,), -MAX_SHIFT, MAX_SHIFT)
    dy = tf.random.uniform((b,), -MAX_SHIFT, MAX_SHIFT)
    return _affine(x, angle, dx, dy)


def _affine(x: Any, degrees: Any, dx: Any, dy: Any) -> Any:
    """Each image turned by ``degrees`` about its centre and shifted by (dx, dy) pixels (one
    value per image); the uncovered corners are filled white, the background of these pictures."""
    import tensorflow as tf

    angle = degrees * (math.pi / 180)
    size = tf.cast(tf.shape(x)[1:3], tf.float32)
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel (X, Y) samples input (a0 X + a1 Y + a2, b0 X + b1 Y + b2).
    a2 = cx - cos * cx + sin * cy - dx
    b2 = cy - sin * cx - cos * cy - dy
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
        fill_value=255.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )


def test_views(x: np.ndarray) -> list[np.ndarray]:
    """The :data:`TEST_VIEWS` of images ``x`` (n, H, W, 3), each an array of the same shape."""
    import tensorflow as tf

    images = tf.constant(np.asarray(x, dtype=np.float32))
    n = len(x)
    out = []
    for degrees, dx, dy in TEST_VIEWS:
        out.append(_affine(images, tf.fill((n,), degrees), tf.fill((n,), dx),
                           tf.fill((n,), dy)).numpy())
    return out


def fit_predict(train: Any, predict_items: Any, classes: Sequence[str], **kwargs: Any) -> Any:
    """:func:`sheetsync.train.fit_predict` with class-preserving augmentation of the training
    batches and the :func:`test_views` of the held-out images (drop-in ``fit_predict`` for
    :func:`sheetsync.review.out_of_sample`)."""
    from .train import fit_predict as plain

    seed = int(kwargs.get("seed", 123))
    return plain(train, predict_items, classes, augment=class_preserving(list(classes), seed),
                 views=test_views, **kwargs)
