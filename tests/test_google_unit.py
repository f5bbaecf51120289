"""Unit tests at the gspread edge: the HTTP client's ``request`` and the auth entry points are
mocked; everything of ours (retries, error mapping, typed cells, chunking) runs for real."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import requests
from gspread.exceptions import APIError

from sheetsync.config import GoogleConfig
from sheetsync.errors import AuthError, BackendError, ConfigError, QuotaError, SheetNotFoundError
from sheetsync.sheets import _google_cells as cells
from sheetsync.sheets._google_auth import SCOPES, sign_in
from sheetsync.sheets._google_http import MAX_PAYLOAD, SheetsHTTP, SheetsRequestError, dumps
from sheetsync.sheets.base import Column, SheetLayout
from sheetsync.sheets.google import GoogleBackend, _chunks, spreadsheet_key


def response(code: int, body: object, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = code
    r._content = json.dumps(body).encode()
    r.headers.update(headers or {})
    return r


def api_error(code: int, message: str = "nope", status: str = "X", headers=None) -> APIError:
    return APIError(response(code, {"error": {"code": code, "message": message, "status": status}},
                             headers))


@pytest.fixture
def client(mocker):
    c = mocker.Mock()
    c.http_client.request = mocker.Mock()
    return c


def http(client, **kw) -> tuple[SheetsHTTP, list[float]]:
    sleeps: list[float] = []
    kw.setdefault("max_retries", 3)
    return SheetsHTTP(client, "sid", account="bot@x.iam", sleep=sleeps.append, **kw), sleeps


def test_request_goes_out_as_compact_json_with_a_timeout(client):
    h, _ = http(client, timeout=7)
    client.http_client.request.return_value = response(200, {"ok": 1})
    assert h.call("write", "POST", ":batchUpdate", body={"requests": [{"a": "é"}]}) == {"ok": 1}
    client.http_client.set_timeout.assert_called_once_with(7)
    args, kwargs = client.http_client.request.call_args
    assert args == ("POST", "https://sheets.googleapis.com/v4/spreadsheets/sid:batchUpdate")
    assert kwargs["data"] == '{"requests":[{"a":"é"}]}'.encode()
    assert h.usage.writes == 1 and h.usage.bytes_sent == len(kwargs["data"])


def test_retries_429_and_5xx_with_growing_jittered_waits(client):
    h, sleeps = http(client, max_retries=5, backoff_base=1.0)
    client.http_client.request.side_effect = [api_error(429), api_error(503), api_error(500),
                                              requests.Timeout(), response(200, {})]
    assert h.call("read", "GET", "") == {}
    for i, s in enumerate(sleeps):
        assert 2**i / 2 <= s <= 2**i
    assert h.usage.reads == 5 and h.usage.retries == 4


def test_retry_after_header_is_honoured_within_the_cap(client):
    h, sleeps = http(client, backoff_base=0.01)
    client.http_client.request.side_effect = [api_error(429, headers={"Retry-After": "7"}),
                                              response(200, {})]
    h.call("read", "GET", "")
    assert sleeps == [7.0]


def test_gives_up_after_max_retries_with_quota_error(client):
    h, sleeps = http(client, max_retries=2)
    client.http_client.request.side_effect = api_error(429, status="RESOURCE_EXHAUSTED")
    with pytest.raises(QuotaError, match="429 RESOURCE_EXHAUSTED.*after 3 attempts"):
        h.call("read", "GET", "")
    assert client.http_client.request.call_count == 3 and len(sleeps) == 2


def test_connection_failures_end_as_backend_error(client):
    h, _ = http(client, max_retries=1)
    client.http_client.request.side_effect = requests.ConnectionError("dns")
    with pytest.raises(BackendError, match="could not be reached") as e:
        h.call("read", "GET", "")
    assert not isinstance(e.value, QuotaError)


@pytest.mark.parametrize("code, message, kind, text", [
    (401, "bad token", AuthError, "refused the credentials (401)"),
    (403, "The caller does not have permission", SheetNotFoundError, "not shared with bot@x.iam"),
    (403, "Google Sheets API has not been used in project 1 before or it is disabled", BackendError,
     "not enabled"),
    (404, "Requested entity was not found.", SheetNotFoundError, "no spreadsheet with id sid"),
    (400, "Invalid requests[0]", SheetsRequestError, "400 X): Invalid requests[0]"),
])
def test_errors_that_retrying_cannot_fix_are_mapped_at_once(client, code, message, kind, text):
    h, sleeps = http(client)
    client.http_client.request.side_effect = api_error(code, message)
    with pytest.raises(kind, match=text.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        h.call("read", "GET", "")
    assert sleeps == []


def test_token_refresh_refusal_is_an_auth_error(client):
    from google.auth.exceptions import RefreshError

    h, _ = http(client)
    client.http_client.request.side_effect = RefreshError("invalid_grant: secret-ish detail")
    with pytest.raises(AuthError) as e:
        h.call("read", "GET", "")
    assert "secret-ish" not in str(e.value)


def test_nan_and_numpy_never_reach_json():
    with pytest.raises(ValueError):
        dumps({"v": float("nan")})
    row = pd.Series([np.float64(0.5), np.int64(3), np.bool_(True), pd.NA, np.nan, None, pd.NaT,
                     math.inf, "x"], dtype=object)
    out = [cells.number_cell(v) for v in row]
    assert out[:3] == [{"userEnteredValue": {"numberValue": 0.5}},
                       {"userEnteredValue": {"numberValue": 3}},
                       {"userEnteredValue": {"boolValue": True}}]
    assert out[3:8] == [{}] * 5
    assert out[8] == {"userEnteredValue": {"stringValue": "x"}}
    assert type(out[1]["userEnteredValue"]["numberValue"]) is int
    dumps({"cells": out})  # plain JSON


def test_text_is_always_text_and_only_http_urls_become_images():
    for v in ["0042", "1e3", "=1+1", "+x", "-3", "@a", "TRUE"]:
        assert cells.text_cell(v) == {"userEnteredValue": {"stringValue": v}}
    assert cells.text_cell(1.0) == {"userEnteredValue": {"stringValue": "1"}}
    assert cells.image_cell('https://h/a"b.png') == {
        "userEnteredValue": {"formulaValue": '=IMAGE("https://h/a""b.png")'}}
    assert cells.image_cell("file:///data/a.png") == {}
    assert cells.image_cell("") == {} and cells.image_cell(None) == {}


def test_layout_requests_cover_the_columns():
    layout = SheetLayout((Column("id"), Column("label", "choice", True, ("a", "b")),
                          Column("note", "text", True), Column("predicted")))
    reqs = cells.layout_requests(7, ["id", "label", "note", "predicted", "mine"], 3, layout)
    kinds = [next(iter(r)) for r in reqs]
    assert kinds.count("setDataValidation") == 1 and kinds.count("addProtectedRange") == 3
    assert "setBasicFilter" in kinds and "addConditionalFormatRule" in kinds
    rule = next(r for r in reqs if "addConditionalFormatRule" in r)
    assert "$B2<>$D2" in json.dumps(rule)
    assert cells.column_letter(0) == "A" and cells.column_letter(27) == "AB"


def test_chunks_stay_under_the_payload_budget():
    rows = [{"values": [{"userEnteredValue": {"stringValue": "x" * 1000}}]}] * 5000
    chunks = _chunks(rows, 1_000_000)
    assert sum(len(c) for _, c in chunks) == 5000
    assert [s for s, _ in chunks] == sorted(s for s, _ in chunks)
    assert len(dumps({"rows": chunks[0][1]})) <= 1_000_000
    assert all(len(dumps({"rows": c})) <= MAX_PAYLOAD for _, c in chunks)


@pytest.mark.parametrize("value, key", [
    ("1AbCdEf", "1AbCdEf"),
    ("https://docs.google.com/spreadsheets/d/1AbC-d_E/edit#gid=0", "1AbC-d_E"),
])
def test_spreadsheet_key_from_id_or_url(value, key):
    assert spreadsheet_key(value) == key


@pytest.mark.parametrize("value", ["", "https://example.com/nothing"])
def test_bad_spreadsheet_setting_is_a_config_error(value):
    with pytest.raises(ConfigError, match="spreadsheet"):
        spreadsheet_key(value)


def test_write_table_sends_one_batch_update(mocker):
    backend = GoogleBackend(mocker.Mock(), "sid")
    calls = []
    mocker.patch.object(backend.http, "call", side_effect=lambda *a, **k: calls.append((a, k)) or
                        {"sheets": [{"properties": {"sheetId": 0, "title": "Sheet1"}}]})
    backend.write_table(pd.DataFrame({"id": ["0042"], "label": ["=x"]}),
                        SheetLayout((Column("id"), Column("label", "choice", True, ("=x",)))))
    assert [a[:3] for a, _ in calls] == [("read", "GET", ""), ("write", "POST", ":batchUpdate")]
    body = json.dumps(calls[1][1]["body"])
    assert '"stringValue": "0042"' in body and '"stringValue": "=x"' in body
    assert '"addSheet"' in body and '"frozenRowCount": 1' in body


def test_sign_in_oauth_and_default(mocker, tmp_path):
    oauth = mocker.patch("gspread.oauth")
    (tmp_path / "client.json").write_text("{}")
    login = sign_in(GoogleConfig(auth="oauth", credentials="client.json"), lambda p: tmp_path / p)
    assert login.client is oauth.return_value and login.account is None
    assert oauth.call_args.kwargs["scopes"] == list(SCOPES)

    from google.auth.exceptions import DefaultCredentialsError

    mocker.patch("google.auth.default", side_effect=DefaultCredentialsError("x"))
    with pytest.raises(AuthError, match="gcloud auth application-default login"):
        sign_in(GoogleConfig(auth="default"), lambda p: tmp_path / p)

    creds = mocker.Mock(service_account_email="robot@p.iam.gserviceaccount.com")
    mocker.patch("google.auth.default", return_value=(creds, "p"))
    made = mocker.patch("gspread.Client")
    login = sign_in(GoogleConfig(auth="default"), lambda p: tmp_path / p)
    assert login.account == "robot@p.iam.gserviceaccount.com"
    made.assert_called_once_with(auth=creds)


def test_oauth_without_a_client_file_says_how_to_get_one(mocker, tmp_path):
    mocker.patch("gspread.auth.DEFAULT_AUTHORIZED_USER_FILENAME", tmp_path / "none.json")
    with pytest.raises(AuthError, match="Desktop app"):
        sign_in(GoogleConfig(auth="oauth", credentials="missing.json"), lambda p: tmp_path / p)


def test_unknown_auth_kind_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="service_account, oauth, default"):
        sign_in(GoogleConfig(auth="magic"), lambda p: tmp_path / p)


def test_the_example_key_has_the_real_shape_but_no_key(tmp_path):
    from pathlib import Path

    from sheetsync.sheets._google_auth import read_key_file, service_account_login

    example = Path(__file__).resolve().parents[1] / "credentials.example.json"
    info = read_key_file(example)  # passes every shape check...
    assert info["client_email"].endswith(".iam.gserviceaccount.com")
    with pytest.raises(AuthError, match="private_key cannot be read"):
        service_account_login(example)  # ...but holds no usable key
