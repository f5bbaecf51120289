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
* any sheet people add: kept. Writing loads the whole workbook and replaces only the data
  sheet (and the hidden lists sheet); note that openpyxl, which does the loading, drops
  what it does not understand in those other sheets (shapes, form controls, macros).

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
import math
import numbers
import os
import secrets
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.comments import Comment
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from ..errors import BackendError
from . import _xlsx_images as images
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
        wb = self._load_for_update()
        index = _drop_sheet(wb, DATA_SHEET, default=0)
        _drop_sheet(wb, LISTS_SHEET, default=None)
        ws = wb.create_sheet(DATA_SHEET, index)
        pictures, missing = _DataSheetWriter(self, ws, table, layout).write()
        _select_only(wb, ws)
        self._save(wb, force)
        self._usage = (
            f"wrote {len(table)} rows, {pictures} thumbnails"
            + (f" ({missing} images unreadable)" if missing else "")
            + f", {self.path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s"
        )

    def append_score(self, row: Mapping[str, object], *, force: bool | None = None) -> None:
        """Append ``row`` to the scores sheet; new keys extend its header."""
        self._check_unlocked(force)
        wb = self._load_for_update()
        if SCORES_SHEET in wb.sheetnames:
            ws = wb[SCORES_SHEET]
        else:
            ws = wb.create_sheet(SCORES_SHEET)
        header = [cell_text(c.value) for c in ws[1]] if ws.max_row >= 1 else []
        while header and header[-1] == "":
            header.pop()
        for key in row:
            if str(key) not in header:
                header.append(str(key))
        for col, name in enumerate(header, start=1):
            cell = ws.cell(row=1, column=col)
            _set_text(cell, name, where=f"{SCORES_SHEET}!{cell.coordinate}")
            cell.font = HEADER_FONT
        target = _last_used_row(ws) + 1
        by_name = {str(k): v for k, v in row.items()}
        for col, name in enumerate(header, start=1):
            if name in by_name:
                cell = ws.cell(row=target, column=col)
                _set_any(cell, by_name[name], where=f"{SCORES_SHEET}!{cell.coordinate}")
        if ws.freeze_panes is None:
            ws.freeze_panes = "A2"
        self._save(wb, force)

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
        found = []
        for candidate in dict.fromkeys(candidates):
            lock = self.path.with_name(candidate)
            if lock.exists():
                found.append(lock)
        return found

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
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
            raise BackendError(f"{self.path} is not a readable .xlsx workbook: {e}") from None
        try:
            yield wb
        finally:
            wb.close()

    def _load_for_update(self) -> Workbook:
        if not self.path.exists():
            wb = Workbook()
            wb.remove(wb.active)
            return wb
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return load_workbook(self.path)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
            raise BackendError(
                f"{self.path} is not a readable .xlsx workbook ({e}); sheetsync will not "
                "overwrite it: move it away or repair it"
            ) from None

    def _save(self, wb: Workbook, force: bool | None) -> None:
        """Write to a temporary file beside the workbook, then atomically replace it."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as fh:  # default permissions, unlike mkstemp's 0600
                wb.save(fh)
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


# -- writing the data sheet ----------------------------------------------------------------


class _DataSheetWriter:
    """Fills one fresh worksheet with ``table`` formatted as ``layout`` says."""

    def __init__(
        self, backend: LocalBackend, ws: Worksheet, table: pd.DataFrame, layout: SheetLayout
    ):
        self.backend = backend
        self.ws = ws
        self.table = table
        self.layout = layout
        self.names = [str(c) for c in table.columns]
        self.columns = [layout.column(n) for n in self.names]
        self.last_row = len(table) + 1
        self.last_col = get_column_letter(max(1, len(self.names)))

    def write(self) -> tuple[int, int]:
        self._header()
        pictures, missing = self._body()
        self._dropdowns()
        self._highlight()
        ws = self.ws
        ws.freeze_panes = "B2"
        ws.auto_filter.ref = f"A1:{self.last_col}{self.last_row}"
        return pictures, missing

    def _header(self) -> None:
        for col, (name, spec) in enumerate(zip(self.names, self.columns, strict=True), start=1):
            cell = self.ws.cell(row=1, column=col)
            _set_text(cell, name, where=f"header {cell.coordinate}")
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

    def _styles(self) -> list[tuple[object, object]]:
        """Per column: the style of a plain cell and of a formula-looking text cell."""
        protos = []
        for col, spec in enumerate(self.columns, start=1):
            # Style a scratch cell, then copy its style array into every cell of the column:
            # much faster than assigning fonts and fills cell by cell.
            cell = Cell(self.ws, row=2, column=col)  # not placed in the sheet
            if not spec.editable:
                cell.fill = GREY_FILL
                cell.font = READONLY_FONT
            if spec.kind in ("text", "choice"):
                cell.number_format = TEXT_FORMAT
            if spec.kind == "image":
                cell.alignment = Alignment(horizontal="center", vertical="center")
            plain = _copy(cell._style)  # setting quotePrefix below changes it in place
            cell.quotePrefix = True  # spreadsheet programs then keep "=1+1" as text on edit
            quoted = cell._style
            protos.append((plain, quoted))
        return protos

    def _body(self) -> tuple[int, int]:
        ws, backend = self.ws, self.backend
        styles = self._styles()
        image_col = next((i for i, c in enumerate(self.columns) if c.kind == "image"), None)
        with_pictures = backend.thumbnails and image_col is not None and "path" in self.names
        path_col = self.names.index("path") if "path" in self.names else None
        box = backend.thumb_size
        height = images.cell_size_for(box)[1] if with_pictures else None
        pictures = missing = 0
        for r, values in enumerate(self.table.itertuples(index=False, name=None), start=2):
            for c, (value, spec) in enumerate(zip(values, self.columns, strict=True), start=1):
                plain, quoted = styles[c - 1]
                cell = ws.cell(row=r, column=c)
                if spec.kind == "image":
                    cell._style = _copy(plain)
                    continue
                where = f"row {r}, column {self.names[c - 1]!r}"
                if spec.kind == "number":
                    _set_number(cell, value, where=where)
                else:
                    _set_text(cell, _as_text(value), where=where)
                looks_formula = cell.data_type == "s" and str(cell.value)[:1] in "=+-@"
                cell._style = _copy(quoted if looks_formula else plain)
            if with_pictures:
                assert image_col is not None and path_col is not None
                ws.row_dimensions[r].height = height
                source = images.safe_image_path(backend.root, _as_text(values[path_col]))
                thumb = images.render_thumbnail(source, box) if source is not None else None
                if thumb is None:
                    missing += 1
                    continue
                ws.add_image(images.anchored_picture(thumb, r, image_col + 1))
                pictures += 1
        return pictures, missing

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
                    wb = self.ws.parent
                    lists_ws = wb.create_sheet(LISTS_SHEET)
                    lists_ws.sheet_state = "hidden"
                list_col += 1
                for r, choice in enumerate(choices, start=1):
                    _set_text(lists_ws.cell(row=r, column=list_col), choice, where=LISTS_SHEET)
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


def _copy(style: object) -> object:
    return style.__copy__()  # type: ignore[attr-defined]


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
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return cell_text(float(value) if not isinstance(value, numbers.Integral) else int(value))
    return cell_text(value)


def _set_text(cell: object, text: str, *, where: str) -> None:
    """Store ``text`` as a string cell: never a formula, an error code or a number."""
    if text == "":
        cell.value = None  # type: ignore[attr-defined]
        return
    if len(text) > MAX_CELL_TEXT:
        raise BackendError(
            f"{where}: text of {len(text)} characters (a cell holds at most {MAX_CELL_TEXT})"
        )
    if ILLEGAL_CHARACTERS_RE.search(text):
        raise BackendError(f"{where}: {text!r} holds control characters a spreadsheet cannot store")
    cell.value = text  # type: ignore[attr-defined]
    cell.data_type = "s"  # type: ignore[attr-defined]  # openpyxl made "=..." a formula


def _set_number(cell: object, value: object, *, where: str) -> None:
    """Numbers as numbers; NaN/None empty; text that is no number kept as text."""
    if _is_missing(value):
        cell.value = None  # type: ignore[attr-defined]
        return
    if isinstance(value, bool):
        cell.value = value  # type: ignore[attr-defined]
        return
    if isinstance(value, numbers.Integral):
        cell.value = int(value)  # type: ignore[attr-defined]
        return
    number: float | None = None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    elif isinstance(value, str):
        cell.value = None  # type: ignore[attr-defined]
        return
    if number is None or math.isinf(number):
        _set_text(cell, _as_text(value), where=where)  # keep what people typed, as text
    elif math.isnan(number):
        cell.value = None  # type: ignore[attr-defined]
    else:
        cell.value = int(number) if number.is_integer() and abs(number) < 1e15 else number  # type: ignore[attr-defined]


def _set_any(cell: object, value: object, *, where: str) -> None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool | str):
        _set_number(cell, value, where=where)
    elif isinstance(value, bool):
        cell.value = value  # type: ignore[attr-defined]
    else:
        _set_text(cell, _as_text(value), where=where)


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
    rows: list[list[str]] = []
    for values in ws.iter_rows(values_only=True):  # type: ignore[attr-defined]
        rows.append([_value_text(v) for v in values])
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
    index = pd.RangeIndex(2, len(body) + 2)
    return pd.DataFrame(body, columns=names, index=index, dtype=str)


def _last_used_row(ws: Worksheet) -> int:
    for r in range(ws.max_row, 0, -1):
        if any(c.value not in (None, "") for c in ws[r]):
            return r
    return 0


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


__all__: Sequence[str] = ("LocalBackend", "WorkbookLockedError")
