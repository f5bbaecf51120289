"""The state folder (``.sheetsync/``): the one module that knows where each thing is kept.

No other module builds a path under the state folder; each asks the store. Layout::

    lock                          held (flock) while a command runs: one command at a time
    journal.json                  the move batch in progress (sheetsync.journal); absent when idle
    versions/, versions.json      dataset versions (sheetsync.versions.VersionStore)
    scores.csv, scores.png        score history and its chart
    published.csv, .json          what the last push wrote to the sheet (the base of a pull's merge)
    published.pending.csv         staged by a pull, committed once its files are in place
    predictions/vNNNN-KIND*.csv   probabilities, class distances and embeddings (.npz) per version
    predictions/vNNNN-test.csv    the test images' labels and predictions (train; the report)
    backups/                      the sheet's content (csv) and the workbook before a forced push
    models/vNNNN.weights.h5       trained weights per version
    cache/                        decoded image tensors by file hash (sheetsync.decode)
    oos/                          cross-validation work folder (resumable folds)
    hashes.json, hashes-test.json file hash caches of the dataset and of the test folder
    imagecheck.json               what each image is to the model, by file hash (sheetsync._imagecheck)
    thumbnails.zip                the workbook's thumbnails by file hash and size, as the last push
                                  showed them (sheetsync.sheets._thumbcache)
    pixels.npz, pixels.pairs.npz  picture measures, duplicate thumbnails and near-duplicate pairs
                                  by file hash (sheetsync._pixelcache)
    charts/                       embedding maps
    watch.lock                    held (flock, with its pid) while `sheetsync watch` runs
    watch-state.json              the watcher's planner state (edits seen, quiet clock, held rows)
    watch-health.json             last cycle, counts, last error: for a supervisor
    uploaded.txt                  objects known to be in the [publish] bucket (sheetsync.publish)
    report/                       the report's UMAP cache and map-vNNNN.csv (the sheet's map columns)
    tmp-*/                        scratch folders of one command (train --repeats), removed after

Usage::

    store = StateStore(Path(".sheetsync"))
    with store.lock():
        published = store.read_published()
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import HashCache
from .errors import SheetsyncError
from .versions import ScoreHistory, VersionStore, now_iso, read_csv_text, write_csv_atomic

PREDICTION_KINDS = ("oos", "insample")


@dataclass(frozen=True)
class StoredPredictions:
    """The freshest predictions found: ``kind`` is "oos" or "insample"."""

    kind: str
    version: int
    probs: pd.DataFrame  # index id, columns classes
    distance: pd.DataFrame | None  # index id, columns classes


class StateStore:
    """Every file sheetsync keeps for a project, under one folder."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.journal_path = state_dir / "journal.json"
        self.published_path = state_dir / "published.csv"
        self.published_pending = state_dir / "published.pending.csv"
        self.scores_chart = state_dir / "scores.png"
        self.decode_cache = state_dir / "cache"
        self.oos_dir = state_dir / "oos"
        # sheetsync watch: its lock (held while it runs), planner state, health for supervisors
        self.watch_lock = state_dir / "watch.lock"
        self.watch_state = state_dir / "watch-state.json"
        self.watch_health = state_dir / "watch-health.json"
        self.uploaded_path = state_dir / "uploaded.txt"
        self.report_cache = state_dir / "report"  # UMAP coordinates by content (sheetsync.report)
        self.imagecheck_cache = state_dir / "imagecheck.json"
        self.thumbnail_cache = state_dir / "thumbnails.zip"
        self.pixel_cache = state_dir / "pixels.npz"

    # ---- the lock --------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One sheetsync command at a time per project (an advisory flock, freed on exit)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "lock").open("w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SheetsyncError("another sheetsync command is running on this project") from None
            yield

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A scratch folder inside the state folder, removed afterwards."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix="tmp-") as d:
            yield Path(d)

    # ---- versions, scores, hash caches -----------------------------------------------------

    def versions(self) -> VersionStore:
        return VersionStore(self.dir / "versions", self.dir / "versions.json")

    def scores(self) -> ScoreHistory:
        return ScoreHistory(self.dir / "scores.csv")

    def hash_cache(self) -> HashCache:
        return HashCache(self.dir / "hashes.json")

    def test_hash_cache(self) -> HashCache:
        return HashCache(self.dir / "hashes-test.json")

    def weights_path(self, version: int) -> Path:
        path = self.dir / "models" / f"v{version:04d}.weights.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def embedding_chart(self, version: int) -> Path:
        return self.dir / "charts" / f"embedding-v{version}.png"

    # ---- what the sheet shows --------------------------------------------------------------

    def read_published(self) -> pd.DataFrame | None:
        return read_csv_text(self.published_path) if self.published_path.exists() else None

    def save_published(self, shown: pd.DataFrame, version: int, sheet: str) -> None:
        write_csv_atomic(shown, self.published_path)
        (self.dir / "published.json").write_text(json.dumps(
            {"version": version, "time": now_iso(), "sheet": sheet}))

    def stage_published(self, shown: pd.DataFrame) -> Path:
        """Write what the sheet will show once a pull commits (see sheetsync.journal.Commit)."""
        write_csv_atomic(shown, self.published_pending)
        return self.published_pending

    # ---- backups ---------------------------------------------------------------------------

    def backup_sheet(self, sheet: pd.DataFrame) -> Path:
        path = self._backups() / f"sheet-{_stamp()}.csv"
        sheet.to_csv(path, index_label="sheet_row")
        return path

    def backup_file(self, src: Path) -> Path:
        dst = self._backups() / f"{src.stem}-{_stamp()}{src.suffix}"
        shutil.copy2(src, dst)
        return dst

    def _backups(self) -> Path:
        folder = self.dir / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # ---- predictions -----------------------------------------------------------------------

    def save_predictions(self, version: int, kind: str, ids: list[str], classes: list[str],
                         probs: np.ndarray, embeddings: np.ndarray | None,
                         distance: np.ndarray | None) -> Path:
        path = self._prediction_path(version, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        for values, target in ((distance, _distance_path(path)), (probs, path)):
            if values is not None:
                df = pd.DataFrame(values, columns=classes)
                df.insert(0, "id", ids)
                write_csv_atomic(df, target)
        if embeddings is not None:
            np.savez_compressed(path.with_suffix(".npz"), ids=np.asarray(ids, dtype=str),
                                embeddings=embeddings.astype(np.float32))
        return path

    def latest_predictions(self, upto: int) -> StoredPredictions | None:
        """The newest predictions for version ``upto`` or older; out-of-sample first."""
        for version in range(upto, 0, -1):
            for kind in PREDICTION_KINDS:
                path = self._prediction_path(version, kind)
                if path.exists():
                    dist = _distance_path(path)
                    return StoredPredictions(kind, version, _read_frame(path),
                                             _read_frame(dist) if dist.exists() else None)
        return None

    def read_predictions(self, version: int, kind: str) -> pd.DataFrame | None:
        """The probabilities ``kind`` of ``version`` (index id, columns classes), or None."""
        path = self._prediction_path(version, kind)
        return _read_frame(path) if path.exists() else None

    def embeddings_path(self, version: int) -> Path:
        """The embeddings (ids, embeddings) a ``train`` of ``version`` left."""
        return self._prediction_path(version, "insample").with_suffix(".npz")

    def read_embeddings(self, version: int, kind: str) -> pd.DataFrame | None:
        """The embeddings saved with the predictions ``kind`` of ``version`` (index id), or None."""
        path = self._prediction_path(version, kind).with_suffix(".npz")
        if not path.exists():
            return None
        with np.load(path) as d:
            return pd.DataFrame(d["embeddings"], index=d["ids"].astype(str))

    def trained_version(self, upto: int) -> int | None:
        """The latest version up to ``upto`` that a ``train`` left embeddings for."""
        return next((v for v in range(upto, 0, -1) if self.embeddings_path(v).exists()), None)

    def save_test_predictions(self, version: int, table: pd.DataFrame) -> Path:
        path = self._prediction_path(version, "test")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(table, path)
        return path

    def read_test_predictions(self, version: int) -> pd.DataFrame | None:
        """The test images' file, label and predicted of ``version``, or None."""
        path = self._prediction_path(version, "test")
        return pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None

    @property
    def predictions_dir(self) -> Path:
        """Every saved prediction file (copied whole by bench_augment)."""
        return self.dir / "predictions"

    def _prediction_path(self, version: int, kind: str) -> Path:
        return self.predictions_dir / f"v{version:04d}-{kind}.csv"

    # ---- the report's map ------------------------------------------------------------------

    def save_map(self, version: int, table: pd.DataFrame) -> Path:
        """``map-vNNNN.csv`` (id, map_x, map_y, cluster): the sheet's map columns."""
        path = self._map_path(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(table, path)
        return path

    def latest_map(self, upto: int) -> pd.DataFrame | None:
        """The newest map columns up to version ``upto`` (index id), or None."""
        for v in range(upto, 0, -1):
            path = self._map_path(v)
            if path.exists():
                return _read_frame(path)
        return None

    def _map_path(self, version: int) -> Path:
        return self.report_cache / f"map-v{version:04d}.csv"


def _distance_path(path: Path) -> Path:
    return path.with_name(path.stem + "-distance.csv")


def _read_frame(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False).set_index("id")


def _stamp() -> str:
    return now_iso().replace(":", "")
