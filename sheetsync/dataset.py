"""Scan ``<root>/<split>/<class>/<file>`` into a manifest, and keep stable ids across scans.

A manifest is a DataFrame with one row per image and the columns of :data:`MANIFEST_COLUMNS`
(plus any extra columns people added in the sheet). Ids are assigned once and then follow the
image: through folder moves (matched by content hash), re-sorting of the sheet, and byte-identical
copies (each copy gets its own id).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandas as pd

from ._imagecheck import ImageChecks
from .errors import DatasetError, UnsafePathError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
QUARANTINE = ".sheetsync-dropped"
MANIFEST_COLUMNS = ["id", "hash", "path", "split", "label", "action", "note"]
ACTIONS = ("keep", "drop")
ID_LENGTH = 10


@dataclass(frozen=True)
class FileEntry:
    """One image file found on disk."""

    path: str  # relative to the root, posix
    split: str
    label: str
    action: str
    size: int
    mtime_ns: int


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in MANIFEST_COLUMNS})


def location(split: str, label: str, action: str, filename: str) -> str:
    """Where an image with these values lives, relative to the root."""
    parts = [split, label, filename] if action == "keep" else [QUARANTINE, split, label, filename]
    return PurePosixPath(*parts).as_posix()


def parse_location(rel: str) -> tuple[str, str, str]:
    """(split, label, action) of a relative path made by :func:`location`."""
    parts = PurePosixPath(rel).parts
    if len(parts) == 4 and parts[0] == QUARANTINE:
        return parts[1], parts[2], "drop"
    if len(parts) == 3:
        return parts[0], parts[1], "keep"
    raise DatasetError(f"{rel}: not of the form <split>/<class>/<file>")


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel``, refusing anything that would leave the root (.., absolute, links)."""
    return _checked_join(root, root.resolve(), rel, lambda folder: folder.resolve())


def safe_joiner(root: Path) -> Callable[[str], Path]:
    """:func:`safe_join` for a batch of paths (one command's list): the root and each folder
    are resolved once, not once per file (10,000 files sit in a few dozen folders)."""
    base = root.resolve()
    folders: dict[Path, Path] = {}

    def resolved(folder: Path) -> Path:
        found = folders.get(folder)
        if found is None:
            found = folders[folder] = folder.resolve()
        return found

    return lambda rel: _checked_join(root, base, rel, resolved)


def _checked_join(root: Path, base: Path, rel: str, resolve: Callable[[Path], Path]) -> Path:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel or "\x00" in rel or not pure.parts:
        raise UnsafePathError(f"refusing path {rel!r}: it is not a plain path inside the dataset root")
    full = root.joinpath(*pure.parts)
    # A symlinked folder could still point outside: check what it resolves to.
    parent = resolve(full.parent)
    if parent != base and base not in parent.parents:
        raise UnsafePathError(f"refusing path {rel!r}: it resolves outside the dataset root")
    return full


# Control characters: some no spreadsheet cell can hold, none belongs in a file name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Why a file name is unusable (worded by sheetsync.cli): backslash, control character, not UTF-8.
SkipReason = Literal["backslash", "control", "not-utf8"]


@dataclass(frozen=True)
class SkippedFile:
    """An image file the scan left out because sheetsync cannot use its name."""

    path: str  # relative to the root, as found
    reason: SkipReason


def unusable_name(name: str) -> SkipReason | None:
    """Why sheetsync cannot use a file name, or None.

    Decided once, when scanning: a name every later step (the sheet's path cell, safe_join,
    training) could not take is skipped and reported by name, never half accepted."""
    if "\\" in name:
        return "backslash"  # common in zips made on Windows
    if _CONTROL.search(name):
        return "control"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "not-utf8"
    return None


def walk_images(root: Path, splits: Iterable[str], classes: Iterable[str],
                skipped: list[SkippedFile] | None = None) -> Iterator[FileEntry]:
    """Every image file under the training folders and the quarantine, in a stable order;
    images whose name cannot be used are left out and listed in ``skipped``."""
    class_set = set(classes)
    for base, action in ((root, "keep"), (root / QUARANTINE, "drop")):
        for split in splits:
            split_dir = base / split
            if not split_dir.is_dir():
                continue
            for class_dir in sorted(split_dir.iterdir()):
                if not class_dir.is_dir() or class_dir.name.startswith("."):
                    continue
                if class_dir.name not in class_set:
                    raise DatasetError(
                        f"{class_dir}: folder {class_dir.name!r} is not one of the classes in "
                        f"sheetsync.toml ({', '.join(class_set)})"
                    )
                yield from _files_in(root, class_dir, split, class_dir.name, action, skipped)


def _files_in(root: Path, folder: Path, split: str, label: str, action: str,
              skipped: list[SkippedFile] | None = None) -> Iterator[FileEntry]:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
            continue
        if Path(e.name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        rel = location(split, label, action, e.name)
        why = unusable_name(e.name)
        if why is not None:
            if skipped is not None:
                skipped.append(SkippedFile(rel, why))
            continue
        st = e.stat(follow_symlinks=False)
        yield FileEntry(rel, split, label, action, st.st_size, st.st_mtime_ns)


def hash_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashCache:
    """sha256 of files, remembered by (path, size, mtime) so unchanged files are not re-read."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list[object]] = {}
        if path is not None and path.exists():
            try:
                self.entries = json.loads(path.read_text())
            except (json.JSONDecodeError, OSError):
                self.entries = {}  # a cache: losing it only costs time

    def get(self, root: Path, entry: FileEntry) -> str:
        cached = self.entries.get(entry.path)
        if cached and cached[0] == entry.size and cached[1] == entry.mtime_ns:
            return str(cached[2])
        digest = hash_file(root / entry.path)
        self.entries[entry.path] = [entry.size, entry.mtime_ns, digest]
        return digest

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries))
        os.replace(tmp, self.path)


def new_id(digest: str, path: str, taken: set[str]) -> str:
    """A short id from the content hash; copies and (rare) prefix clashes get a derived one."""
    candidate = digest[:ID_LENGTH]
    salt = 0
    while candidate in taken:
        salt += 1
        candidate = hashlib.sha256(f"{digest}:{path}:{salt}".encode()).hexdigest()[:ID_LENGTH]
    taken.add(candidate)
    return candidate


@dataclass
class ScanResult:
    manifest: pd.DataFrame
    added: list[str]
    removed: list[str]
    moved: list[str]
    modified: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)  # files left out, and why
    # What the model sees of every image (sheetsync._imagecheck), filled in after a scan.
    images: ImageChecks = field(default_factory=ImageChecks)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.moved or self.modified)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (
            ("added", self.added), ("removed", self.removed),
            ("moved", self.moved), ("modified", self.modified)) if v]
        return ", ".join(parts) if parts else "no change"


def scan(
    root: Path,
    splits: Iterable[str],
    classes: Iterable[str],
    previous: pd.DataFrame | None = None,
    hash_cache: HashCache | None = None,
    progress: Callable[[Iterable[FileEntry]], Iterable[FileEntry]] | None = None,
) -> ScanResult:
    """The manifest of what is on disk now, keeping ids (and notes, extras) of ``previous``."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
    cache = hash_cache or HashCache(None)
    skipped: list[SkippedFile] = []
    files = list(walk_images(root, splits, classes, skipped))
    hashed = [(f, cache.get(root, f)) for f in (progress(files) if progress else files)]
    prev = previous if previous is not None else empty_manifest()
    result = reconcile(prev, hashed)
    result.skipped = skipped
    return result


def reconcile(previous: pd.DataFrame, hashed: list[tuple[FileEntry, str]]) -> ScanResult:
    """Pure: match files on disk to the previous manifest by path first, then by content."""
    by_path = {str(p): i for i, p in enumerate(previous["path"])}
    on_disk = {f.path for f, _ in hashed}
    # Rows whose file vanished from its path may have moved: match them by content.
    vanished: dict[str, list[int]] = {}
    for k, (p, h) in enumerate(zip(previous["path"], previous["hash"], strict=True)):
        if p not in on_disk:
            vanished.setdefault(str(h), []).append(k)
    taken = set(previous["id"].astype(str))
    records = previous.to_dict("records")
    rows: list[dict[Any, object]] = []
    used: set[int] = set()
    added: list[str] = []
    moved: list[str] = []
    modified: list[str] = []
    for f, digest in hashed:
        i = by_path.get(f.path)
        if i is None and vanished.get(digest):
            i = vanished[digest].pop(0)
            moved.append(str(records[i]["id"]))
        row: dict[Any, object]
        if i is not None:
            used.add(i)
            row = dict(records[i])
            if row["hash"] != digest:
                modified.append(str(row["id"]))
        else:
            row = {"id": new_id(digest, f.path, taken), "note": ""}
            added.append(str(row["id"]))
        row.update(hash=digest, path=f.path, split=f.split, label=f.label, action=f.action)
        rows.append(row)
    removed = [str(records[i]["id"]) for i in range(len(records)) if i not in used]
    columns = list(dict.fromkeys([*MANIFEST_COLUMNS, *previous.columns]))
    manifest = pd.DataFrame(rows, columns=columns) if rows else empty_manifest()
    manifest = manifest.fillna("").astype(object)
    return ScanResult(manifest.reset_index(drop=True), added, removed, moved, modified)


def detect_layout(root: Path, test_names: Iterable[str] = ("label_book", "test")) -> tuple[list[str], list[str], str | None]:
    """(splits, classes, test folder) guessed from a dataset root, for ``init``."""
    if not root.is_dir():
        raise DatasetError(f"{root} does not exist or is not a folder")
    test_dir = next((n for n in test_names if (root / n).is_dir()), None)
    splits, classes = [], set()
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or d.name == test_dir:
            continue
        subdirs = [c.name for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")]
        if subdirs:
            splits.append(d.name)
            classes.update(subdirs)
    if not splits:
        raise DatasetError(
            f"{root}: no <split>/<class>/ folders found (expected e.g. {root}/train/cat/1.png)"
        )
    return order_splits(splits), order_classes(classes), test_dir


def order_splits(splits: Iterable[str]) -> list[str]:
    preferred = ["train", "val", "valid", "validation"]
    return sorted(splits, key=lambda s: (preferred.index(s) if s in preferred else 99, s))


_ROMAN = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}


def _roman_value(name: str) -> int | None:
    s = name.lower()
    if not s or any(ch not in _ROMAN for ch in s):
        return None
    total = 0
    for a, b in zip(s, s[1:] + " ", strict=True):
        v = _ROMAN[a]
        total += -v if b != " " and _ROMAN[b] > v else v
    return total


def order_classes(classes: Iterable[str]) -> list[str]:
    """Natural order: numbers by value, Roman numerals by value, else alphabetical."""
    names = list(classes)
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    romans = [_roman_value(n) for n in names]
    if names and all(v is not None for v in romans):
        return [n for _, n in sorted(zip(romans, names, strict=True))]
    return sorted(names)
