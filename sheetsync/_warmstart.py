"""Warm starts: after a pull, a fold model starts from the previous version's model of the same
fold and fine-tunes for a few epochs (``[review] warm_epochs``) instead of training from scratch.

Why the held-out scores stay out of sample: folds are stable by id
(:func:`sheetsync._crossval.assign_folds`), so the images a fold holds out now were held out by
that fold's previous model too, and it never saw their labels. This is checked, not assumed: a
warm start needs the previous model's training ids to be disjoint from the fold's held-out ids.

A fold trains from scratch instead when
* no earlier model of this fold is on record (first ``predict``, other settings, a damaged file);
* more than :data:`MAX_CHANGED` of its training rows are new, relabelled or gone since then
  (the previous model would be a poor start: the point is a pull of a few dozen edits);
* that model was itself the :data:`MAX_CHAIN`-th warm start in a row (drift stays bounded: every
  few versions each fold learns its data from scratch again).

The record of the last model per fold is a small JSON file next to the fold results
(``last-k4-seed123-fold0.json``: the result's file name, the digest of the settings it was
trained with, the digest of the data it was trained and scored on, and how many warm starts in a
row it is); it is written after the fold's result file is in place, so it never names a file that
is not there. When the data is the same again (``predict`` twice), the recorded result is used
as it is (:func:`same`): a fine-tuned model is not fine-tuned again on nothing new.

Fold results keep their model's weights (about 1 MB) and held-out embeddings, so without care
they pile up with every version. :func:`prune` removes the oldest results that no record names,
keeping the recorded ones and a few older ones (a reverted pull or a setting tried and dropped
finds its results again; anything removed is only trained again, never wrong).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ._crossval import FoldResult, write_atomic

# Share of a fold's training rows (new, relabelled or gone) beyond which it trains from scratch.
MAX_CHANGED = 0.25
# Warm starts in a row before a fold trains from scratch again.
MAX_CHAIN = 4
# Fold results no record names that prune keeps, per recorded one (the newest first).
KEEP_UNRECORDED = 2


@dataclass(frozen=True)
class WarmStart:
    """A fold model to start from: its result file, and how many warm starts in a row the new
    model will be (1: its source was trained from scratch)."""

    source: str
    generation: int
    prior: FoldResult


def record_path(work_dir: Path, folds: int, seed: int, fold: int) -> Path:
    return Path(work_dir) / f"last-k{folds}-seed{seed}-fold{fold}.json"


def record(work_dir: Path, folds: int, seed: int, fold: int, *, base: str, data: str,
           source: str, generation: int) -> None:
    """Note ``source`` (a fold result file in ``work_dir``) as this fold's latest model, trained
    with settings ``base`` on ``data`` (digests)."""
    text = json.dumps({"file": source, "base": base, "data": data, "generation": generation})
    write_atomic(record_path(work_dir, folds, seed, fold),
                 lambda p: p.write_text(text, encoding="utf-8"))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or damaged: no warm start
    return data if isinstance(data, dict) else None


def same(work_dir: Path, folds: int, seed: int, fold: int, *, base: str,
         data: str) -> tuple[str, int, FoldResult] | None:
    """The recorded model of this fold when it was made with these settings on this very data
    (its file name, warm starts in a row, result), else None."""
    rec = _read(record_path(work_dir, folds, seed, fold))
    if rec is None or rec.get("base") != base or rec.get("data") != data \
            or not isinstance(rec.get("file"), str) or not isinstance(rec.get("generation"), int):
        return None
    source = Path(rec["file"]).name
    result = FoldResult.load(Path(work_dir) / source)
    return None if result is None else (source, rec["generation"], result)


def find(work_dir: Path, folds: int, seed: int, fold: int, *, base: str, train: pd.DataFrame,
         held_ids: set[str]) -> WarmStart | None:
    """The earlier model this fold may fine-tune, or None when it must train from scratch.

    ``base``: the digest of the fold's from-scratch settings (a model trained otherwise is no
    start); ``train``: the fold's training rows now (id, label); ``held_ids``: its held-out ids.
    """
    rec = _read(record_path(work_dir, folds, seed, fold))
    if rec is None or rec.get("base") != base or not isinstance(rec.get("file"), str):
        return None
    generation = rec.get("generation", 0)
    if not isinstance(generation, int) or generation >= MAX_CHAIN:
        return None
    source = Path(rec["file"]).name  # a name in work_dir, never a path elsewhere
    prior = FoldResult.load(Path(work_dir) / source)
    if prior is None or prior.weights is None or prior.train_ids is None \
            or prior.train_labels is None:
        return None
    if not set(prior.train_ids.astype(str)).isdisjoint(held_ids):
        return None  # it trained on an image this fold scores: not out of sample
    if changed_share(prior, train) > MAX_CHANGED:
        return None
    return WarmStart(source, generation + 1, prior)


def changed_share(prior: FoldResult, train: pd.DataFrame) -> float:
    """Training rows new or relabelled since ``prior``, plus those gone, per training row now."""
    assert prior.train_ids is not None and prior.train_labels is not None
    before = dict(zip(prior.train_ids.astype(str), prior.train_labels.astype(str), strict=True))
    now = dict(zip(train["id"].astype(str), train["label"].astype(str), strict=True))
    changed = sum(1 for i, lab in now.items() if before.get(i) != lab)
    gone = sum(1 for i in before if i not in now)
    return (changed + gone) / max(1, len(now))


def prune(work_dir: Path) -> list[str]:
    """Remove the fold results (``fold-*.npz``) in ``work_dir`` that no fold record names, but
    the newest :data:`KEEP_UNRECORDED` per recorded one; returns the names removed.

    Called after a ``predict`` has recorded its folds, under the project's lock (one command at
    a time), so no other run is between choosing a file and reading it."""
    work_dir = Path(work_dir)
    named = set()
    for path in work_dir.glob("last-k*-seed*-fold*.json"):
        rec = _read(path)
        if rec is not None and isinstance(rec.get("file"), str):
            named.add(Path(rec["file"]).name)
    others = [p for p in work_dir.glob("fold-*.npz") if p.name not in named]
    others.sort(key=_modified, reverse=True)  # newest first
    removed = []
    for path in others[KEEP_UNRECORDED * len(named):]:
        try:
            path.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: it costs space, nothing else
        removed.append(path.name)
    return removed


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
