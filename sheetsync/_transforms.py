"""Image transforms for ``sheetsync augment``: pure functions of (pixels, spec) -> pixels.

A transform is named by its *spec*, a short string that holds every parameter, so a derived image
can be rebuilt exactly from its source and the spec alone (the seed only picks the parameters,
once, when the variant is planned)::

    hflip  vflip  rotate(-7.25)  shift(0.05,-0.03)  zoom(1.06)  blur(0.6)  noise(0.05,1234)

Every function takes and returns a uint8 array of shape (H, W) or (H, W, C) and keeps both.
Parameters are relative to the image (shift in fractions of the side, blur in 1/32 of the short
side) because the fixed model sees every image at 32x32, whatever its size on disk.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from ._compose import background, compose
from .errors import ConfigError

# Families whose variants differ by parameters (many per source); flips have one variant each.
CONTINUOUS = ("rotate", "shift", "zoom", "blur", "noise")
FLIPS = ("hflip", "vflip")
FAMILIES = (*FLIPS, *CONTINUOUS, "compose")
# The ablation groups of bench_augment and docs/review.md.
GROUPS = {"flips": FLIPS, "geometric": ("rotate", "shift", "zoom"), "blur/noise": ("blur", "noise"),
          "composition": ("compose",)}

_SPEC = re.compile(r"^([a-z]+)(?:\(([^()]*)\))?$")


def parse_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """(family, arguments) of a spec; ConfigError for anything that is not one."""
    m = _SPEC.match(spec.strip())
    if not m or m.group(1) not in FAMILIES:
        raise ConfigError(f"{spec!r} is not a transform (one of: {', '.join(FAMILIES)})")
    args = tuple(a.strip() for a in m.group(2).split(",")) if m.group(2) else ()
    return m.group(1), args


def sample_spec(family: str, rng: np.random.Generator) -> str:
    """A spec of ``family`` with parameters drawn from ``rng`` (rounded: the spec is exact)."""
    if family in FLIPS:
        return family
    if family == "rotate":
        return f"rotate({rng.uniform(-12, 12):.2f})"
    if family == "shift":
        dx, dy = rng.uniform(-0.08, 0.08, size=2)
        return f"shift({dx:.3f},{dy:.3f})"
    if family == "zoom":
        return f"zoom({rng.uniform(0.9, 1.1):.3f})"
    if family == "blur":
        return f"blur({rng.uniform(0.3, 1.0):.2f})"
    if family == "noise":
        return f"noise({rng.uniform(0.03, 0.10):.3f},{int(rng.integers(0, 2**31))})"
    raise ConfigError(f"transform {family!r} has no parameters to sample")


def apply_spec(a: np.ndarray, spec: str) -> np.ndarray:
    """The pixels of ``a`` transformed by ``spec`` (composition lives in ``_compose``)."""
    family, args = parse_spec(spec)
    if family == "compose":
        return compose(a, args[0] if args else "")
    fn = _APPLY[family]
    try:
        values = [float(x) for x in args]
    except ValueError:
        raise ConfigError(f"{spec!r}: the arguments must be numbers") from None
    return fn(a, *values)


def hflip(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[:, ::-1])


def vflip(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[::-1])


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a)


def _fill(a: np.ndarray) -> int | tuple[int, ...]:
    bg = background(a)
    return bg if a.ndim == 2 else (bg,) * a.shape[2]


def rotate(a: np.ndarray, degrees: float) -> np.ndarray:
    out = _pil(a).rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=_fill(a))
    return np.asarray(out, dtype=np.uint8)


def shift(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate by fractions of the width/height; uncovered pixels get the background."""
    h, w = a.shape[:2]
    sx, sy = int(round(dx * w)), int(round(dy * h))
    out = np.full_like(a, background(a))
    src = a[max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)]
    out[max(0, sy):max(0, sy) + src.shape[0], max(0, sx):max(0, sx) + src.shape[1]] = src
    return out


def zoom(a: np.ndarray, factor: float) -> np.ndarray:
    """Scale about the centre (factor > 1 zooms in), same size out."""
    h, w = a.shape[:2]
    inv = 1.0 / factor
    # PIL's affine maps output (x, y) to input (a x + b y + c, d x + e y + f).
    cx, cy = w / 2, h / 2
    coeffs = (inv, 0.0, cx - inv * cx, 0.0, inv, cy - inv * cy)
    out = _pil(a).transform((w, h), Image.Transform.AFFINE, coeffs,
                            resample=Image.Resampling.BILINEAR, fillcolor=_fill(a))
    return np.asarray(out, dtype=np.uint8)


def blur(a: np.ndarray, strength: float) -> np.ndarray:
    radius = strength * min(a.shape[:2]) / 32.0
    return np.asarray(_pil(a).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)


def noise(a: np.ndarray, amount: float, seed: float) -> np.ndarray:
    rng = np.random.default_rng(int(seed))
    noisy = a.astype(np.float32) + rng.normal(0.0, amount * 255.0, size=a.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


_APPLY: dict[str, Callable[..., np.ndarray]] = {
    "hflip": hflip, "vflip": vflip, "rotate": rotate, "shift": shift, "zoom": zoom,
    "blur": blur, "noise": noise,
}


def variant_rng(seed: int, source_id: str, family: str, k: int) -> np.random.Generator:
    """The generator for variant ``k`` of ``family`` on one source: independent of plan order."""
    key = zlib.crc32(f"{source_id}:{family}:{k}".encode())
    return np.random.default_rng([seed, key])
