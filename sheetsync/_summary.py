"""A dataset summary in the manner of cleanlab's Datalab: one line per kind of issue (pure).

Each :class:`Finding` counts the images with one kind of issue and keeps their ids, so the
report can link from the line to the rows. Inputs are the review signals
(:func:`sheetsync.review.review_signals`, index = id) and the items (id, split, label, action).

Usage::

    findings = summarise(items, signals, unreadable=["id7"])
    [(f.key, f.count) for f in findings]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FAR = 2.5  # the sheet's `outlier` column: above 2.5 is far from the label's class
IMBALANCE = 0.5  # a class with under half the median class count is rare


@dataclass(frozen=True)
class Finding:
    key: str  # anchor name, e.g. "label-errors"
    title: str
    count: int
    detail: str
    sheet_hint: str  # how to find the rows in the sheet
    ids: list[str] = field(default_factory=list)


def summarise(items: pd.DataFrame, signals: pd.DataFrame,
              unreadable: Sequence[str] = (), *, weak: bool = False,
              uncounted: str = "") -> list[Finding]:
    """Every finding of the module docstring, in a fixed order (zero counts included). With a
    ``weak`` model (below the "too weak" line) its label errors and outliers are left out:
    a near-chance model's doubts are noise, and a count of them would read as a finding.
    The label errors are left out too when ``uncounted`` says why (in-sample or stale
    predictions: sheetsync._reviewsheet.uncounted), as the push summary leaves them out."""
    it = items.set_index(items["id"].astype(str))
    sig = signals.reindex(it.index)
    found = [
        None if weak or uncounted else _label_errors(it, sig),
        _dropped(it),
        _duplicates(it, sig),
        _blank(it, sig, unreadable),
        None if weak else _outliers(sig),
        _imbalance(it),
    ]
    return [f for f in found if f is not None]


def _ids(mask: pd.Series) -> list[str]:
    return [str(i) for i in mask[mask.fillna(False).astype(bool)].index]


def _label_errors(it: pd.DataFrame, sig: pd.DataFrame) -> Finding:
    flagged = sig["suspected"].fillna("").astype(str) != ""
    ids = _ids(flagged)
    scored = int(sig["issue_score"].notna().sum())
    return Finding("label-errors", "Likely label errors", len(ids),
                   f"cleanlab flags {len(ids)} of {scored} scored images; `suspected` says the "
                   "class the label probably should be", "filter `suspected` not empty", ids)


def _dropped(it: pd.DataFrame) -> Finding:
    ids = _ids(it["action"] == "drop")
    return Finding("dropped", "Dropped images", len(ids),
                   "images whose action is drop (kept aside, out of training)",
                   "filter `action` = drop", ids)


def _duplicates(it: pd.DataFrame, sig: pd.DataFrame) -> Finding:
    dup = sig["duplicate_of"].fillna("").astype(str)
    ids = [str(i) for i, d in dup.items() if d]
    split = dict(zip(it.index.astype(str), it["split"].astype(str), strict=True))
    cross = [i for i in ids if any(split.get(o, split[i]) != split[i] for o in dup[i].split())]
    conflict = sig.get("duplicate_conflict", pd.Series(False, index=sig.index))
    n_conflict = int(conflict.reindex(ids).fillna(False).astype(bool).sum())
    return Finding("duplicates", "Duplicates", len(ids),
                   f"{len(ids)} images have an identical or near-identical copy; {len(cross)} of "
                   f"them have a copy in another split (train/val leakage); {n_conflict} a copy "
                   "under another label", "filter `duplicate_of` not empty", ids)


def _blank(it: pd.DataFrame, sig: pd.DataFrame, unreadable: Sequence[str]) -> Finding:
    blank = _ids(sig["blank"])
    bad = [str(i) for i in unreadable]
    ids = list(dict.fromkeys([*blank, *bad]))
    return Finding("blank", "Blank or unreadable images", len(ids),
                   f"{len(blank)} blank, {len(bad)} could not be read", "`why` says blank image",
                   ids)


def _outliers(sig: pd.DataFrame) -> Finding:
    out = pd.to_numeric(sig["outlier"], errors="coerce")
    ids = _ids(out > FAR)
    return Finding("outliers", "Outliers", len(ids),
                   f"far from their class in the model's embedding space (outlier > {FAR})",
                   f"sort `outlier` descending (> {FAR})", ids)


def _imbalance(it: pd.DataFrame) -> Finding:
    keep = it[(it["action"] == "keep") & (it["split"] == "train")]
    counts = keep["label"].astype(str).value_counts()
    if counts.empty:
        return Finding("imbalance", "Class imbalance", 0, "no training images", "", [])
    median = float(np.median(counts.to_numpy()))
    rare = counts[counts < IMBALANCE * median]
    ratio = counts.max() / max(counts.min(), 1)
    detail = (f"training images per class from {counts.min()} ({counts.idxmin()}) to "
              f"{counts.max()} ({counts.idxmax()}), ratio {ratio:.1f}; rare classes (under half "
              f"the median {median:.0f}): " + (", ".join(f"{c} {n}" for c, n in rare.items())
                                               or "none"))
    ids = _ids(keep["label"].astype(str).isin(rare.index))
    return Finding("imbalance", "Class imbalance", len(rare), detail,
                   "filter `label` to the rare classes", ids)
