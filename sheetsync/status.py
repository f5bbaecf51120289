"""`sheetsync status`, `log` and `diff`: where a project stands (its folders, the sheet's
unpulled edits, the checked rows, the last score) and its history of versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .errors import BackendError
from .inputs import counts_table
from .push import judged_manifest, pending_edits
from .rerank import answers_of
from .results import StatusResult
from .versions import diff_manifests

if TYPE_CHECKING:
    from .project import Project


def status(project: Project, *, check_sheet: bool = True) -> StatusResult:
    config = project.config
    with project.locked():
        manifest, info, _ = project.refresh()
        result = StatusResult(config.root, info, len(manifest),
                              counts_table(manifest, config.classes, config.splits),
                              recovered=project.recovered, skipped=project.skipped)
        stored = project.store.latest_predictions(info.version)
        judged = judged_manifest(project, stored)
        answers = answers_of(manifest, judged)
        result.checked, result.checked_problems = len(answers), int(answers.sum())
        # Checks count from the labels the newest predictions judged: after a train or predict
        # on the pulled labels, the fixes before it are that model's ground truth, not news.
        first = project.versions.list()
        result.judged_version = stored.version if stored is not None else \
            (first[0].version if first else None)
        if check_sheet:
            _sheet_status(project, result)
        scores = project.scores.read()
        if len(scores):
            result.last_score = dict(scores.iloc[-1])
        return result


def _sheet_status(project: Project, result: StatusResult) -> None:
    try:
        sheet = project.backend.read_table()
    except BackendError as e:
        result.sheet_error = str(e)
        return
    result.sheet = project.backend.describe()
    result.pushed = sheet is not None
    if sheet is not None:
        result.pending = pending_edits(project, sheet, project.store.read_published())


def log(project: Project) -> pd.DataFrame:
    """One row per version (time, message, counts) with its last score row's accuracies."""
    versions = pd.DataFrame([{"version": v.version, "time": v.time, "message": v.message,
                              **v.counts} for v in project.versions.list()])
    scores = project.scores.read()
    if len(versions) and len(scores):
        best = scores.assign(version=scores["version"].astype(int)).groupby("version").last()
        versions = versions.join(best[["best_val_accuracy", "test_accuracy"]], on="version")
    return versions.fillna("")


def diff(project: Project, a: str, b: str = "latest") -> pd.DataFrame:
    return diff_manifests(project.versions.load(a), project.versions.load(b))
