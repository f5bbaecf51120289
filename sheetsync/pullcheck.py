"""Pure checks a pull makes on top of the choice checks in :mod:`sheetsync.sync`.

* :func:`cell_problems`: every cell must be one a push can write back (length, control
  characters), with the same rule for both backends, so a pull never records a version that
  the next push refuses.
* :func:`headerless_problems`: data in a column without a header is refused, naming the cell
  (it would otherwise become a column people never named).
* :func:`rekeyed_problems`: each row's read-only cells (path, predictions, ...) must be what the
  last push published for that row's id. Sorting the id column alone ("current selection
  only") gives every row another row's id; this check catches it before any file moves.

Each returns a list of :class:`~sheetsync.errors.Problem` (empty when all is well).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd

from .errors import Problem
from .rows import DERIVED, SIGNAL_COLUMNS, SUGGESTION
from .sheets.base import column_letter

# The stricter of the two backends: Excel/LibreOffice hold at most 32,767 characters per
# cell (Google Sheets 50,000), so a sheet pulled from either can be pushed to either.
MAX_CELL_TEXT = 32_767
# Control characters no .xlsx cell can store (tab, newline and carriage return are fine);
# the same set openpyxl refuses, kept here so the rule does not hang on a library detail.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Read-only columns a push writes and a pull compares with what was published for the id.
# Every review column counts (``suggestion``, the review's suggested fix, and the report's map
# columns map_x, map_y, cluster, and the derived-image columns source_id, transform too);
# numbers are compared as numbers (see _same).
CHECKED_COLUMNS = ("path", "url", *SIGNAL_COLUMNS, SUGGESTION, *DERIVED)


def cell_text_problem(text: str) -> str | None:
    """Why a push could not write ``text`` into a cell, or None when it can."""
    if len(text) > MAX_CELL_TEXT:
        return f"text of {len(text):,} characters (a cell holds at most {MAX_CELL_TEXT:,})"
    found = CONTROL_CHARS.search(text)
    if found:
        return (f"holds the control character {found.group()!r} at position {found.start() + 1}, "
                f"which a spreadsheet cell cannot store; delete it")
    return None


def cell_problems(cells: pd.DataFrame, header_row: int = 1) -> list[Problem]:
    """Every cell (and header) of ``cells`` that a push could not write; index = sheet row;
    ``header_row``: the header's sheet row."""
    problems = [Problem(header_row, str(name), f"header: {why}") for name in cells.columns
                if (why := cell_text_problem(str(name)))]
    for name in cells.columns:
        column = cells[name].astype(str)
        # Vectorised pre-filter: most cells are short and clean.
        suspect = (column.str.len() > MAX_CELL_TEXT) | column.str.contains(CONTROL_CHARS)
        for row, text in zip(column.index[suspect].astype(int), column[suspect], strict=True):
            why = cell_text_problem(text)
            if why:
                problems.append(Problem(int(row), str(name), why))
    return problems


def headerless_problems(sheet: pd.DataFrame, headerless: Mapping[str, int],
                        header_row: int = 1) -> list[Problem]:
    """A problem per non-empty cell under a blank header; ``headerless``: frame column ->
    1-based sheet column (as the backend reported it); ``header_row``: the header's sheet row."""
    problems = []
    for name, number in headerless.items():
        if name not in sheet.columns:
            continue
        column = sheet[name].astype(str)
        letter = column_letter(number - 1)  # number: 1-based
        filled = column.str.strip() != ""
        for row, text in zip(column.index[filled].astype(int), column[filled], strict=True):
            shown = text if len(text) <= 40 else text[:37] + "..."
            problems.append(Problem(int(row), None, f"cell {letter}{row} holds {shown!r} but column "
                                                    f"{letter} has no header: give the column a "
                                                    f"header in row {header_row}, or clear "
                                                    f"the cell"))
    return problems


def uncomputed_problems(cells: Mapping[str, str]) -> list[Problem]:
    """A problem per cell holding a formula with no computed value (``"H5"`` -> formula)."""
    problems = []
    for cell, formula in cells.items():
        row = int(re.sub(r"^[A-Z]+", "", cell))
        shown = formula if len(formula) <= 40 else formula[:37] + "..."
        problems.append(Problem(row, None, f"cell {cell} holds the formula {shown!r} with no "
                                           f"computed value (it reads as empty): open and save "
                                           f"the workbook in a spreadsheet program, or type the "
                                           f"value itself"))
    return problems


def published_columns(columns: Iterable[str]) -> list[str]:
    """The read-only columns among ``columns`` that the row check compares."""
    present = set(columns)
    return [c for c in CHECKED_COLUMNS if c in present]


def rekeyed_problems(ids: pd.Series, cells: pd.DataFrame, published: pd.DataFrame | None) -> list[Problem]:
    """Rows whose read-only cells disagree with what was published for their id.

    ``ids`` (stripped) and ``cells`` share the sheet-row index; ``published`` is the last
    push's table (id plus the columns it kept). Columns missing on either side are not
    compared (people may delete read-only columns; an old project kept fewer), and a cleared
    cell is no sign of re-keying, so it is not compared either."""
    if published is None or not len(published):
        return []
    base = published.drop_duplicates("id").set_index("id")
    names = [c for c in published_columns(base.columns) if c in cells.columns]
    known = ids[ids.isin(base.index)]
    differ = pd.DataFrame({n: ~_same(cells.loc[known.index, n].astype(str),
                                     base[n].reindex(known).astype(str).set_axis(known.index))
                           for n in names}, index=known.index)
    problems = []
    for row in differ.index[differ.any(axis=1)]:
        bad = [n for n in names if differ.at[row, n]]
        first = bad[0]
        problems.append(Problem(int(row), "id", (
            f"id {known[row]!r} was published with {first} {str(base.at[known[row], first])!r}, "
            f"but this row shows {str(cells.at[row, first]).strip()!r}"
            + (f" (and {len(bad) - 1} other read-only cell(s) differ)" if len(bad) > 1 else "")
            + ": the row's id no longer belongs to it (a sort or paste of some columns only?); "
              "undo that, or `sheetsync push --force` to start again from the folders")))
    return problems


def _same(shown: pd.Series, was: pd.Series) -> pd.Series:
    """Cell-wise: the sheet shows what was published (numbers compared as numbers)."""
    shown, was = shown.str.strip(), was.str.strip()
    equal = (shown == "") | (shown == was)
    # Numbers come back in their shortest form; a spreadsheet may round the last digit.
    a = pd.to_numeric(shown, errors="coerce")
    b = pd.to_numeric(was.where(was.str.lower() != "nan"), errors="coerce")
    close = (a - b).abs() <= 1e-9 * b.abs() + 1e-12
    return equal | close.fillna(False)
