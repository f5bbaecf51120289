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
import html
import io
import numbers
import os
import posixpath
import re
import secrets
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.worksheet import Worksheet

from ..errors import BackendError, WorkbookChangedError, WorkbookLockedError
from . import _xlsx_images as images
from ._thumbcache import ThumbnailCache
from ._xlsx_datasheet import (
    HEADER_FONT,
    LISTS_SHEET,
    MAX_CELL_TEXT,
    DataSheetWriter,
    as_text,
    checked_text,
    number_value,
    store,
)
from ._xlsx_extent import compact_columns, compact_rows
from ._xlsx_package import (
    Package,
    PackageError,
    append_row,
    cells_xml,
    replace_sheet_data,
    sheet_rows,
)
from .base import (
    DATA_SHEET,
    INFO_PREFIX,
    SCORES_SHEET,
    Backend,
    OwnUpdate,
    SheetLayout,
    cell_text,
    header_row_of,
    headerless_columns,
    mark_header_row,
    mark_headerless,
    mark_uncomputed,
    merge_own_columns,
    own_columns_check,
    row_positions,
    skip_info,
    uncomputed_cells,
)

_READ_ERRORS = (
    zipfile.BadZipFile,
    InvalidFileException,
    PackageError,
    KeyError,
    OSError,
    ValueError,
)


# Attempts of update_own_columns when people keep saving the workbook while it writes.
_OWN_ATTEMPTS = 4


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one saved version of a file from the next (None when absent)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class LocalBackend(Backend):
    """An .xlsx workbook at ``path``; thumbnails come from ``root / row["path"]``."""

    name = "local"

    def __init__(
        self,
        path: Path,
        root: Path,
        *,
        thumbnails: bool = True,
        thumb_size: int = 112,
        force: bool = False,
        thumb_cache: Path | None = None,
    ):
        if thumb_size < 8:
            raise ValueError(f"thumb_size must be at least 8 pixels, not {thumb_size}")
        self.path = Path(path)
        self.root = Path(root)
        self.thumbnails = thumbnails
        self.thumb_size = thumb_size
        self.force = force
        # Thumbnails by content hash between pushes (the project's state folder); without
        # one, a push reuses what the previous workbook shows.
        self.thumb_cache = thumb_cache
        self._usage = ""

    # -- Backend ---------------------------------------------------------------------------

    def describe(self) -> str:
        return str(self.path)

    def usage(self) -> str:
        return self._usage

    def saved_version(self) -> tuple[int, int, int] | None:
        """What tells this saved version of the workbook from the next (``unchanged_since``)."""
        return _stamp(self.path)

    def read_table(self) -> pd.DataFrame | None:
        frame = self._read_data()
        if frame is not None:
            mark_uncomputed(frame, _uncomputed_formulas(self.path, frame))
        return frame

    def _read_data(self) -> pd.DataFrame | None:
        fast = _read_with_calamine(self.path, DATA_SHEET)
        if not isinstance(fast, bool):  # False: fall back to openpyxl
            return fast
        with self._open_read_only() as wb:
            if wb is None or DATA_SHEET not in wb.sheetnames:
                return None
            return _read_sheet(wb[DATA_SHEET])

    def write_table(
        self, table: pd.DataFrame, layout: SheetLayout, *, force: bool | None = None,
        unchanged_since: tuple[int, int, int] | None = None,
        blank_headers: frozenset[str] = frozenset(),
    ) -> None:
        """Replace the data sheet; ``force`` overrides the open-in-a-program check.

        ``blank_headers``: columns of ``table`` written without a header (a rewrite keeps
        the columns people left without one as they were).

        ``unchanged_since`` (a :func:`_stamp`): replace the file only if it is still that
        saved version, else raise :class:`WorkbookChangedError` (a save made meanwhile wins)."""
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
        _fit_header_widths(wb[SCORES_SHEET])
        cache = None if self.thumb_cache is None else ThumbnailCache(self.thumb_cache)
        writer = DataSheetWriter(
            ws,
            table,
            layout,
            root=self.root,
            thumbnails=self.thumbnails,
            thumb_size=self.thumb_size,
            reuse=_previous_thumbnails(old) if self.thumb_cache is None else None,
            blank_headers=blank_headers,
            cache=cache,
        )
        writer.prepare()
        _select_only(wb, ws)
        package = Package.read(self._workbook_bytes(wb))
        part = package.sheet_part(DATA_SHEET)
        assert part is not None, "openpyxl wrote no data sheet"
        rows, pictures, missing = writer.rows(package.parts[part])
        package.parts[part] = replace_sheet_data(package.parts[part], rows, writer.dimension)
        package.add_pictures(part, pictures)
        self._save(package.to_bytes(), force, unchanged_since)
        if cache is not None and self.thumbnails:
            cache.save()  # after the workbook: what it shows is what the cache keeps
        drawn = "" if cache is None else f" ({cache.drawn} drawn)"
        self._usage = (
            f"wrote {len(table)} rows, {len(pictures)} thumbnails{drawn}"
            + (f" ({missing} images unreadable)" if missing else "")
            + f", {self.path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s"
        )

    def update_followed(self, cells: pd.DataFrame, shown: pd.DataFrame,
                        layout: SheetLayout) -> list[str]:
        written: list[str] = []

        def follow(table: pd.DataFrame) -> pd.DataFrame:
            written.clear()
            positions = row_positions(table)
            for id_ in cells.index:
                row = positions.get(str(id_))
                if row is None:
                    continue
                same = [c for c in cells.columns if c in table.columns and
                        str(table.at[row, c]) == str(shown.at[id_, c])]
                if len(same) == len([c for c in cells.columns if c in table.columns]):
                    for c in same:  # only a row still as published: nobody edited it since
                        table.at[row, c] = str(cells.at[id_, c])
                    written.append(str(id_))
            return table

        self.update_own_columns(pd.DataFrame(index=cells.index), layout, change=follow)
        return written

    def update_own_columns(self, updates: pd.DataFrame, layout: SheetLayout, *,
                           append: pd.DataFrame | None = None,
                           force: bool | None = None,
                           change: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                           ) -> OwnUpdate:
        """Rewrite the workbook from one read of it with only sheetsync's columns changed.

        A workbook is one file, so its cells people edit are carried over value for value
        from the very saved version that was read; the file is replaced only if it is still
        that version (a save made meanwhile makes it start again) and never while a program
        holds its lock file."""
        own_columns_check(updates, layout)
        for attempt in range(_OWN_ATTEMPTS):
            self._check_unlocked(force)
            before = _stamp(self.path)
            sheet = self.read_table()
            if sheet is None or "id" not in sheet.columns:
                raise BackendError(f"{self.path} has no data sheet with an id column: push first")
            if header_row_of(sheet) > 2:  # the rewrite puts it on row 2: rows above it would go
                raise BackendError(f"{self.path}: the header is on row {header_row_of(sheet)}, "
                                   "not row 2, so rows were inserted above it; sheetsync will "
                                   "not rewrite the sheet, which would lose them: delete those "
                                   "rows or move them below the data")
            formulas = uncomputed_cells(sheet)
            if formulas:  # a rewrite would store them as empty cells: the formula lost
                cells = ", ".join(list(formulas)[:5])
                raise BackendError(f"{self.path} holds formulas with no computed value ({cells}); "
                                   "sheetsync will not rewrite it, which would lose them: open "
                                   "and save it in a spreadsheet program, or type the values")
            if change is not None:  # update_followed: people's cells, each checked first
                sheet = change(sheet.copy())
            table, result = merge_own_columns(sheet, updates, append)
            table, blank = _at_sheet_columns(table, headerless_columns(sheet))
            # The review sheet as a push makes it: the info line, and the flagged rows
            # highlighted wherever they now are (this rebuild keeps the sheet's row order).
            ids = table["id"].astype(str).str.strip().tolist()
            rebuilt = replace(layout, flagged=tuple(
                i for i, id_ in enumerate(ids) if id_ in layout.flagged_ids))
            try:
                self.write_table(table, rebuilt, force=force, unchanged_since=before,
                                 blank_headers=blank)
            except WorkbookChangedError:
                continue
            first = 3 if layout.info else 2  # the first data row, below the info line if any
            written = row_positions(table.set_axis(pd.RangeIndex(first, len(table) + first)))
            if row_positions(self.read_table()) == written:
                return OwnUpdate(result.updated, result.appended, attempt, result.not_found,
                                 result.missing_columns)
        raise WorkbookChangedError(f"{self.path} kept changing while sheetsync wrote its columns "
                                   f"({_OWN_ATTEMPTS} attempts); nothing lost, try again")

    def append_score(self, row: Mapping[str, object], *, force: bool | None = None) -> None:
        """Append ``row`` to the scores sheet; new keys extend its header."""
        self._check_unlocked(force)
        values: dict[str, object] = {
            str(k): _score_value(v, where=f"{SCORES_SHEET} column {k!r}") for k, v in row.items()
        }
        for _ in range(_OWN_ATTEMPTS):
            try:  # replaced only if still the version read: a save meanwhile is kept
                self._append_score_once(values, force, _stamp(self.path))
                return
            except WorkbookChangedError:
                continue
        raise WorkbookChangedError(f"{self.path} kept changing while sheetsync added a score row "
                                   f"({_OWN_ATTEMPTS} attempts); nothing lost, try again")

    def _append_score_once(self, values: dict[str, object], force: bool | None,
                           before: tuple[int, int, int] | None) -> None:
        package = self._read_package()
        if package is not None:
            data = self._append_in_place(package, values)
            if data is not None:
                self._save(data, force, before)
                return
        # No scores sheet yet (or one too unusual to edit in place): go through openpyxl.
        wb = self._load_for_update(package)
        ws = wb[SCORES_SHEET] if SCORES_SHEET in wb.sheetnames else wb.create_sheet(SCORES_SHEET)
        header = _header_of(ws)
        header += [k for k in values if k not in header]
        for col, name in enumerate(header, start=1):
            cell = ws.cell(row=1, column=col)
            store(cell, name)
            cell.font = HEADER_FONT
        target = _last_used_row(ws) + 1
        for col, name in enumerate(header, start=1):
            if name in values:
                store(ws.cell(row=target, column=col), values[name])
        if ws.freeze_panes is None:
            ws.freeze_panes = "A2"
        _fit_header_widths(ws)
        self._save(self._workbook_bytes(wb), force, before)

    def read_scores(self) -> pd.DataFrame:
        with self._open_read_only() as wb:
            if wb is None or SCORES_SHEET not in wb.sheetnames:
                return pd.DataFrame()
            return _read_sheet(wb[SCORES_SHEET]).reset_index(drop=True)

    # -- locking and files -----------------------------------------------------------------

    def lock_files(self) -> list[Path]:
        """Lock files of spreadsheet programs that have this workbook open (may be stale);
        for a linked workbook, beside the link and beside the file it points to."""
        found: list[Path] = []
        for path in dict.fromkeys([self.path, Path(os.path.realpath(self.path))]):
            name = path.name
            candidates = [f".~lock.{name}#", f"~${name}"]
            if len(name) > 2:
                # Excel drops the first two characters of longer names: ~$eetsync.xlsx
                candidates.append(f"~${name[2:]}")
            found += [path.with_name(c) for c in dict.fromkeys(candidates)
                      if path.with_name(c).exists()]
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
        sheet = _widen_new_columns(sheet, first_new, new)
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

    def _save(self, data: bytes, force: bool | None,
              unchanged_since: tuple[int, int, int] | None = None) -> None:
        """Write to a temporary file beside the workbook, then atomically replace it.

        A workbook that is a link (to a shared drive, say) is written through the link:
        the file it points to is replaced, and the link stays."""
        target = Path(os.path.realpath(self.path))
        folder = target.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as fh:  # default permissions, unlike mkstemp's 0600
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if target.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, target.stat().st_mode & 0o7777)
            # A person may have opened the workbook while we were writing.
            self._check_unlocked(force)
            if unchanged_since is not None and _stamp(self.path) != unchanged_since:
                raise WorkbookChangedError(f"{self.path} was saved by someone else meanwhile")
            os.replace(tmp, target)
        except (WorkbookLockedError, WorkbookChangedError):
            tmp.unlink(missing_ok=True)
            raise
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"could not write {self.path}: {e}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _at_sheet_columns(table: pd.DataFrame,
                      headerless: Mapping[str, int]) -> tuple[pd.DataFrame, frozenset[str]]:
    """``table`` with each column people left without a header (``column N``) back at sheet
    column N (empty columns without a header fill the gap), and the names of all of them,
    whose header a rewrite leaves blank."""
    if not headerless:
        return table, frozenset()
    names: list[str] = []
    blank = set(headerless)
    for name in table.columns:
        at = headerless.get(str(name))
        while at is not None and len(names) + 1 < at:
            filler = f"column {len(names) + 1}"
            filler = filler if filler not in table.columns else f"{filler} (gap)"
            names.append(filler)
            blank.add(filler)
        names.append(str(name))
    out = table.reindex(columns=names, fill_value="")
    return out, frozenset(blank)


def header_row(ws: Worksheet) -> int:
    """The data sheet's header row in an openpyxl worksheet: 2 under an info line, else 1."""
    first = ws.cell(row=1, column=1).value
    return 2 if isinstance(first, str) and first.startswith(INFO_PREFIX) else 1


def _previous_thumbnails(package: Package | None) -> dict[tuple[str, str], images.Thumbnail]:
    """Thumbnails in the old data sheet, by (image file name, stamp), for reuse.

    Keyed by the file name rather than the whole path so that a pull that only moved
    files between folders costs no re-rendering; the stamp (size, modification time,
    box) tells whether the file is still the one the thumbnail was made from.
    """
    part = None if package is None else package.sheet_part(DATA_SHEET)
    if package is None or part is None:
        return {}
    out = {}
    for description, name, png in package.pictures(part):
        found = images.from_picture_name(name, png)
        if found is not None:
            out[(posixpath.basename(description), found[0])] = found[1]
    return out


def _widen_new_columns(sheet_xml: bytes, first: int, names: list[str]) -> bytes:
    """Columns ``first``.. (1-based) as wide as their new headers, unless widths are set."""
    if not names:
        return sheet_xml
    text = sheet_xml.decode("utf-8")
    spans = [(int(a), int(b)) for a, b in re.findall(r'<col\b[^>]*\bmin="(\d+)"[^>]*\bmax="(\d+)"', text)]
    cols = "".join(
        f'<col min="{c}" max="{c}" width="{min(40, len(name) + 3)}" customWidth="1"/>'
        for c, name in enumerate(names, start=first)
        if not any(lo <= c <= hi for lo, hi in spans)
    )
    if not cols:
        return sheet_xml
    if "</cols>" in text:
        text = text.replace("</cols>", cols + "</cols>", 1)
    elif "<sheetData" in text:
        at = text.index("<sheetData")
        text = text[:at] + f"<cols>{cols}</cols>" + text[at:]
    else:
        return sheet_xml
    return text.encode("utf-8")


def _row_style(sheet_xml: bytes, row: int) -> str | None:
    """The style id a whole row carries (``<row r="1" s="3" customFormat="1">``)."""
    m = re.search(rb'<row\b[^>]*\br="%d"[^>]*>' % row, sheet_xml)
    style = None if m is None else re.search(rb'\bs="(\d+)"', m.group(0))
    return None if style is None else style.group(1).decode()


def _with_part(package: Package, part: str, data: bytes) -> bytes:
    package.parts[part] = data
    return package.to_bytes()


def _score_value(value: object, *, where: str) -> int | float | bool | str | None:
    if isinstance(value, numbers.Real):
        return number_value(value, where=where)
    return checked_text(as_text(value), where=where)


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


_FORMULA_CELL = re.compile(rb'<c\b[^>]*\br="([A-Z]+)(\d+)"[^>]*>(.*?)</c>', re.S)
_FORMULA = re.compile(rb"<f\b[^>]*(?:/>|>(.*?)</f>)", re.S)
# A cached value: <v>..</v>, even an empty one; openpyxl writes a bare <v /> for none.
_CACHED = re.compile(rb"<v>")


def _uncomputed_formulas(path: Path, frame: pd.DataFrame) -> dict[str, str]:
    """Cells below the header holding a formula with no cached value (a program that does not
    compute formulas wrote them, e.g. ``=IMPORTXML(...)`` typed through a script): "H5" ->
    the formula. Such a cell reads as empty, so a pull would drop what was typed silently."""
    try:
        package = Package.read(path)
        part = package.sheet_part(DATA_SHEET)
    except _READ_ERRORS:
        return {}
    xml = b"" if part is None else package.parts[part]
    if b"<f" not in xml:
        return {}
    out = {}
    for letters, row, body in _FORMULA_CELL.findall(xml):
        formula = _FORMULA.search(body)
        if formula is None or _CACHED.search(body) or int(row) <= header_row_of(frame):
            continue
        text = (formula.group(1) or b"").decode("utf-8", "replace")
        out[f"{letters.decode()}{int(row)}"] = "=" + html.unescape(text) if text else "(shared)"
    return out


def _read_with_calamine(path: Path, sheet: str) -> pd.DataFrame | None | bool:
    """The sheet read by calamine (Rust, about 10x faster than openpyxl); False to fall back.

    openpyxl stays the reference reader: any file calamine cannot read goes through it.
    """
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:
        return False
    if not path.exists():
        return None
    try:
        if _has_error_cells(path):
            return False  # calamine reads "#DIV/0!" cells as empty; openpyxl keeps the text
        source, numbers, columns = _within_extent(path, sheet)
        wb = (CalamineWorkbook.from_path(str(path)) if source is None
              else CalamineWorkbook.from_filelike(source))
        if sheet not in wb.sheet_names:
            return None
        rows = wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except Exception:  # noqa: BLE001  # any oddity: let openpyxl read it (or say what is wrong)
        return False
    texts = [[_value_text(v) for v in r] for r in rows]
    if any(len(t) >= MAX_CELL_TEXT for r in texts for t in r):
        return False  # calamine cuts longer text at 32,767 characters, silently; openpyxl does not
    return _rows_to_frame(texts, numbers, columns)


def _within_extent(
    path: Path, sheet: str
) -> tuple[io.BytesIO | None, list[int] | None, list[int] | None]:
    """The workbook with the sheet's far-apart rows and columns renumbered, and their real
    numbers, so that a stray cell at row 1,048,576 or column XFD costs no million empty
    cells; (None, None, None) when the sheet is dense already."""
    package = Package.read(path)
    part = package.sheet_part(sheet)
    if part is None:
        return None, None, None
    xml = package.parts[part]
    rows = compact_rows(xml)
    xml = xml if rows is None else rows[0]
    columns = compact_columns(xml)
    if rows is None and columns is None:
        return None, None, None
    package.parts[part] = xml if columns is None else columns[0]
    return (io.BytesIO(package.to_bytes()), None if rows is None else rows[1],
            None if columns is None else columns[1])


def _has_error_cells(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                with zf.open(name) as f:
                    if b't="e"' in f.read():
                        return True
    return False


def _read_sheet(ws: object) -> pd.DataFrame:
    """Header = row 1 as written; index = sheet row; every cell str; nothing silently lost."""
    ws.reset_dimensions()  # type: ignore[attr-defined]  # never trust the stored dimension
    rows = [[_value_text(v) for v in values] for values in ws.iter_rows(values_only=True)]  # type: ignore[attr-defined]
    return _rows_to_frame(rows)


def _rows_to_frame(rows: list[list[str]], numbers: list[int] | None = None,
                   columns: list[int] | None = None) -> pd.DataFrame:
    """``numbers[i]``: the sheet row of ``rows[i]``, ``columns[c]`` the sheet column of
    ``rows[.][c]`` (default: ``i + 1`` and ``c + 1``, a dense read)."""
    while rows and not any(rows[-1]):
        rows.pop()
    rows, head = skip_info(rows)  # head: the sheet row of the header (2 below an info line)
    if numbers is not None:
        numbers = numbers[head - 1:]
    if not rows:
        return mark_header_row(pd.DataFrame(dtype=str), head)
    header = rows[0]
    width = max(len(r) for r in rows)
    used = [any(len(r) > c and r[c] for r in rows[1:]) for c in range(width)]
    keep = [c for c in range(width) if (c < len(header) and header[c]) or used[c]]
    number = (lambda c: c + 1) if columns is None else columns.__getitem__  # noqa: E731
    names = [header[c] if c < len(header) and header[c] else f"column {number(c)}" for c in keep]
    body = [[r[c] if c < len(r) else "" for c in keep] for r in rows[1:]]
    index = (pd.RangeIndex(head + 1, len(body) + head + 1) if numbers is None
             else pd.Index(numbers[1:len(body) + 1]))
    frame = pd.DataFrame(body, columns=names, index=index, dtype=str)
    mark_header_row(frame, head if numbers is None else numbers[0])
    return mark_headerless(frame, {f"column {number(c)}": number(c) for c in keep
                                   if c >= len(header) or not header[c]})


def _header_of(ws: Worksheet) -> list[str]:
    header = [cell_text(c.value) for c in ws[1]] if ws.max_row >= 1 else []
    while header and header[-1] == "":
        header.pop()
    return header


def _fit_header_widths(ws: Worksheet) -> None:
    """Columns at least as wide as their header, so no header is cut off (scores sheet)."""
    for col, name in enumerate(_header_of(ws), start=1):
        dim = ws.column_dimensions[get_column_letter(col)]
        dim.width = max(dim.width or 0, min(40, len(name) + 3))


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


__all__ = ["LocalBackend", "WorkbookChangedError", "WorkbookLockedError", "header_row"]
