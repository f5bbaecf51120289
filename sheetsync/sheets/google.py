"""The Google Sheets backend: one shared spreadsheet, few requests, lossless typed cells.

A push is one metadata read plus one ``spreadsheets.batchUpdate`` carrying the typed cells and
the whole layout (frozen header, dropdowns, protected read-only columns, basic filter, label
vs. prediction highlight, thumbnails) atomically. A table whose typed cells exceed ~2 MB is
written to a hidden staging tab first (thumbnails, then the values as RAW ranges of up to ~2 MB
each; RAW is never parsed, so text stays text), and one last ``batchUpdate`` copies it into the
data tab with the layout and deletes the staging tab: a failed write leaves the data tab as it
was, never half written. A read is one ``values.batchGet`` (unformatted values: numbers come back as
numbers, text exactly as written). Every request goes through
:class:`~sheetsync.sheets._google_http.SheetsHTTP`: bounded retries, a timeout, counted bytes.
A write that is not safe to send twice (a push's batches, the score row, appended rows) is
never repeated blindly after an unclear answer: the sheet is read back and only what is still
missing is written (``SheetsHTTP.guarded``; docs/google.md ("Google's rules and the stand-in") lists every write).

Usage::

    backend = GoogleBackend.from_config(config)      # or GoogleBackend(gspread_client, key)
    backend.write_table(table, layout)
    backend.read_table()                             # DataFrame of str, index = sheet row
    print(backend.usage())                           # "2 requests (1 read, 1 write), 412 KB sent, ..."
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import gspread
import pandas as pd
import requests
from gspread.exceptions import NoValidUrlKeyFound
from gspread.utils import extract_id_from_url

from ..errors import BackendError, ConfigError
from ..pullcheck import cell_text_problem
from . import _google_cells as cells
from . import _google_own as own
from ._google_http import MAX_PAYLOAD, SheetsHTTP, SheetsRequestError, Usage, dumps
from .base import (
    DATA_SHEET,
    SCORES_SHEET,
    Backend,
    OwnUpdate,
    SheetLayout,
    cell_text,
    column_letter,
    mark_header_row,
    mark_headerless,
    own_columns_check,
    skip_info,
)

if TYPE_CHECKING:
    from ..config import Config

# Data cells: their value, and the link format of the url cells.
_ROW_FIELDS = "userEnteredValue,userEnteredFormat.textFormat.link"
_META_FIELDS = (
    "sheets(properties(sheetId,title,index,gridProperties(rowCount,columnCount)),"
    "protectedRanges(protectedRangeId,description,range),conditionalFormats(ranges))"
)
# Rewrites of update_own_columns when people keep re-sorting between its write and read-back.
_OWN_ATTEMPTS = 4
_READ = {
    "majorDimension": "ROWS",
    "valueRenderOption": "UNFORMATTED_VALUE",  # numbers as numbers, text as written
    "dateTimeRenderOption": "FORMATTED_STRING",  # a date someone typed reads as they see it
}


class GoogleBackend(Backend):
    """A Google spreadsheet holding the data worksheet and the ``scores`` worksheet."""

    name = "google"

    def __init__(
        self,
        client: gspread.Client | requests.Session,
        spreadsheet: str,
        *,
        worksheet: str = DATA_SHEET,
        account: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if isinstance(client, requests.Session):  # an already authorized session
            client = gspread.Client(auth=None, session=client)  # type: ignore[arg-type]
        self.client = client
        self.spreadsheet_id = spreadsheet_key(spreadsheet)
        self.worksheet = worksheet or DATA_SHEET
        self.http = SheetsHTTP(
            client, self.spreadsheet_id, account=account, timeout=timeout,
            max_retries=max_retries, backoff_base=backoff_base, sleep=sleep,
        )

    @classmethod
    def from_config(cls, config: Config) -> GoogleBackend:
        from ._google_auth import sign_in

        g = config.google
        key = spreadsheet_key(g.spreadsheet)  # a bad key fails before any sign-in
        login = sign_in(g, config.resolve)
        return cls(
            login.client, key, worksheet=g.worksheet, account=login.account,
            timeout=g.timeout, max_retries=g.max_retries,
        )

    # -- Backend -------------------------------------------------------------------------

    def describe(self) -> str:
        return f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id} (worksheet {self.worksheet!r})"

    def usage(self) -> str:
        return str(self.http.usage)

    @property
    def stats(self) -> Usage:
        """Requests and bytes since this backend was made."""
        return self.http.usage

    def read_table(self) -> pd.DataFrame | None:
        values = self._read_values(self.worksheet)
        if values is None:
            return None
        return _frame(values, index_rows=True)

    def read_scores(self) -> pd.DataFrame:
        values = self._read_values(SCORES_SHEET)
        return pd.DataFrame() if values is None else _frame(values, index_rows=False)

    def write_table(self, table: pd.DataFrame, layout: SheetLayout) -> None:
        check_cells(table, layout)  # before any request: a refused push changes nothing
        # The batches add sheets and delete protected ranges by id: not safe to send twice.
        # A write that may have landed makes the push start over from a fresh read, which
        # plans against what the sheet holds now (a push rewrites the whole tab, so doing it
        # again gives the same sheet).
        self.http.guarded(lambda _: self._write_table(table, layout), "the push")

    def _write_table(self, table: pd.DataFrame, layout: SheetLayout) -> None:
        names = [str(c) for c in table.columns]
        meta = self._sheets()
        top = cells.header_offset(layout)  # the header's 0-based row: 1 below an info line
        prepare, sheet_id = self._prepare(meta, len(table), len(names), head=top,
                                          frozen_cols=cells.frozen_columns(names, layout))
        head: list[dict[str, Any]] = []
        if SCORES_SHEET not in meta and SCORES_SHEET != self.worksheet:
            head.append(_add_sheet(_new_id(meta, exclude={sheet_id}), SCORES_SHEET, 2, 2, 1))
        head.append(_update_cells(sheet_id, top, [cells.header_row(names, layout)], len(names),
                                  "userEnteredValue,userEnteredFormat.textFormat.bold,note"))
        # The info line (and its merge) is part of the structure: written after the cells.
        structure = cells.layout_requests(sheet_id, names, len(table), layout)
        rows = cells.table_rows(table, layout)
        first = [*prepare, *head, *structure]
        if _fits(rows, MAX_PAYLOAD - len(dumps({"requests": first}))):
            # Cells and structure in one batchUpdate: the sheet changes atomically.
            if rows:
                first.append(_update_cells(sheet_id, top + 1, rows, len(names), _ROW_FIELDS))
            self._batch(first, repeat=False)
        else:
            self._write_staged(meta, sheet_id, names, rows, layout, [*prepare, *head], structure)

    def _write_staged(self, meta: dict[str, dict[str, Any]], sheet_id: int, names: list[str],
                      rows: list[dict[str, Any]], layout: SheetLayout,
                      before: list[dict[str, Any]], structure: list[dict[str, Any]]) -> None:
        """Over ~2 MB: the cells go to a hidden staging tab in several writes, then one last
        batchUpdate clears the data tab, copies the staged cells in, applies the structure and
        deletes the staging tab, atomically. A write that fails before that last one leaves the
        data tab exactly as it was (and at worst a hidden staging tab, which the next push
        replaces); the data tab is never left half written or blank.

        Staged values go as RAW ranges (never parsed: "0042" and "=1+1" stay text; about a
        third the size of typed cells); only the image column needs typed formula cells (and
        the url column its link format), and the image slots in the RAW rows are null ("leave
        alone"). The staging tab has no info line: its header is row 1, and the paste puts its
        rows below the data tab's header, wherever that is."""
        staging_title = f"{self.worksheet} (sheetsync staging)"
        staging = _new_id(meta, exclude={sheet_id})
        first: list[dict[str, Any]] = [{"deleteSheet": {"sheetId": meta[staging_title]["properties"]["sheetId"]}}
                                       ] if staging_title in meta else []
        first.append(_add_sheet(staging, staging_title, len(rows) + 1, len(names), 0, hidden=True))
        image_cols = [c for c, n in enumerate(names) if layout.column(n).kind == "image"]
        # Typed cells: the =IMAGE formulas, and the links of the url cells (only their format:
        # the text goes with the RAW values).
        link_cols = [c for c, n in enumerate(names) if n in cells.LINKED]
        for c in [*image_cols, *link_cols]:
            if c in link_cols:
                column = [{"values": [{k: v for k, v in r["values"][c].items()
                                       if k == "userEnteredFormat"}]} for r in rows]
                fields = "userEnteredFormat.textFormat.link"
            else:
                column = [{"values": [r["values"][c]]} for r in rows]
                fields = "userEnteredValue"
            budget = MAX_PAYLOAD - len(dumps({"requests": first}))
            for start, chunk in _chunks(column, budget):
                update = _update_cells(staging, 1 + start, chunk, c + 1, fields)
                update["updateCells"]["range"]["startColumnIndex"] = c
                if first and len(dumps({"requests": [*first, update]})) > MAX_PAYLOAD:
                    self._batch(first, repeat=False)  # full: send what is packed, start anew
                    first = []
                first.append(update)
        if first:
            self._batch(first, repeat=False)
        raw = [[None if c in image_cols else cells.raw_value(cell) for c, cell in enumerate(r["values"])]
               for r in rows]
        title = "'" + staging_title.replace("'", "''") + "'"
        for start, chunk in _chunks(raw, MAX_PAYLOAD - 1000):
            self.http.call("write", "POST", "/values:batchUpdate", body={
                "valueInputOption": "RAW",
                "data": [{"range": f"{title}!A{start + 2}", "majorDimension": "ROWS",
                          "values": chunk}],
            })
        n, width, top = len(rows), len(names), cells.header_offset(layout)
        copy = {"copyPaste": {"source": cells.grid(staging, 1, n + 1, 0, width),
                              "destination": cells.grid(sheet_id, top + 1, top + n + 1, 0, width),
                              "pasteType": "PASTE_NORMAL"}}
        # Values before the structure: pasting also copies the staging tab's (plain) formats.
        self._batch([*before, copy, *structure, {"deleteSheet": {"sheetId": staging}}],
                    repeat=False)

    def update_own_columns(self, updates: pd.DataFrame, layout: SheetLayout, *,
                           append: pd.DataFrame | None = None) -> OwnUpdate:
        """Targeted RAW ranges for sheetsync's columns only, then the id column read back.

        Per attempt: 1 read (the whole worksheet), 1 write (``values.batchUpdate``; one more
        per ~2 MB of values), 1 read (the id column); the first attempt adds 1 read (sheet ids)
        and 1 write (``appendCells``) when there are new rows."""
        own_columns_check(updates, layout)
        appended = 0
        for attempt in range(_OWN_ATTEMPTS):
            values = self._read_values(self.worksheet) or []
            head = own.header_row(values)  # 2 below the review sheet's info line
            header = own.header_positions(values, head)
            if "id" not in header:
                raise BackendError(f"{self.describe()} has no data sheet with an id column: "
                                   "push first")
            rows = own.ids_by_row(values, header["id"], head)
            ranges = own.own_ranges(self.worksheet, header, rows, updates)
            # The info line (version, model, summary) says what the columns now show.
            info = own.info_range(self.worksheet, layout.info) if head == 2 and ranges else []
            for batch in own.batches([*ranges, *info], MAX_PAYLOAD - 1000):
                self.http.call("write", "POST", "/values:batchUpdate",
                               body={"valueInputOption": "RAW", "data": batch})
            if attempt == 0:
                appended = self._append_rows(values[head - 1], set(rows.values()), append,
                                             layout, head)
            expected = {r: i for r, i in rows.items() if i in set(map(str, updates.index))}
            if not ranges or not own.moved(expected, self._read_ids(header["id"], head)):
                found = set(rows.values())
                return OwnUpdate(
                    updated=len(expected), appended=appended, repairs=attempt,
                    not_found=tuple(str(i) for i in updates.index if str(i) not in found),
                    missing_columns=tuple(str(c) for c in updates.columns if str(c) not in header))
        raise BackendError(f"rows of {self.describe()} kept moving while sheetsync wrote its "
                           f"columns ({_OWN_ATTEMPTS} attempts); no cell people edit was "
                           "written, try again")

    def _read_ids(self, id_col: int, head: int) -> dict[int, str]:
        letter = column_letter(id_col)
        column = self._read_values(self.worksheet, cells=f"{letter}:{letter}") or []
        return own.ids_by_row([list(r[:1]) for r in column], 0, head)

    def _append_rows(self, header_cells: list[Any], present: set[str],
                     append: pd.DataFrame | None, layout: SheetLayout, head: int) -> int:
        """Whole rows, in the sheet's column order, for ids with no row yet (one appendCells)."""
        if append is None or not len(append):
            return 0
        new = append[~append["id"].astype(str).isin(present)]
        if not len(new):
            return 0
        names = [cell_text(v).strip() for v in header_cells]
        frame = new.reindex(columns=[n if n in new.columns else "" for n in names])
        frame.columns = [n or f"column {i + 1}" for i, n in enumerate(names)]
        frame = frame.astype(object).where(frame.notna(), "")
        ids = frame["id"].astype(str).tolist() if "id" in frame.columns else []
        id_col = names.index("id") if "id" in names else None

        def step(attempt: int) -> int:
            # appendCells is not safe to send twice: after a write that may have landed, the
            # id column read back says which rows are there already; only the rest is sent.
            rows = frame
            if attempt and id_col is not None:
                there = set(self._read_ids(id_col, head).values())
                rows = frame[[i not in there for i in ids]]
                if not len(rows):
                    return len(frame)
            meta = self._sheets()
            sheet_id = meta[self.worksheet]["properties"]["sheetId"]
            self._batch([{"appendCells": {"sheetId": sheet_id,
                                          "rows": cells.table_rows(rows, layout),
                                          "fields": "userEnteredValue"}}], repeat=False)
            return len(frame)

        return self.http.guarded(step, f"the {len(frame)} new row(s)")

    def append_score(self, row: Mapping[str, object]) -> None:
        """One more row on the scores tab. An append is not safe to send twice: after a write
        that may have landed, the tab read back says whether the row is there already."""
        before: list[int] = []

        def step(attempt: int) -> None:
            meta = self._sheets()
            old = (self._read_values(SCORES_SHEET) or []) if SCORES_SHEET in meta else []
            if attempt and before and _has_row(old[before[0]:], old[:1], row):
                return
            before[:] = [max(len(old), 1)]  # rows below it are new (the header is row 1)
            self._batch(self._score_requests(meta, old[:1], row), repeat=False)

        self.http.guarded(step, "the score row")

    def _score_requests(self, meta: dict[str, dict[str, Any]], old: list[list[Any]],
                        row: Mapping[str, object]) -> list[dict[str, Any]]:
        reqs: list[dict[str, Any]] = []
        if SCORES_SHEET in meta:
            sheet_id = meta[SCORES_SHEET]["properties"]["sheetId"]
            header = [cell_text(v) for v in (old or [[]])[0]]
            spare = meta[SCORES_SHEET]["properties"]["gridProperties"]["columnCount"]
        else:
            sheet_id = _new_id(meta)
            reqs.append(_add_sheet(sheet_id, SCORES_SHEET, 2, max(len(row), 1), 1))
            header, spare = [], max(len(row), 1)
        new = header + [str(k) for k in row if str(k) not in header]
        if len(new) > spare:
            reqs.append({"appendDimension": {"sheetId": sheet_id, "dimension": "COLUMNS",
                                             "length": len(new) - spare}})
        if new != header:
            reqs.append(_update_cells(sheet_id, 0, [{"values": [
                {"userEnteredValue": {"stringValue": h}} for h in new]}], None, "userEnteredValue"))
            # New columns as wide as their header, so no header is cut off.
            reqs += [cells.dimension(sheet_id, "COLUMNS", c, c + 1, max(100, 8 * len(h) + 16))
                     for c, h in enumerate(new) if c >= len(header)]
        keyed = {str(k): v for k, v in row.items()}
        values = [cells.score_cell(keyed.get(h)) for h in new]
        # appendCells writes after the last row with data: earlier scores are never overwritten.
        reqs.append({"appendCells": {"sheetId": sheet_id, "rows": [{"values": values}],
                                     "fields": "userEnteredValue"}})
        return reqs

    # -- requests ------------------------------------------------------------------------

    def _read_values(self, title: str, cells: str = "") -> list[list[Any]] | None:
        a1 = "'" + title.replace("'", "''") + "'" + (f"!{cells}" if cells else "")
        try:
            body = self.http.call("read", "GET", "/values:batchGet",
                                  params={**_READ, "ranges": [a1]})
        except SheetsRequestError as e:
            if e.code == 400 and "parse range" in e.api_message:
                return None  # no such worksheet
            raise
        ranges = body.get("valueRanges") or [{}]
        return list(ranges[0].get("values") or [])

    def _sheets(self) -> dict[str, dict[str, Any]]:
        body = self.http.call("read", "GET", "", params={"fields": _META_FIELDS})
        return {s["properties"]["title"]: s for s in body.get("sheets", [])}

    def _batch(self, reqs: list[dict[str, Any]], *, repeat: bool = True) -> None:
        self.http.call("write", "POST", ":batchUpdate", body={"requests": reqs}, repeat=repeat)

    def _prepare(self, meta: dict[str, dict[str, Any]], n_rows: int, width: int, *,
                 head: int = 0, frozen_cols: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Requests that make the data sheet exactly (info + header + n_rows) x width and bare."""
        frozen = head + 1
        # A frozen row (column) needs a row (column) below (beside) it.
        rows, cols = max(n_rows + frozen, frozen + 1), max(width, 1, frozen_cols + 1)
        sheet = meta.get(self.worksheet)
        if sheet is None:
            sheet_id = _new_id(meta)
            return [_add_sheet(sheet_id, self.worksheet, rows, cols, frozen, frozen_cols)], sheet_id
        sheet_id = sheet["properties"]["sheetId"]
        reqs: list[dict[str, Any]] = [
            {"deleteProtectedRange": {"protectedRangeId": p["protectedRangeId"]}}
            for p in sheet.get("protectedRanges", [])
            if str(p.get("description", "")).startswith("sheetsync")
        ]
        # The data sheet is ours: its highlight rules are rebuilt on every push.
        reqs += [
            {"deleteConditionalFormatRule": {"sheetId": sheet_id, "index": i}}
            for i in reversed(range(len(sheet.get("conditionalFormats", []))))
        ]
        # Merged cells (the info line) would survive a rewrite: unmerge the whole sheet first.
        reqs.append({"unmergeCells": {"range": {"sheetId": sheet_id}}})
        reqs.append({"updateSheetProperties": {
            "properties": {"sheetId": sheet_id, "gridProperties": {
                "rowCount": rows, "columnCount": cols, "frozenRowCount": frozen,
                "frozenColumnCount": frozen_cols}},
            "fields": "gridProperties(rowCount,columnCount,frozenRowCount,frozenColumnCount)",
        }})
        reqs.append({"setDataValidation": {"range": {"sheetId": sheet_id}}})  # drop old dropdowns
        # Values, notes and formats (the last push's highlighted rows) all go.
        reqs.append(_update_cells(sheet_id, 0, [], cols, "userEnteredValue,userEnteredFormat,note",
                                  end_row=rows))
        return reqs, sheet_id


def spreadsheet_key(value: str) -> str:
    """The spreadsheet id from an id or a docs.google.com URL."""
    value = (value or "").strip()
    if not value:
        raise ConfigError(
            "[google] spreadsheet is empty in sheetsync.toml: paste the URL of a Google Sheet "
            "shared with your service account"
        )
    if "/" not in value:
        return value
    try:
        return extract_id_from_url(value)
    except NoValidUrlKeyFound:
        raise ConfigError(f"[google] spreadsheet {value!r} is not a Google Sheets URL") from None


def _frame(values: list[list[Any]], *, index_rows: bool) -> pd.DataFrame:
    """Like the .xlsx backend: header as written (a blank one over data is "column N"),
    every cell str, blank rows kept (sync drops them) so the index is the sheet row."""
    rows = [[cell_text(v) for v in r] for r in values]
    while rows and not any(rows[-1]):
        rows.pop()
    rows, head = skip_info(rows)
    if not rows:
        return mark_header_row(pd.DataFrame(dtype=str), head)
    header, width = rows[0], max(len(r) for r in rows)
    used = [any(len(r) > c and r[c] for r in rows[1:]) for c in range(width)]
    keep = [c for c in range(width) if (c < len(header) and header[c]) or used[c]]
    names = [header[c] if c < len(header) and header[c] else f"column {c + 1}" for c in keep]
    body = [[r[c] if c < len(r) else "" for c in keep] for r in rows[1:]]
    index = pd.RangeIndex(head + 1, len(body) + head + 1) if index_rows else None
    frame = pd.DataFrame(body, columns=names, index=index, dtype=str)
    mark_header_row(frame, head)
    return mark_headerless(frame, {f"column {c + 1}": c + 1 for c in keep
                                   if c >= len(header) or not header[c]})


def _has_row(rows: list[list[Any]], header: list[list[Any]], row: Mapping[str, object]) -> bool:
    """Whether one of ``rows`` (read back under ``header``) holds exactly the score ``row``."""
    names = [cell_text(v) for v in (header or [[]])[0]]
    want = {str(k): cell_text(cells.plain(v)) for k, v in row.items()}
    for got in rows:
        have = {n: cell_text(got[c]) if c < len(got) else "" for c, n in enumerate(names)}
        if all(have.get(k, "") == v for k, v in want.items()):
            return True
    return False


def _fits(rows: list[dict[str, Any]], budget: int) -> bool:
    """Whether the typed rows' JSON stays within ``budget`` bytes (stops measuring early)."""
    size = 0
    for row in rows:
        size += len(dumps(row)) + 1
        if size > budget:
            return False
    return True


def check_cells(table: pd.DataFrame, layout: SheetLayout) -> None:
    """Refuse text no cell may hold (the rule a pull checks too), naming the row and column."""
    for c, name in enumerate(table.columns):
        if layout.column(str(name)).kind in ("image", "number"):
            continue
        why = cell_text_problem(str(name))
        if why:
            raise BackendError(f"header {name!r}: {why}")
        # Named by the sheet row it would land on (below the header, and the info line if any).
        for r, value in enumerate(table.iloc[:, c].tolist(), start=cells.header_offset(layout) + 2):
            why = cell_text_problem(value) if isinstance(value, str) else None
            if why:
                raise BackendError(f"row {r}, column {name!r}: {why}")


def _chunks(rows: list[Any], first_budget: int) -> list[tuple[int, list[Any]]]:
    """Split rows into runs whose JSON stays under the payload budget (the first one smaller)."""
    out: list[tuple[int, list[Any]]] = []
    start, size, budget = 0, 0, max(first_budget, MAX_PAYLOAD // 4)
    for i, row in enumerate(rows):
        n = len(dumps(row)) + 1
        if size + n > budget and i > start:
            out.append((start, rows[start:i]))
            start, size, budget = i, 0, MAX_PAYLOAD - 1000
        size += n
    if rows:
        out.append((start, rows[start:]))
    return out


def _update_cells(sheet_id: int, row0: int, data: list[dict[str, Any]], width: int | None,
                  fields: str, *, end_row: int | None = None) -> dict[str, Any]:
    """updateCells over [row0, end_row): cells of the range that ``data`` leaves out are cleared."""
    rng: dict[str, int] = {"sheetId": sheet_id, "startRowIndex": row0,
                           "endRowIndex": row0 + len(data) if end_row is None else end_row,
                           "startColumnIndex": 0}
    if width is not None:
        rng["endColumnIndex"] = width
    return {"updateCells": {"range": rng, "rows": data, "fields": fields}}


def _add_sheet(sheet_id: int, title: str, rows: int, cols: int, frozen: int,
               frozen_cols: int = 0, hidden: bool = False) -> dict[str, Any]:
    grid = {"rowCount": rows, "columnCount": cols, "frozenRowCount": frozen}
    if frozen_cols:
        grid["frozenColumnCount"] = frozen_cols
    props: dict[str, Any] = {"sheetId": sheet_id, "title": title, "gridProperties": grid}
    if hidden:
        props["hidden"] = True
    return {"addSheet": {"properties": props}}


def _new_id(meta: Mapping[str, Mapping[str, Any]], exclude: Iterable[int] = ()) -> int:
    taken = {s["properties"]["sheetId"] for s in meta.values()} | set(exclude)
    while True:
        sheet_id = random.randrange(1, 2**31 - 1)
        if sheet_id not in taken:
            return sheet_id
