"""Workbook thumbnails kept between pushes, by the image's content hash and the box size.

A push draws a thumbnail only for an image whose bytes it has not drawn before at that size:
a pull that moves files between folders changes paths, not bytes, so the next push draws
nothing again. The misses are drawn in a pool of threads (Pillow releases the GIL while it
decodes, resizes and encodes; threads also never fork a process that has loaded TensorFlow).

The cache is one zip file in the state folder (``.sheetsync/thumbnails.zip``), one stored
(uncompressed) PNG per entry named ``HASH-BOX-WxH.png``. After each push it holds exactly the
thumbnails that push showed, so it never grows beyond one sheet's pictures; deleting it only
costs one slower push.

Usage::

    cache = ThumbnailCache(Path(".sheetsync/thumbnails.zip"))
    thumbs = draw_all([root / "train/i/a.png", ...], box=112, cache=cache)  # None: unreadable
    cache.save()  # keeps only what draw_all was asked for since the cache was opened
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import _xlsx_images as images

_ENTRY = re.compile(r"([0-9a-f]{64})-(\d+)-(\d+)x(\d+)\.png")


def workers() -> int:
    """Threads for drawing: one per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ThumbnailCache:
    """Thumbnails by (sha256 of the file, box); ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None):
        self.path = path
        self._known: dict[tuple[str, int], images.Thumbnail] | None = None
        self._used: dict[tuple[str, int], images.Thumbnail] = {}
        self.drawn = 0  # thumbnails drawn (not found) since the cache was opened
        self._lock = threading.Lock()

    def _entries(self) -> dict[tuple[str, int], images.Thumbnail]:
        if self._known is None:
            self._known = _read(self.path) if self.path is not None else {}
        return self._known

    def get(self, digest: str, box: int) -> images.Thumbnail | None:
        thumb = self._used.get((digest, box)) or self._entries().get((digest, box))
        if thumb is not None:
            self._used[digest, box] = thumb
        return thumb

    def put(self, digest: str, box: int, thumb: images.Thumbnail) -> None:
        with self._lock:  # called from the drawing threads
            self._used[digest, box] = thumb
            self.drawn += 1

    def save(self) -> None:
        """Keep exactly the thumbnails used since opening (written only when that changed)."""
        if self.path is None or self._used.keys() == self._entries().keys():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                for (digest, box), t in self._used.items():
                    zf.writestr(f"{digest}-{box}-{t.width}x{t.height}.png", t.png)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a cache that cannot be written only costs time
            return
        self._known = dict(self._used)


def _read(path: Path) -> dict[tuple[str, int], images.Thumbnail]:
    out: dict[tuple[str, int], images.Thumbnail] = {}
    with contextlib.suppress(OSError, zipfile.BadZipFile, EOFError, ValueError):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                m = _ENTRY.fullmatch(info.filename)
                if m is not None:
                    out[m.group(1), int(m.group(2))] = images.Thumbnail(
                        zf.read(info), int(m.group(3)), int(m.group(4)))
    return out  # a damaged cache is only lost time: what could be read is kept


def file_digest(file: Path) -> str | None:
    try:
        with open(file, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def draw_all(
    files: Sequence[Path], box: int, cache: ThumbnailCache | None
) -> list[images.Thumbnail | None]:
    """The thumbnail of each file (None when unreadable), in parallel: with a ``cache``, found
    there by content when it can be, and the ones drawn added to it."""

    def one(file: Path) -> images.Thumbnail | None:
        digest = None if cache is None else file_digest(file)
        thumb = None if cache is None or digest is None else cache.get(digest, box)
        if thumb is None:
            # Looked up through the module, so that a test can count the drawings.
            thumb = images.render_thumbnail(file, box)
            if thumb is not None and cache is not None and digest is not None:
                cache.put(digest, box, thumb)
        return thumb

    if cache is not None:
        cache._entries()  # read once, before the threads start
    if len(files) < 32:
        return [one(f) for f in files]
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        return list(pool.map(one, files))
