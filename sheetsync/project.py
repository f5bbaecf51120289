"""A sheetsync project: the dataset folder, its versions, the sheet and the model, in step.

This is the library behind every CLI command; each public method is one command and returns a
typed result (:mod:`sheetsync.results`)::

    project, _ = Project.init(Path("data"))    # writes sheetsync.toml, records v1
    project.train(epochs=3)                     # score row for v1
    project.push()                              # rows, most-likely-wrong first
    project.pull()                              # validated edits -> v2 + folders rearranged

`Project` is a façade: it holds the project's state (configuration, state folder, versions,
backend) and the steps every command shares (the lock, the scan, one journalled commit); each
command's job lives in the module named for it: :mod:`sheetsync.push`, :mod:`sheetsync.pull`,
:mod:`sheetsync.status`, :mod:`sheetsync.scores` (``train`` and ``scores``),
:mod:`sheetsync.predict`, :mod:`sheetsync.augment_run`, :mod:`sheetsync.publish`,
:mod:`sheetsync.report`. The words people read are the CLI's (:mod:`sheetsync._words`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import augment, augment_run, publish
from . import journal as jr
from . import predict as predicting
from . import pull as pulling
from . import push as pushing
from . import report as reporting
from . import scores as scoring
from . import status as statusing
from ._imagecheck import check_images
from ._itemprogress import Progress, tqdm_progress
from .config import CONFIG_NAME, Config
from .dataset import ScanResult, SkippedFile, detect_layout, order_classes, safe_join, scan
from .errors import ConfigError
from .inputs import counts_table, items_of, usable
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
from .sheets import Backend, SheetLayout, open_backend
from .store import StateStore
from .sync import plan_checkout
from .versions import VersionInfo, counts_of
from .watch import refuse_if_watched

if TYPE_CHECKING:
    from ._gcs import Bucket
    from ._workers import Say
    from .augment import AugmentPlan
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
        with project.locked():
            manifest, info, scanned = project.refresh()
        test = config.test_dir.name if config.test_dir else None
        return project, InitResult(config.path, config.root, len(manifest), list(config.classes),
                                   list(config.splits), test, info, skipped=project.skipped,
                                   unreadable=scanned.images.unusable)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.config)
        return self._backend

    @property
    def storage(self) -> Bucket:
        """The ``[publish]`` bucket, signed in with the same credentials as the sheet."""
        if self._storage is None:
            self._storage = publish.open_bucket(self.config)
        return self._storage

    # ---- the steps every command shares ----------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One sheetsync command at a time per project; finishes interrupted moves first."""
        refuse_if_watched(self.store.watch_lock)
        with self.store.lock():
            self.recovered = jr.recover(self.journal, self._record)
            yield

    @property
    def journal(self) -> jr.Journal:
        return jr.Journal(self.store.journal_path, self.config.root)

    def _record(self, commit: jr.Commit) -> VersionInfo:
        return self.versions.commit(commit.version, commit.message)

    def carry_out(self, moves: list[jr.Move], manifest: pd.DataFrame, message: str,
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

        return jr.carry_out(self.journal, moves, jr.Commit(version, message, tuple(files)), stage,
                            self._record, progress=lambda ms: self.progress(ms, "moving", len(moves)))

    def refresh(self) -> tuple[pd.DataFrame, VersionInfo, ScanResult]:
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

    def usable_items(self, manifest: pd.DataFrame, scanned: ScanResult) -> pd.DataFrame:
        """The images training, prediction and review read: not the files the model cannot."""
        return usable(items_of(manifest, self.config.root), manifest, scanned.images.unusable)

    def exists(self, rel: str) -> bool:
        # lexists: a dangling link holds the name too (a move there would be refused).
        return os.path.lexists(safe_join(self.config.root, rel))

    def usage(self, *, wrote: bool = False) -> str:
        # The workbook's usage line describes its last write; only an online backend counts
        # reads too, so for the workbook it is shown only after a write.
        if self.backend.name == "local" and not wrote:
            return ""
        return self.backend.usage() or ""

    # ---- the commands (each job in its own module) -----------------------------------------

    def push(self, *, force: bool = False, order: str | None = None) -> PushResult:
        return pushing.push(self, force=force, order=order)

    def review_table(self) -> tuple[pd.DataFrame, SheetLayout, VersionInfo, PredictionSource]:
        """The rows a push would write now (:func:`sheetsync.push.review_table`)."""
        return pushing.review_table(self)

    def rescan(self) -> VersionInfo:
        """Scan the folders now (``sheetsync watch``, when they changed): a version is recorded
        when images were added, removed or moved outside sheetsync."""
        with self.locked():
            _, info, _ = self.refresh()
            return info

    def published_followed(self, cells: pd.DataFrame) -> None:
        """The sheet now shows ``cells`` (:func:`sheetsync.push.published_followed`)."""
        pushing.published_followed(self, cells)

    def published_own_columns(self, updates: pd.DataFrame, appended: pd.DataFrame) -> None:
        """What a republish wrote (:func:`sheetsync.push.published_own_columns`)."""
        pushing.published_own_columns(self, updates, appended)

    def publish(self) -> PublishResult:
        return publish.publish_current(self)

    def prune_plan(self) -> PrunePlan:
        return publish.prune_plan_of(self)

    def prune(self, plan: PrunePlan) -> int:
        return publish.prune_listed(self, plan)

    def pull(self, *, dry_run: bool = False, sheet: pd.DataFrame | None = None,
             hold_invalid: bool = False) -> PullResult:
        return pulling.pull(self, dry_run=dry_run, sheet=sheet, hold_invalid=hold_invalid)

    def train(self, *, epochs: int | None = None, seed: int | None = None,
              precision: str | None = None, jit_compile: bool | None = None,
              on_epoch: Any = None, on_decode: Any = None,
              on_first_epoch: Any = None, repeats: int = 1) -> TrainOutcome:
        return scoring.train(self, epochs=epochs, seed=seed, precision=precision,
                             jit_compile=jit_compile, on_epoch=on_epoch, on_decode=on_decode,
                             on_first_epoch=on_first_epoch, repeats=repeats)

    def predict(self, *, folds: int | None = None, epochs: int | None = None,
                fold_seeds: int | None = None, from_scratch: bool = False,
                on_fold: Say | None = None) -> PredictResult:
        return predicting.predict(self, folds=folds, epochs=epochs, fold_seeds=fold_seeds,
                                  from_scratch=from_scratch, on_fold=on_fold)

    def augment(self, *, budget: int | None = None, seed: int | None = None,
                dry_run: bool = False, splits: list[str] | None = None,
                families: list[str] | None = None,
                on_plan: Callable[[AugmentPlan], None] | None = None) -> AugmentResult:
        return augment_run.augment_project(self, budget=budget, seed=seed, dry_run=dry_run,
                                       splits=splits, families=families, on_plan=on_plan)

    def report(self, *, out: Path | None = None, max_points: int | None = None,
               on_step: Callable[[ReportStep], None] | None = None) -> ReportResult:
        return reporting.report(self, out=out, max_points=max_points, on_step=on_step)

    def status(self, *, check_sheet: bool = True) -> StatusResult:
        return statusing.status(self, check_sheet=check_sheet)

    def log(self) -> pd.DataFrame:
        return statusing.log(self)

    def diff(self, a: str, b: str = "latest") -> pd.DataFrame:
        return statusing.diff(self, a, b)

    def checkout(self, ref: str) -> CheckoutResult:
        """Put every image back where version ``ref`` had it; records that as a new version."""
        with self.locked():
            manifest, info, _ = self.refresh()
            target = self.versions.parse(ref)
            plan = plan_checkout(manifest, self.versions.load(target), exists=self.exists)
            result = CheckoutResult(target, info, len(plan.moves), len(plan.gone),
                                    recovered=self.recovered, skipped=self.skipped)
            if plan.moves or len(plan.changes):
                result.version = self.carry_out(plan.moves, plan.new_manifest, f"checkout v{target}")
            return result

    def chart(self) -> Path | None:
        """Redraw the score chart; its path (None when there is nothing to draw)."""
        return scoring.chart(self)

    def score_table(self) -> ScoresResult:
        return scoring.score_table(self)

    def backup_workbook(self) -> Path | None:
        """Copy of a local workbook file (used before a forced push)."""
        if self.config.backend != "local":
            return None
        src = self.config.resolve(self.config.local.path)
        return self.store.backup_file(src) if src.exists() else None


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
    raw["augment"] = {"transforms": augment.default_table(raw["classes"])}
    config = Config.from_dict(raw, project_dir)
    missing = set(found_classes) - set(config.classes)
    if missing:
        raise ConfigError(f"folders {sorted(missing)} are not among --classes")
    project_dir.mkdir(parents=True, exist_ok=True)
    return config


__all__ = ["Project", "Report", "counts_table", "order_classes", "counts_of"]
