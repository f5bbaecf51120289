"""Pure logic of a pull (and of a checkout): validate the sheet, merge its edits, plan the moves.

Every cell is untrusted input. Nothing here touches a file: :func:`plan_pull` returns either the
whole plan of a pull (merged manifest, moves, the manifest after them, what the sheet shows
afterwards) or every problem found, each naming its sheet row and column. The sheet is parsed
once.

The merge is three-way, per cell: *base* is what the last push published, *theirs* is the sheet,
*ours* is the manifest now (the folders may have changed since the push). A cell people did not
edit never overrides the folders; a cell both sides changed differently is a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from .augment import follow_sources
from .dataset import ACTIONS
from .errors import Problem
from .journal import Move, plan_locations
from .pullcheck import (
    cell_problems,
    headerless_problems,
    published_columns,
    rekeyed_problems,
    uncomputed_problems,
)
from .rows import CHECKED, CORE, EDITABLE, REQUIRED, RESERVED, checked_value, extra_columns
from .sheets.base import header_row_of, headerless_columns, uncomputed_cells
from .versions import diff_manifests

if TYPE_CHECKING:
    from .augment import ClassTable, Followed

_ACTION_ALIASES = {"": "keep", "keep": "keep", "drop": "drop"}
# Reserved names that are not sheet columns (the manifest's ``hash``): never a person's column.
_INTERNAL = {c.casefold() for c in RESERVED if c not in CORE}


@dataclass
class PullPlan:
    manifest: pd.DataFrame  # the merged manifest (paths not yet updated)
    edited: list[str]  # ids with at least one changed cell
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    changes: pd.DataFrame | None = None  # diff of the manifest before -> merged (per id, field)
    moves: list[Move] = field(default_factory=list)
    new_manifest: pd.DataFrame | None = None  # merged, with the paths after the moves
    shown: pd.DataFrame | None = None  # what the sheet shows afterwards (the next merge base)
    followed: list[Followed] = field(default_factory=list)  # derived rows that followed their source


@dataclass
class CheckoutPlan:
    moves: list[Move]
    new_manifest: pd.DataFrame
    changes: pd.DataFrame  # diff of the manifest now -> after the checkout
    gone: list[str]  # ids of the target version no longer on disk


def normalise_header(sheet: pd.DataFrame) -> tuple[dict[str, str], list[Problem]]:
    """Map sheet header -> canonical name; problems for missing, duplicate or blank headers."""
    problems: list[Problem] = []
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    core = {c.casefold(): c for c in CORE}
    # Columns with data under a blank header: refused cell by cell (never a column of their own).
    head = header_row_of(sheet)  # 2 below the info line
    headerless = headerless_columns(sheet)
    problems += headerless_problems(sheet, headerless, head)
    for raw in sheet.columns:
        if raw in headerless:
            continue
        text = str(raw).strip()
        key = text.casefold()
        if not text:
            if (sheet[raw].astype(str).str.strip() != "").any():
                problems.append(Problem(head, None, "a column holds data but has no header"))
            continue
        name = core.get(key, text)
        if name not in core.values() and key in _INTERNAL:
            problems.append(Problem(head, text, f"header {text!r} is a name sheetsync keeps for "
                                                f"its own data; rename the column (e.g. "
                                                f"{text + ' (mine)'!r}) to pull"))
            continue
        if name in seen:
            problems.append(Problem(head, text, f"header {text!r} appears twice"))
            continue
        seen[name] = raw
        mapping[raw] = name
    # The cause first: a header that is gone makes every cell below look out of place.
    missing = [Problem(head, name, f"header {name!r} is missing (renamed or removed, or the "
                                   f"header row moved?); restore it to pull")
               for name in REQUIRED if name not in seen]
    return mapping, missing + problems


def clean_cells(sheet: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Keep mapped columns under canonical names, drop blank rows; index stays the sheet row."""
    df = sheet[list(mapping)].rename(columns=mapping).astype(str)
    blank = (df.apply(lambda s: s.str.strip()) == "").all(axis=1)
    return df[~blank]


def plan_pull(
    sheet: pd.DataFrame,
    manifest: pd.DataFrame,
    published: pd.DataFrame | None,
    classes: Sequence[str],
    splits: Sequence[str],
    known_ids: set[str] | None = None,
    exists: Callable[[str], bool] = lambda _: False,
    derived: ClassTable | None = None,
) -> PullPlan:
    """Validate ``sheet``, merge its edits into ``manifest`` (all frames of str), plan the moves.

    ``exists(rel)`` tells whether a path under the root holds a file (never overwritten).
    ``derived``: the augment class table when the manifest has derived rows; they then follow
    a relabelled or dropped source (:func:`sheetsync.augment.follow_sources`) in the plan.
    """
    mapping, problems = normalise_header(sheet)
    if problems:
        return PullPlan(manifest, [], problems)
    cells = clean_cells(sheet, mapping)
    extras = [c for c in cells.columns if c not in CORE]
    current = manifest.set_index("id", drop=False)
    ids = cells["id"].str.strip()
    # Cells no push could write back, and rows whose id was moved apart from the row.
    problems += cell_problems(cells, header_row_of(sheet)) + rekeyed_problems(ids, cells, published)
    # A formula with no computed value reads as empty: what was typed would be lost unseen.
    problems += [p for p in uncomputed_problems(uncomputed_cells(sheet)) if p.row in sheet.index]
    rows = pd.Series(cells.index.astype(int), index=cells.index)
    bad = pd.Series(False, index=cells.index)

    def report(mask: pd.Series, column: str, message: Callable[[int], str]) -> None:
        nonlocal bad
        for idx in mask[mask & ~bad].index:
            problems.append(Problem(int(rows[idx]), column, message(idx)))
        bad = bad | mask

    first_row = rows.groupby(ids).transform("min")
    report(ids == "", "id", lambda i: "the row has no id (rows cannot be added in the sheet; "
                                      "add image files to the folders instead)")
    report(ids.duplicated(), "id", lambda i: f"id {ids[i]!r} also appears on row {first_row[i]}")
    known = known_ids or set()
    report(~ids.isin(current.index), "id", lambda i: f"{ids[i]!r}: " + (
        "its image is missing from the dataset folder; restore the file or delete the row"
        if ids[i] in known else "unknown id"))
    theirs = pd.DataFrame({"split": _choices(cells["split"], splits),
                           "label": _choices(cells["label"], classes),
                           "action": cells["action"].str.strip().str.casefold().map(_ACTION_ALIASES)},
                          index=cells.index)
    cell_bad = pd.Series(False, index=cells.index)
    for name, allowed in (("split", splits), ("label", classes), ("action", ACTIONS)):
        mask = theirs[name].isna() & ~bad
        for idx in mask[mask].index:
            what = "an action" if name == "action" else f"a {'class' if name == 'label' else name}"
            problems.append(Problem(int(rows[idx]), name, f"{cells.at[idx, name]!r} is not {what} "
                                                          f"(one of: {', '.join(allowed)})"))
        cell_bad |= mask
    if CHECKED in cells.columns:
        # TRUE or FALSE (a tick box), "" for an empty cell: anything else names its row.
        theirs[CHECKED] = cells[CHECKED].map(checked_value)
        mask = theirs[CHECKED].isna() & ~bad & ~cell_bad
        for idx in mask[mask].index:
            problems.append(Problem(int(rows[idx]), CHECKED, f"{cells.at[idx, CHECKED]!r} is not "
                                                             f"TRUE or FALSE (tick or untick the box)"))
        cell_bad |= mask
    bad |= cell_bad
    problems.sort(key=lambda p: (p.row or 0, CORE.index(p.column) if p.column in CORE else 99))
    good = ~bad
    theirs["note"] = cells["note"]
    for name in extras:
        theirs[name] = cells[name]
    theirs = theirs[good].set_axis(ids[good], axis=0)
    merged, edited, merge_problems = _merge(theirs, current, published, rows[good].set_axis(ids[good]))
    problems += merge_problems
    warnings: list[str] = []
    missing = current.index.difference(pd.Index(ids), sort=False)
    if len(missing) and not problems:
        warnings.append(f"{len(missing)} image(s) have no row in the sheet; left unchanged "
                        f"(e.g. {', '.join(map(str, missing[:3]))})")
    plan = PullPlan(merged.reset_index(drop=True), edited, problems, warnings)
    if derived is not None and not problems:
        plan.manifest, plan.followed = follow_sources(manifest, plan.manifest, edited, derived)
    if not problems:
        plan.changes = diff_manifests(manifest, plan.manifest)
        plan.moves, plan.new_manifest = plan_locations(plan.manifest, exists)
        plan.shown = _shown(theirs, cells[good], published)
    return plan


def _shown(theirs: pd.DataFrame, cells: pd.DataFrame, published: pd.DataFrame | None) -> pd.DataFrame:
    """What the sheet shows after the pull (cells as normalised, and the read-only cells the
    row check compares), so the next push sees no unpulled edit; rows the sheet lacks keep
    what was published. ``cells`` holds the rows of ``theirs``, in its order."""
    cols = [*[c for c in EDITABLE if c in theirs.columns],
            *[c for c in cells.columns if c in extra_columns(cells)]]
    read_only = cells[published_columns(cells.columns)].set_axis(theirs.index)
    shown = pd.concat([theirs[cols], read_only], axis=1).rename_axis("id").reset_index()
    if published is not None:
        rest = published[~published["id"].isin(shown["id"])]
        shown = pd.concat([shown, rest], ignore_index=True)
    return shown.fillna("").astype(str)


def plan_checkout(manifest: pd.DataFrame, target: pd.DataFrame,
                  exists: Callable[[str], bool] = lambda _: False) -> CheckoutPlan:
    """Put every image still on disk back where version ``target`` had it (moves planned)."""
    wanted = target.set_index("id")
    merged = manifest.set_index("id", drop=False).copy()
    common = merged.index.intersection(wanted.index)
    for name in ("split", "label", "action", "note", CHECKED):
        if name in wanted.columns:  # versions before the checked column have none
            merged.loc[common, name] = wanted.loc[common, name]
    gone = [str(i) for i in wanted.index.difference(merged.index)]
    moves, new_manifest = plan_locations(merged.reset_index(drop=True), exists)
    return CheckoutPlan(moves, new_manifest, diff_manifests(manifest, new_manifest), gone)


def _choices(values: pd.Series, choices: Sequence[str]) -> pd.Series:
    folded = {c.casefold(): c for c in choices}
    return values.str.strip().str.casefold().map(folded)


def _merge(
    theirs: pd.DataFrame, current: pd.DataFrame, published: pd.DataFrame | None, rows: pd.Series,
) -> tuple[pd.DataFrame, list[str], list[Problem]]:
    """Three-way merge per cell; ``theirs`` is indexed by id and already valid."""
    merged = current.copy()
    base = published.set_index("id") if published is not None and len(published) else None
    problems: list[Problem] = []
    edited = pd.Series(False, index=theirs.index)
    for name in theirs.columns:
        if name not in merged.columns:
            merged[name] = ""
        new = theirs[name].astype(str)
        ours = merged.loc[theirs.index, name].astype(str)
        if name == CHECKED:  # "" and FALSE both mean not ticked
            ours = ours.map(checked_value).fillna(ours)
        changed = new != ours
        if base is not None and name in base.columns:
            has_base = theirs.index.isin(base.index)
            was = base[name].reindex(theirs.index).fillna("").astype(str)
            if name in EDITABLE[:3]:
                was = was.str.strip()
            elif name == CHECKED:
                was = was.map(checked_value).fillna(was)
            # A cell nobody edited in the sheet never overrides the folders.
            untouched = has_base & (new == was)
            conflict = has_base & ~untouched & changed & (ours != was)
            for id_ in conflict[conflict].index:
                problems.append(Problem(int(rows[id_]), name,
                                        f"edited in the sheet ({was[id_]!r} -> {new[id_]!r}) but "
                                        f"the folders changed it to {ours[id_]!r} since the push"))
            changed = changed & ~untouched & ~conflict
        take = changed[changed].index
        merged.loc[take, name] = new[take]
        edited |= changed
    return merged, list(edited[edited].index), problems


def unpulled_edits(sheet: pd.DataFrame | None, published: pd.DataFrame | None) -> list[str]:
    """Human edits in ``sheet`` that were never pulled: one line each (empty when none).

    Compares the editable cells (and columns people added) with what the last push wrote.
    """
    if sheet is None or published is None:
        return []
    mapping, header_problems = normalise_header(sheet)
    if header_problems:
        return [f"the header was changed: {p.message}" for p in header_problems]
    cells = clean_cells(sheet, mapping)
    ids = cells["id"].str.strip()
    base = published.set_index("id")
    known = ids.isin(base.index)
    lines = {(int(r), 0): f"row {r}: id {ids[r]!r} was not in the last push (row added or id edited)"
             for r in ids[~known].index}
    for p in uncomputed_problems(uncomputed_cells(sheet)):  # a push would overwrite them
        lines[(p.row or 0, 0)] = f"row {p.row}: {p.message}"
    compare = [c for c in cells.columns if c in EDITABLE or c not in CORE]
    for k, name in enumerate(compare, start=1):
        now = cells.loc[known, name]
        was = (base[name].reindex(ids[known]).fillna("").astype(str) if name in base.columns
               else pd.Series("", index=ids[known].to_numpy()))
        was.index = now.index
        if name in EDITABLE[:3]:
            a, b = now.str.strip().str.casefold(), was.str.strip().str.casefold()
            same = (a == b) | ((a == "") & (b == "keep") if name == "action" else False)
        elif name == CHECKED:
            same = now.map(checked_value).fillna(now) == was.map(checked_value).fillna(was)
        else:
            same = now == was
        for r in same[~same].index:
            lines[(int(r), k)] = f"row {r}, {name}: {was[r]!r} -> {now[r]!r}"
    return [lines[key] for key in sorted(lines)]
