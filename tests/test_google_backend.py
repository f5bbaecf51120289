"""GoogleBackend over real HTTP: the real gspread client and real google-auth credentials
(a generated service-account key, its JWT verified by the stand-in's token endpoint) talking
to the local Sheets API stand-in in tests/_sheets_standin.py."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sheetsync.config import Config
from sheetsync.errors import AuthError, BackendError, QuotaError, SheetNotFoundError
from sheetsync.sheets._google_cells import FLAG_COLOR
from sheetsync.sheets.base import INFO_PREFIX, Column, SheetLayout
from sheetsync.sheets.google import GoogleBackend

try:
    from tests._sheets_standin import (
        SheetsStandin,
        route,
        service_account_credentials,
        standin_client,
        token_credentials,
    )
except ImportError:  # tests/ is not a package
    from _sheets_standin import (
        SheetsStandin,
        route,
        service_account_credentials,
        standin_client,
        token_credentials,
    )

BOT = "sheetsync-bot@team-project.iam.gserviceaccount.com"
ALICE = "alice@example.com"
CLASSES = ("i", "ii", "iii")

LAYOUT = SheetLayout((
    Column("id"),
    Column("image", "image"),
    Column("path"),
    Column("url"),
    Column("split", "choice", editable=True, choices=("train", "val")),
    Column("label", "choice", editable=True, choices=CLASSES, note="the class; pick from the list"),
    Column("action", "choice", editable=True, choices=("keep", "drop")),
    Column("note", "text", editable=True),
    Column("predicted"),
    Column("confidence", "number"),
))


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"{i:010x}" for i in range(n)]
    return pd.DataFrame({
        "id": ids,
        "image": [""] * n,
        "path": [f"train/{CLASSES[i % 3]}/{ids[i]}.png" for i in range(n)],
        "url": [f"https://storage.googleapis.com/bucket/train/{ids[i]}.png" for i in range(n)],
        "split": ["train" if i % 5 else "val" for i in range(n)],
        "label": [CLASSES[i % 3] for i in range(n)],
        "action": ["keep"] * n,
        "note": [""] * n,
        "predicted": [CLASSES[(i + (i % 7 == 0)) % 3] for i in range(n)],
        "confidence": rng.random(n).round(4),
    })


@pytest.fixture(scope="module")
def api():
    with SheetsStandin() as server:
        yield server


@pytest.fixture(scope="module")
def key(api):
    return api.service_account(BOT)


@pytest.fixture
def sheet_id(api):
    sid = api.create_spreadsheet("team labels", shared_with=[BOT, ALICE])
    api.faults.clear()
    api.fail_writes(0, 0)
    api.reset_counts()
    return sid


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_backend(api, key, sleeps):
    def make(sid: str, **kw) -> GoogleBackend:
        client = standin_client(api, service_account_credentials(key))
        kw.setdefault("backoff_base", 0.01)
        kw.setdefault("sleep", sleeps.append)
        return GoogleBackend(client, sid, account=BOT, **kw)

    return make


@pytest.fixture
def backend(make_backend, sheet_id):
    return make_backend(sheet_id)


@pytest.fixture
def alice(api, sheet_id):
    """A collaborator editing the sheet through gspread, as a person would in the browser."""
    return standin_client(api, token_credentials(api, ALICE)).open_by_key(sheet_id)


# -- request budget --------------------------------------------------------------------------


def test_push_of_1000_rows_is_one_write_and_the_check_one_read(api, backend):
    assert backend.read_table() is None  # the unpulled-edit check before the first push
    assert (api.reads, api.writes) == (1, 0)
    api.reset_counts()
    backend.write_table(table(1000), LAYOUT)
    assert api.writes <= 2 and api.writes == 1  # typed cells + every format, atomically
    assert api.reads == 1  # sheet ids, old protections and rules
    assert api.largest_body < 2_000_000
    api.reset_counts()
    frame = backend.read_table()
    assert (api.reads, api.writes) == (1, 0)
    assert len(frame) == 1000
    assert "4 requests (3 read, 1 write)" in backend.usage()
    assert "KB sent" in backend.usage()


def test_big_push_sends_one_write_per_2mb_and_stays_lossless(api, backend, sheet_id):
    big = table(8000).astype({"confidence": object})
    big.loc[0, ["id", "note", "confidence"]] = ["0042", "=1+1", np.nan]
    big.loc[1, ["id", "note", "label", "confidence"]] = ["1e3", "+x", "@ii", "0.5"]
    big.loc[2, "url"] = ""
    backend.write_table(big, LAYOUT)
    sent = backend.stats.bytes_sent
    # Into a hidden staging tab: the thumbnails and the url links as typed cells (~1 MB each,
    # together over the 2 MB a request may carry: two batchUpdates), the values as one RAW
    # range (~1.1 MB); then one small batchUpdate copies them into the data tab with the
    # structure. Measured: 4 writes, 3.15 MB.
    assert 2_000_000 < sent < 3_300_000 and api.writes == 4  # typed cells alone would be ~6.6 MB
    assert not [s.title for s in api.books[sheet_id].sheets if "staging" in s.title]
    assert api.largest_body <= 2_000_000
    frame = backend.read_table()
    assert frame["id"].tolist() == big["id"].tolist()
    assert frame.loc[2:3, "note"].tolist() == ["=1+1", "+x"] and frame.loc[3, "label"] == "@ii"
    assert frame.loc[2:3, "confidence"].tolist() == ["", "0.5"]
    stored = api.values(sheet_id, "data", "FORMULA")
    assert stored[1][1].startswith('=IMAGE("https://') and stored[3][1] == ""
    assert stored[8000][1] == f'=IMAGE("{big["url"].iloc[-1]}")'
    sheet = api.sheet(sheet_id, "data")
    assert {c for row in sheet.cells for c, v in enumerate(row) if type(v).__name__ == "Formula"} == {1}
    assert len(stored[1]) == 9 and stored[2][9] == 0.5 and stored[4][9] == big["confidence"][3]


def test_a_big_push_below_an_info_line_lands_where_a_small_one_does(api, backend, sheet_id):
    """The staged path (hidden tab, then copyPaste) with the review sheet's layout: the info
    line in row 1, the header in row 2, the rows from row 3 with their links and highlight."""
    reviewed = dataclasses.replace(LAYOUT, info=f"{INFO_PREFIX}v9 pushed now\nmodel: none",
                                   freeze_through="label", flagged=(0, 7999))
    big = table(8000)
    api.reset_counts()
    backend.write_table(big, reviewed)
    assert api.writes == 4  # staged, as in the test above: the info line adds no write
    values = api.values(sheet_id, "data", "FORMULA")
    names = [c.name for c in LAYOUT.columns]
    assert values[0][0] == reviewed.info and values[1] == names and len(values) == 8002
    col = {n: i for i, n in enumerate(names)}
    assert [values[r][col["id"]] for r in (2, 8001)] == [big["id"].iloc[0], big["id"].iloc[-1]]
    assert values[2][col["image"]] == f'=IMAGE("{big["url"].iloc[0]}")'
    sheet = api.sheet(sheet_id, "data")
    assert (sheet.frozen_rows, sheet.frozen_cols) == (2, col["label"] + 1)
    # Not merged: through "note" would cross the frozen edge, which Google refuses.
    assert sheet.merges == [] and sheet.formats[(0, 0)]["wrapStrategy"] == "OVERFLOW_CELL"
    for r, i in ((2, 0), (8001, 7999)):  # the url links came through the paste
        assert sheet.formats[(r, col["url"])]["textFormat"]["link"] == {"uri": big["url"].iloc[i]}
    flagged = [r for r in range(8002) if sheet.formats.get((r, col["id"]), {}).get("backgroundColor") == FLAG_COLOR]
    assert flagged == [2, 8001]
    assert not [s.title for s in api.books[sheet_id].sheets if "staging" in s.title]
    frame = backend.read_table()  # the info line is skipped; the index is the sheet row
    assert frame.index[0] == 3 and frame["id"].tolist() == big["id"].tolist()


def test_a_failed_write_of_a_big_push_never_leaves_the_data_tab_blank(api, make_backend, sheet_id):
    """Issue 8 case 10: whichever write of a multi-write push fails (429 past the retries),
    the data tab holds the previous push, whole, and the next push goes through."""
    backend = make_backend(sheet_id, max_retries=1)
    old, new = table(300, seed=1), table(2880, seed=2)
    old["note"], new["note"] = "old push", "new push " * 80  # 2,880 rows over 2 MB
    backend.write_table(old, LAYOUT)
    before = api.values(sheet_id, "data", "FORMULA")
    api.reset_counts()
    backend.write_table(new, LAYOUT)
    writes = api.writes
    assert writes >= 2  # a multi-write push, else this test proves nothing
    for ok in range(writes):  # let `ok` writes through, then fail the next ones past retries
        backend.write_table(old, LAYOUT)
        before = api.values(sheet_id, "data", "FORMULA")
        api.fail_writes(ok, 2)  # 2 = the first try and its one retry
        with pytest.raises(QuotaError):
            backend.write_table(new, LAYOUT)
        assert api.values(sheet_id, "data", "FORMULA") == before, f"write {ok + 1} failed"
        api.fail_writes(0, 0)
    backend.write_table(new, LAYOUT)  # a leftover staging tab does not get in the way
    frame = backend.read_table()
    assert frame["id"].tolist() == new["id"].tolist() and set(frame["note"]) == {"new push " * 80}
    assert not [s.title for s in api.books[sheet_id].sheets if "staging" in s.title]


def test_a_push_refuses_a_cell_no_spreadsheet_can_hold_before_any_write(api, backend):
    bad = table(5)
    bad.loc[3, "note"] = "bell\x07"
    api.reset_counts()
    with pytest.raises(BackendError, match=r"row 5, column 'note': holds the control character"):
        backend.write_table(bad, LAYOUT)
    assert api.writes == 0


def test_pull_of_20000_rows_is_one_read(api, backend, sheet_id):
    backend.write_table(table(1), LAYOUT)
    sheet = api.sheet(sheet_id, "data")  # people filled it in: 20,000 rows
    names = [c.name for c in LAYOUT.columns]
    rows = table(20_000).astype(object).where(lambda t: t.notna(), None).values.tolist()
    sheet.cells = [names] + [[None if v == "" else v for v in r] for r in rows]
    sheet.rows = 20_001
    api.reset_counts()
    frame = backend.read_table()
    assert (api.reads, api.writes) == (1, 0)
    assert len(frame) == 20_000
    assert frame.index[0] == 2 and frame.index[-1] == 20_001
    assert frame["id"].iloc[-1] == f"{19_999:010x}"


# -- lossless values -------------------------------------------------------------------------


def test_typed_values_round_trip_and_nothing_becomes_a_formula(api, backend, sheet_id):
    t = table(6)
    t["id"] = ["0042", "1e3", "00", "12345678901234567890", "TRUE", "3fa9c1d2e0"]
    t["note"] = ["=1+1", "+x", "-3", "@mention", "'quoted", np.nan]
    t["label"] = ["=HYPERLINK(\"http://evil\")", "ii", "iii", "i", "ii", "i"]
    t["confidence"] = [np.float64(0.25), 1.0, np.nan, pd.NA, np.int64(3), "0.5"]
    t.loc[2, "url"] = ""  # no thumbnail for this one
    t = t.astype({"confidence": object})
    backend.write_table(t, LAYOUT)

    stored = api.values(sheet_id, "data", "FORMULA")
    assert stored[1][0] == "0042" and stored[2][0] == "1e3"  # strings, not 42 / 1000
    assert stored[1][7] == "=1+1"  # held as text: a formula cell would read back here too...
    sheet = api.sheet(sheet_id, "data")
    formulas = [(r, c) for r, row in enumerate(sheet.cells) for c, v in enumerate(row)
                if type(v).__name__ == "Formula"]
    assert {c for _, c in formulas} == {1}  # ...but only the image column holds formulas
    assert stored[1][1] == '=IMAGE("https://storage.googleapis.com/bucket/train/0000000000.png")'
    assert stored[3][1] == ""  # empty url, empty image
    assert stored[1][9] == 0.25 and stored[2][9] == 1 and stored[5][9] == 3

    frame = backend.read_table()
    assert frame["id"].tolist() == t["id"].tolist()
    assert frame["note"].tolist() == ["=1+1", "+x", "-3", "@mention", "'quoted", ""]
    assert frame["label"].tolist() == t["label"].tolist()
    assert frame["confidence"].tolist() == ["0.25", "1", "", "", "3", "0.5"]
    assert frame["image"].tolist() == [""] * 6  # IMAGE cells have no value
    assert all(isinstance(v, str) for v in frame.to_numpy().ravel())


def test_layout_header_dropdowns_protection_filter_highlight(api, backend, sheet_id):
    backend.write_table(table(10), LAYOUT)
    sheet = api.sheet(sheet_id, "data")
    assert sheet.frozen_rows == 1
    assert (sheet.rows, sheet.cols) == (11, 10)
    assert sheet.notes[(0, 5)] == "the class; pick from the list"
    rules = {v["c0"]: v["rule"] for v in sheet.validation}
    assert [x["userEnteredValue"] for x in rules[5]["condition"]["values"]] == list(CLASSES)
    assert [x["userEnteredValue"] for x in rules[6]["condition"]["values"]] == ["keep", "drop"]
    assert set(rules) == {4, 5, 6}
    spans = sorted((p["range"]["startRowIndex"], p["range"]["startColumnIndex"],
                    p["range"]["endColumnIndex"]) for p in sheet.protected)
    assert spans == [(0, 0, 10), (1, 0, 4), (1, 8, 10)]  # header; id..url; predicted..confidence
    assert all(p["warningOnly"] for p in sheet.protected)
    assert sheet.basic_filter["range"]["endRowIndex"] == 11
    (rule,) = sheet.conditional
    assert rule["booleanRule"]["condition"]["values"][0]["userEnteredValue"] == '=AND($F2<>"",$I2<>"",$F2<>$I2)'
    assert api.sheet(sheet_id, "scores") is not None


def test_repush_replaces_rather_than_piles_up(api, backend, sheet_id):
    backend.write_table(table(50), LAYOUT)
    backend.write_table(table(8, seed=1), LAYOUT)
    sheet = api.sheet(sheet_id, "data")
    assert sheet.rows == 9 and len(sheet.protected) == 3 and len(sheet.conditional) == 1
    assert len(backend.read_table()) == 8
    backend.write_table(table(0), LAYOUT)
    frame = backend.read_table()
    assert list(frame.columns) == list(LAYOUT_NAMES) and frame.empty


LAYOUT_NAMES = [c.name for c in LAYOUT.columns]


# -- what people do in the sheet ----------------------------------------------------------------


def test_people_edit_delete_add_sort_and_add_columns(backend, alice):
    backend.write_table(table(6), LAYOUT)
    ws = alice.worksheet("data")
    ws.update_acell("F3", "iii")  # relabel the 2nd image
    ws.update_acell("H3", "=looks like ii")  # typed by a person: Sheets makes it a formula...
    ws.delete_rows(4)  # delete the 3rd image
    ws.add_cols(1)
    ws.update_cell(1, 11, "reviewer")
    ws.update_cell(2, 11, "bob")
    ws.append_row(["", "", "", "", "train", "ii", "keep", "found on disk"])  # a row people added
    ws.sort((1, "des"), range="A2:K7")  # re-sorted by id
    frame = backend.read_table()
    assert list(frame.columns) == [*LAYOUT_NAMES, "reviewer"]
    assert frame.index.tolist() == [2, 3, 4, 5, 6, 7]
    by_id = frame.set_index("id")
    assert by_id.loc["0000000001", "label"] == "iii"
    assert "0000000002" not in by_id.index
    assert by_id.loc["0000000000", "reviewer"] == "bob"
    assert frame.iloc[-1]["note"] == "found on disk" and frame.iloc[-1]["id"] == ""
    assert by_id.loc["0000000005", "reviewer"] == ""  # padded to the header width


def test_emptied_rows_stay_blank_rows_and_trailing_blanks_go(backend, alice):
    backend.write_table(table(5), LAYOUT)
    ws = alice.worksheet("data")
    ws.batch_clear(["A3:J3", "A6:J6"])
    ws.add_rows(20)
    ws.add_cols(3)
    ws.update_cell(1, 12, "")  # a blank header far right, nothing below it
    ws.update_cell(4, 13, "stray")  # data under no header
    frame = backend.read_table()
    assert frame.index.tolist() == [2, 3, 4, 5]  # sheet rows; row 6 was the last and is empty
    assert (frame.loc[3] == "").all()  # kept as a blank row, as the .xlsx backend does
    assert list(frame.columns)[-1] == "column 13" and frame.loc[4, "column 13"] == "stray"


def test_scores_are_appended_never_overwritten(backend, alice):
    assert backend.read_scores().empty
    backend.append_score({"version": 1, "time": "2026-11-23T09:00:00", "test_accuracy": 0.5})
    backend.write_table(table(3), LAYOUT)  # a push leaves the scores alone
    backend.append_score({"version": 2, "time": "t2", "test_accuracy": np.float64(0.625),
                          "seconds": np.int64(12), "extra": None})
    alice.worksheet("scores").update_cell(2, 5, "first run")  # someone annotates a score row
    backend.append_score({"version": 3, "test_accuracy": float("nan")})
    scores = backend.read_scores()
    assert list(scores.columns) == ["version", "time", "test_accuracy", "seconds", "extra"]
    assert scores["version"].tolist() == ["1", "2", "3"]
    assert scores["test_accuracy"].tolist() == ["0.5", "0.625", ""]
    assert scores["extra"].tolist() == ["first run", "", ""]


def test_absent_sheets_read_as_none_and_empty(backend):
    assert backend.read_table() is None
    assert backend.read_scores().empty


# -- retries and timeouts ------------------------------------------------------------------------


def test_429_then_success_retries_with_backoff(api, backend, sleeps):
    api.fail_next(2, 429)
    backend.write_table(table(20), LAYOUT)
    assert api.faulted == 2
    assert len(sleeps) == 2 and 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02
    assert len(backend.read_table()) == 20
    assert "2 retried" in backend.usage()


def test_500_forever_gives_quota_error_after_bounded_attempts(api, make_backend, sheet_id, sleeps):
    backend = make_backend(sheet_id, max_retries=3)
    api.fail_next(50, 500)
    with pytest.raises(QuotaError, match=r"500 INTERNAL\) after 4 attempts"):
        backend.read_table()
    assert api.faulted == 4 and len(sleeps) == 3
    assert sleeps == sorted(sleeps)  # exponential
    api.faults.clear()


def test_failed_batch_update_changes_nothing(api, backend, sheet_id):
    backend.write_table(table(4), LAYOUT)
    before = api.values(sheet_id, "data")
    with pytest.raises(Exception, match="exceeds grid limits"):
        # A request that fails half-way through (the last one) leaves the sheet as it was.
        backend._batch([{"updateCells": {"range": {"sheetId": api.sheet(sheet_id, "data").sheet_id,
                                                   "startRowIndex": 0, "endRowIndex": 1},
                                         "rows": [{"values": [{"userEnteredValue": {"stringValue": "x"}}]}],
                                         "fields": "userEnteredValue"}},
                        {"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS",
                                                       "startIndex": 0, "endIndex": 5000}}}])
    assert api.values(sheet_id, "data") == before


def test_timeout_is_retried_then_reported(api, make_backend, sheet_id, sleeps):
    backend = make_backend(sheet_id, max_retries=1)
    backend.read_table()  # sign in first: the token request would share the tight timeout
    backend.http.http_client.set_timeout(0.25)
    backend.http.timeout = 0.25
    api.fail_next(1, "timeout", delay=0.8)
    assert backend.read_table() is None  # the retry answered
    api.fail_next(2, "timeout", delay=0.8)
    with pytest.raises(QuotaError, match="no answer within 0.25s"):
        backend.read_table()


# -- credentials and sharing ---------------------------------------------------------------------


def _config(tmp_path: Path, **google) -> Config:
    return Config.from_dict({"root": "data", "classes": list(CLASSES), "backend": "google",
                             "google": google}, tmp_path)


def _key_file(tmp_path: Path, key: dict, mode: int = 0o600) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(key))
    path.chmod(mode)
    return path


def test_from_config_with_a_key_file_and_a_sheet_url(api, key, sheet_id, tmp_path):
    _key_file(tmp_path, key)
    url = f"https://docs.google.com/spreadsheets/d/{sheet_id}/edit#gid=0"
    backend = GoogleBackend.from_config(_config(tmp_path, spreadsheet=url, worksheet="labels"))
    route(backend.client.http_client.session, api)
    backend.write_table(table(3), LAYOUT)
    assert api.sheet(sheet_id, "labels") is not None
    assert api.token_requests == 1  # a real JWT exchange with the generated key
    assert sheet_id in backend.describe()


def test_an_authorized_session_works_as_the_client(api, key, sheet_id):
    from google.auth.transport.requests import AuthorizedSession

    session = route(AuthorizedSession(service_account_credentials(key)), api)
    backend = GoogleBackend(session, sheet_id)
    backend.write_table(table(2), LAYOUT)
    assert backend.read_table()["id"].tolist() == table(2)["id"].tolist()


def test_sheet_not_shared_names_the_service_account(api, key, tmp_path):
    private = api.create_spreadsheet("someone else's", shared_with=[ALICE])
    _key_file(tmp_path, key)
    backend = GoogleBackend.from_config(_config(tmp_path, spreadsheet=private))
    route(backend.client.http_client.session, api)
    with pytest.raises(SheetNotFoundError) as e:
        backend.read_table()
    assert BOT in str(e.value) and "Share" in str(e.value) and "\n" not in str(e.value)


def test_unknown_sheet_says_not_found(make_backend):
    with pytest.raises(SheetNotFoundError, match="no spreadsheet with id 1nope: check"):
        make_backend("1nope").read_table()


def test_revoked_key_is_an_auth_error(api, tmp_path):
    other = SheetsStandin().service_account(BOT)  # a key this server never saw
    _key_file(tmp_path, other)
    backend = GoogleBackend.from_config(_config(tmp_path, spreadsheet="1abc"))
    route(backend.client.http_client.session, api)
    with pytest.raises(AuthError, match="create a new key"):
        backend.read_table()


@pytest.mark.parametrize("content, message", [
    (None, "no service-account key at"),
    ("{not json", "is not a JSON key file"),
    ('{"type": "authorized_user", "refresh_token": "SECRET-REFRESH"}', 'set auth = "oauth"'),
    ('{"type": "service_account", "private_key": "SECRET-PK"}', "lacks client_email, token_uri"),
    ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRET-PK", '
     '"client_email": "a@b", "token_uri": "https://oauth2.googleapis.com/token"}',
     "private_key cannot be read"),
])
def test_bad_credentials_give_one_clear_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "credentials.json").write_text(content)
    with pytest.raises(AuthError) as e:
        GoogleBackend.from_config(_config(tmp_path, spreadsheet="1abc"))
    text = str(e.value)
    assert message in text and "credentials.json" in text
    assert "\n" not in text and "SECRET" not in text
    # No chained traceback could carry the file's content into a report.
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_world_readable_key_warns(api, key, tmp_path, caplog):
    path = _key_file(tmp_path, key, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="sheetsync"):
        GoogleBackend.from_config(_config(tmp_path, spreadsheet="1abc"))
    assert f"chmod 600 {path}" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="sheetsync"):
        GoogleBackend.from_config(_config(tmp_path, spreadsheet="1abc"))
    assert caplog.text == ""


def test_secrets_never_reach_output_or_logs(api, key, sheet_id, tmp_path, caplog, capsys):
    _key_file(tmp_path, key)
    with caplog.at_level(logging.DEBUG):
        backend = GoogleBackend.from_config(_config(tmp_path, spreadsheet=sheet_id, max_retries=1))
        backend.http.backoff_base = 0.01
        route(backend.client.http_client.session, api)
        api.fail_next(1, 429)
        backend.write_table(table(5), LAYOUT)
        backend.read_table()
        api.fail_next(5, 503)
        with pytest.raises(QuotaError) as e:
            backend.read_table()
        api.faults.clear()
        print(backend.usage(), e.value)
    out = capsys.readouterr()
    token = backend.client.http_client.session.credentials.token
    secrets = [token, key["private_key"][40:80], key["private_key_id"]]
    everything = caplog.text + out.out + out.err + str(e.value)
    assert token and all(s not in everything for s in secrets)


# -- the stand-in itself behaves like the documented API --------------------------------------


def test_standin_render_options_dimensions_and_input_parsing(alice):
    ws = alice.sheet1
    ws.update([["0042", "=1+1", "'0042", "x", ""], ["1.5", "TRUE"]], "A1", raw=False)
    ws.update([["0042", "=1+1"]], "A3", raw=True)
    get = alice.values_get
    assert get("Sheet1", params={"valueRenderOption": "UNFORMATTED_VALUE"})["values"] == [
        [42, 2, "0042", "x"], [1.5, True], ["0042", "=1+1"]]
    assert get("Sheet1", params={"valueRenderOption": "FORMULA"})["values"][0] == [42, "=1+1", "0042", "x"]
    assert get("Sheet1")["values"][1] == ["1.5", "TRUE"]  # FORMATTED_VALUE by default
    assert get("Sheet1!A1:B3", params={"majorDimension": "COLUMNS"})["values"] == [
        ["42", "1.5", "0042"], ["2", "TRUE", "=1+1"]]
    from gspread.exceptions import APIError

    with pytest.raises(APIError) as e:
        ws.update([["x"]], "AA1")
    assert e.value.code == 400 and "exceeds grid limits" in e.value.error["message"]
    assert e.value.error["status"] == "INVALID_ARGUMENT"
