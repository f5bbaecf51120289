"""`sheetsync augment` on a project: the sources weighed from the rows as push shows them (the
review signals, the model behind them), the plan of :mod:`sheetsync.augment`, and the derived
files written through the journal as one batch.

:mod:`sheetsync.augment` stays below the review (the fold models' augmentation,
:mod:`sheetsync._foldaugment`, reads its flip tables); this module sits above both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from . import journal as jr
from ._reviewsheet import gated_suggestions
from .augment import (
    NEW_FILES,
    AugmentPlan,
    Prepared,
    Priorities,
    discard_staged,
    plan_commit,
    prepare,
    priorities_from,
    stage_all,
    unfit_sources,
)
from .dataset import ScanResult
from .inputs import judged_current, model_behind, review_inputs
from .results import AugmentResult

if TYPE_CHECKING:
    from .project import Project
    from .versions import VersionInfo


def augment_project(project: Project, *, budget: int | None = None, seed: int | None = None,
                    dry_run: bool = False, splits: list[str] | None = None,
                    families: list[str] | None = None,
                    on_plan: Callable[[AugmentPlan], None] | None = None) -> AugmentResult:
    """Derived images up to the budget, committed as one journal batch."""
    started = time.perf_counter()
    with project.locked():
        manifest, info, scanned = project.refresh()
        history = [project.versions.load(v.version) for v in project.versions.list()]
        run = prepare(project.config, manifest, history, budget=budget, seed=seed,
                      splits=splits, families=families,
                      priorities=_project_priorities(project, manifest, info, scanned))
        result = AugmentResult(info, run.plan, dry_run, recovered=project.recovered,
                               skipped=project.skipped)
        if on_plan is not None:
            on_plan(run.plan)
        if dry_run or (not run.plan.variants and not len(run.lost)):
            return result
        _write_files(project, manifest, run, result)
        result.seconds = time.perf_counter() - started
        return result


def _write_files(project: Project, manifest: pd.DataFrame, run: Prepared,
                 result: AugmentResult) -> None:
    """Write the planned images into the staging folder, then one commit (sheetsync.journal)."""
    root = project.config.root
    staging = jr.staging_folder(root)  # validated before anything is written there
    try:
        files, result.unbuilt = stage_all(root, staging / NEW_FILES, run.plan, run.lost,
                                          run.pixels, set(manifest["id"].astype(str)))
        moves, new_manifest = plan_commit(manifest, files, project.exists)
        lost = set(run.lost["id"].astype(str)) if len(run.lost) else set()
        result.rebuilt = sum(1 for f in files if f.row["id"] in lost)
        result.written = len(files) - result.rebuilt
        result.version = project.carry_out(
            moves, new_manifest, f"augment: {result.written} derived, {result.rebuilt} rebuilt")
    finally:
        if not project.journal.pending:
            discard_staged(staging)  # committed (already moved) or refused: nothing left


def _project_priorities(project: Project, manifest: pd.DataFrame, info: VersionInfo,
                        scanned: ScanResult) -> Priorities:
    """What the sources weigh (:func:`priorities_from`) and which images are never sources
    (:func:`unfit_sources`), from the rows as push shows them."""
    config, store = project.config, project.store
    found = store.latest_predictions(info.version)
    judged = project.versions.load(found.version) if found is not None else None
    current = judged_current(found, judged, manifest, info.version)
    signals, _ = review_inputs(project.usable_items(manifest, scanned), config.classes, found,
                               current, oos_dir=store.oos_dir)
    model = model_behind(found, manifest, current, project.scores.read(), store.oos_dir)
    if model.weak:  # the model's doubts are noise: only the pixels' drop? stays
        signals = gated_suggestions(signals, model)
    # Otherwise the rows the model doubts are never sources, in-sample or stale too (the
    # sheet's cells then all say "none: …" and no longer tell which rows those are).
    paths = manifest.set_index("path")["id"].astype(str)
    unreadable = [paths[p] for p in scanned.images.unusable if p in paths.index]
    excluded = unfit_sources(signals, unreadable, model_doubts=not model.weak)
    if found is None:
        return Priorities(excluded=excluded)
    if model.weak:
        # A near-chance model's margins and class accuracies are noise.
        return Priorities(kind=found.kind, version=found.version, excluded=excluded,
                          uniform=f"the model is too weak ({model.weak})")
    emb = store.read_embeddings(found.version, found.kind)
    prio = priorities_from(manifest, config.classes, found.probs, found.distance, emb,
                           found.kind, found.version)
    return replace(prio, excluded=excluded)
