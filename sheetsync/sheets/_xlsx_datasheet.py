"""The data sheet of the local workbook, laid out for people.

openpyxl writes the header, the column settings (widths, text format, dropdowns, the
mismatch highlight, the filter, the frozen header) and two prototype rows; then
:meth:`DataSheetWriter.rows` streams every data row as XML with the style ids openpyxl
gave those prototypes, and :meth:`DataSheetWriter.pictures` makes the thumbnails. That
keeps 10,000 rows and 10,000 pictures out of openpyxl's object model, which is slow.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.comments import Comment
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from ..errors import BackendError
from . import _xlsx_images as images
from ._thumbcache import ThumbnailCache, draw_all
from ._xlsx_package import PackageError, Picture, row_xml, sheet_rows
from .base import Column, SheetLayout, cell_text, checkbox_value

LISTS_SHEET = "sheetsync_lists"
MAX_CELL_TEXT = 32_767  # Excel refuses longer cell text
MAX_INLINE_LIST = 255  # Excel's limit for an inline dropdown list ("a,b,c")
LAST_ROW = 1_048_576

GREY_FILL = PatternFill(fill_type="solid", start_color="FFF2F2F2", end_color="FFF2F2F2")
READONLY_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFD9D9D9", end_color="FFD9D9D9")
EDITABLE_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFE2EFDA", end_color="FFE2EFDA")
MISMATCH_FILL = PatternFill(fill_type="solid", start_color="FFFCE4D6", end_color="FFFCE4D6")
FLAG_FILL = PatternFill(fill_type="solid", start_color="FFFFE699", end_color="FFFFE699")
# One font everywhere: without a name LibreOffice falls back to the theme's fonts, and the
# read-only columns came out in Cambria, the rest in Calibri.
FONT_NAME = "Calibri"
BODY_FONT = Font(name=FONT_NAME, size=11)
HEADER_FONT = Font(name=FONT_NAME, size=11, bold=True)
READONLY_FONT = Font(name=FONT_NAME, size=11, color="FF595959")
LINK_FONT = Font(name=FONT_NAME, size=11, color="FF0563C1", underline="single")
WRAPPED = ("suggestion",)
# One line per row: ``why`` shows its strongest reason (it lists them strongest first), and a
# note on the cell holds the full text when it is longer than the column shows.
NOTED = "why"
INFO_FONT = Font(name=FONT_NAME, size=11, bold=True, color="FF1F3864")
INFO_FILL = PatternFill(fill_type="solid", start_color="FFDDEBF7", end_color="FFDDEBF7")
INFO_HEIGHT = 72  # points: five lines of the info text
INFO_THROUGH = "note"  # the info cell spans the columns through this one
HEADER_BORDER = Border(bottom=Side(style="thin", color="FF808080"))
TEXT_FORMAT = "@"  # "Text": what people type into these cells stays text
# The checked column shows TRUE / FALSE (a boolean under the General format reads 0 / 1 in
# LibreOffice Calc). Calc then saves the cells as the numbers 1 / 0: pull reads those as TRUE / FALSE.
BOOLEAN_FORMAT = '"TRUE";"TRUE";"FALSE"'


class DataSheetWriter:
    """Lays out one fresh data sheet: openpyxl writes the header, the column settings and
    two prototype rows (plain and formula-looking text); :meth:`rows` then streams every
    data row as XML with the style ids openpyxl gave those prototypes."""

    def __init__(
        self,
        ws: Worksheet,
        table: pd.DataFrame,
        layout: SheetLayout,
        *,
        root: Path,
        thumbnails: bool,
        thumb_size: int,
        reuse: dict[tuple[str, str], images.Thumbnail] | None = None,
        blank_headers: frozenset[str] = frozenset(),
        cache: ThumbnailCache | None = None,
    ):
        self.ws = ws
        # Columns people left without a header (data in them is refused by a pull, cell by
        # cell): their header stays blank, so a rewrite never makes them a named column.
        self.blank_headers = blank_headers
        self.root = root.resolve()
        self.thumbnails = thumbnails
        self.thumb_size = thumb_size
        # Thumbnails of the previous push: (file name, stamp) -> thumbnail.
        self.reuse = reuse or {}
        # Thumbnails by content hash in the state folder; when given, it replaces ``reuse``.
        self.cache = cache
        self.table = table
        self.layout = layout
        self.names = [str(c) for c in table.columns]
        self.columns = [layout.column(n) for n in self.names]
        self.letters = [get_column_letter(i) for i in range(1, len(self.names) + 1)]
        # With an info line, it is row 1 and the header row 2 (read_table skips the line).
        self.head = 2 if layout.info else 1
        self.first = self.head + 1
        self.last_row = len(table) + self.head
        self.last_col = get_column_letter(max(1, len(self.names)))
        self.dimension = f"A1:{self.last_col}{self.last_row}"
        self.filter_range = f"A{self.head}:{self.last_col}{self.last_row}"

    def prepare(self) -> None:
        self._info()
        self._header()
        self._prototypes()
        self._notes()
        self._dropdowns()
        self._highlight()
        self.ws.freeze_panes = self._freeze_cell()
        self.ws.auto_filter.ref = self.filter_range
        self._links()
        self._print_setup()

    def _notes(self) -> None:
        """A note with the full ``why`` on each cell whose text is longer than the column shows
        on its one line (hover the cell's red corner to read it)."""
        if NOTED not in self.names:
            return
        col = self.names.index(NOTED)
        shown = self._width(col, self.columns[col])
        for r, value in enumerate(self.table.iloc[:, col], start=self.first):
            text = as_text(value)
            if len(text) > shown:
                # One reason a line, strongest first.
                self.ws.cell(row=r, column=col + 1).comment = Comment(
                    text.replace("; ", ";\n"), "sheetsync", width=320, height=110)

    def _freeze_cell(self) -> str:
        """The header row, and every column through ``layout.freeze_through``."""
        through = self.layout.freeze_through
        col = self.names.index(through) + 2 if through in self.names else 2
        return f"{get_column_letter(col)}{self.first}"

    def _info(self) -> None:
        """The info line: one wrapped cell over the first columns (through ``note``)."""
        if not self.layout.info:
            return
        cell = self.ws.cell(row=1, column=1)
        cell.value = checked_text(self.layout.info, where="info row")
        cell.data_type = "s"
        cell.font = INFO_FONT
        cell.fill = INFO_FILL
        cell.alignment = Alignment(vertical="center", wrap_text=True)
        span = min(len(self.names), max(1, self._columns_through(INFO_THROUGH)))
        if span > 1:
            self.ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=span)
        self.ws.row_dimensions[1].height = INFO_HEIGHT

    def _columns_through(self, name: str) -> int:
        return self.names.index(name) + 1 if name in self.names else len(self.names)

    def _links(self) -> None:
        """The url cells are hyperlinks: a click opens the full image."""
        if "url" not in self.names:
            return
        col = self.names.index("url") + 1
        for r, url in enumerate(self.table["url"], start=self.first):
            text = as_text(url)
            if text.startswith(("file:", "http:", "https:")):
                self.ws.cell(row=r, column=col).hyperlink = text

    def _print_setup(self) -> None:
        """Print / PDF: landscape, one page wide, the header row on every page."""
        if not self.layout.print_landscape:
            return
        setup = self.ws.page_setup
        setup.orientation = "landscape"
        setup.paperSize = self.ws.PAPERSIZE_A4
        setup.fitToWidth = 1
        setup.fitToHeight = 0  # as many pages down as it takes
        self.ws.sheet_properties.pageSetUpPr.fitToPage = True
        self.ws.print_title_rows = f"1:{self.head}"
        self.ws.print_options.gridLines = True

    def _header(self) -> None:
        for col, (name, spec) in enumerate(zip(self.names, self.columns, strict=True), start=1):
            cell = self.ws.cell(row=self.head, column=col)
            if name in self.blank_headers:
                continue
            cell.value = checked_text(name, where=f"header {cell.coordinate}")
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
            # Never narrower than the header and its filter button (about 2 characters).
            return max(spec.width, len(spec.name) + 3)
        if spec.kind == "image":
            return images.column_width_for(self.thumb_size) if self.thumbnails else 8
        if spec.kind == "number":
            return max(10, len(spec.name) + 3)
        sample = self.table.iloc[:500, index]
        longest = max((len(str(v)) for v in sample if isinstance(v, str)), default=0)
        return float(min(50, max(len(spec.name) + 3, longest + 2, 8)))

    def _prototypes(self) -> None:
        # Plain and formula-looking text, then the same flagged: four rows after the header.
        for col, spec in enumerate(self.columns, start=1):
            for k in range(4):
                row = self.first + k
                cell = self.ws.cell(row=row, column=col)
                cell.font = BODY_FONT
                if not spec.editable:
                    cell.fill = GREY_FILL
                    cell.font = READONLY_FONT
                if k >= 2:
                    cell.fill = FLAG_FILL
                if spec.name == "url":
                    cell.font = LINK_FONT
                if spec.kind in ("text", "choice"):
                    cell.number_format = TEXT_FORMAT
                elif spec.kind == "number" and spec.number_format:
                    cell.number_format = spec.number_format
                elif spec.kind == "checkbox":
                    cell.number_format = BOOLEAN_FORMAT
                cell.alignment = Alignment(
                    horizontal="center" if spec.kind == "image" else None,
                    vertical="center",
                    wrap_text=spec.name in WRAPPED,
                )
                # Row 3: spreadsheet programs then keep "=1+1" as text when people edit it.
                cell.quotePrefix = k in (1, 3)

    def rows(self, sheet_xml: bytes) -> tuple[Iterator[str], list[Picture], int]:
        """Row XML for the header and every data row, the thumbnails, the unreadable count."""
        written = sheet_rows(sheet_xml)
        styles = {
            (flag, quote): [written[self.first + 2 * flag + quote][letter].get("s")
                            for letter in self.letters]
            for flag in (0, 1) for quote in (0, 1)
        }
        header = "".join(_row_xml_of(sheet_xml, r) for r in range(1, self.head + 1))
        values = self._values()  # validates every cell before anything is rendered
        pictures, missing, heights = self._pictures()
        flagged = set(self.layout.flagged)

        def generate() -> Iterator[str]:
            yield header
            for r, row in enumerate(values, start=self.first):
                flag = int(r - self.first in flagged)
                cells = []
                for c, value in enumerate(row):
                    quote = int(isinstance(value, str) and value[:1] in "=+-@")
                    cells.append((self.letters[c], styles[flag, quote][c], value))
                yield row_xml(r, cells, heights.get(r, heights.get(0)))

        return generate(), pictures, missing

    def _values(self) -> list[list[object]]:
        out = []
        for r, row in enumerate(self.table.itertuples(index=False, name=None), start=self.first):
            cells: list[object] = []
            for c, (value, spec) in enumerate(zip(row, self.columns, strict=True)):
                where = f"row {r}, column {self.names[c]!r}"
                if spec.kind == "image":
                    cells.append(None)
                elif spec.kind == "number":
                    cells.append(number_value(value, where=where))
                elif spec.kind == "checkbox":
                    cells.append(checkbox_value(value))
                else:
                    cells.append(checked_text(as_text(value), where=where))
            out.append(cells)
        return out

    def _pictures(self) -> tuple[list[Picture], int, dict[int, float]]:
        """The pictures, how many are missing, and each row's height (key 0: rows without one)."""
        image_col = next((i for i, c in enumerate(self.columns) if c.kind == "image"), None)
        if not self.thumbnails or image_col is None or "path" not in self.names:
            return [], 0, {}
        heights: dict[int, float] = {0: images.row_points(None)}
        box = self.thumb_size
        path_col = self.names.index("path")
        links = self.table["url"].map(as_text).tolist() if "url" in self.names else None
        pictures, missing = [], 0
        found = self._thumbnails(self.table.iloc[:, path_col].map(as_text).tolist())
        for r, (rel_text, stamp, thumb) in enumerate(found, start=self.first):
            if stamp is None or thumb is None:
                missing += 1
                continue
            name = images.picture_name(stamp, thumb)
            x, y = images.centre_offsets(box, thumb)
            heights[r] = images.row_points(thumb)
            pictures.append(
                Picture(
                    r,
                    image_col + 1,
                    thumb.png,
                    thumb.width,
                    thumb.height,
                    images.PADDING,
                    rel_text,
                    name,
                    link=links[r - self.first] if links else "",
                    offset_x=x,
                    offset_y=y,
                )
            )
        return pictures, missing, heights

    def _thumbnails(
        self, paths: list[str]
    ) -> list[tuple[str, str | None, images.Thumbnail | None]]:
        """(path, stamp, thumbnail) per row; stamp None: no such file inside the root."""
        box = self.thumb_size
        sources = images.safe_image_paths(self.root, paths)
        stamps = [None if s is None else images.stamp(s, box) for s in sources]
        todo = [(i, s) for i, (s, st) in enumerate(zip(sources, stamps, strict=True))
                if s is not None and st is not None]
        thumbs: list[images.Thumbnail | None] = [None] * len(paths)
        if self.cache is None:
            # No state folder: reuse what the previous workbook shows, by file name and stamp.
            for i, _ in todo:
                thumbs[i] = self.reuse.get((posixpath.basename(paths[i]), str(stamps[i])))
            todo = [(i, s) for i, s in todo if thumbs[i] is None]
        drawn = draw_all([s for _, s in todo], box, self.cache)
        for (i, _), thumb in zip(todo, drawn, strict=True):
            thumbs[i] = thumb
        return list(zip(paths, stamps, thumbs, strict=True))

    def _dropdowns(self) -> None:
        lists_ws: Worksheet | None = None
        list_col = 0
        for col, spec in enumerate(self.columns, start=1):
            if spec.kind == "checkbox":
                choices = ["TRUE", "FALSE"]  # a workbook has no checkbox: a TRUE/FALSE dropdown
            elif spec.kind != "choice" or not spec.choices:
                continue
            else:
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
                    store(
                        lists_ws.cell(row=r, column=list_col),
                        checked_text(choice, where=LISTS_SHEET),
                    )
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
            dv.add(f"{letter}{self.first}:{letter}{LAST_ROW}")
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
        f = self.first
        rule = FormulaRule(formula=[f'AND(${a}{f}<>"",${b}{f}<>"",${a}{f}<>${b}{f})'],
                           fill=MISMATCH_FILL)
        self.ws.conditional_formatting.add(f"A{f}:{self.last_col}{self.last_row}", rule)


def _row_xml_of(sheet_xml: bytes, row: int) -> str:
    text = sheet_xml.decode("utf-8")
    start = text.find(f'<row r="{row}"')
    end = text.find("</row>", start)
    if start < 0 or end < 0:
        raise PackageError(f"openpyxl wrote no row {row} (header)")
    return text[start : end + len("</row>")]


# -- cell values ---------------------------------------------------------------------------


def is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def as_text(value: object) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return cell_text(float(value))
    return cell_text(value)


def checked_text(text: str, *, where: str) -> str | None:
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


def number_value(value: object, *, where: str) -> int | float | bool | str | None:
    """Numbers as numbers; NaN/None empty; text that is no number kept as text."""
    if is_missing(value):
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
        return checked_text(as_text(value), where=where)  # keep what people typed, as text
    if math.isnan(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 1e15 else number


def store(cell: Cell, value: object) -> None:
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl turns "=..." into a formula and "#N/A" into an error
