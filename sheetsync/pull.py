"""`sheetsync pull`: the sheet's edits validated and applied as one journalled commit (a new
version, the folders rearranged); with ``hold_invalid`` (the watcher) the valid rows go through
and the rows with problems wait.

The plan itself is pure (:func:`sheetsync.sync.plan_pull`); this module reads the sheet and the
published base of a :class:`~sheetsync.project.Project` and carries the plan out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .augment import ClassTable, class_table
from .errors import BackendError, Problem, SheetValidationError
from .results import PullResult
from .sync import PullPlan, plan_pull

if TYPE_CHECKING:
    from .project import Project


def pull(project: Project, *, dry_run: bool = False, sheet: pd.DataFrame | None = None,
         hold_invalid: bool = False) -> PullResult:
    """``sheet``: a read already taken (the watcher's); ``hold_invalid``: apply the valid
    rows and hold back rows with problems (``result.held``) instead of refusing."""
    with project.locked():
        manifest, info, _ = project.refresh()
        backend = project.backend
        sheet = backend.read_table() if sheet is None else sheet
        if sheet is None:
            raise BackendError(f"nothing to pull: {backend.describe()} has no data sheet "
                               f"(run `sheetsync push` first)")
        published = project.store.read_published()
        plan, held = _plan_pull(project, sheet, manifest, published, hold_invalid)
        if plan.problems:
            raise SheetValidationError(plan.problems)
        assert plan.changes is not None and plan.new_manifest is not None
        result = PullResult(info, len(plan.edited), plan.changes, plan.moves, dry_run,
                            recovered=project.recovered, skipped=project.skipped,
                            notices=plan.warnings, followed=plan.followed)
        result.held = held
        if not plan.edited or dry_run:
            result.usage = "" if plan.edited else project.usage()
            return result
        result.version = project.carry_out(plan.moves, plan.new_manifest,
                                           f"pull: {len(plan.edited)} row(s) edited", plan.shown)
        result.usage = project.usage()
        return result


def _plan_pull(project: Project, sheet: pd.DataFrame, manifest: pd.DataFrame,
               published: pd.DataFrame | None,
               hold_invalid: bool) -> tuple[PullPlan, list[Problem]]:
    """The pull's plan; with ``hold_invalid``, the plan of the rows without problems and the
    problems of the rows held back."""
    known = set(published["id"]) if published is not None else set()
    config = project.config

    def plan_of(rows: pd.DataFrame) -> PullPlan:
        return plan_pull(rows, manifest, published, config.classes, config.splits,
                         known, exists=project.exists, derived=_derived_table(project, manifest))

    plan = plan_of(sheet)
    if not (plan.problems and hold_invalid and all(p.row and p.row > 1 for p in plan.problems)):
        return plan, []
    # Rows with a problem wait for a fix; the other rows' edits go through.
    held = plan.problems
    plan = plan_of(sheet.drop(index=sorted({p.row for p in held if p.row}), errors="ignore"))
    # Held rows are not "images without a row": that warning would mislead.
    plan.warnings = [w for w in plan.warnings if "have no row" not in w]
    return plan, held


def _derived_table(project: Project, manifest: pd.DataFrame) -> ClassTable | None:
    """The augment class table when the manifest has derived rows (they follow their source)."""
    if "source_id" not in manifest.columns or not (manifest["source_id"].astype(str) != "").any():
        return None  # nothing derived: the table does not matter
    return class_table(project.config.augment.transforms, project.config.classes)
