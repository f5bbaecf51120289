"""The fast reader (calamine) and the reference reader (openpyxl) must agree cell for cell."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pandas as pd
from _xlsx_helpers import make_layout, make_table

from sheetsync.sheets import local
from sheetsync.sheets.local import LocalBackend

TRICKY = ["=1+1", "+x", "-", "@a", "0042", "1e3", "  padded  ", "Ünïcødé 字", "TRUE", ""]


def test_fast_and_reference_readers_agree(tmp_path: Path) -> None:
    root = tmp_path / "data"
    table = make_table(root, 30)
    table["note"] = [TRICKY[i % len(TRICKY)] for i in range(len(table))]
    table["reviewer"] = [str(i) if i % 3 else "" for i in range(len(table))]
    book = tmp_path / "s.xlsx"
    backend = LocalBackend(book, root)
    backend.write_table(table, make_layout())
    wb = openpyxl.load_workbook(book)  # a person types a number, a date and a bool
    ws = wb["data"]
    ws["H5"] = 7
    ws["H6"] = 0.5
    ws["H7"] = True
    wb.save(book)

    fast = local._read_with_calamine(book, "data")
    with backend._open_read_only() as wb_ro:
        reference = local._read_sheet(wb_ro["data"])
    assert isinstance(fast, pd.DataFrame)
    pd.testing.assert_frame_equal(fast, reference)
    assert list(fast.loc[5:7, "note"]) == ["7", "0.5", "TRUE"]


def test_missing_workbook_reads_as_none(tmp_path: Path) -> None:
    # Error cells (#DIV/0!) are covered by test_local_backend's Excel-shaped workbook, which
    # goes through the fallback to openpyxl.
    assert local._read_with_calamine(tmp_path / "missing.xlsx", "data") is None
