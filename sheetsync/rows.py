"""The data sheet's columns, and the table of rows a push writes (pure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from .dataset import ACTIONS, MANIFEST_COLUMNS
from .sheets.base import Column, SheetLayout

EDITABLE = ("split", "label", "action", "note")
SIGNAL_COLUMNS = ("predicted", "confidence", "margin", "loss", "issue_score", "suspected",
                  "duplicate_of", "outlier", "why")
NUMERIC_SIGNALS = ("confidence", "margin", "loss", "issue_score", "outlier")
# Filled for derived images only (sheetsync augment): the image it was made from, and how.
DERIVED = ("source_id", "transform")
CORE = ("id", "image", "path", "url", "split", "label", "action", "note", *SIGNAL_COLUMNS, *DERIVED)
# Columns every sheet must keep: renaming or deleting one of these is an error on pull.
REQUIRED = ("id", "path", "split", "label", "action", "note")

_NOTES = {
    "id": "Stable id of the image; do not edit.",
    "image": "Thumbnail.",
    "path": "Where the image is now, relative to the dataset root.",
    "url": "Link to the image file.",
    "split": "Edit: which split the image belongs to.",
    "label": "Edit: the correct class.",
    "action": "Edit: keep, or drop to take the image out of training (it is kept aside, not deleted).",
    "note": "Edit: free text for the team.",
    "predicted": "The model's class (out-of-sample when `sheetsync predict` ran).",
    "confidence": "The model's probability for the given label.",
    "margin": "Probability of the given label minus the best other class; negative = the model disagrees.",
    "loss": "Cross-entropy of the given label.",
    "issue_score": "How likely the label is wrong (0..1, cleanlab).",
    "suspected": "The class the label probably should be.",
    "duplicate_of": "Ids of identical or near-identical images.",
    "outlier": "How far the image is from its class (higher = stranger).",
    "why": "Why this row is near the top.",
    "source_id": "Derived image (sheetsync augment): the id of the image it was made from.",
    "transform": "Derived image: the transform that made it (drop the row to veto it).",
}
_WIDTHS = {"source_id": 13, "transform": 18, "id": 12, "image": 8, "path": 36, "url": 24, "split": 8, "label": 8, "action": 8,
           "note": 28, "why": 40, "duplicate_of": 14}


def extra_columns(manifest: pd.DataFrame) -> list[str]:
    """Columns people added to the sheet, kept in the manifest and written back."""
    return [c for c in manifest.columns if c not in MANIFEST_COLUMNS and c not in CORE]


def layout(classes: Sequence[str], splits: Sequence[str], extras: Sequence[str] = ()) -> SheetLayout:
    choices = {"split": tuple(splits), "label": tuple(classes), "action": ACTIONS}
    cols = []
    for name in CORE:
        kind = "image" if name == "image" else "number" if name in NUMERIC_SIGNALS else (
            "choice" if name in choices else "text")
        cols.append(Column(name, kind, editable=name in EDITABLE, choices=choices.get(name, ()),
                           width=_WIDTHS.get(name), note=_NOTES.get(name, "")))
    cols += [Column(name, "text", editable=True) for name in extras]
    return SheetLayout(tuple(cols))


def build_table(
    manifest: pd.DataFrame,
    signals: pd.DataFrame | None,
    url_for: Callable[[str], str],
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per image, columns in sheet order, rows in review order (``order`` = ids)."""
    m = manifest.set_index("id", drop=False)
    table = pd.DataFrame({
        "id": m["id"].astype(str),
        "image": "",
        "path": m["path"].astype(str),
        "url": [url_for(p) for p in m["path"]],
        "split": m["split"], "label": m["label"], "action": m["action"],
        "note": m["note"].fillna(""),
    }, index=m.index)
    for name in SIGNAL_COLUMNS:
        if signals is not None and name in signals.columns:
            col = signals[name].reindex(m.index)
            table[name] = col if name in NUMERIC_SIGNALS else col.fillna("").astype(str)
        else:
            table[name] = float("nan") if name in NUMERIC_SIGNALS else ""
    for name in DERIVED:
        table[name] = m[name].fillna("").astype(str) if name in m.columns else ""
    for name in extra_columns(manifest):
        table[name] = m[name].fillna("")
    if order is not None:
        ordered = [i for i in order if i in table.index]
        rest = table.index.difference(pd.Index(ordered), sort=False)
        table = table.loc[[*ordered, *rest]]
    else:
        table = table.sort_values("path", kind="stable")
    return table.reset_index(drop=True)
