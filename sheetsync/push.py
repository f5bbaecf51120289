"""`sheetsync push`: the rows in review order, the review sheet around them, written unless
people saved an edit since they were read; then what the sheet shows is kept as the next
merge's base (``published``), which ``sheetsync watch`` updates as it republishes.

The pure parts live elsewhere: the table's columns in :mod:`sheetsync.rows`, the info line and
highlighted rows in :mod:`sheetsync._reviewsheet`, the orders in :mod:`sheetsync.review` and
:mod:`sheetsync.rerank`; this module puts them together for a :class:`~sheetsync.project.Project`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._reviewsheet import (
    ReviewSheet,
    gated_suggestions,
    review_sheet,
    with_derived_notes,
    with_image_notes,
)
from .augment import derived_last
from .dataset import ScanResult, safe_joiner
from .errors import UnpulledEditsError, WorkbookChangedError
from .inputs import fold_runs, judged_current, model_behind, review_inputs, with_map
from .publish import publish_for, url_builder
from .pullcheck import published_columns
from .rerank import answers_of, rerank
from .results import PredictionSource, PushResult
from .review import review_order
from .rows import EDITABLE, build_table, extra_columns, layout
from .sheets import SheetLayout
from .sync import unpulled_edits
from .versions import VersionInfo, now_iso

if TYPE_CHECKING:
    from .project import Project


def push(project: Project, *, force: bool = False, order: str | None = None) -> PushResult:
    with project.locked():
        manifest, info, scanned = project.refresh()
        saved = _saved_version(project)  # before the read: a save after it is seen at the write
        sheet = project.backend.read_table()
        edits = pending_edits(project, sheet, project.store.read_published())
        if edits and not force:
            raise unpulled(edits)
        backup = sheet is not None and len(sheet) > 0 and bool(edits or force)
        sheet_backup = project.store.backup_sheet(sheet) if backup and sheet is not None else None
        workbook_backup = project.backup_workbook() if backup else None
        # Every image a row will point at is in the bucket before the sheet is written.
        images = publish_for(project, manifest) if project.config.backend == "google" else None
        table, sheet_layout, source, review = _review(project, manifest, info, scanned, order)
        _write_unless_edited(project, table, sheet_layout, saved, edits, force)
        _save_published(project, table, info)
        return PushResult(len(table), info, project.backend.describe(), source, sheet_backup,
                          workbook_backup, project.usage(wrote=True), images,
                          model=review.model, summary=review.summary,
                          recovered=project.recovered, skipped=project.skipped)


def _saved_version(project: Project) -> tuple[int, int, int] | None:
    """The workbook's saved version (its file stamp); None for a backend without one."""
    from .sheets.local import LocalBackend  # openpyxl: only when a push runs

    backend = project.backend
    return backend.saved_version() if isinstance(backend, LocalBackend) else None


def _write_unless_edited(project: Project, table: pd.DataFrame, sheet_layout: SheetLayout,
                         saved: tuple[int, int, int] | None, edits: list[str],
                         force: bool) -> None:
    """Write the rows a push prepared, unless people saved an edit since the check (the
    uploads and thumbnails between them take a while): never overwritten unseen."""
    from .sheets.local import LocalBackend  # openpyxl: only when a push runs

    backend = project.backend
    if isinstance(backend, LocalBackend):
        try:  # the file is replaced only if it is still the version checked
            backend.write_table(table, sheet_layout, unchanged_since=saved)
        except WorkbookChangedError:
            raise UnpulledEditsError(
                f"{backend.describe()} was saved while push prepared the rows; nothing "
                "was written: run `sheetsync pull` for its edits, then push again") from None
        return
    # An online sheet has no saved version to compare: read it again just before writing.
    now = backend.read_table()
    again = pending_edits(project, now, project.store.read_published())
    if again != edits:
        if not force:
            raise unpulled(again)
        if now is not None and len(now):
            project.store.backup_sheet(now)  # --force: the newer edits are backed up too
    backend.write_table(table, sheet_layout)


def _review(project: Project, manifest: pd.DataFrame, info: VersionInfo, scanned: ScanResult,
            order: str | None) -> tuple[pd.DataFrame, SheetLayout, PredictionSource, ReviewSheet]:
    """The rows a push writes (review order), the review sheet's layout (info line,
    highlighted rows), where the predictions come from, and the review sheet."""
    config, store = project.config, project.store
    stored = store.latest_predictions(info.version)
    items = project.usable_items(manifest, scanned)
    judged = judged_manifest(project, stored)
    current = judged_current(stored, judged, manifest, info.version)
    signals, source = review_inputs(items, config.classes, stored, current,
                                    oos_dir=store.oos_dir, pixel_cache=store.pixel_cache)
    signals = with_map(signals, store.latest_map(info.version))
    answers = answers_of(manifest, judged)
    ids = _review_order(project, signals, manifest, order, answers,
                        lambda: _judged_signals(project, items, judged, stored, signals))
    # The order people can sort by (1 = look first), and the push's row order.
    signals = signals.assign(rank=pd.Series(range(1, len(ids) + 1), index=ids, dtype=float))
    model = model_behind(stored, manifest, current, project.scores.read(), store.oos_dir)
    # Suggestions only from out-of-sample predictions of a model above the "too weak" line.
    signals = gated_suggestions(signals, model)
    table = with_derived_notes(with_image_notes(
        build_table(manifest, signals, _url_builder(project, manifest), ids), scanned.images))
    review = review_sheet(table, signals, manifest, model, version=info.name,
                          pushed_at=now_iso(), unreadable=sorted(scanned.images.unusable),
                          checked=(len(answers), int(answers.sum())))
    flagged_ids = frozenset(table["id"].iloc[list(review.flagged)].astype(str))
    sheet_layout = replace(
        layout(config.classes, config.splits, extra_columns(manifest)),
        flagged=review.flagged, info=review.info, flagged_ids=flagged_ids)
    return table, sheet_layout, source, review


def review_table(project: Project) -> tuple[pd.DataFrame, SheetLayout, VersionInfo, PredictionSource]:
    """The rows a push would write now (review order), the layout it would write them with
    (info line, highlighted rows), their version, and where the predictions come from;
    used by ``sheetsync watch`` to republish its own columns as a push would show them."""
    with project.locked():
        manifest, info, scanned = project.refresh()
        if project.config.backend == "google":
            publish_for(project, manifest)  # appended rows link to published images
        table, sheet_layout, source, _ = _review(project, manifest, info, scanned, None)
        return table, sheet_layout, info, source


def published_followed(project: Project, cells: pd.DataFrame) -> None:
    """The sheet now shows ``cells`` (index = id; label, action, note) for rows that
    followed their source (:meth:`Backend.update_followed`): the next merge's base."""
    with project.locked():
        published = project.store.read_published()
        if published is None:
            return
        shown = published.set_index("id", drop=False)
        ids = [i for i in cells.index if i in shown.index]
        for name in cells.columns:
            if name in shown.columns:
                shown.loc[ids, name] = cells.loc[ids, name].astype(str)
        info = project.versions.latest()
        project.store.save_published(shown.reset_index(drop=True).fillna("").astype(str),
                                     info.version if info else 0, project.backend.describe())


def published_own_columns(project: Project, updates: pd.DataFrame, appended: pd.DataFrame) -> None:
    """What a republish wrote joins what was last published: the read-only cells of
    existing rows (the pull's row check compares them) and whole appended rows."""
    with project.locked():
        published = project.store.read_published()
        if published is None:
            return
        shown = published.set_index("id", drop=False)
        for name in published_columns(shown.columns):
            if name not in updates.columns:
                continue
            col = updates[name]
            col = col[col.notna() & col.index.isin(shown.index)]  # None: left as it was
            shown.loc[col.index, name] = col.astype(str)
        rows = appended.reindex(columns=shown.columns).astype(object).fillna("").astype(str)
        rows = rows[~rows["id"].isin(shown.index)]
        out = pd.concat([shown.reset_index(drop=True), rows], ignore_index=True)
        info = project.versions.latest()
        project.store.save_published(out.fillna("").astype(str), info.version if info else 0,
                                     project.backend.describe())


def judged_manifest(project: Project, stored: Any) -> pd.DataFrame | None:
    """The manifest whose labels the order was computed from: the predictions' version
    (the first version without predictions); a relabel or drop since then is a problem
    found."""
    if stored is not None:
        return project.versions.load(stored.version)
    first = project.versions.list()
    return project.versions.load(first[0].version) if first else None


def _judged_signals(
    project: Project, items: pd.DataFrame, judged: pd.DataFrame | None, stored: Any,
    signals: pd.DataFrame,
) -> tuple[pd.DataFrame, list[Any], pd.DataFrame]:
    """The review signals under the labels the fold models judged (what a problem looked
    like before people fixed it: the re-rank learns from those), the fold spaces, and each
    row's split and label as they were judged (the re-rank's groups)."""
    oos_dir = project.store.oos_dir
    runs = fold_runs(oos_dir, stored, items) if stored is not None else None
    spaces = [(r.embeddings, r.fold) for r in runs or []]
    old, split = items["label"].astype(str), items["split"].astype(str)
    if judged is not None and stored is not None:
        then = judged.set_index(judged["id"].astype(str))
        old = items["id"].map(then["label"].astype(str)).fillna(old)
        if "split" in then.columns:
            split = items["id"].map(then["split"].astype(str)).fillna(split)
    groups = pd.DataFrame({"split": split.to_numpy(), "label": old.to_numpy()},
                          index=pd.Index(items["id"].astype(str), name="id"))
    if judged is None or stored is None or (old == items["label"]).all():
        return signals, spaces, groups
    found, _ = review_inputs(items.assign(label=old), project.config.classes, stored,
                             stored.version, oos_dir=oos_dir)
    return found, spaces, groups


def pending_edits(project: Project, sheet: pd.DataFrame | None,
                  published: pd.DataFrame | None) -> list[str]:
    """The sheet's edits that were never pulled (one line each)."""
    if sheet is None or not len(sheet):
        return []
    if published is None:
        return [f"the sheet at {project.backend.describe()} already holds {len(sheet)} rows "
                f"that this project never pushed"]
    return unpulled_edits(sheet, published)


def unpulled(edits: list[str]) -> UnpulledEditsError:
    return UnpulledEditsError(
        f"the sheet has {len(edits)} edit(s) that were never pulled, e.g.:\n  "
        + "\n  ".join(edits[:10])
        + "\nrun `sheetsync pull` first, or `sheetsync push --force` to overwrite "
          "them (the sheet is backed up first)")


def _save_published(project: Project, table: pd.DataFrame, info: VersionInfo) -> None:
    cols = ["id", *EDITABLE, *[c for c in table.columns if c in extra_columns(table)],
            *published_columns(table.columns)]  # read-only cells, for the row check
    project.store.save_published(table[cols].astype(str), info.version, project.backend.describe())


def _url_builder(project: Project, manifest: pd.DataFrame) -> Callable[[str], str]:
    """path -> URL: a file link for the workbook; for Google the image's published URL (a
    file:// link is useless, and leaks local paths, in a shared sheet)."""
    config = project.config
    if config.backend != "google":
        join = safe_joiner(config.root)  # each folder resolved once for all the rows
        return lambda path: join(path).as_uri()
    return url_builder(manifest, config.publish, config.google.image_url_template)


def _review_order(project: Project, signals: pd.DataFrame, manifest: pd.DataFrame,
                  order: str | None, answers: pd.Series | None = None,
                  judged: Callable[[], tuple[pd.DataFrame, list[Any], pd.DataFrame]] | None = None,
                  ) -> list[str]:
    """Ids in push order: the rows nobody checked first (with the default order, as the
    re-rank learned it from the checked rows' ``answers``), the checked ones after them,
    derived images last."""
    name = order or project.config.review.order
    checked = set(answers.index) if answers is not None else set()
    if name == "combined" and checked and judged is not None:
        ranking, spaces, groups = judged()
        ids = list(rerank(ranking, answers, spaces, groups).order) if answers is not None else []
        ranked = set(ids)  # once: built per row, it made a 100,000-row push take 13 minutes
        ids += [i for i in signals.index.astype(str) if i not in ranked]
    else:
        paths = manifest.set_index("id")["path"].astype(str)
        fixed = list(review_order(signals, name, seed=project.config.train.seed, paths=paths))
        ids = [i for i in fixed if i not in checked] + [i for i in fixed if i in checked]
    return derived_last(ids, manifest)
