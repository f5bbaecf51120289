"""Google's documented rules in the stand-in, and sheetsync's writes under them.

The stand-in (tests/_sheets_standin.py) refuses what the real Sheets API refuses, with
Google's error shape, and changes nothing (docs/google.md ("Google's rules and the stand-in") lists each rule and its
source). These tests check each rule there, then that every kind of write sheetsync makes is
accepted, and that a write which lands and then times out is never applied twice."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import pytest
import requests

from sheetsync.errors import QuotaError
from sheetsync.sheets.base import INFO_PREFIX
from sheetsync.sheets.google import GoogleBackend

try:
    from tests._sheets_standin import SheetsStandin, service_account_credentials, standin_client
    from tests.test_google_backend import ALICE, BOT, LAYOUT, table
except ImportError:  # tests/ is not a package
    from _sheets_standin import SheetsStandin, service_account_credentials, standin_client
    from test_google_backend import ALICE, BOT, LAYOUT, table

# The review sheet's layout: an info line above the header, columns through "label" frozen,
# "note" right of "label" (the merge of the info line used to reach it).
REVIEWED = dataclasses.replace(LAYOUT, info=f"{INFO_PREFIX}v3 pushed now\nmodel: none",
                               freeze_through="label", flagged=(0,))


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def api(clock):
    with SheetsStandin(clock=lambda: clock[0]) as server:
        yield server


@pytest.fixture
def key(api):
    return api.service_account(BOT)


@pytest.fixture
def sheet_id(api):
    return api.create_spreadsheet("team labels", shared_with=[BOT, ALICE])


@pytest.fixture
def make_backend(api, key, clock):
    def make(sid: str, **kw: Any) -> GoogleBackend:
        client = standin_client(api, service_account_credentials(key))
        kw.setdefault("backoff_base", 1.0)
        # Backoff waits pass on the stand-in's clock: the quota's minute sees them.
        kw.setdefault("sleep", lambda s: clock.__setitem__(0, clock[0] + s))
        return GoogleBackend(client, sid, account=BOT, **kw)

    return make


@pytest.fixture
def backend(make_backend, sheet_id):
    return make_backend(sheet_id)


def raw_batch(api: SheetsStandin, sid: str, reqs: list[dict[str, Any]],
              who: str = ALICE) -> requests.Response:
    """A batchUpdate as any client sends it, answered as the API answers it."""
    session = requests.Session()
    token = api.token_for(who)
    return session.post(f"{api.url}/v4/spreadsheets/{sid}:batchUpdate",
                        json={"requests": reqs}, headers={"Authorization": f"Bearer {token}"})


def refused(response: requests.Response, index: int, kind: str, text: str) -> None:
    """Google's error shape: code, "Invalid requests[N].kind: ...", status."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(f"Invalid requests[{index}].{kind}: ")
    assert text in error["message"]


def rule_refusals(api: SheetsStandin) -> list[tuple[str, int, str]]:
    """The stand-in's 4xx answers, less the read of a tab that is not there yet (how
    sheetsync asks whether the data tab exists)."""
    return [r for r in api.refused if "Unable to parse range" not in r[2]]


def grid(sheet_id: int, r0: int, r1: int, c0: int, c1: int) -> dict[str, int]:
    return {"sheetId": sheet_id, "startRowIndex": r0, "endRowIndex": r1,
            "startColumnIndex": c0, "endColumnIndex": c1}


def freeze(rows: int, cols: int) -> dict[str, Any]:
    return {"updateSheetProperties": {
        "properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": rows,
                                                        "frozenColumnCount": cols}},
        "fields": "gridProperties(frozenRowCount,frozenColumnCount)"}}


# -- the rules ---------------------------------------------------------------------------------


def test_a_merge_across_the_frozen_edge_is_refused_and_changes_nothing(api, sheet_id):
    first = {"updateCells": {"range": grid(0, 0, 1, 0, 1), "fields": "userEnteredValue",
                             "rows": [{"values": [{"userEnteredValue": {"stringValue": "x"}}]}]}}
    answer = raw_batch(api, sheet_id, [freeze(2, 3), first,
                                       {"mergeCells": {"range": grid(0, 0, 1, 0, 5),
                                                       "mergeType": "MERGE_ALL"}}])
    refused(answer, 2, "mergeCells", "frozen and non-frozen columns")
    sheet = api.sheet(sheet_id, "Sheet1")
    # Atomic: the freeze and the cell before the bad request did not happen either.
    assert (sheet.frozen_rows, sheet.frozen_cols, sheet.get(0, 0), sheet.merges) == (0, 0, None, [])
    refused(raw_batch(api, sheet_id, [freeze(2, 3), {"mergeCells": {
        "range": grid(0, 1, 3, 0, 1), "mergeType": "MERGE_ALL"}}]), 1, "mergeCells",
        "frozen and non-frozen rows")
    ok = raw_batch(api, sheet_id, [freeze(2, 3), {"mergeCells": {"range": grid(0, 0, 1, 0, 3),
                                                                 "mergeType": "MERGE_ALL"}}])
    assert ok.status_code == 200 and len(api.sheet(sheet_id, "Sheet1").merges) == 1


def test_freezing_through_a_merged_cell_is_refused(api, sheet_id):
    assert raw_batch(api, sheet_id, [{"mergeCells": {"range": grid(0, 0, 1, 0, 4),
                                                     "mergeType": "MERGE_ALL"}}]).ok
    refused(raw_batch(api, sheet_id, [freeze(0, 2)]), 0, "updateSheetProperties",
            "freeze columns which contain only part of a merged cell")
    assert raw_batch(api, sheet_id, [freeze(1, 4)]).ok  # the whole merge frozen: fine


def test_the_last_visible_sheet_cannot_be_hidden_or_deleted(api, sheet_id):
    hide = {"updateSheetProperties": {"properties": {"sheetId": 0, "hidden": True},
                                      "fields": "hidden"}}
    refused(raw_batch(api, sheet_id, [hide]), 0, "updateSheetProperties", "hide all the sheets")
    hidden = {"addSheet": {"properties": {"sheetId": 7, "title": "staging", "hidden": True}}}
    refused(raw_batch(api, sheet_id, [hidden, {"deleteSheet": {"sheetId": 0}}]), 1,
            "deleteSheet", "hide all the sheets")
    assert [s.title for s in api.books[sheet_id].sheets] == ["Sheet1"]


def test_grid_limits_10_million_cells_and_18278_columns(api, sheet_id):
    def size(rows: int, cols: int) -> dict[str, Any]:
        return {"updateSheetProperties": {"properties": {"sheetId": 0, "gridProperties": {
            "rowCount": rows, "columnCount": cols}}, "fields": "gridProperties(rowCount,columnCount)"}}

    refused(raw_batch(api, sheet_id, [size(10, 18_279)]), 0, "updateSheetProperties",
            "limit of 18278")
    assert raw_batch(api, sheet_id, [size(500, 18_278)]).ok
    refused(raw_batch(api, sheet_id, [size(1_000_000, 10),
                                      {"addSheet": {"properties": {"title": "more"}}}]), 1,
            "addSheet", "limit of 10000000 cells")
    assert raw_batch(api, sheet_id, [size(999_000, 10)]).ok  # 9,990,000 + nothing else


def test_a_cell_holds_at_most_50000_characters(api, sheet_id):
    def text(n: int) -> dict[str, Any]:
        return {"updateCells": {"range": grid(0, 0, 1, 0, 1), "fields": "userEnteredValue",
                                "rows": [{"values": [{"userEnteredValue": {"stringValue": "a" * n}}]}]}}

    refused(raw_batch(api, sheet_id, [text(50_001)]), 0, "updateCells", "50000 characters")
    assert raw_batch(api, sheet_id, [text(50_000)]).ok


def test_field_masks_are_required_and_checked(api, sheet_id):
    cell = {"values": [{"userEnteredValue": {"stringValue": "x"}}]}
    refused(raw_batch(api, sheet_id, [{"updateCells": {"range": grid(0, 0, 1, 0, 1),
                                                       "rows": [cell]}}]),
            0, "updateCells", "At least one field must be specified")
    refused(raw_batch(api, sheet_id, [{"repeatCell": {"range": grid(0, 0, 1, 0, 1), "cell": {},
                                                      "fields": "userEnteredFormat.colour"}}]),
            0, "repeatCell", "Invalid field mask")
    refused(raw_batch(api, sheet_id, [{"appendCells": {"sheetId": 0, "rows": [cell]}}]),
            0, "appendCells", "At least one field must be specified")
    refused(raw_batch(api, sheet_id, [{"updateDimensionProperties": {
        "range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 0, "endIndex": 1},
        "properties": {"pixelSize": 20}, "fields": "height"}}]),
        0, "updateDimensionProperties", "Invalid field mask")


def test_a_protected_range_refuses_writes_by_people_not_among_its_editors(api, sheet_id):
    protect = {"addProtectedRange": {"protectedRange": {"range": grid(0, 0, 5, 0, 2),
                                                        "editors": {"users": [ALICE]}}}}
    assert raw_batch(api, sheet_id, [protect], who=ALICE).ok
    write = {"updateCells": {"range": grid(0, 1, 2, 1, 2), "fields": "userEnteredValue",
                             "rows": [{"values": [{"userEnteredValue": {"stringValue": "x"}}]}]}}
    refused(raw_batch(api, sheet_id, [write], who=BOT), 0, "updateCells", "protected cell")
    assert raw_batch(api, sheet_id, [write], who=ALICE).ok
    # Warning-only protection (what sheetsync adds) lets every editor through.
    warn = {"addProtectedRange": {"protectedRange": {"range": grid(0, 0, 5, 2, 4),
                                                     "warningOnly": True}}}
    assert raw_batch(api, sheet_id, [warn], who=ALICE).ok
    write["updateCells"]["range"] = grid(0, 0, 1, 3, 4)
    assert raw_batch(api, sheet_id, [write], who=BOT).ok


def test_past_180_seconds_of_processing_a_write_times_out_and_changes_nothing(api, backend,
                                                                             sheet_id):
    backend.write_table(table(5), LAYOUT)
    before = api.values(sheet_id, "data")
    api.slow_writes(181.0)
    answer = raw_batch(api, sheet_id, [{"deleteDimension": {"range": {
        "sheetId": api.sheet(sheet_id, "data").sheet_id, "dimension": "ROWS",
        "startIndex": 1, "endIndex": 3}}}])
    assert answer.status_code == 504 and answer.json()["error"]["status"] == "DEADLINE_EXCEEDED"
    assert api.values(sheet_id, "data") == before
    # sheetsync's push meets the same: it reads back, plans again and lands once.
    api.slow_writes(181.0)
    backend.write_table(table(7), LAYOUT)
    assert len(backend.read_table()) == 7


def test_60_requests_a_minute_per_user_then_429_and_a_client_that_waits_is_served(api, backend,
                                                                                 clock):
    backend.write_table(table(3), LAYOUT)
    session = requests.Session()
    token = api.token_for(ALICE)
    url = f"{api.url}/v4/spreadsheets/{backend.spreadsheet_id}/values:batchGet"
    codes = [session.get(url, params={"ranges": "data!A1"},
                         headers={"Authorization": f"Bearer {token}"}).status_code
             for _ in range(61)]
    assert codes[:60] == [200] * 60 and codes[60] == 429  # per user: the bot's reads not counted
    clock[0] += 60
    assert session.get(url, params={"ranges": "data!A1"},
                       headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # sheetsync past its quota: the backoff waits (on the same clock) until the minute refills.
    for _ in range(60):
        backend.read_table()
    assert backend.read_table() is not None and backend.stats.retries >= 1


# -- sheetsync's writes under the rules --------------------------------------------------------


def test_a_push_below_an_info_line_with_frozen_columns_is_accepted(api, backend, sheet_id):
    """The defect: the info line was merged through "note" while the columns through "label"
    were frozen; Google refused the whole push."""
    backend.write_table(table(6), REVIEWED)
    sheet = api.sheet(sheet_id, "data")
    names = [c.name for c in LAYOUT.columns]
    assert sheet.frozen_cols == names.index("label") + 1
    # Not merged across the frozen edge: the text runs on over row 1's empty cells.
    assert sheet.merges == [] and sheet.formats[(0, 0)]["wrapStrategy"] == "OVERFLOW_CELL"
    assert api.values(sheet_id, "data")[0][0] == REVIEWED.info
    # Without frozen columns the line is merged through "note" as before.
    plain = dataclasses.replace(REVIEWED, freeze_through=None)
    backend.write_table(table(6), plain)
    assert api.sheet(sheet_id, "data").merges == [
        {"r0": 0, "r1": 1, "c0": 0, "c1": names.index("note") + 1}]
    backend.write_table(table(4), REVIEWED)  # again, over the merged line: accepted too
    assert rule_refusals(api) == [] and len(backend.read_table()) == 4


def timing_out(make_backend, sheet_id: str, timeout: float = 0.3):
    backend = make_backend(sheet_id, max_retries=3)
    backend.read_table()  # sign in first: the token request would share the tight timeout
    backend.http.http_client.set_timeout(timeout)
    backend.http.timeout = timeout
    return backend


def test_a_score_row_that_lands_and_times_out_is_there_once(api, make_backend, sheet_id):
    backend = timing_out(make_backend, sheet_id)
    backend.append_score({"version": 1, "test_accuracy": 0.5})
    api.land_then_timeout(after=0, n=1, delay=0.7)
    backend.append_score({"version": 2, "test_accuracy": 0.625})
    scores = backend.read_scores()
    assert scores["version"].tolist() == ["1", "2"]
    # The very first score row (the scores tab is added in the same write) too.
    other = api.create_spreadsheet("fresh", shared_with=[BOT])
    fresh = timing_out(make_backend, other)
    api.land_then_timeout(after=0, n=1, delay=0.7)
    fresh.append_score({"version": 1, "test_accuracy": 0.5})
    assert fresh.read_scores()["version"].tolist() == ["1"]


@pytest.mark.parametrize("layout", [LAYOUT, REVIEWED], ids=["plain", "reviewed"])
def test_a_first_push_that_lands_and_times_out_succeeds_without_an_api_error(api, make_backend,
                                                                             sheet_id, layout):
    """Before: the retry sent the same addSheet again and surfaced
    'A sheet with the id ... already exists'."""
    backend = timing_out(make_backend, sheet_id)
    api.land_then_timeout(after=0, n=1, delay=0.7)
    backend.write_table(table(5), layout)
    assert backend.read_table()["id"].tolist() == table(5)["id"].tolist()
    assert [s.title for s in api.books[sheet_id].sheets] == ["Sheet1", "data", "scores"]
    assert rule_refusals(api) == []


@pytest.mark.slow  # each write of 8,000 rows needs a timeout that a busy machine keeps
@pytest.mark.parametrize("landed", [0, 1, 2, 3])
def test_every_write_of_a_staged_push_may_land_and_time_out(api, make_backend, sheet_id, landed):
    backend = timing_out(make_backend, sheet_id, timeout=15.0)
    big = table(8000)
    api.land_then_timeout(after=landed, n=1, delay=16.0)
    backend.write_table(big, REVIEWED)
    frame = backend.read_table()
    assert frame["id"].tolist() == big["id"].tolist()
    titles = [s.title for s in api.books[sheet_id].sheets]
    assert titles == ["Sheet1", "data", "scores"]  # no staging tab left, nothing twice
    assert rule_refusals(api) == []


@pytest.mark.parametrize("layout", [LAYOUT, REVIEWED], ids=["plain", "reviewed"])
def test_new_rows_of_a_republish_that_land_and_time_out_are_there_once(api, make_backend,
                                                                       sheet_id, layout):
    backend = timing_out(make_backend, sheet_id)
    backend.write_table(table(4), layout)
    new = table(6).iloc[4:].copy()
    updates = pd.DataFrame({"predicted": ["ii"] * 4}, index=table(4)["id"])
    # The values write (safe to repeat) and the appendCells (not) each land and time out.
    for after in (0, 1):
        api.land_then_timeout(after=after, n=1, delay=0.7)
        result = backend.update_own_columns(updates, layout, append=new if after else None)
    assert result.appended == 2
    ids = backend.read_table()["id"].tolist()
    assert ids == table(6)["id"].tolist()  # each id on one row
    assert backend.read_table()["predicted"].tolist()[:4] == ["ii"] * 4
    assert rule_refusals(api) == []


def test_a_landed_write_is_found_by_the_read_back_and_an_unclear_one_says_so(api, make_backend,
                                                                             sheet_id):
    backend = timing_out(make_backend, sheet_id)
    backend.http.max_retries = 1
    api.land_then_timeout(after=0, n=5, delay=0.7)  # every write lands, no answer in time
    backend.append_score({"version": 1})  # the second attempt reads it back: done
    api.hangs = []
    assert backend.read_scores()["version"].tolist() == ["1"]
    api.slow_writes(181.0, 181.0)  # 504 twice (not applied): still unclear after 2 attempts
    with pytest.raises(QuotaError, match="still unclear whether the score row reached the sheet"):
        backend.append_score({"version": 2})
    assert backend.read_scores()["version"].tolist() == ["1"]
