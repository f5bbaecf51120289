"""Dataset versions (manifests), their history, diffs between them, and score history.

Layout inside the state folder (the paths come from :mod:`sheetsync.store`)::

    versions/v0001.csv   the manifest of version 1 (id, hash, path, split, label, action, note, ...)
    versions.json        [{version, time, message, counts}, ...]
    scores.csv           every score row ever written
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .dataset import MANIFEST_COLUMNS
from .errors import VersionError

DIFF_FIELDS = ("split", "label", "action", "path", "hash", "note")


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV of strings exactly as written ("0042" stays "0042", empty stays "")."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False).astype(object)


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        df.to_csv(tmp, index=False)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise


@dataclass(frozen=True)
class VersionInfo:
    version: int
    time: str
    message: str
    counts: dict[str, int]

    @property
    def name(self) -> str:
        return f"v{self.version}"


def counts_of(manifest: pd.DataFrame) -> dict[str, int]:
    keep = manifest[manifest["action"] == "keep"]
    out = {str(k): int(v) for k, v in keep["split"].value_counts().sort_index().items()}
    out["dropped"] = int((manifest["action"] == "drop").sum())
    out["images"] = len(manifest)
    return out


class VersionStore:
    def __init__(self, folder: Path, index_path: Path):
        self.dir = folder  # the state store (sheetsync.store) says where
        self.index_path = index_path

    def list(self) -> list[VersionInfo]:
        if not self.index_path.exists():
            return []
        return [VersionInfo(**v) for v in json.loads(self.index_path.read_text())]

    def latest(self) -> VersionInfo | None:
        versions = self.list()
        return versions[-1] if versions else None

    def manifest_path(self, version: int) -> Path:
        return self.dir / f"v{version:04d}.csv"

    def parse(self, ref: str | int) -> int:
        """A version number from ``3``, ``"3"``, ``"v3"``, ``"latest"`` or ``"HEAD~1"``-like ``"-1"``."""
        versions = [v.version for v in self.list()]
        if not versions:
            raise VersionError("no version recorded yet: run `sheetsync init` first")
        text = str(ref).strip().lower()
        if text in ("latest", "head", "current"):
            return versions[-1]
        if text.startswith("-") and text[1:].isdigit() and int(text[1:]) < len(versions):
            return versions[-1 - int(text[1:])]
        if text.startswith("v"):
            text = text[1:]
        if not text.isdigit() or int(text) not in versions:
            raise VersionError(f"unknown version {ref!r}; known: v{versions[0]}..v{versions[-1]}")
        return int(text)

    def load(self, ref: str | int) -> pd.DataFrame:
        return read_csv_text(self.manifest_path(self.parse(ref)))

    def next_number(self) -> int:
        latest = self.latest()
        return 1 if latest is None else latest.version + 1

    def pending_path(self, version: int) -> Path:
        return self.dir / f"v{version:04d}.pending.csv"

    def stage(self, manifest: pd.DataFrame, version: int) -> Path:
        """Write a manifest for a version that is not recorded yet (see :meth:`commit`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.pending_path(version)
        columns = list(dict.fromkeys([*MANIFEST_COLUMNS, *manifest.columns]))
        write_csv_atomic(manifest[columns], path)
        return path

    def commit(self, version: int, message: str) -> VersionInfo:
        """Record a staged manifest as a version; idempotent, so recovery can repeat it."""
        pending = self.pending_path(version)
        final = self.manifest_path(version)
        if pending.exists():
            os.replace(pending, final)
        versions = self.list()
        if versions and versions[-1].version >= version:
            return next(v for v in versions if v.version == version)
        info = VersionInfo(version, now_iso(), message, counts_of(read_csv_text(final)))
        versions.append(info)
        tmp = self.index_path.with_name(self.index_path.name + ".tmp")
        tmp.write_text(json.dumps([v.__dict__ for v in versions], indent=1))
        os.replace(tmp, self.index_path)
        return info

    def record(self, manifest: pd.DataFrame, message: str) -> VersionInfo:
        version = self.next_number()
        self.stage(manifest, version)
        return self.commit(version, message)


def diff_manifests(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Pure: one row per (id, field) that differs; ``change`` is added/removed/changed."""
    a_ = a.set_index("id")
    b_ = b.set_index("id")
    rows: list[dict[str, Any]] = []
    for id_ in b_.index.difference(a_.index, sort=False):
        rows.append({"id": id_, "change": "added", "field": "", "before": "", "after": b_.at[id_, "path"]})
    for id_ in a_.index.difference(b_.index, sort=False):
        rows.append({"id": id_, "change": "removed", "field": "", "before": a_.at[id_, "path"], "after": ""})
    common = a_.index.intersection(b_.index, sort=False)
    # Columns people added in the sheet count too; a column one side lacks reads as empty.
    own = [c for c in dict.fromkeys([*a_.columns, *b_.columns]) if c not in MANIFEST_COLUMNS]
    for field in (*DIFF_FIELDS, *own):
        if field in DIFF_FIELDS and (field not in a_.columns or field not in b_.columns):
            continue
        before = _column(a_, field, common)
        after = _column(b_, field, common)
        for id_ in common[(before != after).to_numpy()]:
            rows.append({"id": id_, "change": "changed", "field": field,
                         "before": before[id_], "after": after[id_]})
    return pd.DataFrame(rows, columns=["id", "change", "field", "before", "after"])


def _column(df: pd.DataFrame, name: str, ids: pd.Index) -> pd.Series:
    if name not in df.columns:
        return pd.Series("", index=ids)
    return df.loc[ids, name].astype(str)


class ScoreHistory:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> pd.DataFrame:
        return read_csv_text(self.path) if self.path.exists() else pd.DataFrame()

    def append(self, row: dict[str, object]) -> None:
        df = pd.concat([self.read(), pd.DataFrame([{k: _text(v) for k, v in row.items()}])],
                       ignore_index=True)
        write_csv_atomic(df.fillna(""), self.path)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
