"""The default backend: an .xlsx workbook people open in LibreOffice Calc or Excel.

Usage::

    backend = LocalBackend(Path("sheetsync.xlsx"), root=Path("data"))
    backend.write_table(table, layout)     # the "data" sheet, with thumbnails and dropdowns
    frame = backend.read_table()           # every cell as str, index = sheet row
    backend.append_score({"version": 3, "test_accuracy": 0.81})

What the workbook holds:

* ``data``: the header row frozen and bold, every column typed as the layout says (text
  stays text even when it looks like a formula or a number, e.g. ``=1+1`` or ``0042``),
  a thumbnail per row inside the image cell, dropdowns on choice columns, an autofilter,
  rows where ``label`` differs from ``predicted`` highlighted, read-only columns grey with
  the column's note as the header comment.
* ``scores``: one row per training run; rows are only ever appended.
* ``sheetsync_lists`` (hidden): dropdown choices too long for an inline list.
* any sheet people add: kept. Writing loads the workbook without the data sheet and
  replaces only the data sheet (and the hidden lists sheet); openpyxl, which does that
  loading, drops what it does not understand in the other sheets (shapes, form controls,
  macros). Appending a score changes the scores sheet only, byte for byte.

Speed: openpyxl keeps every cell and picture as a Python object, which is slow for a
10,000-row sheet with 10,000 pictures; so openpyxl only writes the header and the sheet's
settings, and the rows and the thumbnails are streamed into the package as XML text
(:mod:`sheetsync.sheets._xlsx_package`). ``thumbnails=False`` skips the pictures.

Saving is atomic (a temporary file in the same folder, then ``os.replace``), so a crash
never leaves half a workbook. If the workbook is open in LibreOffice (``.~lock.NAME#``)
or Excel (``~$NAME``), writing would silently discard that person's unsaved edits, so
``write_table`` and ``append_score`` raise :class:`WorkbookLockedError` instead, unless
``force=True`` is given (to the constructor or to the call), e.g. for a stale lock file
left by a crashed program.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import numbers
import os
import re
import secrets
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.comments import Comment
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from ..errors import BackendError
from . import _xlsx_images as images
from ._xlsx_package import (
    Package,
    PackageError,
    Picture,
    append_row,
    cells_xml,
    replace_sheet_data,
    row_xml,
    sheet_rows,
)
from .base import DATA_SHEET, SCORES_SHEET, Backend, Column, SheetLayout, cell_text

LISTS_SHEET = "sheetsync_lists"
MAX_CELL_TEXT = 32_767  # Excel refuses longer cell text
MAX_INLINE_LIST = 255  # Excel's limit for an inline dropdown list ("a,b,c")
LAST_ROW = 1_048_576

GREY_FILL = PatternFill(fill_type="solid", start_color="FFF2F2F2", end_color="FFF2F2F2")
READONLY_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFD9D9D9", end_color="FFD9D9D9")
EDITABLE_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFE2EFDA", end_color="FFE2EFDA")
MISMATCH_FILL = PatternFill(fill_type="solid", start_color="FFFCE4D6", end_color="FFFCE4D6")
HEADER_FONT = Font(bold=True)
READONLY_FONT = Font(color="FF595959")
HEADER_BORDER = Border(bottom=Side(style="thin", color="FF808080"))
TEXT_FORMAT = "@"  # "Text": what people type into these cells stays text
_READ_ERRORS = (
    zipfile.BadZipFile,
    InvalidFileException,
    PackageError,
    KeyError,
    OSError,
    ValueError,
)


class WorkbookLockedError(BackendError):
    """The workbook is open in a spreadsheet program; writing would lose its unsaved edits."""


class LocalBackend(Backend):
    """An .xlsx workbook at ``path``; thumbnails come from ``root / row["path"]``."""

    name = "local"

    def __init__(
        self,
        path: Path,
        root: Path,
        *,
        thumbnails: bool = True,
        thumb_size: int = 48,
        force: bool = False,
    ):
        if thumb_size < 8:
            raise ValueError(f"thumb_size must be at least 8 pixels, not {thumb_size}")
        self.path = Path(path)
        self.root = Path(root)
        self.thumbnails = thumbnails
        self.thumb_size = thumb_size
        self.force = force
        self._usage = ""

    # -- Backend ---------------------------------------------------------------------------

    def describe(self) -> str:
        return str(self.path)

    def usage(self) -> str:
        return self._usage

    def read_table(self) -> pd.DataFrame | None:
        with self._open_read_only() as wb:
            if wb is None or DATA_SHEET not in wb.sheetnames:
                return None
            return _read_sheet(wb[DATA_SHEET])

    def write_table(
        self, table: pd.DataFrame, layout: SheetLayout, *, force: bool | None = None
    ) -> None:
        """Replace the data sheet; ``force`` overrides the open-in-a-program check."""
        started = time.perf_counter()
        self._check_unlocked(force)
        old = self._read_package()
        wb = self._load_for_update(None if old is None else old.without_sheet(DATA_SHEET))
        index = _drop_sheet(wb, DATA_SHEET, default=0)
        _drop_sheet(wb, LISTS_SHEET, default=None)
        ws = wb.create_sheet(DATA_SHEET, index)
        if SCORES_SHEET not in wb.sheetnames:
            # An empty scores sheet from the start lets append_score edit just that sheet;
            # its header row is bold already, for the cells that will be added to it.
            scores = wb.create_sheet(SCORES_SHEET, index + 1)
            scores.row_dimensions[1].font = HEADER_FONT
            scores.freeze_panes = "A2"
        writer = _DataSheetWriter(self, ws, table, layout)
        writer.prepare()
        _select_only(wb, ws)
        package = Package.read(self._workbook_bytes(wb))
        part = package.sheet_part(DATA_SHEET)
        assert part is not None, "openpyxl wrote no data sheet"
        rows, pictures, missing = writer.rows(package.parts[part])
        package.parts[part] = replace_sheet_data(package.parts[part], rows, writer.dimension)
        package.add_pictures(part, pictures)
        self._save(package.to_bytes(), force)
        self._usage = (
            f"wrote {len(table)} rows, {len(pictures)} thumbnails"
            + (f" ({missing} images unreadable)" if missing else "")
            + f", {self.path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s"
        )

    def append_score(self, row: Mapping[str, object], *, force: bool | None = None) -> None:
        """Append ``row`` to the scores sheet; new keys extend its header."""
        self._check_unlocked(force)
        values = {
            str(k): _score_value(v, where=f"{SCORES_SHEET} column {k!r}") for k, v in row.items()
        }
        package = self._read_package()
        if package is not None:
            data = self._append_in_place(package, values)
            if data is not None:
                self._save(data, force)
                return
        # No scores sheet yet (or one too unusual to edit in place): go through openpyxl.
        wb = self._load_for_update(package)
        ws = wb[SCORES_SHEET] if SCORES_SHEET in wb.sheetnames else wb.create_sheet(SCORES_SHEET)
        header = _header_of(ws)
        header += [k for k in values if k not in header]
        for col, name in enumerate(header, start=1):
            cell = ws.cell(row=1, column=col)
            _store(cell, name)
            cell.font = HEADER_FONT
        target = _last_used_row(ws) + 1
        for col, name in enumerate(header, start=1):
            if name in values:
                _store(ws.cell(row=target, column=col), values[name])
        if ws.freeze_panes is None:
            ws.freeze_panes = "A2"
        self._save(self._workbook_bytes(wb), force)

    def read_scores(self) -> pd.DataFrame:
        with self._open_read_only() as wb:
            if wb is None or SCORES_SHEET not in wb.sheetnames:
                return pd.DataFrame()
            return _read_sheet(wb[SCORES_SHEET]).reset_index(drop=True)

    # -- locking and files -----------------------------------------------------------------

    def lock_files(self) -> list[Path]:
        """Lock files of spreadsheet programs that have this workbook open (may be stale)."""
        name = self.path.name
        candidates = [f".~lock.{name}#", f"~${name}"]
        if len(name) > 2:
            # Excel drops the first two characters of longer names: ~$eetsync.xlsx
            candidates.append(f"~${name[2:]}")
        return [
            self.path.with_name(c)
            for c in dict.fromkeys(candidates)
            if self.path.with_name(c).exists()
        ]

    def _check_unlocked(self, force: bool | None) -> None:
        if self.force if force is None else force:
            return
        locks = self.lock_files()
        if locks:
            raise WorkbookLockedError(
                f"{self.path} is open in a spreadsheet program (lock file {locks[0]}): "
                "save and close it there first, or the edits made there would be lost. "
                "If no program has it open, the lock file is stale: delete it or use --force."
            )

    @contextlib.contextmanager
    def _open_read_only(self) -> Iterator[Workbook | None]:
        if not self.path.exists():
            yield None
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # unsupported extensions: not ours
                wb = load_workbook(self.path, read_only=True, data_only=True)
        except _READ_ERRORS as e:
            raise BackendError(f"{self.path} is not a readable .xlsx workbook: {e}") from None
        try:
            yield wb
        finally:
            wb.close()

    def _read_package(self) -> Package | None:
        if not self.path.exists():
            return None
        try:
            package = Package.read(self.path)
            package.workbook_part()
            return package
        except _READ_ERRORS as e:
            raise BackendError(
                f"{self.path} is not a readable .xlsx workbook ({e}); sheetsync will not "
                "overwrite it: move it away or repair it"
            ) from None

    def _load_for_update(self, package: Package | None) -> Workbook:
        if package is None:
            wb = Workbook()
            wb.remove(wb.active)
            return wb
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return load_workbook(io.BytesIO(package.to_bytes()))
        except _READ_ERRORS as e:
            raise BackendError(
                f"{self.path} is not a readable .xlsx workbook ({e}); sheetsync will not "
                "overwrite it: move it away or repair it"
            ) from None

    def _append_in_place(self, package: Package, values: dict[str, object]) -> bytes | None:
        """The workbook with one more scores row, every other part untouched; None when
        the sheet is missing or laid out so that editing it in place is not safe."""
        part = package.sheet_part(SCORES_SHEET)
        if part is None:
            return None
        with self._open_read_only() as wb:
            assert wb is not None
            ws = wb[SCORES_SHEET]
            ws.reset_dimensions()
            texts = [[_value_text(v) for v in r] for r in ws.iter_rows(values_only=True)]
        header = list(texts[0]) if texts else []
        while header and header[-1] == "":
            header.pop()
        last = max((i for i, r in enumerate(texts, start=1) if any(r)), default=1)
        new = [k for k in values if k not in header]
        existing = sheet_rows(package.parts[part])
        first_new = len(header) + 1
        row1 = existing.get(1, {})
        if new and any(not c or column_index_from_string(c) >= first_new for c in row1):
            return None  # cells beyond the header (or unnumbered): let openpyxl sort it out
        first = row1.get("A")
        style = _row_style(package.parts[part], 1) if first is None else first.get("s")
        header += new
        target = max(last, 1) + 1
        head = cells_xml(
            1, [(get_column_letter(first_new + i), style, k) for i, k in enumerate(new)]
        )
        cells = cells_xml(
            target,
            [
                (get_column_letter(i), None, values[k])
                for i, k in enumerate(header, start=1)
                if k in values
            ],
        )
        sheet = append_row(package.parts[part], target, cells, head)
        dimension = f'<dimension ref="A1:{get_column_letter(max(1, len(header)))}{target}"/>'
        sheet = re.sub(rb"<dimension\b[^>]*/>", dimension.encode(), sheet, count=1)
        return _with_part(package, part, sheet)

    def _workbook_bytes(self, wb: Workbook) -> bytes:
        buf = io.BytesIO()
        try:
            wb.save(buf)  # openpyxl spools through temporary files: the disk may be full
        except OSError as e:
            raise BackendError(f"could not write {self.path}: {e}") from None
        return buf.getvalue()

    def _save(self, data: bytes, force: bool | None) -> None:
        """Write to a temporary file beside the workbook, then atomically replace it."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as fh:  # default permissions, unlike mkstemp's 0600
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if self.path.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, self.path.stat().st_mode & 0o7777)
            # A person may have opened the workbook while we were writing.
            self._check_unlocked(force)
            os.replace(tmp, self.path)
        except WorkbookLockedError:
            tmp.unlink(missing_ok=True)
            raise
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"could not write {self.path}: {e}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _row_style(sheet_xml: bytes, row: int) -> str | None:
    """The style id a whole row carries (``<row r="1" s="3" customFormat="1">``)."""
    m = re.search(rb'<row\b[^>]*\br="%d"[^>]*>' % row, sheet_xml)
    style = None if m is None else re.search(rb'\bs="(\d+)"', m.group(0))
    return None if style is None else style.group(1).decode()


def _with_part(package: Package, part: str, data: bytes) -> bytes:
    package.parts[part] = data
    return package.to_bytes()


# -- writing the data sheet ----------------------------------------------------------------


class _DataSheetWriter:
    """Lays out one fresh data sheet: openpyxl writes the header, the column settings and
    two prototype rows (plain and formula-looking text); :meth:`rows` then streams every
    data row as XML with the style ids openpyxl gave those prototypes."""

    def __init__(
        self, backend: LocalBackend, ws: Worksheet, table: pd.DataFrame, layout: SheetLayout
    ):
        self.backend = backend
        self.ws = ws
        self.table = table
        self.layout = layout
        self.names = [str(c) for c in table.columns]
        self.columns = [layout.column(n) for n in self.names]
        self.letters = [get_column_letter(i) for i in range(1, len(self.names) + 1)]
        self.last_row = len(table) + 1
        self.last_col = get_column_letter(max(1, len(self.names)))
        self.dimension = f"A1:{self.last_col}{self.last_row}"

    def prepare(self) -> None:
        self._header()
        self._prototypes()
        self._dropdowns()
        self._highlight()
        self.ws.freeze_panes = "B2"
        self.ws.auto_filter.ref = self.dimension

    def _header(self) -> None:
        for col, (name, spec) in enumerate(zip(self.names, self.columns, strict=True), start=1):
            cell = self.ws.cell(row=1, column=col)
            cell.value = _text(name, where=f"header {cell.coordinate}")
            cell.data_type = "s"
            cell.font = HEADER_FONT
            cell.border = HEADER_BORDER
            cell.fill = EDITABLE_HEADER_FILL if spec.editable else READONLY_HEADER_FILL
            note = (
                spec.note
                if spec.editable
                else f"Read-only: sheetsync fills this column. {spec.note}"
            )
            if note.strip():
                cell.comment = Comment(note.strip(), "sheetsync", width=260, height=90)
            letter = get_column_letter(col)
            self.ws.column_dimensions[letter].width = self._width(col - 1, spec)
            if spec.kind in ("text", "choice"):
                # New rows people type below the data are text too.
                self.ws.column_dimensions[letter].number_format = TEXT_FORMAT

    def _width(self, index: int, spec: Column) -> float:
        if spec.width:
            return spec.width
        if spec.kind == "image":
            return (
                images.cell_size_for(self.backend.thumb_size)[0] if self.backend.thumbnails else 8
            )
        if spec.kind == "number":
            return max(10, len(spec.name) + 3)
        sample = self.table.iloc[:500, index]
        longest = max((len(str(v)) for v in sample if isinstance(v, str)), default=0)
        return float(min(50, max(len(spec.name) + 3, longest + 2, 8)))

    def _prototypes(self) -> None:
        for col, spec in enumerate(self.columns, start=1):
            for row in (2, 3):
                cell = self.ws.cell(row=row, column=col)
                if not spec.editable:
                    cell.fill = GREY_FILL
                    cell.font = READONLY_FONT
                if spec.kind in ("text", "choice"):
                    cell.number_format = TEXT_FORMAT
                if spec.kind == "image":
                    cell.alignment = Alignment(horizontal="center", vertical="center")
                # Row 3: spreadsheet programs then keep "=1+1" as text when people edit it.
                cell.quotePrefix = row == 3

    def rows(self, sheet_xml: bytes) -> tuple[Iterator[str], list[Picture], int]:
        """Row XML for the header and every data row, the thumbnails, the unreadable count."""
        written = sheet_rows(sheet_xml)
        plain = [written[2][letter].get("s") for letter in self.letters]
        quoted = [written[3][letter].get("s") for letter in self.letters]
        header = _header_row_xml(sheet_xml)
        values = self._values()  # validates every cell before anything is rendered
        pictures, missing, height = self._pictures()

        def generate() -> Iterator[str]:
            yield header
            for r, row in enumerate(values, start=2):
                cells = []
                for c, value in enumerate(row):
                    formula_like = isinstance(value, str) and value[:1] in "=+-@"
                    cells.append((self.letters[c], (quoted if formula_like else plain)[c], value))
                yield row_xml(r, cells, height)

        return generate(), pictures, missing

    def _values(self) -> list[list[object]]:
        out = []
        for r, row in enumerate(self.table.itertuples(index=False, name=None), start=2):
            cells: list[object] = []
            for c, (value, spec) in enumerate(zip(row, self.columns, strict=True)):
                where = f"row {r}, column {self.names[c]!r}"
                if spec.kind == "image":
                    cells.append(None)
                elif spec.kind == "number":
                    cells.append(_number(value, where=where))
                else:
                    cells.append(_text(_as_text(value), where=where))
            out.append(cells)
        return out

    def _pictures(self) -> tuple[list[Picture], int, float | None]:
        image_col = next((i for i, c in enumerate(self.columns) if c.kind == "image"), None)
        if not self.backend.thumbnails or image_col is None or "path" not in self.names:
            return [], 0, None
        box = self.backend.thumb_size
        path_col = self.names.index("path")
        pictures, missing = [], 0
        for r, rel in enumerate(self.table.iloc[:, path_col], start=2):
            rel_text = _as_text(rel)
            source = images.safe_image_path(self.backend.root, rel_text)
            thumb = images.render_thumbnail(source, box) if source is not None else None
            if thumb is None:
                missing += 1
                continue
            pictures.append(
                Picture(
                    r, image_col + 1, thumb.png, thumb.width, thumb.height, images.PADDING, rel_text
                )
            )
        return pictures, missing, images.cell_size_for(box)[1]

    def _dropdowns(self) -> None:
        lists_ws: Worksheet | None = None
        list_col = 0
        for col, spec in enumerate(self.columns, start=1):
            if spec.kind != "choice" or not spec.choices:
                continue
            choices = [str(c) for c in spec.choices]
            inline = ",".join(choices)
            if len(inline) <= MAX_INLINE_LIST and not any(("," in c or '"' in c) for c in choices):
                source = f'"{inline}"'
            else:
                # Too long (or awkward) for an inline list: the choices go in a hidden sheet.
                if lists_ws is None:
                    lists_ws = self.ws.parent.create_sheet(LISTS_SHEET)
                    lists_ws.sheet_state = "hidden"
                list_col += 1
                for r, choice in enumerate(choices, start=1):
                    _store(lists_ws.cell(row=r, column=list_col), _text(choice, where=LISTS_SHEET))
                letter = get_column_letter(list_col)
                source = f"{LISTS_SHEET}!${letter}$1:${letter}${len(choices)}"
            dv = DataValidation(
                type="list",
                formula1=source,
                allow_blank=True,
                showErrorMessage=True,
                errorStyle="stop",
                errorTitle=f"Not a valid {spec.name}",
                error=f"Choose a value from the list for {spec.name!r} (or leave it empty).",
            )
            letter = get_column_letter(col)
            dv.add(f"{letter}2:{letter}{LAST_ROW}")
            self.ws.add_data_validation(dv)

    def _highlight(self) -> None:
        pair = self.layout.highlight_mismatch
        if (
            not pair
            or pair[0] not in self.names
            or pair[1] not in self.names
            or len(self.table) == 0
        ):
            return
        a, b = (get_column_letter(self.names.index(n) + 1) for n in pair)
        rule = FormulaRule(formula=[f'AND(${a}2<>"",${b}2<>"",${a}2<>${b}2)'], fill=MISMATCH_FILL)
        self.ws.conditional_formatting.add(f"A2:{self.last_col}{self.last_row}", rule)


def _header_row_xml(sheet_xml: bytes) -> str:
    text = sheet_xml.decode("utf-8")
    start = text.find('<row r="1"')
    end = text.find("</row>", start)
    if start < 0 or end < 0:
        raise PackageError("openpyxl wrote no header row")
    return text[start : end + len("</row>")]


# -- cell values ---------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_text(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return cell_text(float(value))
    return cell_text(value)


def _text(text: str, *, where: str) -> str | None:
    """``text`` checked for what a cell can hold; None for empty."""
    if text == "":
        return None
    if len(text) > MAX_CELL_TEXT:
        raise BackendError(
            f"{where}: text of {len(text)} characters (a cell holds at most {MAX_CELL_TEXT})"
        )
    if ILLEGAL_CHARACTERS_RE.search(text):
        raise BackendError(f"{where}: {text!r} holds control characters a spreadsheet cannot store")
    return text


def _number(value: object, *, where: str) -> int | float | bool | str | None:
    """Numbers as numbers; NaN/None empty; text that is no number kept as text."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    number: float | None = None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        if not value.strip():
            return None
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or math.isinf(number):
        return _text(_as_text(value), where=where)  # keep what people typed, as text
    if math.isnan(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 1e15 else number


def _score_value(value: object, *, where: str) -> int | float | bool | str | None:
    if isinstance(value, numbers.Real):
        return _number(value, where=where)
    return _text(_as_text(value), where=where)


def _store(cell: Cell, value: object) -> None:
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl turns "=..." into a formula and "#N/A" into an error


# -- reading -------------------------------------------------------------------------------


def _value_text(value: object) -> str:
    """Like :func:`cell_text`, and dates people typed become ISO text."""
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return cell_text(value)


def _read_sheet(ws: object) -> pd.DataFrame:
    """Header = row 1 as written; index = sheet row; every cell str; nothing silently lost."""
    ws.reset_dimensions()  # type: ignore[attr-defined]  # never trust the stored dimension
    rows = [[_value_text(v) for v in values] for values in ws.iter_rows(values_only=True)]  # type: ignore[attr-defined]
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        return pd.DataFrame(dtype=str)
    header = rows[0]
    width = max(len(r) for r in rows)
    used = [any(len(r) > c and r[c] for r in rows[1:]) for c in range(width)]
    keep = [c for c in range(width) if (c < len(header) and header[c]) or used[c]]
    names = [header[c] if c < len(header) and header[c] else f"column {c + 1}" for c in keep]
    body = [[r[c] if c < len(r) else "" for c in keep] for r in rows[1:]]
    return pd.DataFrame(body, columns=names, index=pd.RangeIndex(2, len(body) + 2), dtype=str)


def _header_of(ws: Worksheet) -> list[str]:
    header = [cell_text(c.value) for c in ws[1]] if ws.max_row >= 1 else []
    while header and header[-1] == "":
        header.pop()
    return header


def _last_used_row(ws: Worksheet) -> int:
    for r in range(ws.max_row, 0, -1):
        if any(c.value not in (None, "") for c in ws[r]):
            return r
    return 1


def _drop_sheet(wb: Workbook, name: str, *, default: int | None) -> int:
    """Remove sheet ``name`` if present; its former position (or ``default``)."""
    if name not in wb.sheetnames:
        return default if default is not None else len(wb.sheetnames)
    index = wb.sheetnames.index(name)
    wb.remove(wb[name])
    return index


def _select_only(wb: Workbook, ws: Worksheet) -> None:
    # Several selected tabs make Excel "group" the sheets, so one edit hits all of them.
    for sheet in wb.worksheets:
        sheet.sheet_view.tabSelected = sheet is ws
    wb.active = wb.worksheets.index(ws)


__all__ = ["LocalBackend", "WorkbookLockedError"]
