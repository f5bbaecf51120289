"""Read a worksheet only as far as it really holds rows (pure: bytes in, bytes out).

A stray value at row 1,048,576 makes a reader that builds a dense grid (calamine does)
allocate a million empty rows: about 27 s and 1 GB for the data sheet. The rows that exist
are listed in the XML (``<row r="N">``), so :func:`compact_rows` renumbers them 1..k when they
are far apart and returns the original number of each; the reader then sees k rows and maps
its results back to the sheet's row numbers. :func:`compact_columns` does the same for a value
typed far to the right (column XFD is 16,384 columns wide). The stray value is still read (and refused by the
pull's validation), only the emptiness in between is skipped.
"""

from __future__ import annotations

import re

from .base import column_letter

# Rows further apart than this (in total) are worth compacting; below it, reading densely
# costs less than rewriting the XML.
GAP = 1000
COLUMN_GAP = 100
_ROW_TAG = re.compile(rb"<row\b([^>]*)>")
_ROW = re.compile(rb"<row\b[^>]*?(?:/>|>.*?</row>)", re.S)
_R = re.compile(rb'\br="(\d+)"')
_CELL_REF = re.compile(rb'(<c\b[^>]*?\br=")([A-Z]{1,3})\d+(")')
_DIMENSION = re.compile(rb"<dimension\b[^>]*/>")


def row_numbers(sheet_xml: bytes) -> list[int] | None:
    """The ``r`` of every ``<row>`` in order; None when one has none (then rows are implicit)."""
    out = []
    for tag in _ROW_TAG.finditer(sheet_xml):
        found = _R.search(tag.group(1))
        if found is None:
            return None
        out.append(int(found.group(1)))
    return out


def compact_rows(sheet_xml: bytes) -> tuple[bytes, list[int]] | None:
    """``(xml, numbers)``: the sheet with its rows renumbered 1..k, and ``numbers[i]`` the
    original number of new row ``i + 1``; None when the rows are dense enough already."""
    numbers = row_numbers(sheet_xml)
    if not numbers or numbers[-1] - len(numbers) <= GAP or numbers != sorted(set(numbers)):
        return None
    # Row 1 stays row 1 (the header), even when the sheet has no row 1 element.
    shift = 0 if numbers[0] == 1 else 1
    original = ([1] if shift else []) + numbers
    counter = iter(range(1 + shift, len(numbers) + 1 + shift))

    def renumber(m: re.Match[bytes]) -> bytes:
        new = str(next(counter)).encode()
        row = m.group(0)
        end = row.index(b">")
        head = _R.sub(b'r="' + new + b'"', row[:end], count=1)
        body = _CELL_REF.sub(lambda c: c.group(1) + c.group(2) + new + c.group(3), row[end:])
        return head + body

    xml = _ROW.sub(renumber, sheet_xml)
    # The stored dimension is untrusted anyway, and a reader may size its grid from it.
    return _DIMENSION.sub(b"", xml, count=1), original


def column_number(letters: bytes) -> int:
    """b"A" -> 1, b"AB" -> 28."""
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def _letters(number: int) -> bytes:
    """1 -> b"A": the column names as they appear in the sheet's XML."""
    return column_letter(number - 1).encode("ascii")


def compact_columns(sheet_xml: bytes) -> tuple[bytes, list[int]] | None:
    """``(xml, numbers)``: the sheet with the used columns renamed A, B, C... in order, and
    ``numbers[i]`` the original 1-based number of new column ``i + 1``; None when the columns
    are dense enough (or a cell has no reference, so its column is implicit)."""
    refs = _CELL_REF.findall(sheet_xml)
    if len(refs) != sheet_xml.count(b"<c ") + sheet_xml.count(b"<c>"):
        return None
    used = sorted({column_number(letters) for _, letters, _ in refs})
    if not used or used[-1] - len(used) <= COLUMN_GAP:
        return None
    new = {_letters(n): _letters(i) for i, n in enumerate(used, start=1)}
    ref = re.compile(rb'(<c\b[^>]*?\br=")([A-Z]{1,3})(\d+")')
    xml = ref.sub(lambda m: m.group(1) + new[m.group(2)] + m.group(3), sheet_xml)
    return _DIMENSION.sub(b"", xml, count=1), used
