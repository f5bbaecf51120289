"""Odd images, found at scan time: what cannot be read, and what the model sees of the rest.

Every image file is opened and fully decoded once (Pillow; results cached by file hash), so a
bad file is named when the folders are scanned, not in the middle of ``push`` or ``train``, and
every bad file is named at once.

What the model sees is decided here, once, and said in the sheet's ``why`` column:

* **unreadable** (truncated, corrupt, not an image): no thumbnail, excluded from training and
  from the review signals; the row is flagged so people can drop it (``action`` = drop) or
  replace the file.
* **unsupported format** (TIFF, ...: anything but PNG, JPEG, GIF, BMP and WebP, which the
  model's decoder reads): thumbnail shown, excluded from training like an unreadable file.
* **16-bit** (``I;16`` PNGs): the model's decoder scales it to 8 bits, and so does the thumbnail.
* **transparency** (RGBA, LA, palette with transparency): the model reads the colour channels
  as stored and ignores the alpha channel; a numeral drawn on a transparent background is then
  whatever colour the transparent pixels hold (often black: a black square). The thumbnail
  shows the same, so people see what the model sees; flatten such images onto a background.
* **EXIF orientation**: ignored; the model and the thumbnail see the pixels as stored, not the
  rotated view a photo viewer shows.

Usage::

    checks = check_images(root, manifest, cache=Path(".sheetsync/imagecheck.json"))
    checks.unusable          # {path: problem} of files the model cannot read
    checks.notes             # {path: what the model sees}, for odd but usable files
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

# Formats tf.image.decode_image (the model's decoder) reads.
MODEL_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})
_EXIF_ORIENTATION = 0x0112
_ROTATION = {3: "upside down", 6: "90° clockwise", 8: "90° counter-clockwise",
             2: "mirrored", 4: "mirrored", 5: "mirrored and rotated", 7: "mirrored and rotated"}


@dataclass(frozen=True)
class ImageCheck:
    """What one file is to the model: ``problem`` makes it unusable; ``note`` is a remark."""

    problem: str = ""
    note: str = ""

    def to_json(self) -> list[str]:
        return [self.problem, self.note]


@dataclass(frozen=True)
class ImageChecks:
    """The checks of every image of a manifest, by relative path."""

    by_path: Mapping[str, ImageCheck] = field(default_factory=dict)

    @property
    def unusable(self) -> dict[str, str]:
        return {p: c.problem for p, c in self.by_path.items() if c.problem}

    @property
    def notes(self) -> dict[str, str]:
        return {p: c.note for p, c in self.by_path.items() if c.note and not c.problem}

    def why(self, path: str) -> str:
        """The text for the ``why`` column of this image ("" for a plain image)."""
        check = self.by_path.get(path)
        if check is None:
            return ""
        if check.problem:
            return f"unreadable: {check.problem}; drop it (action = drop) or replace the file"
        return check.note


def check_image(file: Path) -> ImageCheck:
    """Open and fully decode ``file``; say what is wrong or odd about it."""
    try:
        with Image.open(file) as im:
            fmt = im.format or "unknown"
            mode = im.mode
            transparent = mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            orientation = _orientation(im)
            im.load()  # a truncated or corrupt file fails here, not at open
    except Image.DecompressionBombError as e:
        return ImageCheck(problem=f"too large to decode ({e})")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        return ImageCheck(problem=_problem_text(e))
    if fmt not in MODEL_FORMATS:
        return ImageCheck(problem=f"{fmt} format: the model reads only PNG, JPEG, GIF, BMP and WebP; "
                                  "convert it to PNG")
    notes = []
    if mode.startswith("I;16") or mode == "I":
        notes.append("16-bit image: the model sees it scaled to 8 bits")
    if transparent:
        notes.append("transparent image: the model ignores transparency and sees the stored "
                     "colours, as the thumbnail shows; flatten it onto a background")
    if orientation and orientation != 1:
        turn = _ROTATION.get(orientation, f"orientation {orientation}")
        notes.append(f"EXIF says {turn}: ignored, the model and the thumbnail see the pixels as "
                     "stored")
    return ImageCheck(note="; ".join(notes))


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION)
    except (OSError, ValueError, SyntaxError):  # a broken EXIF block is not worth failing for
        return None
    return int(value) if isinstance(value, int) else None


def _problem_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, UnidentifiedImageError):
        return "not an image file Pillow recognises"
    return text.replace(" (", ", ").rstrip(")")[:200]


def check_images(root: Path, manifest: pd.DataFrame, cache: Path | None = None) -> ImageChecks:
    """Check every image of ``manifest`` (columns path, hash); reuse results cached by hash."""
    known = _read_cache(cache)
    out: dict[str, ImageCheck] = {}
    fresh: dict[str, list[str]] = {}
    for path, digest in zip(manifest["path"].astype(str), manifest["hash"].astype(str), strict=True):
        cached = known.get(digest)
        check = ImageCheck(*cached) if cached else check_image(root / path)
        out[path] = check
        fresh[digest] = check.to_json()
    if cache is not None and fresh != known:
        _write_cache(cache, fresh)
    return ImageChecks(out)


def _read_cache(path: Path | None) -> dict[str, list[str]]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is only lost time: check again
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)}


def _write_cache(path: Path, data: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
