"""The local .xlsx backend, on real workbooks, real PNGs and a real LibreOffice."""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import resource
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from _tools import need
from _xlsx_helpers import (  # tests/ is on sys.path (pytest's rootdir import mode)
    CLASSES,
    COLUMNS,
    libreoffice_macro,
    make_layout,
    make_png,
    make_table,
    write_excel_like_workbook,
    zip_names,
    zip_text,
)
from PIL import Image

from sheetsync.errors import BackendError
from sheetsync.sheets.base import Column, SheetLayout
from sheetsync.sheets.local import LISTS_SHEET, LocalBackend, WorkbookLockedError

TRICKY_TEXT = [
    "=1+1",
    "+x",
    "-",
    "@a",
    "#N/A",
    "=",
    "  padded  ",
    "Ünïcødé 字 🙂",
    "line\nbreak",
    "TRUE",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def book(tmp_path: Path) -> Path:
    return tmp_path / "sheet.xlsx"


def backend(book: Path, root: Path, **kw: object) -> LocalBackend:
    return LocalBackend(book, root, **kw)  # type: ignore[arg-type]


def test_read_before_anything_was_written(book: Path, root: Path) -> None:
    b = backend(book, root)
    assert b.read_table() is None
    assert b.read_scores().empty
    assert b.describe() == str(book)


def test_round_trip_of_typed_values(book: Path, root: Path) -> None:
    table = make_table(root, len(TRICKY_TEXT))
    table["note"] = TRICKY_TEXT
    table["why"] = list(reversed(TRICKY_TEXT))
    table.loc[0, "id"] = "0042"
    table.loc[1, "id"] = "1e3"
    table.loc[2, "id"] = "00000000"
    table.loc[3, "label"] = "=SUM(A1:A9)"
    table.loc[0, "confidence"] = float("nan")
    table.loc[1, "confidence"] = None
    table.loc[2, "confidence"] = 1.0
    table.loc[3, "confidence"] = 0.1
    table.loc[4, "confidence"] = 1 / 3
    table.loc[5, "confidence"] = -2.5e-7
    table["margin"] = table["margin"].astype(object)
    table.loc[0, "margin"] = "0.25"  # numbers may arrive as text: stored as numbers
    table.loc[1, "margin"] = ""
    table.loc[2, "margin"] = "n/a"  # not a number: kept as text rather than lost
    table.loc[1, "predicted"] = float("nan")
    b = backend(book, root)
    b.write_table(table, make_layout())

    got = b.read_table()
    assert got is not None
    assert list(got.columns) == COLUMNS
    assert list(got.index) == list(range(2, 2 + len(table)))
    assert all(got[c].map(type).eq(str).all() for c in got.columns)
    assert list(got["note"]) == TRICKY_TEXT
    assert list(got["why"]) == list(reversed(TRICKY_TEXT))
    assert list(got["id"][:3]) == ["0042", "1e3", "00000000"]
    assert got.loc[5, "label"] == "=SUM(A1:A9)"
    assert list(got["confidence"][:6]) == ["", "", "1", "0.1", repr(1 / 3), "-2.5e-07"]
    assert list(got["margin"][:3]) == ["0.25", "", "n/a"]
    assert got.loc[3, "predicted"] == ""
    assert set(got["image"]) == {""}

    # Stored with the right cell types: no formula anywhere, numbers as numbers.
    ws = openpyxl.load_workbook(book)["data"]
    assert "<f>" not in zip_text(book, "xl/worksheets/sheet1.xml")
    assert ws["H2"].data_type == "s" and ws["H2"].value == "=1+1"
    assert ws["H6"].data_type == "s" and ws["H6"].value == "#N/A"
    assert ws["A2"].data_type == "s"
    assert ws["J4"].data_type == "n" and ws["J4"].value == 1
    assert ws["K2"].data_type == "n" and ws["K2"].value == 0.25
    assert ws["H2"].quotePrefix and ws["H5"].quotePrefix and not ws["H8"].quotePrefix


def test_numbers_from_numpy_and_ints(book: Path, root: Path) -> None:
    import numpy as np

    table = make_table(root, 3, images=False)
    table["confidence"] = np.array([0.5, np.nan, 0.75], dtype=np.float32)
    table["margin"] = pd.array([1, None, 3], dtype="Int64")
    table["note"] = [12, None, 3.5]
    b = backend(book, root, thumbnails=False)
    b.write_table(table, make_layout())
    got = b.read_table()
    assert got is not None
    assert list(got["confidence"]) == ["0.5", "", "0.75"]
    assert list(got["margin"]) == ["1", "", "3"]
    assert list(got["note"]) == ["12", "", "3.5"]


def test_empty_table_keeps_the_header(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.write_table(make_table(root, 0), make_layout())
    got = b.read_table()
    assert got is not None and got.empty and list(got.columns) == COLUMNS


def test_reads_what_people_did_to_rows(book: Path, root: Path) -> None:
    """Re-sorted, added and deleted rows, extra columns, dates and booleans people typed."""
    b = backend(book, root)
    b.write_table(make_table(root, 6), make_layout())
    wb = openpyxl.load_workbook(book)
    ws = wb["data"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2, max_row=7)]
    order = [5, 3, 1, 0, 2]  # re-sorted, and the row of id ...04 deleted
    for target, source in enumerate(order, start=2):
        for col, value in enumerate(rows[source], start=1):
            ws.cell(row=target, column=col, value=value)
    for col in range(1, 16):
        ws.cell(row=7, column=col).value = None
    ws.cell(row=8, column=1, value="beef")  # a row people added, after an empty row
    ws.cell(row=8, column=6, value="iv")
    ws.cell(row=1, column=16, value="reviewer")  # a column people added, with a header
    ws.cell(row=2, column=16, value="ann")
    ws.cell(row=3, column=16, value=dt.datetime(2024, 3, 1))
    ws.cell(row=4, column=16, value=dt.datetime(2024, 3, 1, 13, 45, 10))
    ws.cell(row=5, column=16, value=True)
    ws.cell(row=6, column=16, value=7.0)
    ws.cell(row=3, column=18, value="no header")  # data beyond the header: never dropped
    for r in range(9, 20):
        ws.cell(row=r, column=2).fill = openpyxl.styles.PatternFill("solid", start_color="FF0000")
    wb.save(book)

    got = b.read_table()
    assert got is not None
    assert list(got.columns) == [*COLUMNS, "reviewer", "column 18"]
    assert list(got.index) == [2, 3, 4, 5, 6, 7, 8]  # the formatted empty rows are gone
    assert list(got["id"]) == [f"{i:010x}" for i in order] + ["", "beef"]
    assert list(got["reviewer"]) == [
        "ann",
        "2024-03-01",
        "2024-03-01 13:45:10",
        "TRUE",
        "7",
        "",
        "",
    ]
    assert got.loc[3, "column 18"] == "no header"
    assert got.loc[8, "label"] == "iv"
    assert (got.loc[7] == "").all()


def test_extra_columns_survive_a_rewrite(book: Path, root: Path) -> None:
    b = backend(book, root)
    table = make_table(root, 3)
    table["reviewer"] = ["ann", "", "=bob"]
    b.write_table(table, make_layout())
    got = b.read_table()
    assert got is not None
    assert list(got["reviewer"]) == ["ann", "", "=bob"]
    ws = openpyxl.load_workbook(book)["data"]
    assert ws["P1"].fill.fgColor.rgb.endswith("E2EFDA")  # editable: not greyed out


def test_scores_are_appended_and_the_header_grows(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.append_score({"version": 1, "time": "2026-01-01T10:00:00", "test_accuracy": 0.5, "seed": 123})
    b.write_table(make_table(root, 2), make_layout())  # a push in between keeps the scores
    b.append_score({"version": 2, "test_accuracy": 0.625, "seed": 123, "precision": "=bf16"})
    got = b.read_scores()
    assert list(got.columns) == ["version", "time", "test_accuracy", "seed", "precision"]
    assert got.to_dict("records") == [
        {
            "version": "1",
            "time": "2026-01-01T10:00:00",
            "test_accuracy": "0.5",
            "seed": "123",
            "precision": "",
        },
        {"version": "2", "time": "", "test_accuracy": "0.625", "seed": "123", "precision": "=bf16"},
    ]
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames == ["data", "scores"]
    assert wb["scores"]["C2"].data_type == "n"
    assert wb["scores"]["E3"].data_type == "s"


def test_refuses_to_write_while_a_program_has_the_workbook_open(book: Path, root: Path) -> None:
    b = backend(book, root)
    table = make_table(root, 2)
    b.write_table(table, make_layout())
    before = book.read_bytes()
    for lock_name in (f".~lock.{book.name}#", f"~${book.name}", f"~${book.name[2:]}"):
        lock = book.with_name(lock_name)
        lock.write_text("someone,host,2026")
        with pytest.raises(WorkbookLockedError, match=lock_name.replace("$", r"\$")):
            b.write_table(table, make_layout())
        with pytest.raises(WorkbookLockedError):
            b.append_score({"version": 1})
        assert book.read_bytes() == before
        lock.unlink()
    assert b.read_table() is not None  # reading is always fine

    book.with_name(f".~lock.{book.name}#").write_text("stale")
    b.write_table(table, make_layout(), force=True)
    backend(book, root, force=True).append_score({"version": 9})
    assert list(b.read_scores()["version"]) == ["9"]


@pytest.fixture
def tiny_file_size_limit() -> Iterator[None]:
    """A real write failure: the kernel refuses files beyond 32 KiB (as a full disk would)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (32768, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_failed_write_leaves_the_old_workbook_intact(
    book: Path, root: Path, request: pytest.FixtureRequest
) -> None:
    b = backend(book, root)
    table = make_table(root, 80)
    b.write_table(table, make_layout())
    b.append_score({"version": 1})
    before = book.read_bytes()
    assert len(before) > 32768  # so that writing it again must fail part way
    request.getfixturevalue("tiny_file_size_limit")
    with pytest.raises(BackendError, match="could not write .*File too large"):
        b.write_table(table, make_layout())
    with pytest.raises(BackendError, match="could not write"):
        b.append_score({"version": 2})
    assert book.read_bytes() == before
    assert sorted(p.name for p in book.parent.iterdir()) == ["data", "sheet.xlsx"]


def test_refuses_to_overwrite_a_file_it_cannot_read(book: Path, root: Path) -> None:
    book.write_bytes(b"not a workbook at all")
    b = backend(book, root)
    with pytest.raises(BackendError, match="not a readable .xlsx"):
        b.write_table(make_table(root, 1), make_layout())
    with pytest.raises(BackendError, match="not a readable .xlsx"):
        b.read_table()
    assert book.read_bytes() == b"not a workbook at all"


def test_new_workbook_gets_ordinary_permissions(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.write_table(make_table(root, 1), make_layout())
    umask = os.umask(0)
    os.umask(umask)
    assert book.stat().st_mode & 0o777 == 0o666 & ~umask
    book.chmod(0o640)
    b.write_table(make_table(root, 1), make_layout())
    assert book.stat().st_mode & 0o777 == 0o640


def test_cells_a_spreadsheet_cannot_hold_are_named(book: Path, root: Path) -> None:
    table = make_table(root, 3, images=False)
    table.loc[1, "note"] = "bell\x07"
    with pytest.raises(BackendError, match=r"row 3, column 'note'"):
        backend(book, root).write_table(table, make_layout())
    assert not book.exists()


def test_the_workbook_is_dressed_for_people(book: Path, root: Path) -> None:
    """Dropdowns, frozen header, filter, highlight, thumbnails, grey read-only columns."""
    n = 4
    table = make_table(root, n)
    b = backend(book, root, thumb_size=40)
    b.write_table(table, make_layout())
    wb = openpyxl.load_workbook(book)
    ws = wb["data"]
    assert wb.active.title == "data"
    assert ws.freeze_panes == "B2"
    assert ws.auto_filter.ref == f"A1:O{n + 1}"
    assert all(c.font.b for c in ws[1])

    lists = {
        str(dv.sqref): (dv.formula1, dv.allow_blank) for dv in ws.data_validations.dataValidation
    }
    assert lists["E2:E1048576"] == ('"train,val"', True)
    assert lists["F2:F1048576"] == ('"' + ",".join(CLASSES) + '"', True)
    assert lists["G2:G1048576"] == ('"keep,drop"', True)

    rules = [(str(rng.sqref), r.formula) for rng in ws.conditional_formatting for r in rng.rules]
    assert rules == [(f"A2:O{n + 1}", ['AND($F2<>"",$I2<>"",$F2<>$I2)'])]

    assert ws["A2"].fill.fgColor.rgb == "FFF2F2F2"  # read-only: grey
    assert ws["F2"].fill.fill_type is None  # editable: plain
    assert ws["A2"].number_format == "@" and ws["J2"].number_format == "General"
    assert "Read-only" in ws["A1"].comment.text and "stable id" in ws["A1"].comment.text
    assert "fix it here" in ws["F1"].comment.text
    assert 8 < ws.column_dimensions["C"].width <= 50

    assert len(ws._images) == n
    anchors = sorted(
        (img.anchor._from.row, img.anchor._from.col, img.anchor.to.row) for img in ws._images
    )
    assert anchors == [(r, 1, r) for r in range(1, n + 1)]  # inside B2..B5, each in its own cell
    assert all(img.anchor.editAs == "twoCell" for img in ws._images)
    shown = [(img.anchor.to.rowOff - img.anchor._from.rowOff) // 9525 for img in ws._images]
    assert all(ws.row_dimensions[r].height >= (h + 2) * 0.75 for r, h in zip(range(2, n + 2), shown, strict=True))
    media = [m for m in zip_names(book) if m.startswith("xl/media/")]
    assert len(media) == n
    with zipfile.ZipFile(book) as zf:
        for name in media:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                assert im.format == "PNG" and max(im.size) <= 40
    assert f"{n} thumbnails" in b.usage()


def test_long_choice_lists_go_to_a_hidden_sheet(book: Path, root: Path) -> None:
    classes = tuple(f"class number {i} with a long name" for i in range(20)) + ("a,b",)
    b = backend(book, root)
    table = make_table(root, 2, images=False)
    table["label"] = [classes[0], classes[-1]]
    b.write_table(table, make_layout(classes=classes))
    wb = openpyxl.load_workbook(book)
    lists = wb[LISTS_SHEET]
    assert lists.sheet_state == "hidden"
    assert [c.value for c in lists["A"]] == list(classes)
    dv = {str(d.sqref): d.formula1 for d in wb["data"].data_validations.dataValidation}
    assert dv["F2:F1048576"] == f"{LISTS_SHEET}!$A$1:$A${len(classes)}"
    assert dv["E2:E1048576"] == '"train,val"'
    got = b.read_table()
    assert got is not None and list(got["label"]) == [classes[0], "a,b"]
    # A rewrite with short lists removes the now useless hidden sheet.
    b.write_table(make_table(root, 1, images=False), make_layout())
    assert LISTS_SHEET not in openpyxl.load_workbook(book).sheetnames


def test_sheets_people_add_are_kept(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.write_table(make_table(root, 3), make_layout())
    b.append_score({"version": 1})
    wb = openpyxl.load_workbook(book)
    notes = wb.create_sheet("my notes", 0)
    notes["A1"] = "to do"
    notes["B1"] = "=COUNTA(data!A:A)"
    wb.save(book)

    b.write_table(make_table(root, 2), make_layout())
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames == ["my notes", "data", "scores"]
    assert wb["my notes"]["B1"].value == "=COUNTA(data!A:A)"
    assert wb.active.title == "data"
    assert [ws.sheet_view.tabSelected for ws in wb.worksheets] == [False, True, False]
    got = b.read_table()
    assert got is not None and len(got) == 2
    assert len(wb["data"]._images) == 2  # the old pictures went with the old rows


def test_thumbnails_only_from_inside_the_root(book: Path, root: Path, tmp_path: Path) -> None:
    table = make_table(root, 3)
    make_png(tmp_path / "outside.png", 1)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "train" / "link.png").symlink_to(tmp_path / "outside.png")
    table.loc[0, "path"] = "../outside.png"
    table.loc[1, "path"] = str(tmp_path / "outside.png")
    table.loc[2, "path"] = "train/link.png"
    b = backend(book, root)
    b.write_table(table, make_layout())
    assert not [m for m in zip_names(book) if m.startswith("xl/media/")]
    assert "3 images unreadable" in b.usage()


def test_missing_and_broken_images_leave_the_cell_empty(book: Path, root: Path) -> None:
    table = make_table(root, 3)
    (root / table.loc[0, "path"]).unlink()
    (root / table.loc[1, "path"]).write_bytes(b"not a png")
    b = backend(book, root)
    b.write_table(table, make_layout())
    ws = openpyxl.load_workbook(book)["data"]
    assert [img.anchor._from.row for img in ws._images] == [3]


def test_tiny_and_palette_images_are_shown_at_box_size(book: Path, root: Path) -> None:
    table = make_table(root, 2, images=False)
    make_png(root / table.loc[0, "path"], 0, size=(12, 8))
    (root / table.loc[1, "path"]).parent.mkdir(parents=True, exist_ok=True)
    Image.new("P", (300, 100), 3).save(root / table.loc[1, "path"])
    b = backend(book, root, thumb_size=48)
    b.write_table(table, make_layout())
    ws = openpyxl.load_workbook(book)["data"]
    emu = 9525
    sizes = sorted(
        (
            (img.anchor.to.colOff - img.anchor._from.colOff) // emu,
            (img.anchor.to.rowOff - img.anchor._from.rowOff) // emu,
        )
        for img in ws._images
    )
    assert sizes == [(48, 16), (48, 32)]


def test_no_thumbnails_for_huge_sheets(book: Path, root: Path) -> None:
    b = backend(book, root, thumbnails=False)
    b.write_table(make_table(root, 3), make_layout())
    assert not [m for m in zip_names(book) if m.startswith(("xl/media/", "xl/drawings/drawing"))]
    assert b.read_table() is not None


def test_layout_without_highlight_or_choices(book: Path, root: Path) -> None:
    layout = SheetLayout(
        columns=(Column("id"), Column("label", "choice", editable=True)), highlight_mismatch=None
    )
    b = backend(book, root)
    b.write_table(pd.DataFrame({"id": ["1"], "label": ["x"]}), layout)
    ws = openpyxl.load_workbook(book)["data"]
    assert not list(ws.conditional_formatting)
    assert not ws.data_validations.dataValidation
    got = b.read_table()
    assert got is not None and got.to_dict("records") == [{"id": "1", "label": "x"}]


def test_libreoffice_edits_and_saves_the_workbook(
    book: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("soffice")
    """A real spreadsheet program changes cells, re-sorts, adds a sheet and saves."""
    table = make_table(root, 6)
    table["note"] = ["=1+1", "+x", "", "-", "@a", "0042"]
    table.loc[0, "id"] = "0042"
    table.loc[1, "id"] = "1e3"
    table.loc[2, "confidence"] = float("nan")
    b = backend(book, root)
    b.write_table(table, make_layout())
    b.append_score({"version": 1, "test_accuracy": 0.5})

    edits = "\n".join(
        [
            '  sheet = doc.Sheets.getByName("data")',
            '  sheet.getCellRangeByName("F2").setString("vii")',  # relabel id 0042
            '  sheet.getCellRangeByName("G3").setString("drop")',  # drop id 1e3
            '  sheet.getCellRangeByName("H4").setString("=looks like a formula")',
            '  sheet.getCellRangeByName("P1").setString("reviewer")',
            '  sheet.getCellRangeByName("P2").setValue(7)',
            "  Dim fields(0) As New com.sun.star.table.TableSortField",
            "  fields(0).Field = 11",  # sort by loss, descending
            "  fields(0).IsAscending = False",
            "  Dim how(1) As New com.sun.star.beans.PropertyValue",
            '  how(0).Name = "SortFields"',
            "  how(0).Value = fields()",
            '  how(1).Name = "ContainsHeader"',
            "  how(1).Value = True",
            '  sheet.getCellRangeByName("A1:P7").sort(how())',
            '  doc.Sheets.insertNewByName("mine", doc.Sheets.Count)',
            '  doc.Sheets.getByName("mine").getCellRangeByName("A1").setFormula("=1+2")',
        ]
    )
    libreoffice_macro(book, tmp_path / "lo-profile", edits)

    got = b.read_table()
    assert got is not None
    assert list(got.columns) == [*COLUMNS, "reviewer"]
    assert list(got.index) == list(range(2, 8))
    expected = table.iloc[::-1].reset_index(drop=True)  # loss grows with the row: now reversed
    assert list(got["id"]) == list(expected["id"])
    by_id = got.set_index("id")
    assert by_id.loc["0042", "label"] == "vii"
    assert by_id.loc["0042", "reviewer"] == "7"
    assert by_id.loc["1e3", "action"] == "drop"
    assert by_id.loc["0000000002", "note"] == "=looks like a formula"
    assert by_id.loc["0000000002", "confidence"] == ""
    notes = dict(zip(table["id"], table["note"], strict=True))
    notes["0000000002"] = "=looks like a formula"
    assert by_id["note"].to_dict() == notes
    for col in ("path", "split", "predicted", "margin", "loss", "issue_score", "why"):
        want = dict(
            zip(
                table["id"],
                table[col].map(lambda v: "" if isinstance(v, float) and math.isnan(v) else str(v)),
                strict=True,
            )
        )
        want = {k: (v[:-2] if v.endswith(".0") else v) for k, v in want.items()}
        assert by_id[col].to_dict() == want, col
    assert b.read_scores().to_dict("records") == [{"version": "1", "test_accuracy": "0.5"}]
    wb = openpyxl.load_workbook(book)
    assert len(wb["data"]._images) == 6  # LibreOffice kept the thumbnails

    # And the next push over LibreOffice's file keeps the sheet people added, and reuses
    # the thumbnails LibreOffice kept (their names say what they were made from).
    from sheetsync.sheets import _xlsx_images

    rendered: list[Path] = []
    monkeypatch.setattr(_xlsx_images, "render_thumbnail", lambda f, box: rendered.append(f))
    b.write_table(table, make_layout())
    assert rendered == []
    assert len(openpyxl.load_workbook(book)["data"]._images) == 6
    b.append_score({"version": 2})
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames[:2] == ["data", "scores"] and "mine" in wb.sheetnames
    assert wb["mine"]["A1"].value == "=1+2"
    assert list(b.read_scores()["version"]) == ["1", "2"]


def test_reads_what_excel_writes(book: Path, root: Path) -> None:
    """Shared and rich-text strings, inline strings, cached formula results, booleans,
    floats, errors, date serials, cells without coordinates, and a stale dimension."""
    strings = [
        "<t>id</t>",
        "<t>label</t>",
        "<t>note</t>",
        "<t>confidence</t>",
        "<t>0042</t>",
        '<r><rPr><b/></rPr><t>v</t></r><r><t xml:space="preserve">ii</t></r>',
        "<t>1e3</t>",
    ]
    rows = (
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
        '<c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>4</v></c><c r="B2" t="s"><v>5</v></c>'
        '<c r="C2" t="inlineStr"><is><t>=not a formula</t></is></c><c r="D2"><v>0.25</v></c></row>'
        '<row r="3"><c r="A3" t="s"><v>6</v></c><c r="B3" t="str"><f>LOWER("IX")</f><v>ix</v></c>'
        '<c r="C3" t="b"><v>1</v></c><c r="D3"><v>1.0000000000000000E-3</v></c></row>'
        '<row r="5"><c t="inlineStr"><is><t>ab12</t></is></c><c><v>3</v></c>'
        '<c s="1"><v>45352</v></c><c t="e"><v>#DIV/0!</v></c><c><v>42.0</v></c></row>'
        '<row r="6"><c r="B6" t="s"><v>1</v></c></row>'  # "label" typed again: text, kept
        '<row r="7" ht="30" customHeight="1"/>'
    )
    write_excel_like_workbook(book, rows, strings, dimension="A1:B2")
    got = backend(book, root).read_table()
    assert got is not None
    assert list(got.columns) == ["id", "label", "note", "confidence", "column 5"]
    assert list(got.index) == [2, 3, 4, 5, 6]
    assert got.loc[2].tolist() == ["0042", "vii", "=not a formula", "0.25", ""]
    assert got.loc[3].tolist() == ["1e3", "ix", "TRUE", "0.001", ""]
    assert got.loc[4].tolist() == ["", "", "", "", ""]
    assert got.loc[5].tolist() == ["ab12", "3", "2024-03-01", "#DIV/0!", "42"]
    assert got.loc[6].tolist() == ["", "label", "", "", ""]


def test_appending_a_score_changes_nothing_else(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.write_table(make_table(root, 3), make_layout())
    b.append_score({"version": 1, "seconds": 12.5})
    with zipfile.ZipFile(book) as zf:
        before = {n: zf.read(n) for n in zf.namelist()}
    b.append_score({"version": 2, "seconds": 3, "note": "new key"})
    with zipfile.ZipFile(book) as zf:
        after = {n: zf.read(n) for n in zf.namelist()}
    changed = sorted(n for n in after if before.get(n) != after[n])
    assert changed == ["xl/worksheets/sheet2.xml"]  # the scores sheet, nothing else
    assert b.read_scores().to_dict("records") == [
        {"version": "1", "seconds": "12.5", "note": ""},
        {"version": "2", "seconds": "3", "note": "new key"},
    ]
    ws = openpyxl.load_workbook(book)["scores"]
    assert ws.calculate_dimension() == "A1:C3"
    assert ws["C1"].font.b  # the new header cell looks like the others


def test_ten_thousand_rows_round_trip(book: Path, root: Path) -> None:
    table = make_table(root, 10_000, images=False)
    b = backend(book, root, thumbnails=False)
    b.write_table(table, make_layout())
    started = time.perf_counter()
    got = b.read_table()
    seconds = time.perf_counter() - started
    assert got is not None and list(got.index) == list(range(2, 10_002))
    assert list(got["id"]) == list(table["id"])
    assert list(got["loss"][:3]) == ["1", "1.001", "1.002"]
    assert seconds < 30, f"reading 10,000 rows took {seconds:.1f} s"


def test_thumbnails_are_reused_until_the_image_changes(
    book: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sheetsync.sheets import _xlsx_images

    rendered: list[Path] = []
    real = _xlsx_images.render_thumbnail

    def spy(file: Path, box: int) -> _xlsx_images.Thumbnail | None:
        rendered.append(file)
        return real(file, box)

    monkeypatch.setattr(_xlsx_images, "render_thumbnail", spy)
    table = make_table(root, 3)
    b = backend(book, root)
    b.write_table(table, make_layout())
    assert len(rendered) == 3

    # A pull moved one file to another folder (same bytes, same modification time) and
    # the image of another one was replaced: only that one is rendered again.
    moved = "val/x/" + Path(table.loc[0, "path"]).name
    (root / moved).parent.mkdir(parents=True, exist_ok=True)
    (root / table.loc[0, "path"]).rename(root / moved)
    table.loc[0, "path"] = moved
    make_png(root / table.loc[2, "path"], 99, size=(200, 50))
    rendered.clear()
    b.write_table(table, make_layout())
    assert rendered == [(root / table.loc[2, "path"]).resolve()]
    ws = openpyxl.load_workbook(book)["data"]
    assert len(ws._images) == 3
    sizes = {
        img.anchor._from.row: (img.anchor.to.colOff - img.anchor._from.colOff) // 9525
        for img in ws._images
    }
    # The wide picture fills the default box's width; the others are capped by MAX_HEIGHT.
    assert sizes[3] == b.thumb_size and sizes[1] == sizes[2] <= b.thumb_size
    heights = {
        img.anchor._from.row: (img.anchor.to.rowOff - img.anchor._from.rowOff) // 9525
        for img in ws._images
    }
    assert heights[3] == round(b.thumb_size * 50 / 200)  # the new 200x50 picture, not the old 120x90

    # With thumbnails off and on again nothing is left to reuse: all rendered.
    backend(book, root, thumbnails=False).write_table(table, make_layout())
    rendered.clear()
    b.write_table(table, make_layout())
    assert len(rendered) == 3


def test_pictures_on_other_sheets_survive_a_push(book: Path, root: Path) -> None:
    from openpyxl.drawing.image import Image as XlsxImage

    b = backend(book, root)
    b.write_table(make_table(root, 2), make_layout())
    wb = openpyxl.load_workbook(book)
    mine = wb.create_sheet("mine")
    make_png(root / "logo.png", 5)
    mine.add_image(XlsxImage(str(root / "logo.png")), "C3")
    wb.save(book)

    b.write_table(make_table(root, 3), make_layout())
    wb = openpyxl.load_workbook(book)
    assert [len(wb[name]._images) for name in ("data", "mine")] == [3, 1]
    assert wb["mine"]._images[0].anchor._from.row == 2


def test_a_deleted_scores_sheet_is_recreated(book: Path, root: Path) -> None:
    b = backend(book, root)
    b.write_table(make_table(root, 2), make_layout())
    wb = openpyxl.load_workbook(book)
    wb.remove(wb["scores"])
    wb.save(book)
    b.append_score({"version": 4, "test_accuracy": 0.75})
    assert b.read_scores().to_dict("records") == [{"version": "4", "test_accuracy": "0.75"}]
    wb = openpyxl.load_workbook(book)
    assert len(wb["data"]._images) == 2  # the data sheet went through untouched in content
    assert wb["scores"]["A1"].font.b
