"""Pure logic of a pull: validate the sheet, merge its edits into the manifest.

Every cell is untrusted input. Nothing here touches a file: :func:`plan_pull` returns either the
new manifest or every problem found, each naming its sheet row and column.

The merge is three-way, per cell: *base* is what the last push published, *theirs* is the sheet,
*ours* is the manifest now (the folders may have changed since the push). A cell people did not
edit never overrides the folders; a cell both sides changed differently is a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from .dataset import ACTIONS
from .errors import Problem
from .rows import CORE, EDITABLE, REQUIRED

_ACTION_ALIASES = {"": "keep", "keep": "keep", "drop": "drop"}


@dataclass
class PullPlan:
    manifest: pd.DataFrame  # the merged manifest (paths not yet updated)
    edited: list[str]  # ids with at least one changed cell
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def normalise_header(sheet: pd.DataFrame) -> tuple[dict[str, str], list[Problem]]:
    """Map sheet header -> canonical name; problems for missing, duplicate or blank headers."""
    problems: list[Problem] = []
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    core = {c.casefold(): c for c in CORE}
    for raw in sheet.columns:
        text = str(raw).strip()
        key = text.casefold()
        if not text:
            if (sheet[raw].astype(str).str.strip() != "").any():
                problems.append(Problem(1, None, "a column holds data but has no header"))
            continue
        name = core.get(key, text)
        if name in seen:
            problems.append(Problem(1, text, f"header {text!r} appears twice"))
            continue
        seen[name] = raw
        mapping[raw] = name
    for name in REQUIRED:
        if name not in seen:
            problems.append(Problem(1, name, f"header {name!r} is missing (renamed or removed?); "
                                             f"restore it to pull"))
    return mapping, problems


def clean_cells(sheet: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Keep mapped columns under canonical names, drop blank rows; index stays the sheet row."""
    df = sheet[list(mapping)].rename(columns=mapping).astype(str)
    blank = (df.apply(lambda s: s.str.strip()) == "").all(axis=1)
    return df[~blank]


def normalise_choice(value: str, choices: Sequence[str]) -> str | None:
    """The choice a cell means after trimming and case-folding, or None."""
    folded = {c.casefold(): c for c in choices}
    return folded.get(value.strip().casefold())


def plan_pull(
    sheet: pd.DataFrame,
    manifest: pd.DataFrame,
    published: pd.DataFrame | None,
    classes: Sequence[str],
    splits: Sequence[str],
    known_ids: set[str] | None = None,
) -> PullPlan:
    """Validate ``sheet`` and merge its edits into ``manifest`` (all frames of str)."""
    mapping, problems = normalise_header(sheet)
    if problems:
        return PullPlan(manifest, [], problems)
    cells = clean_cells(sheet, mapping)
    extras = [c for c in cells.columns if c not in CORE]
    current = manifest.set_index("id", drop=False)
    base = published.set_index("id") if published is not None and len(published) else None
    merged = current.copy()
    for name in extras:
        if name not in merged.columns:
            merged[name] = ""
    edited: list[str] = []
    warnings: list[str] = []
    first_row: dict[str, int] = {}
    for row_no, row in cells.iterrows():
        rn = int(row_no)
        id_ = row["id"].strip()
        if not id_:
            problems.append(Problem(rn, "id", "the row has no id (rows cannot be added in the "
                                              "sheet; add image files to the folders instead)"))
            continue
        if id_ in first_row:
            problems.append(Problem(rn, "id", f"id {id_!r} also appears on row {first_row[id_]}"))
            continue
        first_row[id_] = rn
        if id_ not in current.index:
            why = ("its image is missing from the dataset folder; restore the file or delete the row"
                   if known_ids and id_ in known_ids else "unknown id")
            problems.append(Problem(rn, "id", f"{id_!r}: {why}"))
            continue
        values, cell_problems = _read_editable(rn, row, extras, classes, splits)
        problems += cell_problems
        if cell_problems:
            continue
        changed = _merge_row(rn, id_, values, merged, current, base, problems)
        if changed:
            edited.append(id_)
    missing = current.index.difference(pd.Index(list(first_row)), sort=False)
    if len(missing) and not problems:
        warnings.append(f"{len(missing)} image(s) have no row in the sheet; left unchanged "
                        f"(e.g. {', '.join(map(str, missing[:3]))})")
    return PullPlan(merged.reset_index(drop=True), edited, problems, warnings)


def _read_editable(
    rn: int, row: pd.Series, extras: list[str], classes: Sequence[str], splits: Sequence[str]
) -> tuple[dict[str, str], list[Problem]]:
    problems = []
    split = normalise_choice(row["split"], splits)
    if split is None:
        problems.append(Problem(rn, "split", f"{row['split']!r} is not a split "
                                             f"(one of: {', '.join(splits)})"))
    label = normalise_choice(row["label"], classes)
    if label is None:
        problems.append(Problem(rn, "label", f"{row['label']!r} is not a class "
                                             f"(one of: {', '.join(classes)})"))
    action = _ACTION_ALIASES.get(row["action"].strip().casefold())
    if action is None:
        problems.append(Problem(rn, "action", f"{row['action']!r} is not an action "
                                              f"(one of: {', '.join(ACTIONS)})"))
    values = {"split": split or "", "label": label or "", "action": action or "",
              "note": row["note"]}
    values.update({name: row[name] for name in extras})
    return values, problems


def _merge_row(
    rn: int, id_: str, values: dict[str, str], merged: pd.DataFrame, current: pd.DataFrame,
    base: pd.DataFrame | None, problems: list[Problem],
) -> bool:
    changed = False
    for name, theirs in values.items():
        ours = str(current.at[id_, name]) if name in current.columns else ""
        if base is not None and id_ in base.index and name in base.columns:
            was = str(base.at[id_, name])
            if name in EDITABLE[:3]:
                was = was.strip()
            if theirs == was or theirs == ours:
                continue  # nobody edited this cell in the sheet, or both sides agree
            if ours != was:
                problems.append(Problem(rn, name, f"edited in the sheet ({was!r} -> {theirs!r}) "
                                                  f"but the folders changed it to {ours!r} since the push"))
                continue
        elif theirs == ours:
            continue
        merged.at[id_, name] = theirs
        changed = True
    return changed


def unpulled_edits(sheet: pd.DataFrame, published: pd.DataFrame | None) -> list[str]:
    """Human edits in ``sheet`` that were never pulled: one line each (empty when none).

    Compares the editable cells (and columns people added) with what the last push wrote.
    """
    if sheet is None or published is None:
        return []
    mapping, header_problems = normalise_header(sheet)
    if header_problems:
        return [f"the header was changed: {p.message}" for p in header_problems]
    cells = clean_cells(sheet, mapping)
    base = published.set_index("id")
    lines: list[str] = []
    compare = [c for c in cells.columns if c in EDITABLE or c not in CORE]
    for row_no, row in cells.iterrows():
        id_ = row["id"].strip()
        if id_ not in base.index:
            lines.append(f"row {row_no}: id {id_!r} was not in the last push (row added or id edited)")
            continue
        for name in compare:
            was = str(base.at[id_, name]) if name in base.columns else ""
            now = row[name]
            if name in EDITABLE[:3]:
                same = now.strip().casefold() == was.strip().casefold() or (
                    name == "action" and now.strip() == "" and was == "keep")
            else:
                same = now == was
            if not same:
                lines.append(f"row {row_no}, {name}: {was!r} -> {now!r}")
    return lines
