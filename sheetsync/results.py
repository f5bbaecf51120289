"""What each library call returns: typed results, no English.

The words people read are made by the command line's own module, :mod:`sheetsync._words`
(one formatter per result type); this module knows nothing of them::

    result = Project.open(".").pull()
    result.version, result.moves, result.changes   # for programs
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._reviewsheet import ModelInfo, PushSummary
from .dataset import SkippedFile
from .errors import Problem
from .journal import Move, Recovery
from .versions import VersionInfo

if TYPE_CHECKING:
    from ._coverage import Coverage
    from ._summary import Finding
    from .augment import AugmentPlan, Followed, Unbuilt


@dataclass
class Result:
    """Shared by every result: what recovery did first, the files the scan left out, and
    warnings other modules worded."""

    recovered: Recovery | None = field(default=None, kw_only=True)
    skipped: list[SkippedFile] = field(default_factory=list, kw_only=True)
    notices: list[str] = field(default_factory=list, kw_only=True)


@dataclass
class InitResult(Result):
    config_path: Path
    root: Path
    images: int
    classes: list[str]
    splits: list[str]
    test_dir: str | None
    version: VersionInfo | None
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why the model cannot read it


@dataclass(frozen=True)
class PredictionSource:
    """Where push's review signals come from: ``kind`` "oos"/"insample", or None (no model)."""

    kind: str | None
    version: int | None
    current: int  # the version the rows are of

    @property
    def stale(self) -> bool:
        return self.version is not None and self.version != self.current


@dataclass
class PublishResult(Result):
    """What publishing the images did (sheetsync.publish); ``requests``/``bytes_sent`` are
    Cloud Storage traffic."""

    bucket: str
    objects: int  # distinct objects the manifest needs
    uploaded: int  # uploads that created an object
    already: int  # in the bucket before (by the record or the listing)
    bytes_sent: int
    requests: int
    listed: bool  # the bucket was listed (the record did not cover everything)
    checked_url: str | None  # the URL fetched anonymously, if any
    seconds: float


@dataclass(frozen=True)
class PrunePlan:
    """Objects under the prefix that no recorded version references."""

    bucket: str
    prefix: str
    listed: int
    unreferenced: tuple[str, ...]
    bytes: int


@dataclass
class PushResult(Result):
    rows: int
    version: VersionInfo
    sheet: str  # the backend, described
    predictions: PredictionSource
    sheet_backup: Path | None = None  # the sheet's content, saved before a forced push
    workbook_backup: Path | None = None
    usage: str = ""
    images: PublishResult | None = None  # the images published before the sheet was written
    model: ModelInfo | None = None  # the model behind the review columns (also in the info line)
    summary: PushSummary | None = None  # counts over the pushed rows (also in the info line)


@dataclass
class PullResult(Result):
    base: VersionInfo  # the version the sheet was merged into
    edited: int  # rows with at least one changed cell
    changes: pd.DataFrame
    moves: list[Move]
    dry_run: bool = False
    version: VersionInfo | None = None  # recorded by the pull (None: nothing to pull, dry run)
    usage: str = ""
    held: list[Problem] = field(default_factory=list)  # rows held back (pull(hold_invalid=True))
    followed: list[Followed] = field(default_factory=list)  # derived rows that followed their source


@dataclass
class AugmentResult(Result):
    """What ``augment`` planned (``plan``: sheetsync.augment.AugmentPlan) and did."""

    base: VersionInfo
    plan: AugmentPlan
    dry_run: bool = False
    written: int = 0
    rebuilt: int = 0
    unbuilt: list[Unbuilt] = field(default_factory=list)  # derived images it could not make
    version: VersionInfo | None = None  # recorded (None: dry run, or nothing to add)
    seconds: float = 0.0


@dataclass
class TrainOutcome(Result):
    version: VersionInfo
    score: dict[str, Any]
    has_test: bool
    sheet: str | None  # where the score row went (None: local file only)
    sheet_error: str | None = None
    usage: str = ""
    charts: list[Path] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # unreadable files left out of training


@dataclass
class PredictResult(Result):
    version: VersionInfo
    images: int
    folds: int
    epochs: int
    excluded: list[str] = field(default_factory=list)  # unreadable files left out
    seeds: int = 1  # k-fold runs (fold seeds)
    fine_tuned: int = 0  # folds that started from the previous version's fold model
    warm_epochs: int = 0  # the epochs each of those fine-tuned
    reused: int = 0  # folds whose training rows were unchanged: their saved result


@dataclass
class StatusResult(Result):
    root: Path
    version: VersionInfo
    images: int
    counts: pd.DataFrame
    sheet: str | None = None  # None: not checked
    pushed: bool = False
    pending: list[str] = field(default_factory=list)  # unpulled edits, one line each
    sheet_error: str | None = None
    last_score: dict[str, Any] | None = None
    checked: int = 0  # rows people checked (ticked, relabelled or dropped; sheetsync.rerank)
    checked_problems: int = 0  # ... of which relabelled or dropped
    judged_version: int | None = None  # the version whose labels the checks count from


@dataclass
class CheckoutResult(Result):
    target: int
    base: VersionInfo
    moved: int
    gone: int  # images of the target version no longer on disk
    version: VersionInfo | None = None  # None: the folders already matched


@dataclass
class ScoresResult(Result):
    table: pd.DataFrame
    chart: Path | None


@dataclass
class WatchResult(Result):
    """What ``sheetsync watch`` did before it stopped."""

    cycles: int = 0
    pulls: int = 0
    trainings: int = 0
    republished: int = 0
    errors: int = 0
    last_error: str = ""
    abandoned_training: bool = False
    once: bool = False  # one cycle was asked for (``--once``)


@dataclass
class ReportResult(Result):
    """The page ``sheetsync report`` wrote (sheetsync.report)."""

    path: Path
    version: int  # the trained version whose embeddings are mapped
    n_images: int
    n_shown: int  # images drawn on the map (at most max_points)
    coverage: Coverage
    findings: list[Finding]
    seconds: float
    size_bytes: int
    map_csv: Path | None = None  # the map columns kept for the next push (None: not kept)
    # Why likely label errors (and, for a too-weak model, outliers) are not counted; "" when
    # they are (the push summary's words: sheetsync._reviewsheet.uncounted).
    uncounted: str = ""
    weak: bool = False
