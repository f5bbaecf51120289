"""Issue 8: sheet edits a pull used to accept wrongly, on real workbooks and the Sheets stand-in.

Each test makes the edit a person would make (through openpyxl for the workbook, through
gspread for Google), then checks that the pull refuses with the cell or row named, and that
nothing changed (files, versions).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from sheetsync._words import text_of, warnings_of
from sheetsync.errors import SheetValidationError
from sheetsync.project import Project
from sheetsync.rows import CORE
from sheetsync.sheets.base import column_letter
from sheetsync.sheets.local import header_row

try:
    from tests._google_project import init_google_project
    from tests._sheets_standin import SheetsStandin
    from tests.test_google_loop import BUCKET, collaborator, open_project
except ImportError:  # tests/ is not a package
    from _google_project import init_google_project
    from _sheets_standin import SheetsStandin
    from test_google_loop import BUCKET, collaborator, open_project


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project(data_root: Path, tmp_path: Path) -> Project:
    p, _ = Project.init(data_root, tmp_path / "proj")
    p.push()
    return p


def workbook(project: Project) -> Path:
    return project.config.resolve(project.config.local.path)


def refused(project: Project) -> list[str]:
    """The problems of a pull that must refuse, after checking that nothing changed."""
    root = project.config.root
    before, versions = tree(root), len(project.versions.list())
    with pytest.raises(SheetValidationError) as info:
        project.pull()
    assert tree(root) == before and len(project.versions.list()) == versions
    return [str(p) for p in info.value.problems]


def column_of(ws, name: str) -> int:
    return [c.value for c in ws[header_row(ws)]].index(name) + 1  # the header is below the info line


# -- case 1: rows re-keyed ------------------------------------------------------------------


def test_sorting_the_id_column_alone_is_refused_naming_the_rows(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    col, first = column_of(ws, "id"), header_row(ws) + 1
    ids = [ws.cell(r, col).value for r in range(first, ws.max_row + 1)]
    for r, id_ in enumerate(sorted(ids, reverse=True), start=first):  # "sort selection only"
        ws.cell(r, col).value = id_
    wb.save(workbook(project))
    moved = sum(a != b for a, b in zip(ids, sorted(ids, reverse=True), strict=True))
    problems = refused(project)
    assert len(problems) == moved > 10
    assert all("no longer belongs to it" in p and "was published with path" in p for p in problems)


def test_swapping_two_ids_is_refused_naming_both_rows(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    col = column_of(ws, "id")
    a, b = ws.cell(3, col).value, ws.cell(7, col).value
    ws.cell(3, col).value, ws.cell(7, col).value = b, a
    wb.save(workbook(project))
    problems = refused(project)
    assert [p.split(":")[0] for p in problems] == ["row 3, column 'id'", "row 7, column 'id'"]
    assert f"id {b!r} was published with path" in problems[0]


def test_a_whole_row_sort_and_cleared_read_only_cells_still_pull(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    first = header_row(ws) + 1
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=first)]
    label, why = column_of(ws, "label") - 1, column_of(ws, "why")
    rows.sort(key=lambda r: str(r[label]), reverse=True)  # every column moves together
    for r, values in enumerate(rows, start=first):
        for c, v in enumerate(values, start=1):
            ws.cell(r, c).value = v
    ws.cell(first, why).value = None  # clearing a read-only cell is no re-keying
    ws.cell(first, column_of(ws, "note")).value = "checked"
    wb.save(workbook(project))
    assert "recorded v2" in text_of(project.pull())
    assert "checked" in set(project.versions.load("v2")["note"])
    assert "nothing to pull" in text_of(project.pull())  # the check holds after a pull too


# -- case 4: cells a push could not write ---------------------------------------------------


def put_raw(book: Path, row: int, column: str, raw: bytes) -> None:
    """Put ``raw`` into a cell's XML, as a tool other than openpyxl may write it (openpyxl
    itself cuts text at 32,767 characters and refuses control characters)."""
    wb = load_workbook(book)
    ws = wb["data"]
    ws.cell(row, column_of(ws, column)).value = "MARKER"
    wb.save(book)
    with zipfile.ZipFile(book) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    hit = [n for n, data in parts.items() if b"MARKER" in data]
    assert len(hit) == 1
    parts[hit[0]] = parts[hit[0]].replace(b"MARKER", raw)
    with zipfile.ZipFile(book, "w") as zf:
        for n, data in parts.items():
            zf.writestr(n, data)


@pytest.mark.parametrize("raw, why", [(b"x" * 100_000, "text of 100,000 characters"),
                                      (b"bell_x0007_here", "control character '\\x07'"),
                                      (b"a\x01b", "control character '\\x01'")])
def test_cells_a_push_could_not_write_are_refused(project: Project, raw: bytes, why: str) -> None:
    put_raw(workbook(project), 4, "note", raw)
    problems = refused(project)
    assert len(problems) == 1 and problems[0].startswith("row 4, column 'note'"), problems
    assert why in problems[0]
    project.push(force=True)  # and the project is not blocked


def test_a_long_note_a_push_can_write_is_pulled_whole(project: Project) -> None:
    put_raw(workbook(project), 4, "note", b"y" * 32_767)
    project.pull()
    assert max(map(len, project.versions.load("latest")["note"])) == 32_767


# -- case 5: data without a header ----------------------------------------------------------


def test_data_in_a_column_without_header_is_refused_naming_the_cell(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    ws.cell(5, ws.max_column + 2).value = "stray"  # column with no header, one blank between
    letter = ws.cell(5, ws.max_column).column_letter
    wb.save(workbook(project))
    problems = refused(project)
    # The header is row 2, below the info line: that is the row to give the column a header in.
    assert problems == [f"row 5: cell {letter}5 holds 'stray' but column {letter} has no header: "
                        f"give the column a header in row 2, or clear the cell"]


# -- the same on Google Sheets --------------------------------------------------------------


@pytest.fixture
def api():
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def gproject(api: SheetsStandin, data_root: Path, tmp_path: Path) -> Project:
    proj = init_google_project(api, data_root, tmp_path / "gproj", image_url_template=BUCKET)
    open_project(api, proj).push()
    return open_project(api, proj)


def test_google_rekeyed_rows_bad_cells_and_headerless_data_are_refused(api, gproject) -> None:
    ws = collaborator(api, gproject)
    values = ws.get_all_values()
    header = values[1]  # row 2, below the info line
    id_col = header.index("id") + 1
    ids = {r: v[id_col - 1] for r, v in enumerate(values, start=1)}  # sheet row -> id
    ws.update_cell(3, id_col, ids[5])  # swap the ids of rows 3 and 5
    ws.update_cell(5, id_col, ids[3])
    ws.update_cell(4, header.index("note") + 1, "y" * 40_000)
    ws.update_cell(6, header.index("note") + 1, "tab\tok but bell\x07 not")
    ws.add_cols(2)
    ws.update_cell(7, len(header) + 2, "stray")
    problems = refused(gproject)
    letter = column_letter(len(header) + 1)  # 0-based: the second column past the header
    assert problems == [f"row 7: cell {letter}7 holds 'stray' but column {letter} has no header: "
                        f"give the column a header in row 2, or clear the cell"]
    ws.update_cell(7, len(header) + 2, "")
    problems = refused(gproject)
    assert [p.split(":")[0] for p in problems] == [
        "row 3, column 'id'", "row 4, column 'note'", "row 5, column 'id'", "row 6, column 'note'"]
    assert "text of 40,000 characters" in problems[1] and "'\\x07'" in problems[3]


# -- case 6: a file name with a backslash --------------------------------------------------


def test_a_backslash_in_a_file_name_is_skipped_by_name_at_scan(data_root: Path, tmp_path: Path) -> None:
    odd = data_root / "train" / "i" / "a\\b.png"
    odd.write_bytes((data_root / "train" / "i" / "img-0001.png").read_bytes() + b"\0")
    bell = data_root / "val" / "ii" / "c\x07d.png"
    bell.write_bytes(odd.read_bytes() + b"\0")
    p, report = Project.init(data_root, tmp_path / "proj")
    said = "skipped 2 image file(s) whose name sheetsync cannot use"
    assert any(said in w and "train/i/a\\b.png: a backslash" in w
               and "'val/ii/c\\x07d.png': a control character" in w for w in warnings_of(report))
    manifest = p.versions.load("latest")
    assert len(manifest) == 19 and not manifest["path"].str.contains("\\\\", regex=False).any()
    pushed = p.push()  # the rest of the project works: push, pull, status
    assert any(said in w for w in warnings_of(pushed))
    assert "nothing to pull" in text_of(p.pull())
    assert any(said in w for w in warnings_of(p.status()))
    assert odd.exists() and bell.exists()  # left alone, never moved or deleted


# -- the read extent -----------------------------------------------------------------------


def test_a_stray_value_at_the_last_row_is_refused_without_reading_a_million_rows(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    ws.cell(1_048_576, column_of(ws, "note")).value = "stray"
    wb.save(workbook(project))
    frame = project.backend.read_table()
    assert frame is not None and len(frame) == 20  # 19 images, the stray row; not 1,048,575
    assert frame.index[-1] == 1_048_576 and frame.loc[1_048_576, "note"] == "stray"
    assert frame.index[:19].tolist() == list(range(3, 22))  # below the info line and header
    problems = refused(project)
    assert problems == ["row 1048576, column 'id': the row has no id (rows cannot be added in the "
                        "sheet; add image files to the folders instead)"]


def test_compact_rows_renumbers_far_rows_and_keeps_row_1() -> None:
    from sheetsync.sheets._xlsx_extent import compact_rows

    xml = (b'<worksheet><dimension ref="A1:C1048576"/><sheetData>'
           b'<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2" s="3"/>'
           b'<row r="7"><c r="B7"><v>5</v></c><c r="C7"><v>6</v></c></row>'
           b'<row r="1048576"><c r="AB1048576" t="inlineStr"><is><t>x</t></is></c></row>'
           b'</sheetData></worksheet>')
    out, numbers = compact_rows(xml)
    assert numbers == [1, 2, 7, 1_048_576]
    assert out == (b'<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
                   b'<row r="2" s="3"/><row r="3"><c r="B3"><v>5</v></c><c r="C3"><v>6</v></c></row>'
                   b'<row r="4"><c r="AB4" t="inlineStr"><is><t>x</t></is></c></row>'
                   b'</sheetData></worksheet>')
    assert compact_rows(xml.replace(b"1048576", b"900")) is None  # dense enough: read as is
    assert compact_rows(xml.replace(b'<row r="7">', b"<row>")) is None  # implicit numbers
    assert compact_rows(xml.replace(b'<row r="1">', b'<row r="3">', 1)) is None  # out of order
    headless, numbers = compact_rows(xml.replace(b'<row r="1"><c r="A1" t="s"><v>0</v></c></row>', b""))
    assert numbers == [1, 2, 7, 1_048_576]  # no row 1 in the XML: row 1 stays the (empty) header
    assert b'<row r="2" s="3"/><row r="3"><c r="B3">' in headless and b'r="AB4"' in headless


# -- case 12: a note typed as a formula in Google Sheets ------------------------------------


def test_google_a_note_typed_as_a_formula_is_pulled_as_its_value(api, gproject) -> None:
    """What docs/google.md says: ``=1+1`` typed without an apostrophe is a formula in Google
    Sheets; pull records its value (2), and the next push writes that value as text. (This is
    the sheet's behaviour, unchanged by sheetsync; the test pins what docs/google.md states.)"""
    ws = collaborator(api, gproject)
    values = ws.get_all_values()
    header = values[1]  # row 2, below the info line
    note, id_col = header.index("note") + 1, header.index("id")
    formula_id, text_id = values[2][id_col], values[3][id_col]
    ws.update_cell(3, note, "=1+1")  # typed in the browser: USER_ENTERED, a formula
    ws.update_cell(4, note, "'=1+1")  # with the apostrophe: text
    gproject.pull()
    notes = gproject.versions.load("latest").set_index("id")["note"]
    assert (notes[formula_id], notes[text_id]) == ("2", "=1+1")
    open_project(api, gproject.config.project_dir).push()
    pushed = collaborator(api, gproject).get_all_values(value_render_option="FORMULA")
    after = {r[id_col]: r[note - 1] for r in pushed[2:]}
    assert (after[formula_id], after[text_id]) == ("2", "=1+1")


def test_a_stray_value_in_the_last_column_is_refused_naming_the_cell(project: Project) -> None:
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    ws.cell(6, 16_384).value = "far right"  # column XFD, the last one there is
    ws.cell(1_048_576, 16_384).value = "far corner"
    wb.save(workbook(project))
    frame = project.backend.read_table()
    assert frame is not None and frame.shape == (20, len(CORE) + 1)  # not 1,048,575 x 16,384
    assert frame.loc[6, "column 16384"] == "far right"
    problems = refused(project)
    assert problems == [
        "row 6: cell XFD6 holds 'far right' but column XFD has no header: give the column a "
        "header in row 2, or clear the cell",
        "row 1048576: cell XFD1048576 holds 'far corner' but column XFD has no header: give "
        "the column a header in row 2, or clear the cell"]


def test_compact_columns_renames_used_columns_in_order() -> None:
    from sheetsync.sheets._xlsx_extent import compact_columns

    xml = (b'<worksheet><dimension ref="A1:XFD2"/><cols><col min="1" max="2"/></cols><sheetData>'
           b'<row r="1"><c r="A1"><v>1</v></c><c r="C1"><v>2</v></c></row>'
           b'<row r="2"><c r="XFD2" t="inlineStr"><is><t>x</t></is></c></row></sheetData></worksheet>')
    out, numbers = compact_columns(xml)
    assert numbers == [1, 3, 16_384]
    assert b'r="A1"' in out and b'r="B1"' in out and b'r="C2"' in out and b"XFD" not in out
    assert compact_columns(xml.replace(b"XFD2", b"Z2")) is None  # dense enough
    assert compact_columns(xml.replace(b'<c r="C1">', b"<c>")) is None  # implicit position


# -- case 11: docs/google.md's one-write rule, measured -------------------------------------


@pytest.mark.slow
def test_the_google_page_states_the_measured_one_write_limit() -> None:
    import re

    from bench import bench_push_writes as bench

    try:
        from tests.conftest import dcai_root
    except ImportError:
        from conftest import dcai_root
    dcai_root()  # the measurement is on the competition data
    with SheetsStandin() as api:
        sid = api.create_spreadsheet("bench", shared_with=[bench.WHO])
        limit = bench.one_write_limit(api, sid, bench.real_table())
    page = (Path(__file__).resolve().parents[1] / "docs" / "google.md").read_text()
    stated = re.search(r"one write up to \*\*([\d,]+) rows\*\*", page)
    assert stated is not None and int(stated.group(1).replace(",", "")) == limit
