"""A small local stand-in of the Google Sheets API v4 and Google's OAuth token endpoint.

No maintained emulator exists, so the tests start this one: a threaded HTTP server on
127.0.0.1 (random port) that behaves like the real API where sheetsync and gspread depend on
it: Google-shaped JSON errors, bearer tokens checked, sharing (403) and unknown ids (404),
``majorDimension``, FORMATTED/UNFORMATTED/FORMULA render options, trimming of trailing empty
cells, "exceeds grid limits" 400s, ``valueInputOption`` RAW vs USER_ENTERED parsing, and
atomic ``spreadsheets.batchUpdate`` (all requests apply or none; ``copyPaste`` included). It
counts requests and bytes and injects 429/5xx/timeouts for the next N requests
(:meth:`SheetsStandin.fail_next`) or for the writes after the next K (:meth:`~SheetsStandin.fail_writes`). Simplifications: ``spreadsheets.get``
ignores ``fields``/``includeGridData`` (it returns all metadata, no grid data), formulas are not
evaluated beyond ``=IMAGE`` (no value) and plain arithmetic, and formats are recorded per cell
but not rendered.

Google's documented rules are enforced (see "Google's rules" below, each with its source):
a request the real API would refuse is refused here with Google's error shape
``{"error": {"code": 400, "message": "Invalid requests[N].kind: ...", "status":
"INVALID_ARGUMENT"}}`` and changes nothing. :meth:`SheetsStandin.land_then_timeout` applies
writes and answers only after the client gave up, as a slow network does.

The real gspread client is routed here by :func:`route`, which mounts a ``requests`` adapter
that rewrites ``https://sheets.googleapis.com`` (and the Drive and OAuth hosts) to this server;
service-account keys made by :meth:`SheetsStandin.service_account` carry the real token URI,
and the token endpoint verifies the signed JWT with the key's public half.

Usage::

    with SheetsStandin() as api:
        key = api.service_account("bot@proj.iam.gserviceaccount.com")   # key-file dict
        sid = api.create_spreadsheet("team", shared_with=["bot@proj.iam.gserviceaccount.com"])
        client = standin_client(api, service_account_credentials(key))
        api.fail_next(2, 429)
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

GOOGLE_HOSTS = (
    "https://sheets.googleapis.com",
    "https://www.googleapis.com",
    "https://oauth2.googleapis.com",
    "https://iamcredentials.googleapis.com",  # google-auth's regional access boundary lookup
)
TOKEN_URI = "https://oauth2.googleapis.com/token"
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
FAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute "
         "per user' of service 'sheets.googleapis.com'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


class Formula(str):
    """A cell holding a formula (its text starts with '=')."""


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# -- the model ------------------------------------------------------------------------------


@dataclass
class Sheet:
    sheet_id: int
    title: str
    index: int
    rows: int = 1000
    cols: int = 26
    frozen_rows: int = 0
    frozen_cols: int = 0
    cells: list[list[Any]] = field(default_factory=list)  # ragged; None = empty
    notes: dict[tuple[int, int], str] = field(default_factory=dict)
    protected: list[dict[str, Any]] = field(default_factory=list)
    conditional: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    basic_filter: dict[str, Any] | None = None
    dimensions: list[dict[str, Any]] = field(default_factory=list)
    # userEnteredFormat per cell, merged field by field as the requests' field masks say.
    formats: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)
    hidden: bool = False

    def clone(self) -> Sheet:
        # Cheap copy-on-apply: cell values are immutable, so copying the row lists suffices.
        twin = copy.copy(self)
        twin.cells = [list(r) for r in self.cells]
        for name in ("notes", "protected", "conditional", "validation", "dimensions", "basic_filter",
                     "formats", "merges"):
            setattr(twin, name, copy.deepcopy(getattr(self, name)))
        return twin

    def get(self, r: int, c: int) -> Any:
        if r < len(self.cells) and c < len(self.cells[r]):
            return self.cells[r][c]
        return None

    def put(self, r: int, c: int, value: Any) -> None:
        check_cell_length(value)
        check_protection(self, r, c)
        if value is None and (r >= len(self.cells) or c >= len(self.cells[r])):
            return
        while len(self.cells) <= r:
            self.cells.append([])
        row = self.cells[r]
        if len(row) <= c:
            row.extend([None] * (c + 1 - len(row)))
        row[c] = value

    def last_data_row(self) -> int:
        """Index after the last row holding any value (0 when empty)."""
        for r in range(len(self.cells) - 1, -1, -1):
            if any(v is not None for v in self.cells[r]):
                return r + 1
        return 0

    def properties(self) -> dict[str, Any]:
        grid: dict[str, Any] = {"rowCount": self.rows, "columnCount": self.cols}
        if self.frozen_rows:
            grid["frozenRowCount"] = self.frozen_rows
        if self.frozen_cols:
            grid["frozenColumnCount"] = self.frozen_cols
        props = {"sheetId": self.sheet_id, "title": self.title, "index": self.index,
                 "sheetType": "GRID", "gridProperties": grid}
        if self.hidden:
            props["hidden"] = True
        return props


@dataclass
class Spreadsheet:
    id: str
    title: str
    sheets: list[Sheet]
    shared_with: set[str]
    next_protected_id: int = 1000

    def by_id(self, sheet_id: Any) -> Sheet:
        for s in self.sheets:
            if s.sheet_id == sheet_id:
                return s
        raise ApiError(400, f"No grid with id: {sheet_id}")

    def by_title(self, title: str) -> Sheet | None:
        return next((s for s in self.sheets if s.title == title), None)


# -- A1 notation ----------------------------------------------------------------------------

_CELL = re.compile(r"^([A-Za-z]*)(\d*)$")


def col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def col_letters(index: int) -> str:
    out, index = "", index + 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def parse_a1(book: Spreadsheet, a1: str) -> tuple[Sheet, int, int | None, int, int | None]:
    """(sheet, row0, row1, col0, col1) with None for an open end; 400 when it cannot parse."""
    bad = ApiError(400, f"Unable to parse range: {a1}")
    name, cells = None, a1
    if a1.startswith("'"):
        m = re.match(r"^'((?:[^']|'')*)'(?:!(.*))?$", a1)
        if not m:
            raise bad
        name, cells = m.group(1).replace("''", "'"), m.group(2) or ""
    elif "!" in a1:
        name, cells = a1.rsplit("!", 1)
    elif book.by_title(a1) is not None:
        name, cells = a1, ""
    sheet = book.sheets[0] if name is None else book.by_title(name)
    if sheet is None:
        raise bad
    if not cells:
        return sheet, 0, None, 0, None
    parts = cells.split(":")
    if len(parts) > 2:
        raise bad
    ends = []
    for part in parts:
        m = _CELL.match(part)
        if not m or not (m.group(1) or m.group(2)):
            raise bad
        ends.append((col_index(m.group(1)) if m.group(1) else None,
                     int(m.group(2)) - 1 if m.group(2) else None))
    (c0, r0), (c1, r1) = ends[0], ends[-1]
    row0, col0 = r0 or 0, c0 or 0
    row1 = None if r1 is None else r1 + 1
    col1 = None if c1 is None else c1 + 1
    if len(parts) == 1 and r0 is not None and c0 is not None:
        row1, col1 = r0 + 1, c0 + 1
    if (row1 or 0) > sheet.rows or (col1 or 0) > sheet.cols or row0 >= sheet.rows or col0 >= sheet.cols:
        raise ApiError(400, f"Range ({sheet.title}!{cells}) exceeds grid limits. "
                            f"Max rows: {sheet.rows}, max columns: {sheet.cols}")
    return sheet, row0, row1, col0, col1


def a1_name(sheet: Sheet, r0: int, r1: int, c0: int, c1: int) -> str:
    return f"'{sheet.title}'!{col_letters(c0)}{r0 + 1}:{col_letters(c1 - 1)}{r1}"


# -- values in and out ----------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def user_entered(value: Any) -> Any:
    """What the Sheets UI makes of a typed value."""
    if not isinstance(value, str):
        return raw(value)
    if value == "":
        return None
    if value.startswith("'"):
        return value[1:]
    if value.startswith("=") and len(value) > 1:
        return Formula(value)
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    if _NUMBER.match(value.strip()):
        return float(value)
    return value


def raw(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def evaluate(formula: Formula) -> Any:
    body = formula[1:].strip()
    if body.upper().startswith("IMAGE("):
        return None  # an image has no value
    if re.fullmatch(r"[\d.+\-*/() ]+", body):
        try:
            return float(eval(body, {"__builtins__": {}}))  # digits and operators only
        except (SyntaxError, ZeroDivisionError):
            return "#ERROR!"
    return "#NAME?"


def render(value: Any, option: str) -> Any:
    if isinstance(value, Formula):
        if option == "FORMULA":
            return str(value)
        value = evaluate(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return value if option != "FORMATTED_VALUE" else ("TRUE" if value else "FALSE")
    if isinstance(value, float):
        number: Any = int(value) if value.is_integer() and abs(value) < 1e15 else value
        return str(number) if option == "FORMATTED_VALUE" else number
    return value


def cell_value(cell: dict[str, Any]) -> Any:
    v = cell.get("userEnteredValue")
    if not v:
        return None
    if "stringValue" in v:
        return str(v["stringValue"])
    if "numberValue" in v:
        if not isinstance(v["numberValue"], int | float) or isinstance(v["numberValue"], bool):
            raise ApiError(400, "Invalid value at 'numberValue'")
        return float(v["numberValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "formulaValue" in v:
        text = str(v["formulaValue"])
        if not text.startswith("="):
            raise ApiError(400, "formulaValue must start with '='")
        return Formula(text)
    raise ApiError(400, f"Invalid userEnteredValue: {sorted(v)}")


# -- Google's rules -------------------------------------------------------------------------
# Each rule is written from Google's documentation, named in its comment, not from what
# sheetsync sends. docs/google.md ("Google's rules and the stand-in") lists them with what the stand-in does.

# "Files you can store in Google Drive" (support.google.com/drive/answer/37603), Google Sheets:
# "Up to 10 million cells or 18,278 columns (column ZZZ)" per spreadsheet, and up to 50,000
# characters in one cell.
MAX_CELLS = 10_000_000
MAX_COLUMNS = 18_278
MAX_CELL_CHARS = 50_000
# Sheets API "Usage limits" (developers.google.com/sheets/api/limits): read and write requests
# "Per minute per user per project 60", a 429 past it, refilled every minute; and "When Sheets
# processes a request for more than 180 seconds, the request returns a timeout error."
QUOTA_PER_MINUTE = 60
PROCESSING_LIMIT_S = 180.0

# Who sends the request being applied (protected ranges are per user).
_EDITOR: ContextVar[str | None] = ContextVar("standin_editor", default=None)


def check_cell_length(value: Any) -> None:
    """"Files you can store in Google Drive": at most 50,000 characters in a cell."""
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        raise ApiError(400, f"Your input contains more than the maximum of {MAX_CELL_CHARS} "
                            "characters in a single cell.")


def check_protection(sheet: Sheet, r: int, c: int) -> None:
    """ProtectedRange (Sheets API v4 reference, spreadsheets#ProtectedRange): "editors: The
    users and groups with edit access to the protected range"; with "warningOnly" every user
    can edit (the UI asks first) and editors are ignored. A cell of a range that is not
    warning-only may be changed by its editors (and whoever added it) only."""
    who = _EDITOR.get()
    if who is None or not sheet.protected:
        return
    for pr in sheet.protected:
        if pr.get("warningOnly"):
            continue
        rng = pr.get("range", {})
        if not (rng.get("startRowIndex", 0) <= r < rng.get("endRowIndex", sheet.rows)
                and rng.get("startColumnIndex", 0) <= c < rng.get("endColumnIndex", sheet.cols)):
            continue
        editors = set((pr.get("editors") or {}).get("users") or []) | {pr.get("_addedBy")}
        if who not in editors:
            raise ApiError(400, "You are trying to edit a protected cell or object. Please "
                                "contact the spreadsheet owner to remove protection if you "
                                "need to edit.")


def check_merge_vs_frozen(sheet: Sheet, r0: int, r1: int, c0: int, c1: int) -> None:
    """Google Sheets help "Freeze, group, hide, or merge rows & columns"
    (support.google.com/docs/answer/9060449): a merge may not span frozen and non-frozen rows
    or columns (the Sheets UI and the API refuse it)."""
    if 0 < sheet.frozen_rows and r0 < sheet.frozen_rows < r1:
        raise ApiError(400, "You can't merge frozen and non-frozen rows.")
    if 0 < sheet.frozen_cols and c0 < sheet.frozen_cols < c1:
        raise ApiError(400, "You can't merge frozen and non-frozen columns.")


def check_freeze(sheet: Sheet) -> None:
    """The same help page, the other way round: rows (columns) may not be frozen through a
    merged cell, leaving only part of it frozen. GridProperties (reference): a frozen row
    needs a row below it."""
    if sheet.frozen_rows >= sheet.rows:
        raise ApiError(400, "You can't freeze all visible rows on the sheet.")
    if sheet.frozen_cols >= sheet.cols:
        raise ApiError(400, "You can't freeze all visible columns on the sheet.")
    for m in sheet.merges:
        if 0 < sheet.frozen_rows and m["r0"] < sheet.frozen_rows < m["r1"]:
            raise ApiError(400, "Sorry, it is not possible to freeze rows which contain only "
                                "part of a merged cell.")
        if 0 < sheet.frozen_cols and m["c0"] < sheet.frozen_cols < m["c1"]:
            raise ApiError(400, "Sorry, it is not possible to freeze columns which contain "
                                "only part of a merged cell.")


def check_book(book: Spreadsheet) -> None:
    """After each request: "Files you can store in Google Drive" (10 million cells, 18,278
    columns), and SheetProperties.hidden / DeleteSheetRequest (reference): a spreadsheet keeps
    at least one sheet, and at least one visible sheet."""
    if not book.sheets:
        raise ApiError(400, "You can't remove all the sheets in a document.")
    if all(s.hidden for s in book.sheets):
        raise ApiError(400, "You can't hide all the sheets in a document.")
    for s in book.sheets:
        if s.cols > MAX_COLUMNS:
            raise ApiError(400, f"This action would increase the number of columns in sheet "
                                f"'{s.title}' above the limit of {MAX_COLUMNS}.")
    total = sum(s.rows * s.cols for s in book.sheets)
    if total > MAX_CELLS:
        raise ApiError(400, "This action would increase the number of cells in the workbook "
                            f"above the limit of {MAX_CELLS} cells.")


# Field masks (Sheets API v4 reference, UpdateCellsRequest / RepeatCellRequest /
# AppendCellsRequest / UpdateSheetPropertiesRequest / UpdateDimensionPropertiesRequest:
# "fields: ... At least one field must be specified. The root ... is implied and should not
# be specified. A single "*" can be used as short-hand for listing every field"), and the
# field names the reference gives for CellData, CellFormat, TextFormat, SheetProperties,
# GridProperties and DimensionProperties. ANY: sub-fields are not checked further.
ANY: dict[str, Any] = {}
_TEXT = dict.fromkeys(("foregroundColor", "foregroundColorStyle", "fontFamily", "fontSize",
                       "bold", "italic", "strikethrough", "underline", "link"), ANY)
_FORMAT = {**dict.fromkeys(("numberFormat", "backgroundColor", "backgroundColorStyle",
                            "borders", "padding", "horizontalAlignment", "verticalAlignment",
                            "wrapStrategy", "textDirection", "hyperlinkDisplayType",
                            "textRotation"), ANY), "textFormat": _TEXT}
CELL_FIELDS = {**dict.fromkeys(("userEnteredValue", "note", "textFormatRuns", "dataValidation",
                                "pivotTable", "dataSourceTable", "dataSourceFormula"), ANY),
               "userEnteredFormat": _FORMAT}
_GRID = dict.fromkeys(("rowCount", "columnCount", "frozenRowCount", "frozenColumnCount",
                       "hideGridlines", "rowGroupControlAfter", "columnGroupControlAfter"), ANY)
SHEET_FIELDS = {**dict.fromkeys(("sheetId", "title", "index", "sheetType", "hidden", "tabColor",
                                 "tabColorStyle", "rightToLeft"), ANY), "gridProperties": _GRID}
DIMENSION_FIELDS = dict.fromkeys(("pixelSize", "hiddenByUser", "hiddenByFilter",
                                  "developerMetadata"), ANY)


def mask_paths(mask: str) -> list[tuple[str, ...]]:
    """``"a.b,c(d,e.f)"`` -> [("a","b"), ("c","d"), ("c","e","f")]."""
    out: list[tuple[str, ...]] = []
    for item in _split_top(mask):
        if "(" in item:
            if not item.endswith(")"):
                raise ApiError(400, f"Invalid field mask: '{mask}'")
            head, inner = item[:item.index("(")], item[item.index("(") + 1:-1]
            prefix = tuple(p for p in re.split(r"[./]", head) if p)
            out += [prefix + sub for sub in mask_paths(inner)]
        else:
            # "a/b" reads as "a.b" (gspread sends "gridProperties/rowCount"; Google takes it).
            out.append(tuple(re.split(r"[./]", item)))
    return out


def check_mask(mask: Any, schema: dict[str, Any]) -> None:
    if not isinstance(mask, str) or not mask.strip():
        raise ApiError(400, "At least one field must be specified in 'fields'.")
    if mask.strip() == "*":
        return
    for path in mask_paths(mask):
        node: dict[str, Any] | None = schema
        for name in path:
            if node is ANY:
                break
            if node is None or name not in node:
                raise ApiError(400, f"Invalid field mask: '{'.'.join(path)}' is not a field "
                                    "of this request's object")
            node = node[name]


# -- the server -----------------------------------------------------------------------------


class SheetsStandin:
    """The stand-in server and its state; a context manager that starts and stops it."""

    def __init__(self, latency: float = 0.0, quota_per_minute: int | None = QUOTA_PER_MINUTE,
                 clock: Any = time.monotonic):
        """``quota_per_minute``: Google's per-user limit on reads and on writes (None: off,
        for a test that times nothing and only counts); ``clock``: what the quota's minute
        is measured with (a test's fake clock that the client's backoff sleeps advance)."""
        self.books: dict[str, Spreadsheet] = {}
        self.public_keys: dict[str, tuple[str, str]] = {}  # client_email -> (key id, PEM)
        self.tokens: dict[str, str] = {}  # access token -> identity
        self.faults: deque[tuple[Any, float]] = deque()
        self.hooks: list[tuple[str, Any]] = []  # (method + path substring, callable) run once
        self.lock = threading.RLock()
        self.latency = latency
        self.quota_per_minute = quota_per_minute
        self.clock = clock
        self.processing_s: deque[float] = deque()  # simulated processing time of next writes
        self.hangs: list[Any] = []  # [after, n, delay]: writes applied, answered late
        self.refused: list[tuple[str, int, str]] = []  # (request, code, message) of each 4xx
        self.reset_counts()
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.thread: threading.Thread | None = None

    # lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SheetsStandin:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SheetsStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # set-up
    def create_spreadsheet(self, title: str = "sheetsync", shared_with: tuple[str, ...] | list[str] = ()) -> str:
        sid = "1" + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y")[:40]
        with self.lock:
            self.books[sid] = Spreadsheet(sid, title, [Sheet(0, "Sheet1", 0)], set(shared_with))
        return sid

    def token_for(self, identity: str) -> str:
        token = "ya29.standin-" + secrets.token_hex(12)
        self.tokens[token] = identity
        return token

    def service_account(self, client_email: str, project: str = "sheetsync-test") -> dict[str, Any]:
        """A service-account key file (as a dict) whose public half this server trusts."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        key_id = secrets.token_hex(20)
        self.public_keys[client_email] = (key_id, public)
        return {
            "type": "service_account", "project_id": project, "private_key_id": key_id,
            "private_key": private, "client_email": client_email, "client_id": "1" * 21,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": TOKEN_URI,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
            "universe_domain": "googleapis.com",
        }

    def fail_next(self, n: int, fault: int | str = 429, delay: float = 2.0) -> None:
        """The next ``n`` API requests fail with HTTP ``fault``, or hang ``delay`` s ("timeout")."""
        with self.lock:
            self.faults.extend([(fault, delay)] * n)

    def fail_writes(self, after: int, n: int, fault: int = 429) -> None:
        """Let the next ``after`` write requests through, then fail the ``n`` writes after them
        with HTTP ``fault`` (reads pass): e.g. the second write of a push, past its retries."""
        with self.lock:
            self.write_faults = [after, n, fault]

    def land_then_timeout(self, after: int, n: int = 1, delay: float = 1.5) -> None:
        """Let ``after`` writes through, then apply the next ``n`` writes but answer each only
        ``delay`` s later (after the client's timeout): the write landed, the client cannot
        know."""
        with self.lock:
            self.hangs = [after, n, delay]

    def slow_writes(self, *seconds: float) -> None:
        """The next writes take this long to process (simulated, per write): past Google's
        180 s limit a write answers with a timeout error and changes nothing."""
        with self.lock:
            self.processing_s.extend(seconds)

    def _hang(self) -> float:
        pending = self.hangs
        if not pending or pending[1] <= 0:
            return 0.0
        if pending[0] > 0:
            pending[0] -= 1
            return 0.0
        pending[1] -= 1
        return float(pending[2])

    def _over_quota(self, identity: str, kind: str) -> bool:
        """Usage limits: 60 read and 60 write requests per minute per user (the window here
        slides; Google refills every minute: a client that waits a minute is served)."""
        if self.quota_per_minute is None:
            return False
        now = self.clock()
        window = self.quota_log.setdefault((identity, kind), deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self.quota_per_minute:
            return True
        window.append(now)
        return False

    def before_next(self, match: str, fn: Any) -> None:
        """Run ``fn(api)`` once, just before the next request whose ``"METHOD path"`` contains
        ``match`` is applied: a collaborator acting between two requests of a client."""
        with self.lock:
            self.hooks.append((match, fn))

    def sort_rows(self, sid: str, title: str, column: int, descending: bool = False) -> None:
        """Sort every data row of a worksheet by a column, as a person would in the UI (the
        rows below the header, which is row 2 under sheetsync's info line)."""
        with self.lock:
            sheet = self.sheet(sid, title)
            assert sheet is not None
            first = sheet.get(0, 0)
            start = 2 if isinstance(first, str) and first.startswith("sheetsync · ") else 1
            _sort_range(self.books[sid], {"range": {"sheetId": sheet.sheet_id,
                                                    "startRowIndex": start},
                                          "sortSpecs": [{"dimensionIndex": column, "sortOrder":
                                                         "DESCENDING" if descending else "ASCENDING"}]})

    def reset_counts(self) -> None:
        self.reads = self.writes = self.token_requests = self.faulted = self.side_requests = 0
        self.bytes_in = self.bytes_out = self.largest_body = 0
        self.log: list[tuple[str, str, int]] = []
        # A test's counts start afresh, and so does its minute of quota.
        self.quota_log: dict[tuple[str, str], deque[float]] = {}

    def _write_fault(self) -> tuple[Any, float] | None:
        pending = getattr(self, "write_faults", None)
        if not pending or pending[1] <= 0:
            return None
        if pending[0] > 0:
            pending[0] -= 1
            return None
        pending[1] -= 1
        return (pending[2], 0.0)

    # inspection
    def sheet(self, sid: str, title: str) -> Sheet | None:
        return self.books[sid].by_title(title)

    def values(self, sid: str, title: str, option: str = "FORMULA") -> list[list[Any]]:
        sheet = self.sheet(sid, title)
        assert sheet is not None, f"no sheet {title!r}"
        return _grid_values(sheet, 0, sheet.rows, 0, sheet.cols, option, "ROWS")

    # -- request handling (called from server threads) --------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/token":
            return self._token(body)
        if parts.path.endswith("/allowedLocations"):
            self.side_requests += 1
            return 200, {"encodedLocations": "0x0", "locations": []}
        m = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", parts.path)
        if not m:
            return 404, _error(404, "Method not found.")
        with self.lock:
            kind = "read" if method == "GET" else "write"
            self.reads += kind == "read"
            self.writes += kind == "write"
            self.bytes_in += len(body)
            self.largest_body = max(self.largest_body, len(body))
            self.log.append((method, parts.path, len(body)))
            fault = self.faults.popleft() if self.faults else None
            if fault is None and kind == "write":
                fault = self._write_fault()
            key = f"{method} {parts.path}"
            hook = next((h for h in self.hooks if h[0] in key), None)
            if hook is not None:
                self.hooks.remove(hook)
        if hook is not None:
            hook[1](self)
        if fault is not None:
            self.faulted += 1
            what, delay = fault
            if what == "timeout":
                time.sleep(delay)
                what = 503
            return int(what), _error(int(what), FAULT_MESSAGES.get(int(what), "Backend Error"))
        if self.latency:
            time.sleep(self.latency)
        identity = self._identity(headers)
        if identity is None:
            return 401, _error(401, "Request is missing required authentication credential. "
                                    "Expected OAuth 2 access token.")
        try:
            payload = json.loads(body, parse_constant=_reject_constant) if body else {}
        except ValueError as e:
            return 400, _error(400, f"Invalid JSON payload received. {e}")
        with self.lock:
            if self._over_quota(identity, kind):
                self.refused.append((key, 429, "quota"))
                what = "Read" if kind == "read" else "Write"
                return 429, _error(429, f"Quota exceeded for quota metric '{what} requests' and "
                                        f"limit '{what} requests per minute per user' of service "
                                        "'sheets.googleapis.com'.")
            hang = self._hang() if kind == "write" else 0.0
            slow = self.processing_s.popleft() if kind == "write" and self.processing_s else 0.0
            status, answer = self._apply(identity, method, m.group(1), m.group(2), query,
                                         payload, slow)
            if 400 <= status < 500:
                self.refused.append((key, status, answer["error"]["message"]))
        if hang:
            time.sleep(hang)  # applied; the answer comes after the client gave up
        return status, answer

    def _apply(self, identity: str, method: str, sid: str, rest: str, query: dict[str, Any],
               payload: Any, slow: float) -> tuple[int, Any]:
        book = self.books.get(sid)
        if book is None:
            return 404, _error(404, "Requested entity was not found.")
        if identity not in book.shared_with:
            return 403, _error(403, "The caller does not have permission")
        saved = (book.sheets, book.next_protected_id)
        token = _EDITOR.set(identity)
        started = time.monotonic()
        try:
            answer = self._route(book, method, rest, query, payload)
        except ApiError as e:
            return e.code, _error(e.code, e.message)
        finally:
            _EDITOR.reset(token)
        if time.monotonic() - started + slow > PROCESSING_LIMIT_S:
            # Usage limits: past 180 s of processing the request "returns a timeout error";
            # here it also changes nothing.
            book.sheets, book.next_protected_id = saved
            return 504, _error(504, "Deadline exceeded.")
        return 200, answer

    def _identity(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return self.tokens.get(auth[len("Bearer "):])

    def _token(self, body: bytes) -> tuple[int, Any]:
        from google.auth import jwt

        self.token_requests += 1
        form = parse_qs(body.decode())
        assertion = (form.get("assertion") or [""])[0]
        try:
            claims = jwt.decode(assertion, verify=False)
            key_id, public = self.public_keys[claims["iss"]]
            claims = jwt.decode(assertion, certs={key_id: public}, audience=TOKEN_URI)
        except Exception:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        token = self.token_for(claims["iss"])
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _route(self, book: Spreadsheet, method: str, rest: str, q: dict[str, list[str]],
               body: dict[str, Any]) -> Any:
        one = {k: v[0] for k, v in q.items()}
        if rest == "" and method == "GET":
            return _get_spreadsheet(book)
        if rest == ":batchUpdate" and method == "POST":
            return self._batch_update(book, body)
        if rest == "/values:batchGet" and method == "GET":
            return {"spreadsheetId": book.id,
                    "valueRanges": [_values_get(book, a1, one) for a1 in q.get("ranges", [])]}
        if rest == "/values:batchUpdate" and method == "POST":
            option = _input_option(body.get("valueInputOption"))
            return _apply_atomically(book, lambda: {"spreadsheetId": book.id, "responses": [
                _values_write(book, d["range"], d, option) for d in body.get("data", [])]})
        if rest == "/values:batchClear" and method == "POST":
            return _apply_atomically(book, lambda: {"spreadsheetId": book.id, "clearedRanges": [
                _values_clear(book, a1) for a1 in body.get("ranges", [])]})
        m = re.match(r"^/values/([^:]+)(:append|:clear)?$", rest)
        if m:
            a1 = unquote(m.group(1))
            if m.group(2) is None and method == "GET":
                return _values_get(book, a1, one)
            if m.group(2) is None and method == "PUT":
                option = _input_option(one.get("valueInputOption"))
                return _apply_atomically(book, lambda: _values_write(book, a1, body, option))
            if m.group(2) == ":append" and method == "POST":
                option = _input_option(one.get("valueInputOption"))
                return _apply_atomically(book, lambda: _values_append(book, a1, body, option, one))
            if m.group(2) == ":clear" and method == "POST":
                return _apply_atomically(book, lambda: {"spreadsheetId": book.id,
                                                        "clearedRange": _values_clear(book, a1)})
        raise ApiError(404, "Method not found.")

    def _batch_update(self, book: Spreadsheet, body: dict[str, Any]) -> Any:
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise ApiError(400, "Must specify at least one request.")

        def apply() -> Any:
            replies = []
            for i, req in enumerate(reqs):
                if not isinstance(req, dict) or len(req) != 1:
                    raise ApiError(400, f"Invalid requests[{i}]: exactly one kind per request")
                (kind, args), = req.items()
                handler = _REQUESTS.get(kind)
                if handler is None:
                    raise ApiError(400, f"Invalid requests[{i}]: unknown kind {kind!r}")
                try:
                    replies.append(handler(book, args) or {})
                    check_book(book)
                except ApiError as e:
                    raise ApiError(e.code, f"Invalid requests[{i}].{kind}: {e.message}") from None
            return {"spreadsheetId": book.id, "replies": replies}

        return _apply_atomically(book, apply)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name}")


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": STATUS.get(code, "UNKNOWN")}}


def _input_option(value: Any) -> str:
    if value not in ("RAW", "USER_ENTERED"):
        raise ApiError(400, "'valueInputOption' is required but not specified")
    return str(value)


def _apply_atomically(book: Spreadsheet, fn: Any) -> Any:
    """Run ``fn`` against clones of the sheets; keep the result only when all of it worked."""
    saved = (book.sheets, book.next_protected_id)
    book.sheets = [s.clone() for s in saved[0]]
    try:
        out = fn()
        check_book(book)
        return out
    except BaseException:
        book.sheets, book.next_protected_id = saved
        raise


def _get_spreadsheet(book: Spreadsheet) -> dict[str, Any]:
    sheets = []
    for s in book.sheets:
        entry: dict[str, Any] = {"properties": s.properties()}
        if s.protected:
            entry["protectedRanges"] = [_public(copy.deepcopy(p)) for p in s.protected]
        if s.conditional:
            entry["conditionalFormats"] = copy.deepcopy(s.conditional)
        if s.basic_filter:
            entry["basicFilter"] = copy.deepcopy(s.basic_filter)
        sheets.append(entry)
    return {"spreadsheetId": book.id,
            "properties": {"title": book.title, "locale": "en_US", "timeZone": "Etc/GMT",
                           "autoRecalc": "ON_CHANGE"},
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.id}/edit"}


def _grid_values(sheet: Sheet, r0: int, r1: int, c0: int, c1: int, option: str, major: str) -> list[list[Any]]:
    out = []
    for r in range(r0, min(r1, len(sheet.cells))):
        row = [render(sheet.get(r, c), option) for c in range(c0, min(c1, c0 + len(sheet.cells[r])))]
        while row and row[-1] == "":
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    if major == "COLUMNS":
        width = max((len(r) for r in out), default=0)
        cols = [[r[c] if c < len(r) else "" for r in out] for c in range(width)]
        out = []
        for col in cols:
            while col and col[-1] == "":
                col.pop()
            out.append(col)
    return out


def _values_get(book: Spreadsheet, a1: str, q: dict[str, str]) -> dict[str, Any]:
    sheet, r0, r1, c0, c1 = parse_a1(book, a1)
    r1 = sheet.rows if r1 is None else r1
    c1 = sheet.cols if c1 is None else c1
    option = q.get("valueRenderOption") or "FORMATTED_VALUE"
    if option not in ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"):
        raise ApiError(400, f"Invalid valueRenderOption: {option}")
    major = q.get("majorDimension") or "ROWS"
    out: dict[str, Any] = {"range": a1_name(sheet, r0, r1, c0, c1), "majorDimension": major}
    values = _grid_values(sheet, r0, r1, c0, c1, option, major)
    if values:
        out["values"] = values
    return out


def _values_write(book: Spreadsheet, a1: str, body: dict[str, Any], option: str,
                  at_row: int | None = None) -> dict[str, Any]:
    sheet, r0, _r1, c0, _c1 = parse_a1(book, a1)
    r0 = r0 if at_row is None else at_row
    values = body.get("values") or []
    if body.get("majorDimension") == "COLUMNS":
        width = max((len(c) for c in values), default=0)
        values = [[c[i] if i < len(c) else None for c in values] for i in range(width)]
    height, width = len(values), max((len(r) for r in values), default=0)
    if r0 + height > sheet.rows or c0 + width > sheet.cols:
        raise ApiError(400, f"Range ({sheet.title}!{col_letters(c0)}{r0 + 1}) exceeds grid limits. "
                            f"Max rows: {sheet.rows}, max columns: {sheet.cols}")
    parse = user_entered if option == "USER_ENTERED" else raw
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v is None:
                continue  # null means "leave this cell alone"
            sheet.put(r0 + i, c0 + j, parse(v))
    return {"spreadsheetId": book.id, "updatedRange": a1_name(sheet, r0, r0 + max(height, 1), c0, c0 + max(width, 1)),
            "updatedRows": height, "updatedColumns": width, "updatedCells": height * width}


def _values_append(book: Spreadsheet, a1: str, body: dict[str, Any], option: str, q: dict[str, str]) -> Any:
    sheet, _r0, _r1, c0, _c1 = parse_a1(book, a1)
    start = sheet.last_data_row()
    height = len(body.get("values") or [])
    if q.get("insertDataOption") == "INSERT_ROWS":
        _insert(sheet, "ROWS", start, height)
    elif start + height > sheet.rows:
        sheet.rows = start + height  # append grows the grid as needed
    update = _values_write(book, f"'{sheet.title}'!{col_letters(c0)}{start + 1}", body, option)
    return {"spreadsheetId": book.id, "tableRange": f"'{sheet.title}'!A1", "updates": update}


def _values_clear(book: Spreadsheet, a1: str) -> str:
    sheet, r0, r1, c0, c1 = parse_a1(book, a1)
    r1 = sheet.rows if r1 is None else r1
    c1 = sheet.cols if c1 is None else c1
    for r in range(r0, min(r1, len(sheet.cells))):
        for c in range(c0, min(c1, len(sheet.cells[r]))):
            sheet.cells[r][c] = None
    return a1_name(sheet, r0, r1, c0, c1)


# -- batchUpdate request kinds --------------------------------------------------------------


def _grid_range(book: Spreadsheet, rng: dict[str, Any]) -> tuple[Sheet, int, int, int, int]:
    sheet = book.by_id(rng.get("sheetId", 0))
    r0, r1 = rng.get("startRowIndex", 0), rng.get("endRowIndex", sheet.rows)
    c0, c1 = rng.get("startColumnIndex", 0), rng.get("endColumnIndex", sheet.cols)
    if not (0 <= r0 <= r1 <= sheet.rows and 0 <= c0 <= c1 <= sheet.cols):
        raise ApiError(400, f"Range ({sheet.title}!R{r0 + 1}C{c0 + 1}:R{r1}C{c1}) exceeds grid "
                            f"limits. Max rows: {sheet.rows}, max columns: {sheet.cols}")
    return sheet, r0, r1, c0, c1


def _copy_paste(book: Spreadsheet, args: dict[str, Any]) -> None:
    """copyPaste (PASTE_NORMAL): values and notes of the source range at the destination's
    top-left corner, within one spreadsheet. As in Sheets, a destination smaller than the
    source still receives the whole source, and a larger one gets the source repeated
    (formula text is copied unchanged, as for absolute refs). The recorded cell formats are
    pasted too, as PASTE_NORMAL does (values, formulas, formats); merges are not."""
    if args.get("pasteType", "PASTE_NORMAL") != "PASTE_NORMAL":
        raise ApiError(400, "the stand-in only implements pasteType PASTE_NORMAL")
    src, r0, r1, c0, c1 = _grid_range(book, args.get("source", {}))
    dst, d0, d1, e0, e1 = _grid_range(book, args.get("destination", {}))
    h, w = r1 - r0, c1 - c0
    if not h or not w:
        return
    height, width = max(h, d1 - d0), max(w, e1 - e0)
    if d0 + height > dst.rows or e0 + width > dst.cols:
        raise ApiError(400, f"Range ({dst.title}) exceeds grid limits. "
                            f"Max rows: {dst.rows}, max columns: {dst.cols}")
    values = [[src.get(r0 + r % h, c0 + c % w) for c in range(width)] for r in range(height)]
    notes = {(d0 + r, e0 + c): src.notes[(r0 + r % h, c0 + c % w)] for r in range(height)
             for c in range(width) if (r0 + r % h, c0 + c % w) in src.notes}
    formats = {(d0 + r, e0 + c): copy.deepcopy(src.formats[(r0 + r % h, c0 + c % w)])
               for r in range(height) for c in range(width)
               if (r0 + r % h, c0 + c % w) in src.formats}
    for r, row in enumerate(values):
        for c, value in enumerate(row):
            dst.put(d0 + r, e0 + c, value)
            dst.notes.pop((d0 + r, e0 + c), None)
            dst.formats.pop((d0 + r, e0 + c), None)
    dst.notes.update(notes)
    dst.formats.update(formats)


def _fields(spec: str) -> set[str]:
    return {f.strip() for f in re.split(r"[,()/.]", spec or "") if f.strip()}


def _add_sheet(book: Spreadsheet, args: dict[str, Any]) -> Any:
    props = args.get("properties", {})
    title = props.get("title") or f"Sheet{len(book.sheets) + 1}"
    if book.by_title(title):
        raise ApiError(400, f'A sheet with the name "{title}" already exists. Please enter another name.')
    sheet_id = props.get("sheetId", max(s.sheet_id for s in book.sheets) + 1)
    if any(s.sheet_id == sheet_id for s in book.sheets):
        raise ApiError(400, f"A sheet with the id {sheet_id} already exists.")
    grid = props.get("gridProperties", {})
    sheet = Sheet(sheet_id, title, len(book.sheets), grid.get("rowCount", 1000),
                  grid.get("columnCount", 26), grid.get("frozenRowCount", 0), grid.get("frozenColumnCount", 0))
    sheet.hidden = bool(props.get("hidden", False))
    check_freeze(sheet)
    book.sheets.append(sheet)
    return {"addSheet": {"properties": sheet.properties()}}


def _delete_sheet(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet = book.by_id(args.get("sheetId"))
    if len(book.sheets) == 1:
        raise ApiError(400, "You can't remove all the sheets in a document.")
    book.sheets.remove(sheet)


def _update_sheet_properties(book: Spreadsheet, args: dict[str, Any]) -> None:
    props = args.get("properties", {})
    sheet = book.by_id(props.get("sheetId", 0))
    check_mask(args.get("fields"), SHEET_FIELDS)
    fields = _fields(args.get("fields", ""))
    grid = props.get("gridProperties", {})
    star = "*" in fields
    if star or "hidden" in fields:
        sheet.hidden = bool(props.get("hidden", False))
    if star or "title" in fields:
        sheet.title = props.get("title", sheet.title)
    if star or "rowCount" in fields:
        _resize(sheet, grid.get("rowCount", sheet.rows), sheet.cols)
    if star or "columnCount" in fields:
        _resize(sheet, sheet.rows, grid.get("columnCount", sheet.cols))
    if star or "frozenRowCount" in fields:
        sheet.frozen_rows = grid.get("frozenRowCount", 0)
    if star or "frozenColumnCount" in fields:
        sheet.frozen_cols = grid.get("frozenColumnCount", 0)
    check_freeze(sheet)


def _resize(sheet: Sheet, rows: int, cols: int) -> None:
    if rows < 1 or cols < 1:
        raise ApiError(400, "A sheet needs at least one row and one column.")
    sheet.rows, sheet.cols = rows, cols
    del sheet.cells[rows:]
    for row in sheet.cells:
        del row[cols:]
    sheet.notes = {k: v for k, v in sheet.notes.items() if k[0] < rows and k[1] < cols}


def _write_cells(sheet: Sheet, r0: int, c0: int, rows: list[dict[str, Any]], fields: set[str],
                 r1: int, c1: int, mask: str = "") -> None:
    values, notes = bool(fields & {"*", "userEnteredValue"}), bool(fields & {"*", "note"})
    fmt_paths = _format_paths(mask)
    for r in range(r0, r1):
        data = rows[r - r0].get("values", []) if r - r0 < len(rows) else []
        if c0 + len(data) > c1:
            raise ApiError(400, f"Range ({sheet.title}) exceeds grid limits. "
                                f"Max rows: {sheet.rows}, max columns: {sheet.cols}")
        for c in range(c0, c1):
            cell = data[c - c0] if c - c0 < len(data) else {}
            if values:
                sheet.put(r, c, cell_value(cell))
            if notes:
                if cell.get("note"):
                    sheet.notes[(r, c)] = str(cell["note"])
                else:
                    sheet.notes.pop((r, c), None)
            if fmt_paths:
                _apply_format(sheet, r, c, cell.get("userEnteredFormat") or {}, fmt_paths)


def _split_top(mask: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in mask:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    return [*out, cur.strip()] if cur.strip() else out


def _format_paths(mask: str) -> list[tuple[str, ...]]:
    """The userEnteredFormat sub-fields a field mask names ([()] = the whole format)."""
    paths: list[tuple[str, ...]] = []
    for item in _split_top(mask):
        if item in ("*", "userEnteredFormat"):
            paths.append(())
        elif item.startswith("userEnteredFormat."):
            paths.append(tuple(item[len("userEnteredFormat."):].split(".")))
        elif item.startswith("userEnteredFormat(") and item.endswith(")"):
            inner = item[len("userEnteredFormat("):-1]
            paths += [tuple(p.split(".")) for p in _split_top(inner)]
    return paths


def _apply_format(sheet: Sheet, r: int, c: int, fmt: dict[str, Any],
                  paths: list[tuple[str, ...]]) -> None:
    """Set (or clear, when ``fmt`` lacks it) each masked sub-field of the cell's format."""
    current = copy.deepcopy(sheet.formats.get((r, c), {}))
    for path in paths:
        if not path:
            current = copy.deepcopy(fmt)
            continue
        src: Any = fmt
        for key in path:
            src = src.get(key) if isinstance(src, dict) else None
        dst = current
        for key in path[:-1]:
            dst = dst.setdefault(key, {})
        if src is None:
            dst.pop(path[-1], None)
        else:
            dst[path[-1]] = copy.deepcopy(src)
    if current:
        sheet.formats[(r, c)] = current
    else:
        sheet.formats.pop((r, c), None)


def _update_cells(book: Spreadsheet, args: dict[str, Any]) -> None:
    rows = args.get("rows", [])
    check_mask(args.get("fields"), CELL_FIELDS)
    fields = _fields(args.get("fields", ""))
    if "range" in args:
        sheet, r0, r1, c0, c1 = _grid_range(book, args["range"])
        if len(rows) > r1 - r0:
            raise ApiError(400, f"Range ({sheet.title}) exceeds grid limits. Max rows: {sheet.rows}")
    else:
        start = args.get("start", {})
        sheet = book.by_id(start.get("sheetId", 0))
        r0, c0 = start.get("rowIndex", 0), start.get("columnIndex", 0)
        width = max((len(r.get("values", [])) for r in rows), default=0)
        r1, c1 = r0 + len(rows), c0 + width
        if r1 > sheet.rows or c1 > sheet.cols:
            raise ApiError(400, f"Range ({sheet.title}) exceeds grid limits. "
                                f"Max rows: {sheet.rows}, max columns: {sheet.cols}")
    _write_cells(sheet, r0, c0, rows, fields, r1, c1, args.get("fields", ""))


def _append_cells(book: Spreadsheet, args: dict[str, Any]) -> None:
    check_mask(args.get("fields"), CELL_FIELDS)
    sheet = book.by_id(args.get("sheetId", 0))
    rows = args.get("rows", [])
    start = sheet.last_data_row()
    width = max((len(r.get("values", [])) for r in rows), default=0)
    if width > sheet.cols:
        raise ApiError(400, f"Range ({sheet.title}) exceeds grid limits. Max columns: {sheet.cols}")
    sheet.rows = max(sheet.rows, start + len(rows))
    _write_cells(sheet, start, 0, rows, _fields(args.get("fields", "*")), start + len(rows), width,
                 args.get("fields", "*"))


def _repeat_cell(book: Spreadsheet, args: dict[str, Any]) -> None:
    check_mask(args.get("fields"), CELL_FIELDS)
    sheet, r0, r1, c0, c1 = _grid_range(book, args.get("range", {}))
    cell = args.get("cell", {})
    rows = [{"values": [cell] * (c1 - c0)}] * (r1 - r0)
    _write_cells(sheet, r0, c0, rows, _fields(args.get("fields", "")), r1, c1,
                 args.get("fields", ""))


def _merge_cells(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet, r0, r1, c0, c1 = _grid_range(book, args.get("range", {}))
    # MergeCellsRequest (reference): mergeType MERGE_ALL, MERGE_COLUMNS or MERGE_ROWS.
    if args.get("mergeType", "MERGE_ALL") not in ("MERGE_ALL", "MERGE_COLUMNS", "MERGE_ROWS"):
        raise ApiError(400, f"Invalid value at 'requests.merge_cells.merge_type': "
                            f"{args.get('mergeType')!r}")
    check_merge_vs_frozen(sheet, r0, r1, c0, c1)
    for m in sheet.merges:
        if m["r0"] < r1 and r0 < m["r1"] and m["c0"] < c1 and c0 < m["c1"]:
            raise ApiError(400, "You can't merge cells that overlap a merged range.")
    sheet.merges.append({"r0": r0, "r1": r1, "c0": c0, "c1": c1})


def _unmerge_cells(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet, r0, r1, c0, c1 = _grid_range(book, args.get("range", {}))
    sheet.merges = [m for m in sheet.merges
                    if not (r0 <= m["r0"] and m["r1"] <= r1 and c0 <= m["c0"] and m["c1"] <= c1)]


def _set_data_validation(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet, r0, r1, c0, c1 = _grid_range(book, args.get("range", {}))
    # Clearing drops every rule inside the range; a rule covers its range.
    sheet.validation = [v for v in sheet.validation
                        if not (r0 <= v["r0"] and v["r1"] <= r1 and c0 <= v["c0"] and v["c1"] <= c1)]
    rule = args.get("rule")
    if rule:
        cond = rule.get("condition", {})
        if cond.get("type") == "ONE_OF_LIST" and not cond.get("values"):
            raise ApiError(400, "ONE_OF_LIST condition needs at least one value")
        sheet.validation.append({"r0": r0, "r1": r1, "c0": c0, "c1": c1, "rule": rule})


def _add_protected_range(book: Spreadsheet, args: dict[str, Any]) -> Any:
    pr = copy.deepcopy(args.get("protectedRange", {}))
    sheet, *_ = _grid_range(book, pr.get("range", {}))
    pr["protectedRangeId"] = book.next_protected_id
    book.next_protected_id += 1
    pr["_addedBy"] = _EDITOR.get()  # may edit a range that is not warning-only
    sheet.protected.append(pr)
    return {"addProtectedRange": {"protectedRange": _public(pr)}}


def _public(pr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pr.items() if not k.startswith("_")}


def _delete_protected_range(book: Spreadsheet, args: dict[str, Any]) -> None:
    pid = args.get("protectedRangeId")
    for sheet in book.sheets:
        for pr in sheet.protected:
            if pr["protectedRangeId"] == pid:
                sheet.protected.remove(pr)
                return
    raise ApiError(400, f"No protected range with id: {pid}")


def _set_basic_filter(book: Spreadsheet, args: dict[str, Any]) -> None:
    flt = copy.deepcopy(args.get("filter", {}))
    sheet, *_ = _grid_range(book, flt.get("range", {}))
    sheet.basic_filter = flt


def _clear_basic_filter(book: Spreadsheet, args: dict[str, Any]) -> None:
    book.by_id(args.get("sheetId", 0)).basic_filter = None


def _add_conditional_format_rule(book: Spreadsheet, args: dict[str, Any]) -> None:
    rule = copy.deepcopy(args.get("rule", {}))
    ranges = rule.get("ranges") or []
    if not ranges:
        raise ApiError(400, "A conditional format rule needs at least one range.")
    sheet, *_ = _grid_range(book, ranges[0])
    for rng in ranges[1:]:
        _grid_range(book, rng)
    sheet.conditional.insert(args.get("index", len(sheet.conditional)), rule)


def _delete_conditional_format_rule(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet = book.by_id(args.get("sheetId", 0))
    index = args.get("index", 0)
    if not 0 <= index < len(sheet.conditional):
        raise ApiError(400, f"No conditional format on sheet: {sheet.sheet_id} at index: {index}")
    del sheet.conditional[index]


def _dim_range(book: Spreadsheet, rng: dict[str, Any]) -> tuple[Sheet, str, int, int]:
    sheet = book.by_id(rng.get("sheetId", 0))
    dim = rng.get("dimension")
    size = sheet.rows if dim == "ROWS" else sheet.cols if dim == "COLUMNS" else None
    if size is None:
        raise ApiError(400, "dimension must be ROWS or COLUMNS")
    start, end = rng.get("startIndex", 0), rng.get("endIndex", size)
    if not 0 <= start <= end <= size:
        raise ApiError(400, f"Range ({sheet.title}) exceeds grid limits. "
                            f"Max rows: {sheet.rows}, max columns: {sheet.cols}")
    return sheet, dim, start, end


def _update_dimension_properties(book: Spreadsheet, args: dict[str, Any]) -> None:
    check_mask(args.get("fields"), DIMENSION_FIELDS)
    sheet, dim, start, end = _dim_range(book, args.get("range", {}))
    sheet.dimensions.append({"dimension": dim, "start": start, "end": end,
                             "properties": copy.deepcopy(args.get("properties", {}))})


def _insert(sheet: Sheet, dim: str, start: int, n: int) -> None:
    if dim == "ROWS":
        sheet.rows += n
        if start < len(sheet.cells):
            sheet.cells[start:start] = [[] for _ in range(n)]
    else:
        sheet.cols += n
        for row in sheet.cells:
            if start < len(row):
                row[start:start] = [None] * n


def _insert_dimension(book: Spreadsheet, args: dict[str, Any]) -> None:
    rng = args.get("range", {})
    sheet = book.by_id(rng.get("sheetId", 0))
    size = sheet.rows if rng.get("dimension") == "ROWS" else sheet.cols
    start, end = rng.get("startIndex", 0), rng.get("endIndex", 0)
    if not 0 <= start <= size or end <= start:
        raise ApiError(400, "Invalid dimension range for insertDimension")
    _insert(sheet, rng.get("dimension"), start, end - start)


def _append_dimension(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet = book.by_id(args.get("sheetId", 0))
    n = args.get("length", 0)
    if n < 1:
        raise ApiError(400, "length must be positive")
    if args.get("dimension") == "ROWS":
        sheet.rows += n
    else:
        sheet.cols += n


def _delete_dimension(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet, dim, start, end = _dim_range(book, args.get("range", {}))
    if dim == "ROWS":
        if end - start >= sheet.rows:
            raise ApiError(400, "You can't delete all the rows on the sheet.")
        del sheet.cells[start:end]
        sheet.rows -= end - start
    else:
        if end - start >= sheet.cols:
            raise ApiError(400, "You can't delete all the columns on the sheet.")
        for row in sheet.cells:
            del row[start:end]
        sheet.cols -= end - start


def _sort_range(book: Spreadsheet, args: dict[str, Any]) -> None:
    sheet, r0, r1, c0, c1 = _grid_range(book, args.get("range", {}))
    width = c1 - c0
    block = [[sheet.get(r, c) for c in range(c0, c1)] for r in range(r0, r1)]
    for spec in reversed(args.get("sortSpecs", [])):
        idx = spec.get("dimensionIndex", 0) - c0
        desc = spec.get("sortOrder") == "DESCENDING"
        filled = [row for row in block if row[idx] is not None]
        empty = [row for row in block if row[idx] is None]  # empties stay last either way
        filled.sort(key=lambda row: _sort_key(row[idx]), reverse=desc)
        block = filled + empty
    for i, row in enumerate(block):
        for j in range(width):
            sheet.put(r0 + i, c0 + j, row[j])


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, float):
        return (0, v)
    return (1, str(v).lower())


_REQUESTS = {
    "addSheet": _add_sheet,
    "deleteSheet": _delete_sheet,
    "updateSheetProperties": _update_sheet_properties,
    "updateCells": _update_cells,
    "appendCells": _append_cells,
    "repeatCell": _repeat_cell,
    "mergeCells": _merge_cells,
    "unmergeCells": _unmerge_cells,
    "setDataValidation": _set_data_validation,
    "addProtectedRange": _add_protected_range,
    "deleteProtectedRange": _delete_protected_range,
    "setBasicFilter": _set_basic_filter,
    "clearBasicFilter": _clear_basic_filter,
    "addConditionalFormatRule": _add_conditional_format_rule,
    "deleteConditionalFormatRule": _delete_conditional_format_rule,
    "updateDimensionProperties": _update_dimension_properties,
    "insertDimension": _insert_dimension,
    "appendDimension": _append_dimension,
    "deleteDimension": _delete_dimension,
    "sortRange": _sort_range,
    "copyPaste": _copy_paste,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many short connections when the machine is busy


def _handler(api: SheetsStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = api.handle(self.command, self.path, self.headers, body)
            data = json.dumps(payload).encode()
            with api.lock:
                api.bytes_out += len(data)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


# -- routing clients here -------------------------------------------------------------------


class RewriteAdapter(HTTPAdapter):
    """Sends requests for Google's hosts to the stand-in instead."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        for host in GOOGLE_HOSTS:
            if request.url and request.url.startswith(host):
                request.url = self.base + request.url[len(host):]
                break
        return super().send(request, *args, **kwargs)


def route(session: requests.Session, api: SheetsStandin) -> requests.Session:
    """Mount the rewrite on a session (and on google-auth's token session inside it)."""
    adapter = RewriteAdapter(api.url)
    sessions = [session, getattr(session, "_auth_request_session", None)]
    for s in sessions:
        if s is not None:
            for host in GOOGLE_HOSTS:
                s.mount(host, adapter)
    return session


def service_account_credentials(key: dict[str, Any]) -> Any:
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_info(
        key, scopes=["https://www.googleapis.com/auth/spreadsheets"])


def token_credentials(api: SheetsStandin, identity: str) -> Any:
    """Credentials of a collaborator who signed in (a plain bearer token)."""
    from google.oauth2.credentials import Credentials

    return Credentials(token=api.token_for(identity))


def standin_client(api: SheetsStandin, credentials: Any) -> Any:
    """A real gspread Client with real google-auth credentials, talking to the stand-in."""
    import gspread

    client = gspread.Client(auth=credentials)
    route(client.http_client.session, api)
    return client

