"""Typed Sheets API cells and the structure requests of one push (pure: no I/O).

Every value goes out as ``userEnteredValue`` with an explicit type, so nothing from the data is
ever parsed by Google: ``"0042"`` stays text, ``"=1+1"`` is text, not a formula, a number is a
number. Only the image column is a formula (``=IMAGE("url")``). NaN, pandas NA, None and
numpy scalars are turned into plain JSON values (or an empty cell) here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import pandas as pd

from .base import Column, SheetLayout, cell_text, checkbox_value, column_letter

# px: a 34 px tall thumbnail (=IMAGE fits and centres it in the cell) + padding, as the workbook
# (sheetsync.sheets._xlsx_images.MAX_HEIGHT): about 15 rows on a laptop screen.
ROW_HEIGHT = 40
IMAGE_WIDTH = 124
INFO_HEIGHT = 96  # px: five lines of the info text
FONT = "Calibri"  # the same single font as the workbook
FLAG_COLOR = {"red": 1.0, "green": 0.9, "blue": 0.6}
READONLY_COLOR = {"red": 0.95, "green": 0.95, "blue": 0.95}
INFO_COLOR = {"red": 0.867, "green": 0.922, "blue": 0.969}
LINKED = ("url",)  # text cells that are links to the full image
PROTECT_NOTE = "sheetsync: written by `sheetsync push`; edits here are overwritten"
MISMATCH_COLOR = {"red": 1.0, "green": 0.86, "blue": 0.86}


def plain(value: object) -> object:
    """A JSON-safe Python value, or None for anything empty (NaN, NA, None, NaT)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar -> int/float/bool/str
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        if pd.isna(cast(Any, value)):  # pd.NA, pd.NaT
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def text_cell(value: object) -> dict[str, Any]:
    v = plain(value)
    if v is None or v == "":
        return {}
    return {"userEnteredValue": {"stringValue": cell_text(v)}}


def number_cell(value: object) -> dict[str, Any]:
    v = plain(value)
    if v is None or v == "":
        return {}
    if isinstance(v, bool):
        return {"userEnteredValue": {"boolValue": v}}
    if isinstance(v, int | float):
        return {"userEnteredValue": {"numberValue": v}}
    try:
        number = float(str(v).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # not a number after all: keep the text as typed
        return {"userEnteredValue": {"stringValue": str(v)}}
    return {"userEnteredValue": {"numberValue": int(number) if number.is_integer() and abs(number) < 2**53 else number}}


def image_cell(url: object) -> dict[str, Any]:
    v = plain(url)
    # =IMAGE loads only public http(s) URLs (not file:// paths, not Drive viewer links).
    if not isinstance(v, str) or not v.strip().lower().startswith(("http://", "https://")):
        return {}
    quoted = v.strip().replace('"', '""')
    return {"userEnteredValue": {"formulaValue": f'=IMAGE("{quoted}")'}}


def raw_value(cell: dict[str, Any]) -> object:
    """The same value for a RAW ``values`` write ("" for an empty cell)."""
    typed = cell.get("userEnteredValue")
    return next(iter(typed.values())) if typed else ""


def score_cell(value: object) -> dict[str, Any]:
    v = plain(value)
    if isinstance(v, bool):
        return {"userEnteredValue": {"boolValue": v}}
    if isinstance(v, int | float):
        return {"userEnteredValue": {"numberValue": v}}
    return text_cell(v)


def link_cell(value: object) -> dict[str, Any]:
    """Text that is also a link (a public http(s) URL; anything else stays plain text)."""
    cell = text_cell(value)
    v = plain(value)
    if cell and isinstance(v, str) and v.strip().lower().startswith(("http://", "https://")):
        cell["userEnteredFormat"] = {"textFormat": {"link": {"uri": v.strip()}}}
    return cell


def header_offset(layout: SheetLayout) -> int:
    """0-based index of the header row: 1 when an info line sits above it."""
    return 1 if layout.info else 0


def table_rows(table: pd.DataFrame, layout: SheetLayout) -> list[dict[str, Any]]:
    """One ``RowData`` per table row, typed per column kind."""
    kinds = [layout.column(str(name)).kind for name in table.columns]
    linked = [str(name) in LINKED for name in table.columns]
    urls = table["url"].tolist() if "url" in table.columns else [None] * len(table)
    columns = [table.iloc[:, i].tolist() for i in range(table.shape[1])]
    out = []
    for r in range(len(table)):
        cells = []
        for c, kind in enumerate(kinds):
            value = columns[c][r]
            if kind == "image":
                cells.append(image_cell(urls[r]))
            elif kind == "number":
                cells.append(number_cell(value))
            elif kind == "checkbox":
                cells.append({"userEnteredValue": {"boolValue": checkbox_value(value)}})
            elif linked[c]:
                cells.append(link_cell(value))
            else:
                cells.append(text_cell(value))
        out.append({"values": cells})
    return out


def header_row(names: Iterable[str], layout: SheetLayout) -> dict[str, Any]:
    cells = []
    for name in names:
        cell: dict[str, Any] = {
            "userEnteredValue": {"stringValue": str(name)},
            "userEnteredFormat": {"textFormat": {"bold": True}},
        }
        note = layout.column(str(name)).note
        if note:
            cell["note"] = note
        cells.append(cell)
    return {"values": cells}


def grid(sheet_id: int, r0: int, r1: int, c0: int, c1: int) -> dict[str, int]:
    return {"sheetId": sheet_id, "startRowIndex": r0, "endRowIndex": r1,
            "startColumnIndex": c0, "endColumnIndex": c1}


def layout_requests(
    sheet_id: int, names: list[str], n_rows: int, layout: SheetLayout
) -> list[dict[str, Any]]:
    """Validation, protection, filter, highlight and sizes for a freshly written data sheet."""
    head = header_offset(layout)
    first = head + 1
    total = n_rows + first
    width = len(names)
    reqs: list[dict[str, Any]] = []
    columns = [layout.column(n) for n in names]
    for c, col in enumerate(columns):
        if col.kind == "choice" and col.choices and n_rows:
            reqs.append({"setDataValidation": {
                "range": grid(sheet_id, first, total, c, c + 1),
                "rule": {
                    "condition": {"type": "ONE_OF_LIST",
                                  "values": [{"userEnteredValue": ch} for ch in col.choices]},
                    "strict": True, "showCustomUi": True,
                },
            }})
        elif col.kind == "checkbox" and n_rows:
            # A BOOLEAN rule is what makes the cells checkboxes (TRUE ticked, FALSE not).
            reqs.append({"setDataValidation": {
                "range": grid(sheet_id, first, total, c, c + 1),
                "rule": {"condition": {"type": "BOOLEAN"}, "strict": True, "showCustomUi": True},
            }})
    reqs.append(_protect(grid(sheet_id, 0, first, 0, width)))
    for c0, c1 in _runs([not col.editable for col in columns]):
        if n_rows:
            reqs.append(_protect(grid(sheet_id, first, total, c0, c1)))
    reqs.append({"setBasicFilter": {"filter": {"range": grid(sheet_id, head, total, 0, width)}}})
    pair = layout.highlight_mismatch
    if pair and all(p in names for p in pair) and n_rows:
        a, b = (column_letter(names.index(p)) for p in pair)
        r = first + 1
        formula = f'=AND(${a}{r}<>"",${b}{r}<>"",${a}{r}<>${b}{r})'
        reqs.append({"addConditionalFormatRule": {"index": 0, "rule": {
            "ranges": [grid(sheet_id, first, total, 0, width)],
            "booleanRule": {
                "condition": {"type": "CUSTOM_FORMULA", "values": [{"userEnteredValue": formula}]},
                "format": {"backgroundColor": MISMATCH_COLOR},
            },
        }}})
    reqs += _formats(sheet_id, columns, n_rows, layout)
    reqs += _sizes(sheet_id, columns, n_rows, first)
    if layout.info:
        reqs += _info(sheet_id, layout, names)
    return reqs


def frozen_columns(names: list[str], layout: SheetLayout) -> int:
    """How many columns stay in view: every column through ``layout.freeze_through``."""
    through = layout.freeze_through
    return names.index(through) + 1 if through in names else 0


def _repeat(range_: Mapping[str, int], fmt: dict[str, Any], fields: str) -> dict[str, Any]:
    return {"repeatCell": {"range": dict(range_), "cell": {"userEnteredFormat": fmt},
                           "fields": fields}}


def _formats(sheet_id: int, columns: list[Column], n_rows: int,
             layout: SheetLayout) -> list[dict[str, Any]]:
    """One font, grey read-only columns, number formats, centred cells, the flagged rows."""
    first = header_offset(layout) + 1
    total = n_rows + first
    width = len(columns)
    reqs = [_repeat(grid(sheet_id, 0, total, 0, width),
                    {"textFormat": {"fontFamily": FONT}, "verticalAlignment": "MIDDLE"},
                    "userEnteredFormat(textFormat.fontFamily,verticalAlignment)")]
    if not n_rows:
        return reqs
    for c0, c1 in _runs([not col.editable for col in columns]):
        reqs.append(_repeat(grid(sheet_id, first, total, c0, c1),
                            {"backgroundColor": READONLY_COLOR},
                            "userEnteredFormat.backgroundColor"))
    for c, col in enumerate(columns):
        if col.kind == "number" and col.number_format:
            kind = "PERCENT" if col.number_format.endswith("%") else "NUMBER"
            reqs.append(_repeat(grid(sheet_id, first, total, c, c + 1),
                                {"numberFormat": {"type": kind, "pattern": col.number_format}},
                                "userEnteredFormat.numberFormat"))
        if col.kind == "image":
            reqs.append(_repeat(grid(sheet_id, first, total, c, c + 1),
                                {"horizontalAlignment": "CENTER"},
                                "userEnteredFormat.horizontalAlignment"))
        if col.name in ("why", "suggestion"):
            # why: one line, strongest reason first (the cell holds the full text).
            wrap = "CLIP" if col.name == "why" else "WRAP"
            reqs.append(_repeat(grid(sheet_id, first, total, c, c + 1),
                                {"wrapStrategy": wrap}, "userEnteredFormat.wrapStrategy"))
    # The review's flagged rows; written after the row order, so they match the rows written.
    flags = [False] * n_rows
    for i in layout.flagged:
        if 0 <= i < n_rows:
            flags[i] = True
    for r0, r1 in _runs(flags):
        reqs.append(_repeat(grid(sheet_id, first + r0, first + r1, 0, width),
                            {"backgroundColor": FLAG_COLOR}, "userEnteredFormat.backgroundColor"))
    return reqs


def info_span(names: list[str], layout: SheetLayout) -> int:
    """How many columns the info line is merged over: those through ``note``; but 1 (no
    merge) when that would cross the frozen column edge: Google refuses a merge of frozen and
    non-frozen columns, and a batchUpdate with one refused request changes nothing. (Merging
    the frozen columns only would squeeze five lines into the narrow image and label
    columns; unmerged, the text runs on over the empty cells of row 1.)"""
    span = names.index("note") + 1 if "note" in names else len(names)
    frozen = frozen_columns(names, layout)
    return 1 if 0 < frozen < span else span


def _info(sheet_id: int, layout: SheetLayout, names: list[str]) -> list[dict[str, Any]]:
    """The info line in row 1: merged over :func:`info_span` columns and wrapped there, or,
    unmerged, overflowing to the right."""
    span = info_span(names, layout)
    wrap = "WRAP" if span > 1 or len(names) <= 1 else "OVERFLOW_CELL"
    reqs: list[dict[str, Any]] = [{"updateCells": {
        "range": grid(sheet_id, 0, 1, 0, 1),
        "rows": [{"values": [{
            "userEnteredValue": {"stringValue": layout.info},
            "userEnteredFormat": {"textFormat": {"bold": True, "fontFamily": FONT},
                                  "backgroundColor": INFO_COLOR, "wrapStrategy": wrap,
                                  "verticalAlignment": "MIDDLE"},
        }]}],
        "fields": "userEnteredValue,userEnteredFormat",
    }}]
    if span > 1:
        reqs.append({"mergeCells": {"range": grid(sheet_id, 0, 1, 0, span), "mergeType": "MERGE_ALL"}})
    else:
        # The row's other cells in the info colour too, so the line reads as one band.
        reqs.append(_repeat(grid(sheet_id, 0, 1, 1, max(len(names), 1)),
                            {"backgroundColor": INFO_COLOR}, "userEnteredFormat.backgroundColor"))
    reqs.append(_dimension(sheet_id, "ROWS", 0, 1, INFO_HEIGHT))
    return reqs


def _protect(range_: Mapping[str, int]) -> dict[str, Any]:
    return {"addProtectedRange": {"protectedRange": {
        "range": dict(range_), "description": PROTECT_NOTE, "warningOnly": True,
    }}}


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[start, end) index runs where ``flags`` is true."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _sizes(sheet_id: int, columns: list[Column], n_rows: int,
           first: int = 1) -> list[dict[str, Any]]:
    reqs = []
    for c, col in enumerate(columns):
        # Column.width is in characters (as in the .xlsx backend); Sheets wants pixels.
        chars = max(col.width, len(col.name) + 3) if col.width else None
        px = IMAGE_WIDTH if col.kind == "image" else (chars * 7 + 10 if chars else None)
        if px:
            reqs.append(_dimension(sheet_id, "COLUMNS", c, c + 1, px))
    if n_rows and any(col.kind == "image" for col in columns):
        reqs.append(_dimension(sheet_id, "ROWS", first, n_rows + first, ROW_HEIGHT))
    return reqs


def dimension(sheet_id: int, dim: str, start: int, end: int, px: int) -> dict[str, Any]:
    """The size of rows or columns [start, end), in pixels."""
    return _dimension(sheet_id, dim, start, end, px)


def _dimension(sheet_id: int, dim: str, start: int, end: int, px: int) -> dict[str, Any]:
    return {"updateDimensionProperties": {
        "range": {"sheetId": sheet_id, "dimension": dim, "startIndex": start, "endIndex": end},
        "properties": {"pixelSize": int(px)}, "fields": "pixelSize",
    }}
