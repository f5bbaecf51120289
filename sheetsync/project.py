"""A sheetsync project: the dataset folder, its versions, the sheet and the model, in step.

This is the library behind every CLI command; each public method is one command and returns a
typed result (:mod:`sheetsync.results`)::

    project, _ = Project.init(Path("data"))    # writes sheetsync.toml, records v1
    project.train(epochs=3)                     # score row for v1
    project.push()                              # rows, most-likely-wrong first
    project.pull()                              # validated edits -> v2 + folders rearranged

The jobs live elsewhere; this module only orchestrates them: the state folder in
:mod:`sheetsync.store`, moves and crash recovery in :mod:`sheetsync.journal`, the plan of a
pull or checkout in :mod:`sheetsync.sync`, what training and review read in
:mod:`sheetsync.inputs`, the words in :mod:`sheetsync.cli`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import journal as jr
from ._imagecheck import check_images
from ._itemprogress import Progress, tqdm_progress
from ._reviewsheet import (
    ReviewSheet,
    gated_suggestions,
    review_sheet,
    with_derived_notes,
    with_image_notes,
)
from .config import CONFIG_NAME, Config
from .dataset import ScanResult, SkippedFile, detect_layout, order_classes, safe_join, scan
from .errors import (
    BackendError,
    ConfigError,
    Problem,
    SheetValidationError,
    UnpulledEditsError,
    WorkbookChangedError,
)
from .inputs import (
    class_distances,
    counts_table,
    derived_count,
    embedding_map,
    items_of,
    model_behind,
    repeat_fields,
    review_inputs,
    score_intervals,
    score_row,
    test_items,
    test_predictions,
    train_val,
    usable,
    with_map,
)
from .pullcheck import published_columns
from .rerank import answers_of, rerank
from .results import (
    AugmentResult,
    CheckoutResult,
    InitResult,
    PredictionSource,
    PredictResult,
    PrunePlan,
    PublishResult,
    PullResult,
    PushResult,
    ReportResult,
    ScoresResult,
    StatusResult,
    TrainOutcome,
)
from .rows import EDITABLE, build_table, extra_columns, layout
from .sheets import Backend, SheetLayout, open_backend
from .store import StateStore
from .sync import PullPlan, plan_checkout, plan_pull, unpulled_edits
from .versions import VersionInfo, counts_of, diff_manifests, now_iso

if TYPE_CHECKING:
    from ._gcs import Bucket
    from ._workers import Say
    from .augment import AugmentPlan, ClassTable, Prepared, Priorities
    from .report import ReportStep

# The old name of a command's result; every result has ``lines``, ``warnings`` and ``str()``.
Report = (PushResult | PullResult | StatusResult | CheckoutResult | TrainOutcome | PredictResult
          | PublishResult | ReportResult)


class Project:
    def __init__(self, config: Config, progress: Progress = tqdm_progress,
                 backend: Backend | None = None, storage: Bucket | None = None):
        self.config = config
        self.progress = progress
        self._backend = backend
        self._storage = storage  # the [publish] bucket (sheetsync._gcs.Bucket), made when needed
        self.state = config.state_dir
        self.store = StateStore(self.state)
        self.versions = self.store.versions()
        self.scores = self.store.scores()
        self.recovered: jr.Recovery | None = None
        self.skipped: list[SkippedFile] = []  # what the last scan left out, said by every command

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, project_dir: Path | str = ".", **kwargs: Any) -> Project:
        return cls(Config.load(Path(project_dir)), **kwargs)

    @classmethod
    def init(cls, data_root: Path | str, project_dir: Path | str = ".", *, backend: str = "local",
             classes: list[str] | None = None, splits: list[str] | None = None,
             test_dir: str | None = None, force: bool = False,
             **kwargs: Any) -> tuple[Project, InitResult]:
        config = _new_config(Path(data_root).resolve(), Path(project_dir).resolve(), backend,
                             classes, splits, test_dir, force)
        config.save()
        project = cls(config, **kwargs)
        with project._locked():
            manifest, info, scanned = project._refresh()
        test = config.test_dir.name if config.test_dir else None
        return project, InitResult(config.path, config.root, len(manifest), list(config.classes),
                                   list(config.splits), test, info, skipped=project.skipped,
                                   unreadable=scanned.images.unusable)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.config)
        return self._backend

    # ---- state -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One sheetsync command at a time per project; finishes interrupted moves first."""
        from .watch import refuse_if_watched

        refuse_if_watched(self.store.watch_lock)
        with self.store.lock():
            self.recovered = jr.recover(self._journal, self._record)
            yield

    @property
    def _journal(self) -> jr.Journal:
        return jr.Journal(self.store.journal_path, self.config.root)

    def _record(self, commit: jr.Commit) -> VersionInfo:
        return self.versions.commit(commit.version, commit.message)

    def _carry_out(self, moves: list[jr.Move], manifest: pd.DataFrame, message: str,
                   shown: pd.DataFrame | None = None) -> VersionInfo:
        """Move the files and record ``manifest`` (and what the sheet shows) as one commit."""
        version = self.versions.next_number()
        files = [(str(self.versions.pending_path(version)), str(self.versions.manifest_path(version)))]
        if shown is not None:
            files.append((str(self.store.published_pending), str(self.store.published_path)))

        def stage() -> None:
            self.versions.stage(manifest, version)
            if shown is not None:
                self.store.stage_published(shown)

        return jr.carry_out(self._journal, moves, jr.Commit(version, message, tuple(files)), stage,
                            self._record, progress=lambda ms: self.progress(ms, "moving", len(moves)))

    def _refresh(self) -> tuple[pd.DataFrame, VersionInfo, ScanResult]:
        """Scan the folders; record a version when they changed outside sheetsync."""
        latest = self.versions.latest()
        previous = self.versions.load(latest.version) if latest else None
        cache = self.store.hash_cache()
        result = scan(self.config.root, self.config.splits, self.config.classes, previous, cache,
                      progress=lambda items: self.progress(items, "scanning"))
        cache.save()
        self.skipped = result.skipped  # files left out by name, said by every command
        if latest is None or result.changed:
            message = "init" if latest is None else f"scan: {result.summary()}"
            latest = self.versions.record(result.manifest, message)
        # Every file decoded once (cached by hash): a bad one is named now, not mid-command.
        result.images = check_images(self.config.root, result.manifest, self.store.imagecheck_cache)
        return result.manifest, latest, result

    def _items(self, manifest: pd.DataFrame, scanned: ScanResult) -> pd.DataFrame:
        """The images training, prediction and review read: not the files the model cannot."""
        return usable(items_of(manifest, self.config.root), manifest, scanned.images.unusable)

    def _exists(self, rel: str) -> bool:
        # lexists: a dangling link holds the name too (a move there would be refused).
        return os.path.lexists(safe_join(self.config.root, rel))

    def _usage(self, *, wrote: bool = False) -> str:
        # The workbook's usage line describes its last write; only an online backend counts
        # reads too, so for the workbook it is shown only after a write.
        if self.backend.name == "local" and not wrote:
            return ""
        return self.backend.usage() or ""

    # ---- push ------------------------------------------------------------------------------

    def push(self, *, force: bool = False, order: str | None = None) -> PushResult:
        with self._locked():
            manifest, info, scanned = self._refresh()
            saved = self._saved_version()  # before the read: a save after it is seen at the write
            sheet = self.backend.read_table()
            edits = self._pending_edits(sheet, self.store.read_published())
            if edits and not force:
                raise _unpulled(edits)
            backup = sheet is not None and len(sheet) > 0 and bool(edits or force)
            sheet_backup = self.store.backup_sheet(sheet) if backup and sheet is not None else None
            workbook_backup = self.backup_workbook() if backup else None
            # Every image a row will point at is in the bucket before the sheet is written.
            images = self._publish_images(manifest) if self.config.backend == "google" else None
            table, sheet_layout, source, review = self._review(manifest, info, scanned, order)
            self._write_unless_edited(table, sheet_layout, saved, edits, force)
            self._save_published(table, info)
            return PushResult(len(table), info, self.backend.describe(), source, sheet_backup,
                              workbook_backup, self._usage(wrote=True), images,
                              model=review.model, summary=review.summary,
                              recovered=self.recovered, skipped=self.skipped)

    def _saved_version(self) -> tuple[int, int, int] | None:
        """The workbook's saved version (its file stamp); None for a backend without one."""
        from .sheets.local import LocalBackend

        return self.backend.saved_version() if isinstance(self.backend, LocalBackend) else None

    def _write_unless_edited(self, table: pd.DataFrame, sheet_layout: SheetLayout,
                             saved: tuple[int, int, int] | None, edits: list[str],
                             force: bool) -> None:
        """Write the rows a push prepared, unless people saved an edit since the check (the
        uploads and thumbnails between them take a while): never overwritten unseen."""
        from .sheets.local import LocalBackend

        if isinstance(self.backend, LocalBackend):
            try:  # the file is replaced only if it is still the version checked
                self.backend.write_table(table, sheet_layout, unchanged_since=saved)
            except WorkbookChangedError:
                raise UnpulledEditsError(
                    f"{self.backend.describe()} was saved while push prepared the rows; nothing "
                    "was written: run `sheetsync pull` for its edits, then push again") from None
            return
        # An online sheet has no saved version to compare: read it again just before writing.
        now = self.backend.read_table()
        again = self._pending_edits(now, self.store.read_published())
        if again != edits:
            if not force:
                raise _unpulled(again)
            if now is not None and len(now):
                self.store.backup_sheet(now)  # --force: the newer edits are backed up too
        self.backend.write_table(table, sheet_layout)

    def _review(self, manifest: pd.DataFrame, info: VersionInfo, scanned: ScanResult,
                order: str | None) -> tuple[pd.DataFrame, SheetLayout, PredictionSource, ReviewSheet]:
        """The rows a push writes (review order), the review sheet's layout (info line,
        highlighted rows), where the predictions come from, and the review sheet."""
        stored = self.store.latest_predictions(info.version)
        items = self._items(manifest, scanned)
        signals, source = review_inputs(items, self.config.classes, stored, info.version,
                                        oos_dir=self.store.oos_dir)
        signals = with_map(signals, self.store.latest_map(info.version))
        judged = self._judged(stored)
        answers = answers_of(manifest, judged)
        ids = self._review_order(signals, manifest, order, answers,
                                 lambda: self._judged_signals(items, judged, stored, signals))
        # The order people can sort by (1 = look first), and the push's row order.
        signals = signals.assign(rank=pd.Series(range(1, len(ids) + 1), index=ids, dtype=float))
        model = model_behind(stored, manifest, info.version, self.scores.read(), self.store.oos_dir)
        # Suggestions only from out-of-sample predictions of a model above the "too weak" line.
        signals = gated_suggestions(signals, model)
        table = with_derived_notes(with_image_notes(
            build_table(manifest, signals, self._url_builder(manifest), ids), scanned.images))
        review = review_sheet(table, signals, manifest, model, version=info.name,
                              pushed_at=now_iso(), unreadable=sorted(scanned.images.unusable),
                              checked=(len(answers), int(answers.sum())))
        flagged_ids = frozenset(table["id"].iloc[list(review.flagged)].astype(str))
        sheet_layout = replace(
            layout(self.config.classes, self.config.splits, extra_columns(manifest)),
            flagged=review.flagged, info=review.info, flagged_ids=flagged_ids)
        return table, sheet_layout, source, review

    def review_table(self) -> tuple[pd.DataFrame, SheetLayout, VersionInfo, PredictionSource]:
        """The rows a push would write now (review order), the layout it would write them with
        (info line, highlighted rows), their version, and where the predictions come from;
        used by ``sheetsync watch`` to republish its own columns as a push would show them."""
        with self._locked():
            manifest, info, scanned = self._refresh()
            if self.config.backend == "google":
                self._publish_images(manifest)  # appended rows link to published images
            table, sheet_layout, source, _ = self._review(manifest, info, scanned, None)
            return table, sheet_layout, info, source

    def rescan(self) -> VersionInfo:
        """Scan the folders now (``sheetsync watch``, when they changed): a version is recorded
        when images were added, removed or moved outside sheetsync."""
        with self._locked():
            _, info, _ = self._refresh()
            return info

    def published_followed(self, cells: pd.DataFrame) -> None:
        """The sheet now shows ``cells`` (index = id; label, action, note) for rows that
        followed their source (:meth:`Backend.update_followed`): the next merge's base."""
        with self._locked():
            published = self.store.read_published()
            if published is None:
                return
            shown = published.set_index("id", drop=False)
            ids = [i for i in cells.index if i in shown.index]
            for name in cells.columns:
                if name in shown.columns:
                    shown.loc[ids, name] = cells.loc[ids, name].astype(str)
            info = self.versions.latest()
            self.store.save_published(shown.reset_index(drop=True).fillna("").astype(str),
                                      info.version if info else 0, self.backend.describe())

    def published_own_columns(self, updates: pd.DataFrame, appended: pd.DataFrame) -> None:
        """What a republish wrote joins what was last published: the read-only cells of
        existing rows (the pull's row check compares them) and whole appended rows."""
        with self._locked():
            published = self.store.read_published()
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
            info = self.versions.latest()
            self.store.save_published(out.fillna("").astype(str), info.version if info else 0,
                                      self.backend.describe())

    def _judged(self, stored: Any) -> pd.DataFrame | None:
        """The manifest whose labels the order was computed from: the predictions' version
        (the first version without predictions); a relabel or drop since then is a problem
        found."""
        if stored is not None:
            return self.versions.load(stored.version)
        first = self.versions.list()
        return self.versions.load(first[0].version) if first else None

    def _judged_signals(self, items: pd.DataFrame, judged: pd.DataFrame | None,
                        stored: Any, signals: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
        """The review signals under the labels the fold models judged (what a problem looked
        like before people fixed it: the re-rank learns from those), and the fold spaces."""
        from .inputs import fold_runs

        runs = fold_runs(self.store.oos_dir, stored, items) if stored is not None else None
        spaces = [(r.embeddings, r.fold) for r in runs or []]
        if judged is None or stored is None:
            return signals, spaces
        then = judged.set_index(judged["id"].astype(str))["label"].astype(str)
        old = items["id"].map(then).fillna(items["label"])
        if (old == items["label"]).all():
            return signals, spaces
        found, _ = review_inputs(items.assign(label=old), self.config.classes, stored,
                                 stored.version, oos_dir=self.store.oos_dir)
        return found, spaces

    def _pending_edits(self, sheet: pd.DataFrame | None, published: pd.DataFrame | None) -> list[str]:
        if sheet is None or not len(sheet):
            return []
        if published is None:
            return [f"the sheet at {self.backend.describe()} already holds {len(sheet)} rows "
                    f"that this project never pushed"]
        return unpulled_edits(sheet, published)

    def _save_published(self, table: pd.DataFrame, info: VersionInfo) -> None:
        cols = ["id", *EDITABLE, *[c for c in table.columns if c in extra_columns(table)],
                *published_columns(table.columns)]  # read-only cells, for the row check
        self.store.save_published(table[cols].astype(str), info.version, self.backend.describe())

    def _url_for(self, path: str) -> str:
        return safe_join(self.config.root, path).as_uri()

    def _url_builder(self, manifest: pd.DataFrame) -> Callable[[str], str]:
        """path -> URL: a file link for the workbook; for Google the image's published URL (a
        file:// link is useless, and leaks local paths, in a shared sheet)."""
        if self.config.backend != "google":
            return self._url_for
        from .publish import url_builder

        return url_builder(manifest, self.config.publish, self.config.google.image_url_template)

    # ---- publish ---------------------------------------------------------------------------

    @property
    def storage(self) -> Bucket:
        """The ``[publish]`` bucket, signed in with the same credentials as the sheet."""
        if self._storage is None:
            from ._gcs import Bucket, storage_credentials

            pub = self.config.publish
            creds, account = storage_credentials(self.config.google, self.config.resolve)
            self._storage = Bucket(pub.bucket, creds, account=account, endpoint=pub.endpoint,
                                   timeout=self.config.google.timeout,
                                   max_retries=pub.max_retries, workers=pub.workers)
        return self._storage

    def _publish_images(self, manifest: pd.DataFrame, verify: bool = False) -> PublishResult | None:
        """Upload what the bucket lacks (None: no bucket, the URL template only)."""
        from .publish import UploadRecord, check_settings, publish_images

        pub, template = self.config.publish, self.config.google.image_url_template
        check_settings(pub, template)
        if not pub.bucket:
            return None
        return publish_images(manifest, self.config.root, pub, self.storage,
                              UploadRecord(self.store.uploaded_path), template=template,
                              progress=self.progress, verify=verify)

    def publish(self) -> PublishResult:
        """Upload the images of the current version without writing the sheet; the bucket is
        listed rather than trusting the local record, so objects deleted there come back."""
        if not self.config.publish.bucket:
            raise ConfigError("[publish] bucket is not set in sheetsync.toml (template only)")
        with self._locked():
            manifest, _, _ = self._refresh()
            result = self._publish_images(manifest, verify=True)
            assert result is not None
            result.recovered, result.skipped = self.recovered, self.skipped
            return result

    def prune_plan(self) -> PrunePlan:
        """The objects ``publish --prune`` would delete: those no recorded version references."""
        from .publish import plan_prune

        pub = self.config.publish
        if not pub.bucket:
            raise ConfigError("[publish] bucket is not set in sheetsync.toml: nothing to prune")
        with self._locked():
            manifests = [self.versions.load(v.version) for v in self.versions.list()]
            prefix = pub.prefix.strip("/")
            listing = self.storage.list(f"{prefix}/" if prefix else "")
            return plan_prune(manifests, listing, pub, pub.bucket)

    def prune(self, plan: PrunePlan) -> int:
        """Delete what :meth:`prune_plan` listed (after the caller showed it and had it confirmed)."""
        from .publish import UploadRecord, prune

        with self._locked():
            return prune(self.storage, plan, UploadRecord(self.store.uploaded_path))

    def _review_order(self, signals: pd.DataFrame, manifest: pd.DataFrame, order: str | None,
                      answers: pd.Series | None = None,
                      judged: Callable[[], tuple[pd.DataFrame, list[Any]]] | None = None) -> list[str]:
        """Ids in push order: the rows nobody checked first (with the default order, as the
        re-rank learned it from the checked rows' ``answers``), the checked ones after them,
        derived images last."""
        from .augment import derived_last
        from .review import review_order

        name = order or self.config.review.order
        checked = set(answers.index) if answers is not None else set()
        if name == "combined" and checked and judged is not None:
            ranking, spaces = judged()
            ids = list(rerank(ranking, answers, spaces).order) if answers is not None else []
            ids += [i for i in signals.index.astype(str) if i not in set(ids)]
        else:
            paths = manifest.set_index("id")["path"].astype(str)
            fixed = list(review_order(signals, name, seed=self.config.train.seed, paths=paths))
            ids = [i for i in fixed if i not in checked] + [i for i in fixed if i in checked]
        return derived_last(ids, manifest)

    # ---- pull ------------------------------------------------------------------------------

    def pull(self, *, dry_run: bool = False, sheet: pd.DataFrame | None = None,
             hold_invalid: bool = False) -> PullResult:
        """``sheet``: a read already taken (the watcher's); ``hold_invalid``: apply the valid
        rows and hold back rows with problems (``result.held``) instead of refusing."""
        with self._locked():
            manifest, info, _ = self._refresh()
            sheet = self.backend.read_table() if sheet is None else sheet
            if sheet is None:
                raise BackendError(f"nothing to pull: {self.backend.describe()} has no data sheet "
                                   f"(run `sheetsync push` first)")
            published = self.store.read_published()
            plan, held = self._plan_pull(sheet, manifest, published, hold_invalid)
            if plan.problems:
                raise SheetValidationError(plan.problems)
            assert plan.changes is not None and plan.new_manifest is not None
            result = PullResult(info, len(plan.edited), plan.changes, plan.moves, dry_run,
                                recovered=self.recovered, skipped=self.skipped,
                                notices=plan.warnings, followed=plan.followed)
            result.held = held
            if not plan.edited or dry_run:
                result.usage = "" if plan.edited else self._usage()
                return result
            result.version = self._carry_out(plan.moves, plan.new_manifest,
                                             f"pull: {len(plan.edited)} row(s) edited", plan.shown)
            result.usage = self._usage()
            return result

    def _plan_pull(self, sheet: pd.DataFrame, manifest: pd.DataFrame,
                   published: pd.DataFrame | None,
                   hold_invalid: bool) -> tuple[PullPlan, list[Problem]]:
        """The pull's plan; with ``hold_invalid``, the plan of the rows without problems and the
        problems of the rows held back."""
        known = set(published["id"]) if published is not None else set()

        def plan_of(rows: pd.DataFrame) -> PullPlan:
            return plan_pull(rows, manifest, published, self.config.classes, self.config.splits,
                             known, exists=self._exists, derived=self._derived_table(manifest))

        plan = plan_of(sheet)
        if not (plan.problems and hold_invalid and all(p.row and p.row > 1 for p in plan.problems)):
            return plan, []
        # Rows with a problem wait for a fix; the other rows' edits go through.
        held = plan.problems
        plan = plan_of(sheet.drop(index=sorted({p.row for p in held if p.row}), errors="ignore"))
        # Held rows are not "images without a row": that warning would mislead.
        plan.warnings = [w for w in plan.warnings if "have no row" not in w]
        return plan, held

    def _derived_table(self, manifest: pd.DataFrame) -> ClassTable | None:
        """The augment class table when the manifest has derived rows (they follow their source)."""
        if "source_id" not in manifest.columns or not (manifest["source_id"].astype(str) != "").any():
            return None  # nothing derived: the table does not matter
        from .augment import class_table

        return class_table(self.config.augment.transforms, self.config.classes)

    # ---- train and predict -----------------------------------------------------------------

    def train(self, *, epochs: int | None = None, seed: int | None = None,
              precision: str | None = None, jit_compile: bool | None = None,
              on_epoch: Any = None, on_decode: Any = None,
              on_first_epoch: Any = None, repeats: int = 1) -> TrainOutcome:
        from . import train as training

        with self._locked():
            manifest, info, scanned = self._refresh()
            items = self._items(manifest, scanned)
            tr, va = train_val(items)
            test = test_items(self.config.test_dir, self.config.classes, self.store.test_hash_cache())
            cfg, weights = self.config.train, self.store.weights_path(info.version)
            settings: dict[str, Any] = {
                "epochs": epochs or cfg.epochs, "batch_size": cfg.batch_size,
                "precision": precision or cfg.precision,
                "jit_compile": cfg.jit_compile if jit_compile is None else jit_compile}
            result = training.train_model(
                tr, va, self.config.classes, weights_path=weights, test=test,
                seed=cfg.seed if seed is None else seed, cache_dir=self.store.decode_cache,
                progress=on_epoch, decode_progress=on_decode, on_first_epoch=on_first_epoch,
                **settings)
            emb_map, probs = self._predict_in_sample(weights, items, info)
            row = {**score_row(info, items, tr, va, test, result, derived_count(manifest, tr)),
                   **self._score_intervals(info.version, items, probs, test, weights),
                   **self._repeat_runs(repeats, tr, va, test, result, settings)}
            self.scores.append(row)
            outcome = TrainOutcome(info, row, test is not None, None, recovered=self.recovered,
                                   skipped=self.skipped, excluded=sorted(scanned.images.unusable))
            self._publish_score(outcome)
            chart = self.chart()
            outcome.charts = [chart, *([emb_map] if emb_map else [])] if chart else []
            return outcome

    def _score_intervals(self, version: int, items: pd.DataFrame, probs: Any,
                         test: pd.DataFrame | None, weights: Path) -> dict[str, object]:
        """Bootstrap intervals of val and test accuracy under the best weights; the test
        predictions are kept for the report."""
        from . import train as training

        classes = list(self.config.classes)
        test_pred = None
        if test is not None:
            tp = training.predict(weights, test.assign(id=test["file"]), classes,
                                  cache_dir=self.store.decode_cache)
            test_pred = test_predictions(test, tp.probs, classes, self.config.root)
            self.store.save_test_predictions(version, test_pred)
        return score_intervals(items, probs, classes, test_pred)

    def _repeat_runs(self, repeats: int, tr: pd.DataFrame, va: pd.DataFrame,
                     test: pd.DataFrame | None, first: Any, settings: dict[str, Any]) -> dict[str, object]:
        """``train --repeats N``: N-1 more seeds; the spread of their scores (score row)."""
        if repeats <= 1:
            return {}
        from . import train as training

        runs = [first]
        with self.store.scratch() as tmp:
            for k in range(1, repeats):
                runs.append(training.train_model(
                    tr, va, self.config.classes, weights_path=tmp / f"repeat{k}.weights.h5",
                    test=test, seed=first.seed + k, cache_dir=self.store.decode_cache, **settings))
        return repeat_fields(runs, test is not None)

    def _predict_in_sample(self, weights: Path, items: pd.DataFrame,
                           info: VersionInfo) -> tuple[Path | None, Any]:
        """Predictions of the model just trained (push's fallback), its embedding map and the
        probabilities."""
        from . import train as training

        classes = list(self.config.classes)
        pred = training.predict(weights, items, classes, cache_dir=self.store.decode_cache)
        self.store.save_predictions(info.version, "insample", list(items["id"]), classes,
                                    pred.probs, pred.embeddings, class_distances(items, pred, classes))
        return (embedding_map(items, pred, classes, info, self.store.embedding_chart(info.version)),
                pred.probs)

    def _publish_score(self, outcome: TrainOutcome) -> None:
        try:
            self.backend.append_score(outcome.score)
        except BackendError as e:
            outcome.sheet_error = str(e)
            return
        outcome.sheet = self.backend.describe()
        outcome.usage = self._usage()

    def predict(self, *, folds: int | None = None, epochs: int | None = None,
                fold_seeds: int | None = None, on_fold: Say | None = None) -> PredictResult:
        """Out-of-sample probabilities for every kept train/val image (k-fold, once per fold
        seed)."""
        from .review import fold_seeds as seeds_for
        from .review import out_of_sample_runs, snapshot_epochs, stored_view

        with self._locked():
            manifest, info, scanned = self._refresh()
            items = self._items(manifest, scanned)
            keep = items[(items["action"] == "keep") & items["split"].isin(["train", "val"])]
            cfg, train_cfg = self.config.review, self.config.train
            folds, epochs, runs_wanted = folds or cfg.folds, epochs or cfg.epochs, fold_seeds or cfg.fold_seeds
            _check_whole("fold_seeds", runs_wanted, 1)
            workers = _check_whole("fold_workers", cfg.fold_workers, 0, " (0: one per CPU core)")
            runs = out_of_sample_runs(
                keep.reset_index(drop=True), self.config.classes, folds=folds, epochs=epochs,
                seeds=seeds_for(train_cfg.seed, runs_wanted), work_dir=self.store.oos_dir,
                cache_dir=self.store.decode_cache, progress=on_fold,
                batch_size=train_cfg.batch_size, precision=train_cfg.precision,
                jit_compile=train_cfg.jit_compile, augment=cfg.augment,
                snapshots=snapshot_epochs(epochs) if cfg.snapshots else (),
                workers=workers or None)
            ids, probs, emb, distance = stored_view(runs)
            self.store.save_predictions(info.version, "oos", ids, list(self.config.classes),
                                        probs, emb, distance)
            return PredictResult(info, len(ids), folds, epochs, seeds=len(runs), recovered=self.recovered,
                                 skipped=self.skipped, excluded=sorted(scanned.images.unusable))

    # ---- augment ---------------------------------------------------------------------------

    def augment(self, *, budget: int | None = None, seed: int | None = None,
                dry_run: bool = False, splits: list[str] | None = None,
                families: list[str] | None = None,
                on_plan: Callable[[AugmentPlan], None] | None = None) -> AugmentResult:
        """Derived images up to the budget (sheetsync.augment), committed as one journal batch."""
        import time

        from . import augment as ag

        started = time.perf_counter()
        with self._locked():
            manifest, info, scanned = self._refresh()
            history = [self.versions.load(v.version) for v in self.versions.list()]
            run = ag.prepare(self.config, manifest, history, budget=budget, seed=seed,
                             splits=splits, families=families,
                             priorities=self._augment_priorities(manifest, info, scanned))
            result = AugmentResult(info, run.plan, dry_run, recovered=self.recovered,
                                   skipped=self.skipped)
            if on_plan is not None:
                on_plan(run.plan)
            if dry_run or (not run.plan.variants and not len(run.lost)):
                return result
            self._augment_files(manifest, run, result)
            result.seconds = time.perf_counter() - started
            return result

    def _augment_files(self, manifest: pd.DataFrame, run: Prepared, result: AugmentResult) -> None:
        """Write the planned images into the staging folder, then one commit (sheetsync.journal)."""
        from . import augment as ag

        root = self.config.root
        staging = jr.staging_folder(root)  # validated before anything is written there
        try:
            files, result.unbuilt = ag.stage_all(root, staging / ag.NEW_FILES, run.plan, run.lost,
                                                 run.pixels, set(manifest["id"].astype(str)))
            moves, new_manifest = ag.plan_commit(manifest, files, self._exists)
            lost = set(run.lost["id"].astype(str)) if len(run.lost) else set()
            result.rebuilt = sum(1 for f in files if f.row["id"] in lost)
            result.written = len(files) - result.rebuilt
            result.version = self._carry_out(
                moves, new_manifest, f"augment: {result.written} derived, {result.rebuilt} rebuilt")
        finally:
            if not self._journal.pending:
                ag.discard_staged(staging)  # committed (already moved) or refused: nothing left

    def _augment_priorities(self, manifest: pd.DataFrame, info: VersionInfo,
                            scanned: ScanResult) -> Priorities:
        """What the sources weigh (sheetsync.augment.priorities_from) and which images are
        never sources (sheetsync.augment.unfit_sources), from the rows as push shows them."""
        from . import augment as ag

        found = self.store.latest_predictions(info.version)
        signals, _ = review_inputs(self._items(manifest, scanned), self.config.classes, found,
                                   info.version, oos_dir=self.store.oos_dir)
        model = model_behind(found, manifest, info.version, self.scores.read(), self.store.oos_dir)
        signals = gated_suggestions(signals, model)
        paths = manifest.set_index("path")["id"].astype(str)
        unreadable = [paths[p] for p in scanned.images.unusable if p in paths.index]
        excluded = ag.unfit_sources(signals, unreadable, model_doubts=not model.weak)
        if found is None:
            return ag.Priorities(excluded=excluded)
        if model.weak:
            # A near-chance model's margins and class accuracies are noise.
            return ag.Priorities(kind=found.kind, version=found.version, excluded=excluded,
                                 uniform=f"the model is too weak ({model.weak})")
        emb = self.store.read_embeddings(found.version, found.kind)
        prio = ag.priorities_from(manifest, self.config.classes, found.probs, found.distance, emb,
                                  found.kind, found.version)
        return replace(prio, excluded=excluded)

    # ---- report ----------------------------------------------------------------------------

    def report(self, *, out: Path | None = None, max_points: int | None = None,
               on_step: Callable[[ReportStep], None] | None = None) -> ReportResult:
        """`sheetsync report`: the HTML page of :mod:`sheetsync.report`; ``on_step`` hears of
        each long step (:class:`sheetsync.report.ReportStep`)."""
        from .report import MAX_POINTS, build_report, require_extra

        require_extra()  # before the lock and the scan: a missing extra is a one-line answer
        with self._locked():
            manifest, info, _ = self._refresh()
            result = build_report(self, manifest, info, out=out,
                                  max_points=max_points or MAX_POINTS, on_step=on_step)
            result.recovered, result.skipped = self.recovered, self.skipped
            return result

    # ---- status, log, diff, checkout, scores -----------------------------------------------

    def status(self, *, check_sheet: bool = True) -> StatusResult:
        with self._locked():
            manifest, info, _ = self._refresh()
            result = StatusResult(self.config.root, info, len(manifest),
                                  counts_table(manifest, self.config.classes, self.config.splits),
                                  recovered=self.recovered, skipped=self.skipped)
            answers = answers_of(manifest, self._judged(self.store.latest_predictions(info.version)))
            result.checked, result.checked_problems = len(answers), int(answers.sum())
            if check_sheet:
                self._sheet_status(result)
            scores = self.scores.read()
            if len(scores):
                result.last_score = dict(scores.iloc[-1])
            return result

    def _sheet_status(self, result: StatusResult) -> None:
        try:
            sheet = self.backend.read_table()
        except BackendError as e:
            result.sheet_error = str(e)
            return
        result.sheet = self.backend.describe()
        result.pushed = sheet is not None
        if sheet is not None:
            result.pending = self._pending_edits(sheet, self.store.read_published())

    def log(self) -> pd.DataFrame:
        versions = pd.DataFrame([{"version": v.version, "time": v.time, "message": v.message,
                                  **v.counts} for v in self.versions.list()])
        scores = self.scores.read()
        if len(versions) and len(scores):
            best = scores.assign(version=scores["version"].astype(int)).groupby("version").last()
            versions = versions.join(best[["best_val_accuracy", "test_accuracy"]], on="version")
        return versions.fillna("")

    def diff(self, a: str, b: str = "latest") -> pd.DataFrame:
        return diff_manifests(self.versions.load(a), self.versions.load(b))

    def checkout(self, ref: str) -> CheckoutResult:
        """Put every image back where version ``ref`` had it; records that as a new version."""
        with self._locked():
            manifest, info, _ = self._refresh()
            target = self.versions.parse(ref)
            plan = plan_checkout(manifest, self.versions.load(target), exists=self._exists)
            result = CheckoutResult(target, info, len(plan.moves), len(plan.gone),
                                    recovered=self.recovered, skipped=self.skipped)
            if plan.moves or len(plan.changes):
                result.version = self._carry_out(plan.moves, plan.new_manifest, f"checkout v{target}")
            return result

    def chart(self) -> Path | None:
        """Redraw the score chart; its path (None when there is nothing to draw)."""
        from ._pngcharts import scores_chart

        return scores_chart(self.scores.read(), self.store.scores_chart)

    def score_table(self) -> ScoresResult:
        table = self.scores.read()
        return ScoresResult(table, self.chart() if len(table) else None)

    def backup_workbook(self) -> Path | None:
        """Copy of a local workbook file (used before a forced push)."""
        if self.config.backend != "local":
            return None
        src = self.config.resolve(self.config.local.path)
        return self.store.backup_file(src) if src.exists() else None


def _unpulled(edits: list[str]) -> UnpulledEditsError:
    return UnpulledEditsError(
        f"the sheet has {len(edits)} edit(s) that were never pulled, e.g.:\n  "
        + "\n  ".join(edits[:10])
        + "\nrun `sheetsync pull` first, or `sheetsync push --force` to overwrite "
          "them (the sheet is backed up first)")


def _new_config(root: Path, project_dir: Path, backend: str, classes: list[str] | None,
                splits: list[str] | None, test_dir: str | None, force: bool) -> Config:
    """The configuration ``init`` writes, from the folders found and the options given."""
    if (project_dir / CONFIG_NAME).exists() and not force:
        raise ConfigError(f"{project_dir / CONFIG_NAME} exists already (use --force to redo it)")
    found_splits, found_classes, found_test = detect_layout(root)
    raw: dict[str, Any] = {
        "root": os.path.relpath(root, project_dir) if root.is_relative_to(project_dir) else str(root),
        "backend": backend,
        "classes": classes or found_classes,
        "splits": splits or found_splits,
    }
    test = test_dir if test_dir is not None else found_test
    if test:
        raw["test_dir"] = test
    from .augment import default_table

    raw["augment"] = {"transforms": default_table(raw["classes"])}
    config = Config.from_dict(raw, project_dir)
    missing = set(found_classes) - set(config.classes)
    if missing:
        raise ConfigError(f"folders {sorted(missing)} are not among --classes")
    project_dir.mkdir(parents=True, exist_ok=True)
    return config


__all__ = ["Project", "Report", "counts_table", "order_classes", "counts_of"]


def _check_whole(key: str, value: object, least: int, hint: str = "") -> int:
    """A ``[review]`` count as a whole number >= ``least``, or a ConfigError naming the key."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"[review] {key} must be a whole number >= {least}{hint}, not {value!r}")
    return value
