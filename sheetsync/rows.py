"""The data sheet's columns, and the table of rows a push writes (pure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from .dataset import ACTIONS, MANIFEST_COLUMNS
from .sheets.base import Column, ColumnKind, SheetLayout

# ``checked``: ticked by people for a row they looked at and found right (sheetsync.rerank).
CHECKED = "checked"
EDITABLE = ("split", "label", "action", "note", CHECKED)
# Filled by `sheetsync report` (the embedding map): position and region of each image.
MAP_COLUMNS = ("map_x", "map_y", "cluster")
# The review order after the last pull (1 = look first; sheetsync.rerank): sort by it.
RANK = "rank"
SIGNAL_COLUMNS = ("predicted", "confidence", "margin", "loss", "issue_score", "suspected",
                  "duplicate_of", "outlier", "why", RANK, *MAP_COLUMNS)
# Filled by the review (another module): a suggested fix in words, e.g. "relabel → iv", "drop?".
SUGGESTION = "suggestion"
# Written by ``sheetsync watch``: why an edit on this row waits, or that its image is gone.
SYNC_STATUS = "sync_status"
NUMERIC_SIGNALS = ("confidence", "margin", "loss", "issue_score", "outlier", RANK, *MAP_COLUMNS)
# Filled for derived images only (sheetsync augment): the image it was made from, and how.
DERIVED = ("source_id", "transform")
# Sheet order, for the work: what a reviewer looks at and edits first (picture, label, what to
# do, why), then the rest (the derived-image columns, then the report's map columns last of
# them); the identifiers last.
# Columns people add go before ``TAIL``.
HEAD = ("image", "label", "action", CHECKED, RANK, SUGGESTION, "why", "confidence", "split",
        "note", "predicted", "suspected", "issue_score", "margin", "loss", "outlier", "duplicate_of",
        SYNC_STATUS, *DERIVED, *MAP_COLUMNS)
TAIL = ("id", "path", "url")
CORE = (*HEAD, *TAIL)
# Every name sheetsync uses for a column of its own (the sheet's and the manifest's, e.g.
# ``hash``): a column people add under one of these names would overwrite sheetsync's data,
# so a pull refuses it by name.
RESERVED = tuple(dict.fromkeys((*CORE, *MANIFEST_COLUMNS)))
# The header and every column through this one stay in view when scrolling sideways.
FREEZE_THROUGH = "label"
# Columns every sheet must keep: renaming or deleting one of these is an error on pull.
REQUIRED = ("id", "path", "split", "label", "action", "note")

_NOTES = {
    "id": "Stable id of the image (survives moves and re-sorting); do not edit.",
    "image": "Thumbnail; click it to open the full image.",
    "path": "Where the image is now, relative to the dataset root.",
    "url": "Link to the full image; click to open it.",
    "split": "Edit: which split the image belongs to (train / val ...).",
    "label": "Edit: the correct class. sheetsync moves the file on `pull`.",
    "action": "Edit: keep, or drop to take the image out of training (it is kept aside, "
              "not deleted).",
    CHECKED: "Edit: tick when you looked at the row and its label is right (a relabel or a "
             "drop counts as checked). The order learns from the checked rows after each pull.",
    RANK: "The review order after the last pull: 1 = look first. Unchecked rows come first; "
          "sort by this column to see the next ones.",
    SUGGESTION: "What the review suggests doing with this row (e.g. relabel → iv, drop?); "
                "empty when it suggests nothing; 'none: …' on every row when the model cannot "
                "support a suggestion (says why). Apply it by editing label / action.",
    "note": "Edit: free text for the team.",
    "predicted": "The model's class (out-of-sample when `sheetsync predict` ran; the info "
                 "line above the header says which model).",
    "confidence": "The model's probability for the given label (0-100%).",
    "margin": "Probability of the given label minus the best other class; negative = the "
              "model disagrees.",
    "loss": "Cross-entropy of the given label (higher = the model disagrees more).",
    "issue_score": "How likely the label is wrong (0..1, cleanlab).",
    "suspected": "The class the label probably should be, for the labels cleanlab flags as "
                 "likely wrong (those rows are highlighted, as are rows with a suggestion).",
    "duplicate_of": "Ids of identical or near-identical images.",
    "outlier": "How far the image is from its class (1 = typical, above 2.5 = far).",
    "why": "Why this row is near the top, and what the model sees for odd images.",
    SYNC_STATUS: "Written by `sheetsync watch`: why an edit on this row is not applied yet, "
                 "or that its image is gone.",
    "map_x": "Position on the report's embedding map (UMAP 1; `sheetsync report`).",
    "map_y": "Position on the report's embedding map (UMAP 2; `sheetsync report`).",
    "cluster": "Region of the embedding map (`sheetsync report`); filter to see one region.",
    "source_id": "Derived image (sheetsync augment): the id of the image it was made from.",
    "transform": "Derived image: the transform that made it (drop the row to veto it).",
}
_WIDTHS = {"id": 12, "path": 36, "url": 24, "split": 7, "label": 8, "action": 7,
           CHECKED: 9, RANK: 7, "note": 24, "why": 44, SUGGESTION: 16, "duplicate_of": 14, "predicted": 9,
           "suspected": 9, "confidence": 9, "issue_score": 10, "margin": 8, "loss": 7,
           "outlier": 8, SYNC_STATUS: 30, "map_x": 8, "map_y": 8, "cluster": 8,
           "source_id": 13, "transform": 18}
_FORMATS = {"confidence": "0%", "margin": "+0.00;-0.00;0.00", "loss": "0.00",
            "issue_score": "0.00", "outlier": "0.00", "map_x": "0.000", "map_y": "0.000",
            "cluster": "0", RANK: "0"}


def checked_value(text: object) -> str | None:
    """What a ``checked`` cell means: "TRUE" (ticked), "" (not ticked: FALSE or empty), or
    None when it is neither. 1 and 0 count as TRUE and FALSE: LibreOffice Calc keeps a boolean
    as a number shown as TRUE/FALSE, and saves it to .xlsx as 1 or 0."""
    folded = str(text).strip().casefold()
    return {"true": "TRUE", "false": "", "": "", "1": "TRUE", "0": "", "1.0": "TRUE",
            "0.0": ""}.get(folded)


def _checked_cells(manifest: pd.DataFrame) -> pd.Series | str:
    """The ``checked`` cells a push writes: TRUE or FALSE (a manifest without it: FALSE)."""
    if CHECKED not in manifest.columns:
        return "FALSE"
    return manifest[CHECKED].map(checked_value).map({"TRUE": "TRUE"}).fillna("FALSE")


def extra_columns(manifest: pd.DataFrame) -> list[str]:
    """Columns people added to the sheet, kept in the manifest and written back."""
    return [c for c in manifest.columns if c not in MANIFEST_COLUMNS and c not in CORE]


def layout(classes: Sequence[str], splits: Sequence[str], extras: Sequence[str] = ()) -> SheetLayout:
    choices = {"split": tuple(splits), "label": tuple(classes), "action": ACTIONS}
    cols = [_column(name, choices) for name in HEAD]
    cols += [Column(name, "text", editable=True) for name in extras]
    cols += [_column(name, choices) for name in TAIL]
    return SheetLayout(tuple(cols), highlight_mismatch=None, freeze_through=FREEZE_THROUGH)


def _column(name: str, choices: dict[str, tuple[str, ...]]) -> Column:
    kind: ColumnKind = "image" if name == "image" else "number" if name in NUMERIC_SIGNALS else (
        "choice" if name in choices else "checkbox" if name == CHECKED else "text")
    return Column(name, kind, editable=name in EDITABLE, choices=choices.get(name, ()),
                  width=_WIDTHS.get(name), note=_NOTES.get(name, ""),
                  number_format=_FORMATS.get(name, ""))


def build_table(
    manifest: pd.DataFrame,
    signals: pd.DataFrame | None,
    url_for: Callable[[str], str],
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per image, columns in sheet order, rows in review order (``order`` = ids)."""
    m = manifest.set_index("id", drop=False)
    fixed = pd.DataFrame({
        "id": m["id"].astype(str),
        "image": "",
        "path": m["path"].astype(str),
        "url": [url_for(p) for p in m["path"]],
        "split": m["split"], "label": m["label"], "action": m["action"],
        "note": m["note"].fillna(""),
        CHECKED: _checked_cells(m),
    }, index=m.index)
    for name in (*SIGNAL_COLUMNS, SUGGESTION, SYNC_STATUS):
        if signals is not None and name in signals.columns:
            col = signals[name].reindex(m.index)
            fixed[name] = col if name in NUMERIC_SIGNALS else col.fillna("").astype(str)
        else:
            fixed[name] = float("nan") if name in NUMERIC_SIGNALS else ""
    for name in DERIVED:
        fixed[name] = m[name].fillna("").astype(str) if name in m.columns else ""
    extras = extra_columns(manifest)
    table = pd.concat([fixed[list(HEAD)], m[extras].fillna(""), fixed[list(TAIL)]], axis=1)
    if order is not None:
        ordered = [i for i in order if i in table.index]
        rest = table.index.difference(pd.Index(ordered), sort=False)
        table = table.loc[[*ordered, *rest]]
    else:
        table = table.sort_values("path", kind="stable")
    return table.reset_index(drop=True)
