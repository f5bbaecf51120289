"""Spreadsheet backends behind one small interface (see :mod:`sheetsync.sheets.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import DATA_SHEET, SCORES_SHEET, Backend, Column, SheetLayout, cell_text

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "DATA_SHEET",
    "SCORES_SHEET",
    "Backend",
    "Column",
    "SheetLayout",
    "cell_text",
    "open_backend",
]


def open_backend(config: Config) -> Backend:
    """The backend the project file names; heavy client libraries load only here."""
    if config.backend == "google":
        from .google import GoogleBackend

        return GoogleBackend.from_config(config)
    from ..store import StateStore
    from .local import LocalBackend

    return LocalBackend(config.resolve(config.local.path), root=config.root,
                        thumbnails=config.local.thumbnails, thumb_size=config.local.thumb_size,
                        thumb_cache=StateStore(config.state_dir).thumbnail_cache)
