"""Thumbnails for the local workbook: small PNGs sized to sit inside one cell.

Kept apart from :mod:`sheetsync.sheets.local` because it is the only part that touches
pixels (Pillow); :mod:`sheetsync.sheets._xlsx_package` anchors the result in the sheet.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

# Space between the picture and the cell's border, in pixels.
PADDING = 3
# The lowest data row, in pixels: one line of text at the sheet's font size (``why`` shows its
# strongest reason on one line; the full text is in the cell's note).
MIN_ROW_PIXELS = 22
# The tallest thumbnail, in pixels: with the info line and the header, 15 rows of real images
# (about square) fit a 1600x1000 LibreOffice Calc window at 100% zoom (tests/test_reviewscreen).
MAX_HEIGHT = 34


@dataclass(frozen=True)
class Thumbnail:
    """A PNG no larger than the box, and the size it is shown at (fitted to the box)."""

    png: bytes
    width: int
    height: int


def safe_image_path(base: Path, relative: str) -> Path | None:
    """``base / relative`` if it stays inside ``base`` (after symlinks), else None.

    ``base`` must be resolved already. The path comes from a sheet cell, so it is
    untrusted: ``../../etc/passwd`` or an absolute path must never make us read a file
    outside the dataset.
    """
    if not relative or "\x00" in relative:
        return None
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        return None
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError):
        return None
    return target if target.is_relative_to(base) and target != base else None


def safe_image_paths(base: Path, relatives: list[str]) -> list[Path | None]:
    """:func:`safe_image_path` of each path, each folder resolved once (a sheet's 10,000 rows
    sit in a few dozen folders); a file that is itself a link is resolved whole."""
    folders: dict[str, Path | None] = {}
    out: list[Path | None] = []
    for relative in relatives:
        if not relative or "\x00" in relative:
            out.append(None)
            continue
        rel = PurePosixPath(relative.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            out.append(None)
            continue
        folder = str(rel.parent)
        if folder not in folders:
            folders[folder] = safe_folder(base, rel.parent)
        parent = folders[folder]
        target = None if parent is None else parent / rel.name
        if target is not None and target.is_symlink():
            target = safe_image_path(base, relative)
        out.append(target if target != base else None)
    return out


def safe_folder(base: Path, rel: PurePosixPath) -> Path | None:
    try:
        folder = (base / rel).resolve()
    except (OSError, RuntimeError):
        return None
    return folder if folder.is_relative_to(base) else None


def stamp(file: Path, box: int) -> str | None:
    """What a thumbnail of ``file`` depends on (box, file size, modification time).

    Stored as the picture's name (which LibreOffice and Excel keep), it lets the next push reuse the thumbnail instead of
    decoding the image again: decoding is most of the time a push takes.
    """
    try:
        st = file.stat()
    except OSError:
        return None
    return f"sheetsync thumbnail {box}x{min(box, MAX_HEIGHT)}px {st.st_size} {st.st_mtime_ns}"


def picture_name(stamp_text: str, thumb: Thumbnail) -> str:
    return f"{stamp_text} {thumb.width}x{thumb.height}"


def from_picture_name(name: str, png: bytes) -> tuple[str, Thumbnail] | None:
    """(stamp, thumbnail) from a picture named by :func:`picture_name`; None otherwise."""
    stamp_text, _, size = name.rpartition(" ")
    width, _, height = size.partition("x")
    if not stamp_text.startswith("sheetsync thumbnail ") or not (
        width.isdigit() and height.isdigit()
    ):
        return None
    return stamp_text, Thumbnail(png, int(width), int(height))


def render_thumbnail(file: Path, box: int) -> Thumbnail | None:
    """A PNG thumbnail of ``file`` fitting ``box`` wide and :data:`MAX_HEIGHT` (at most ``box``)
    tall; None if unreadable.

    Pixels are only ever reduced (a 32x32 image stays 32x32 bytes-wise) but the shown size
    is always fitted to the box, so small images are still visible in the sheet.
    """
    tall = min(box, MAX_HEIGHT)
    try:
        with Image.open(file) as im:
            full_w, full_h = im.size
            im.thumbnail((box, tall))  # shrinks only; uses a fast reduce() first
            png = _png_friendly(im)
            buf = io.BytesIO()
            png.save(buf, format="PNG")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    if full_w <= 0 or full_h <= 0:
        return None
    scale = min(box / full_w, tall / full_h)
    width = max(1, round(full_w * scale))
    height = max(1, round(full_h * scale))
    return Thumbnail(buf.getvalue(), width, height)


def _png_friendly(im: Image.Image) -> Image.Image:
    # Transparency is dropped, not composited: the model reads the colour channels as stored
    # (sheetsync._imagecheck), and the thumbnail shows people what the model sees.
    if im.mode in ("1", "L", "RGB"):
        return im
    if im.mode == "LA":
        return im.convert("L")
    if im.mode in ("RGBA", "P", "PA"):
        return im.convert("RGB")
    if im.mode.startswith("I"):  # 16/32-bit grey: scale down to 8 bits
        return im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def row_pixels(thumb: Thumbnail) -> int:
    """The height of a data row holding ``thumb``: the picture plus padding, and never less
    than one line of text."""
    # Rows follow their own picture, not the square box: the numerals are mostly about twice
    # as wide as tall, so a square row would show half as many rows on a screen.
    return max(thumb.height + 2 * PADDING, MIN_ROW_PIXELS)


def row_points(thumb: Thumbnail | None) -> float:
    """``row_pixels`` in points (pixels * 72 / 96), the unit of a row height; rows without a
    picture get the minimum."""
    return round((row_pixels(thumb) if thumb else MIN_ROW_PIXELS) * 0.75, 2)


def centre_offsets(box: int, thumb: Thumbnail) -> tuple[int, int]:
    """(x, y) pixels from the cell's top-left corner that centre ``thumb`` in its cell."""
    # The cell is box + 2 * PADDING (+ about 6 px, see cell_size_for) wide, row_pixels tall.
    return PADDING + 3 + (box - thumb.width) // 2, (row_pixels(thumb) - thumb.height) // 2


def column_width_for(box: int) -> float:
    """The image column's width in characters that holds a ``box`` wide picture."""
    # Excel: pixels ~= 7 * width + 5 with the default font; leave room for the padding and
    # for LibreOffice measuring a little differently.
    return round((box + 2 * PADDING + 6) / 7, 2)