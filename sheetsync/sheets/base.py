"""The small interface every spreadsheet backend implements.

A backend knows how to put a table of rows into a spreadsheet and read it back; it knows
nothing of datasets, versions or models. ``sheetsync.sheets.local`` (an .xlsx workbook)
and ``sheetsync.sheets.google`` (Google Sheets through gspread) implement it.

The contract:

* ``write_table(table, layout)`` replaces the data sheet with ``table`` (its columns in order,
  typed as ``layout`` says). The ``image`` column of ``table`` holds nothing useful: the backend
  renders a thumbnail from the ``path`` column itself (local: embeds the file at
  ``root / path``; Google: ``=IMAGE(url)`` from the ``url`` column).
* ``read_table()`` returns every cell of the data sheet as ``str`` (``""`` for empty), the
  header row as column names (as written in the sheet, not cleaned), and the 1-based sheet row
  number as the index (the header is row 1, so the first data row is 2). Numbers read back as
  their shortest text (``1.0`` -> ``"1"``, ``0.25`` -> ``"0.25"``). Returns ``None`` when the
  sheet does not exist yet. Validation of what people typed is not the backend's job. A column
  with data under a blank header is named ``column N`` (N: its 1-based sheet column) and listed
  by :func:`mark_headerless`, so that validation can refuse it, naming the cell.
  With ``layout.info`` the sheet starts with an info line (row 1, text starting with
  :data:`INFO_PREFIX`) and the header is row 2: ``read_table`` skips that line, and the index
  stays the sheet row (the first data row is then 3).
* ``update_own_columns(updates, layout, append=...)`` writes only sheetsync's own (not
  editable) columns of rows already in the sheet, matched by their ``id`` cell in a read taken
  inside the call, appends whole rows for ids the sheet does not hold yet, and reads the id
  column back after writing: if people sorted or moved rows meanwhile it writes again (at most
  a few times) so that every value sits on its id's row. Cells people edit (editable columns,
  their own columns) are never written for existing rows; a ``None`` in ``updates`` leaves
  that cell as it is (NaN or ``""`` empties it). Returns an :class:`OwnUpdate`. Rows are
  found below the header wherever it is (row 2 under an info line); with ``layout.info`` the
  info line is rewritten too, and ``layout.flagged_ids`` says which rows the review flags (a
  backend that rebuilds the sheet highlights those rows, wherever they now are).
* ``append_score(row)`` appends one row to the ``scores`` sheet (creating it, with a header,
  when missing; new keys extend the header); ``read_scores()`` returns it as a DataFrame of str.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

# "checkbox": TRUE/FALSE (a checkbox in Google Sheets, a TRUE/FALSE dropdown in the workbook).
ColumnKind = Literal["text", "number", "image", "choice", "checkbox"]

DATA_SHEET = "data"
INFO_PREFIX = "sheetsync · "
SCORES_SHEET = "scores"


@dataclass(frozen=True)
class Column:
    """One sheet column: how it is typed, whether people may edit it, its dropdown choices."""

    name: str
    kind: ColumnKind = "text"
    editable: bool = False
    choices: tuple[str, ...] = ()
    width: int | None = None
    note: str = ""  # shown as the header's comment/tooltip
    # Spreadsheet number format of a number column ("0.00", "0%"); "" = the program's default.
    number_format: str = ""


@dataclass(frozen=True)
class SheetLayout:
    """How the data sheet looks: its columns and the row highlight rule."""

    columns: tuple[Column, ...]
    # Rows whose values in these two columns differ (both non-empty) are highlighted.
    highlight_mismatch: tuple[str, str] | None = ("label", "predicted")
    extra: Mapping[str, object] = field(default_factory=dict)
    # Rows (0-based positions in the table written) the review flags: highlighted. The
    # highlight is a cell style, so it follows the row when people sort.
    flagged: tuple[int, ...] = ()
    # The header and every column up to and including this one stay in view when scrolling.
    freeze_through: str | None = None
    # Print / PDF: landscape, fit to the page width, the header repeated on every page.
    print_landscape: bool = True
    # A line above the header (version, model, summary); must start with INFO_PREFIX.
    info: str = ""
    # The flagged rows by id, for writes that keep the sheet's own row order
    # (update_own_columns); ``flagged`` holds their positions in a table written whole.
    flagged_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.info and not self.info.startswith(INFO_PREFIX):
            raise ValueError(f"the info line must start with {INFO_PREFIX!r}")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        # Columns people added themselves: plain editable text.
        return Column(name, "text", editable=True)

    @property
    def editable(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.editable)


@dataclass(frozen=True)
class OwnUpdate:
    """What :meth:`Backend.update_own_columns` did."""

    updated: int  # existing rows whose own columns were written
    appended: int  # whole rows added at the end
    repairs: int  # rewrites because the rows moved between the read and the write
    not_found: tuple[str, ...] = ()  # ids in ``updates`` with no row in the sheet
    missing_columns: tuple[str, ...] = ()  # own columns the sheet's header lacks (not written)


def own_columns_check(updates: pd.DataFrame, layout: SheetLayout) -> None:
    """Refuse (a bug, not bad input) to write a column people edit through the own-column path."""
    bad = [c for c in updates.columns if layout.column(str(c)).editable]
    if bad:
        raise ValueError(f"update_own_columns may not write editable columns {bad}")


def row_positions(sheet: pd.DataFrame | None) -> dict[str, int]:
    """id -> 1-based sheet row of a read table (first row wins for a duplicated id)."""
    if sheet is None or "id" not in sheet.columns:
        return {}
    out: dict[str, int] = {}
    for row, value in zip(sheet.index, sheet["id"], strict=True):
        key = str(value).strip()
        if key and key not in out:
            out[key] = int(row)
    return out


def merge_own_columns(sheet: pd.DataFrame, updates: pd.DataFrame,
                      append: pd.DataFrame | None) -> tuple[pd.DataFrame, OwnUpdate]:
    """The whole sheet as a table with ``updates`` put into its own columns (pure).

    ``sheet`` is a read (index = sheet row, cells str); rows keep their order and every cell
    people edit keeps the value read; rows of ``append`` whose id has no row are added at the end.
    """
    positions = row_positions(sheet)
    table = sheet.copy()
    present = [c for c in updates.columns if c in table.columns]
    found = [i for i in updates.index if str(i) in positions]
    rows = [positions[str(i)] for i in found]
    for name in present:
        column = table[name].astype(object)
        for row, id_ in zip(rows, found, strict=True):
            value = updates.at[id_, name]
            if value is not None:  # None: leave the cell as it is
                column[row] = value
        table[name] = column
    appended = 0
    if append is not None and len(append):
        new = append[~append["id"].astype(str).isin(positions)]
        if len(new):
            extra = new.reindex(columns=table.columns).astype(object).where(new.reindex(
                columns=table.columns).notna(), "")
            table = pd.concat([table, extra], ignore_index=True)
            appended = len(new)
    result = OwnUpdate(
        updated=len(found), appended=appended, repairs=0,
        not_found=tuple(str(i) for i in updates.index if str(i) not in positions),
        missing_columns=tuple(str(c) for c in updates.columns if c not in table.columns))
    return table.reset_index(drop=True), result


class Backend(ABC):
    """A spreadsheet that holds the data sheet and the scores sheet."""

    name: str = "backend"

    @abstractmethod
    def describe(self) -> str:
        """Where the sheet lives, for messages (a file path or a URL)."""

    @abstractmethod
    def read_table(self) -> pd.DataFrame | None:
        """Every cell of the data sheet as str; index = 1-based sheet row; None if absent."""

    @abstractmethod
    def write_table(self, table: pd.DataFrame, layout: SheetLayout) -> None:
        """Replace the data sheet's content with ``table``, formatted as ``layout`` says."""

    @abstractmethod
    def append_score(self, row: Mapping[str, object]) -> None:
        """Append one row to the scores sheet, never overwriting earlier rows."""

    @abstractmethod
    def read_scores(self) -> pd.DataFrame:
        """The scores sheet as a DataFrame of str (empty when there is none)."""

    def update_own_columns(self, updates: pd.DataFrame, layout: SheetLayout, *,
                           append: pd.DataFrame | None = None) -> OwnUpdate:
        """Write ``updates`` (index = id, columns = sheetsync's own columns) into the rows
        holding those ids, append ``append`` rows (table rows, as for ``write_table``) whose id
        has no row yet; never write a cell people edit. See the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} cannot update its own columns")

    def update_followed(self, cells: pd.DataFrame, shown: pd.DataFrame,
                        layout: SheetLayout) -> list[str]:
        """Show in the sheet what a pull changed in rows nobody edited (derived rows that
        followed their relabelled source): ``cells`` (index = id; label, action, note) are
        written only where the sheet still shows ``shown`` (the same shape), so a person's
        newer edit is never overwritten. Returns the ids written. A backend that cannot do
        this safely writes nothing (the next push shows them)."""
        return []

    def usage(self) -> str:
        """What the last operations cost (requests, bytes); empty when not meaningful."""
        return ""


# How far down people may push the header (rows inserted above it) and still have it found.
HEADER_SEARCH = 10


def skip_info(rows: list[list[str]]) -> tuple[list[list[str]], int]:
    """``rows`` from the header on, and the header's row number (1-based, in ``rows``).

    Row 1 is the info line when its first cell starts with :data:`INFO_PREFIX` (anything
    typed beside it in row 1 is outside the table and is not read). The header is the row
    below it, unless people overtyped or cleared the info line or inserted rows above the
    header: then it is the first of the top rows holding an ``id`` cell (rows above it are
    outside the table), so an edited info line never turns every row into a problem."""
    start = 1 if rows and rows[0] and rows[0][0].startswith(INFO_PREFIX) else 0
    for k in range(start, min(len(rows), start + HEADER_SEARCH)):
        if any(str(c).strip().casefold() == "id" for c in rows[k]):
            return rows[k:], k + 1
    return rows[start:], start + 1


_HEADERLESS = "sheetsync.headerless"


def mark_headerless(frame: pd.DataFrame, columns: Mapping[str, int]) -> pd.DataFrame:
    """Record which columns of ``frame`` had no header (name -> 1-based sheet column)."""
    frame.attrs[_HEADERLESS] = dict(columns)
    return frame


def headerless_columns(frame: pd.DataFrame) -> dict[str, int]:
    """The columns :func:`mark_headerless` recorded (empty for a frame from elsewhere)."""
    return dict(frame.attrs.get(_HEADERLESS, {}))


_UNCOMPUTED = "sheetsync.uncomputed"


def mark_uncomputed(frame: pd.DataFrame, cells: Mapping[str, str]) -> pd.DataFrame:
    """Record cells holding a formula with no computed value (``"H5"`` -> the formula): they
    read as empty, though the person typed something there."""
    frame.attrs[_UNCOMPUTED] = dict(cells)
    return frame


def uncomputed_cells(frame: pd.DataFrame) -> dict[str, str]:
    """The cells :func:`mark_uncomputed` recorded (empty for a frame from elsewhere)."""
    return dict(frame.attrs.get(_UNCOMPUTED, {}))


_HEADER_ROW = "sheetsync.header_row"


def mark_header_row(frame: pd.DataFrame, row: int) -> pd.DataFrame:
    """Record the 1-based sheet row of ``frame``'s header (2 below an info line)."""
    frame.attrs[_HEADER_ROW] = int(row)
    return frame


def header_row_of(frame: pd.DataFrame) -> int:
    """The row :func:`mark_header_row` recorded (1 for a frame from elsewhere)."""
    return int(frame.attrs.get(_HEADER_ROW, 1))


def column_letter(index: int) -> str:
    """The sheet's name of a 0-based column: 0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(65 + rest) + out
    return out


def checkbox_value(value: object) -> bool:
    """A checkbox cell's value: True for TRUE (any case), a true bool; False otherwise."""
    if isinstance(value, bool):
        return value
    return str(value).strip().casefold() == "true"


def cell_text(value: object) -> str:
    """The text a cell value reads back as: numbers in their shortest form, None as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)
