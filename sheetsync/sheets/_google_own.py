"""Pure planning of :meth:`GoogleBackend.update_own_columns`: which cells go where.

Given one read of the data worksheet (the raw rows the API returned), the RAW
``values.batchUpdate`` ranges that put each id's own-column values on the row holding that
id, and nothing else: rows of other ids are ``null`` ("leave alone"), so even a write that
lands after people re-sorted touches only sheetsync's columns, and the read-back that
follows finds the rows that moved.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .base import INFO_PREFIX, cell_text, column_letter


def header_row(values: Sequence[Sequence[Any]]) -> int:
    """The 1-based sheet row of the header: 2 below sheetsync's info line, else 1."""
    first = values[0][0] if values and values[0] else ""
    return 2 if cell_text(first).startswith(INFO_PREFIX) else 1


def header_positions(values: Sequence[Sequence[Any]], head: int = 1) -> dict[str, int]:
    """Column name (trimmed, as written) -> 0-based column; the first of a duplicated name
    (``head``: the header's 1-based sheet row)."""
    out: dict[str, int] = {}
    for c, v in enumerate(values[head - 1] if len(values) >= head else []):
        name = cell_text(v).strip()
        if name and name not in out:
            out[name] = c
    return out


def ids_by_row(values: Sequence[Sequence[Any]], id_col: int, head: int = 1) -> dict[int, str]:
    """1-based sheet row -> id text, for every data row (below the header row ``head``) with
    an id."""
    out: dict[int, str] = {}
    for r, row in enumerate(values[head:], start=head + 1):
        text = cell_text(row[id_col]).strip() if id_col < len(row) else ""
        if text:
            out[r] = text
    return out


def raw_value(value: object) -> str | int | float | bool:
    """A value for RAW input: numbers stay numbers, missing becomes '' (clears the cell)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return "" if math.isnan(f) or math.isinf(f) else f
    return str(value)


def own_ranges(title: str, header: Mapping[str, int], rows: Mapping[int, str],
               updates: pd.DataFrame) -> list[dict[str, Any]]:
    """One COLUMNS-major ValueRange per own column, spanning the rows it changes."""
    where: dict[str, int] = {}
    for row, id_ in rows.items():
        where.setdefault(id_, row)  # a duplicated id: its first row, as pull reads it
    targets = {where[str(i)]: i for i in updates.index if str(i) in where}
    if not targets:
        return []
    first, last = min(targets), max(targets)
    quoted = "'" + title.replace("'", "''") + "'"
    out = []
    for name in updates.columns:
        if str(name) not in header:
            continue
        letter = column_letter(header[str(name)])
        # null leaves a cell alone: rows of other ids, and None values ("keep as is").
        column = [None if r not in targets or updates.at[targets[r], name] is None
                  else raw_value(updates.at[targets[r], name]) for r in range(first, last + 1)]
        out.append({"range": f"{quoted}!{letter}{first}:{letter}{last}",
                    "majorDimension": "COLUMNS", "values": [column]})
    return out


def info_range(title: str, info: str) -> list[dict[str, Any]]:
    """The info line's cell (A1; its merge and format stay), or nothing without a line."""
    if not info:
        return []
    quoted = "'" + title.replace("'", "''") + "'"
    return [{"range": f"{quoted}!A1", "majorDimension": "ROWS", "values": [[info]]}]


def batches(ranges: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """Ranges grouped so that each request's JSON stays under ``budget`` bytes (Google's ~2 MB
    advice); one range larger than that still goes alone."""
    from ._google_http import dumps

    out: list[list[dict[str, Any]]] = []
    size = budget + 1
    for r in ranges:
        n = len(dumps(r)) + 1
        if size + n > budget:
            out.append([])
            size = 0
        out[-1].append(r)
        size += n
    return out


def moved(expected: Mapping[int, str], now: Mapping[int, str]) -> list[int]:
    """Rows written for one id that now hold another (people sorted in between)."""
    return [r for r, id_ in expected.items() if now.get(r) != id_]
