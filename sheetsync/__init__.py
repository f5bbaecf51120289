"""sheetsync: fix an image-classification dataset together in a shared spreadsheet.

Usage::

    from sheetsync import Project
    project = Project.open(".")
    project.pull()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SheetsyncError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .project import Project

__all__ = ["Project", "SheetsyncError", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `sheetsync --help` does not import pandas.
    if name == "Project":
        from .project import Project

        return Project
    raise AttributeError(name)
