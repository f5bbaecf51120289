"""One bounded, counted, retried way to call the Sheets API v4 through a gspread client.

gspread's plain ``HTTPClient`` never retries and its ``BackOffHTTPClient`` (6.2.x) retries
forever, so every request of :class:`~sheetsync.sheets.google.GoogleBackend` goes through
:meth:`SheetsHTTP.call`: exponential backoff with jitter on 408/429/5xx, timeouts and dropped
connections, at most ``max_retries`` retries, then a typed error; after 429s the last retry
waits out the rest of Google's quota minute. A write marked ``repeat=False`` is not retried
after an answer that leaves open whether it landed: :meth:`SheetsHTTP.guarded` reads back and
plans again instead. It also counts requests and bytes so each sync can say what it cost.

Usage::

    http = SheetsHTTP(gspread_client, spreadsheet_id="1AbC...", timeout=60, max_retries=5)
    body = http.call("read", "GET", "/values:batchGet", params={"ranges": ["'data'"]})
    str(http.usage)   # "1 request (1 read, 0 write), 0 KB sent, 3 KB received"
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import requests
from google.auth import exceptions as gauth_exceptions
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEETS_API_V4_BASE_URL

from ..errors import AuthError, BackendError, QuotaError, SheetNotFoundError, SheetsRequestError

log = logging.getLogger("sheetsync.google")
T = TypeVar("T")

RETRY_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Answers after which a write may still have been applied: an internal error, a deadline past
# Google's 180 s processing limit, no answer in time, a connection dropped after the request
# went out. 408/429/502/503 say the request was not taken.
MAYBE_APPLIED = frozenset({500, 504})
# Usage limits: 60 reads and 60 writes per minute per user, "After 1 minute, you can execute
# requests again": the last retry after 429s waits out the rest of that minute (in units of
# ``backoff_base``, 1 s unless a test shortens every wait).
QUOTA_MINUTE = 61.0
# Google's advice: keep one request's payload under ~2 MB.
MAX_PAYLOAD = 2_000_000


@dataclass
class Usage:
    """What the requests so far cost; ``str()`` gives the line every sync prints."""

    reads: int = 0
    writes: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    largest_payload: int = 0

    @property
    def requests(self) -> int:
        return self.reads + self.writes

    def __str__(self) -> str:
        n = self.requests
        text = (
            f"{n} request{'s' if n != 1 else ''} ({self.reads} read, {self.writes} write), "
            f"{_size(self.bytes_sent)} sent, {_size(self.bytes_received)} received"
        )
        if self.retries:
            text += f", {self.retries} retried"
        return text


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{round(n / 1e3)} KB"


def dumps(body: Mapping[str, Any]) -> bytes:
    """Compact JSON; NaN/inf and numpy scalars are bugs upstream, so they fail loudly here."""
    return json.dumps(body, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode()


class MaybeLandedError(QuotaError):
    """A write that must not be sent twice failed in a way that leaves open whether Google
    applied it; the caller reads the sheet back before it writes again."""


class SheetsHTTP:
    """Counted, retried requests to one spreadsheet through a gspread ``Client``'s session."""

    def __init__(
        self,
        client: Any,
        spreadsheet_id: str,
        *,
        account: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 32.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.http_client = client.http_client
        self.http_client.set_timeout(timeout)
        self.spreadsheet_id = spreadsheet_id
        self.account = account
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.usage = Usage()

    def url(self, suffix: str) -> str:
        return f"{SPREADSHEETS_API_V4_BASE_URL}/{self.spreadsheet_id}{suffix}"

    def call(
        self,
        kind: Literal["read", "write"],
        method: str,
        suffix: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        repeat: bool = True,
    ) -> dict[str, Any]:
        """Send one API request (retrying transient failures) and return its JSON body.

        ``repeat=False``: the write is not safe to send twice (an append, an addSheet, a
        delete by id); when it may have landed (no answer in time, a dropped connection,
        500/504) it is not repeated here but :class:`MaybeLandedError` is raised, so the
        caller reads back and plans again (:meth:`guarded`)."""
        payload = None if body is None else dumps(body)
        headers = None if payload is None else {"Content-Type": "application/json; charset=utf-8"}
        started = time.monotonic()
        last = ""
        retry_after: float | None = None
        quota_waited: float | None = None  # seconds waited since the first 429
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.usage.retries += 1
                minute = QUOTA_MINUTE * self.backoff_base
                if quota_waited is not None and attempt == self.max_retries:
                    retry_after = max(retry_after or 0.0, minute - quota_waited)
                delay = self._wait(attempt, retry_after,
                                   cap=max(minute, self.backoff_cap) if quota_waited is not None else None)
                if quota_waited is not None:
                    quota_waited += delay
            retry_after = None
            self._count(kind, payload)
            try:
                response = self.http_client.request(
                    method, self.url(suffix), params=dict(params or {}), data=payload, headers=headers
                )
            except APIError as e:
                code = _code(e)
                if code not in RETRY_CODES:
                    raise self._error(e) from None
                last = f"{code} {e.error.get('status', '')}".strip()
                if not repeat and code in MAYBE_APPLIED:
                    raise self._maybe_landed(last) from None
                retry_after = _retry_after(e.response)
                if code == 429 and quota_waited is None:
                    quota_waited = 0.0
                log.info("Google Sheets answered %s; retrying", last)
                continue
            except requests.Timeout as e:
                last = f"no answer within {self.timeout:g}s"
                if not repeat and not isinstance(e, requests.ConnectTimeout):
                    raise self._maybe_landed(last) from None
                log.info("Google Sheets timed out; retrying")
                continue
            except (requests.ConnectionError, gauth_exceptions.TransportError) as e:
                last = f"connection failed ({type(e).__name__})"
                if not repeat and _after_send(e):
                    raise self._maybe_landed(last) from None
                continue
            except gauth_exceptions.RefreshError:
                raise AuthError(
                    "Google refused the credentials when asking for an access token: for a "
                    "service-account key, it may be deleted or revoked (create a new key and point "
                    "[google] credentials at it); for auth = \"oauth\", delete "
                    "~/.config/gspread/authorized_user.json to sign in again"
                ) from None
            self.usage.bytes_received += len(response.content)
            return response.json() if response.content else {}
        waited = time.monotonic() - started
        message = (
            f"Google Sheets kept failing ({last}) after {self.max_retries + 1} attempts over "
            f"{waited:.0f}s: wait a minute and run the command again"
        )
        if last.startswith("connection failed"):
            raise BackendError(message.replace("kept failing", "could not be reached"))
        raise QuotaError(message)

    def _maybe_landed(self, last: str) -> MaybeLandedError:
        return MaybeLandedError(
            f"Google Sheets gave no clear answer to a write ({last}): it may have been applied")

    def guarded(self, step: Callable[[int], T], what: str) -> T:
        """Run ``step(attempt)``, which reads the sheet, works out what is still to write and
        writes it with ``repeat=False``; when that write may have landed, wait (backoff) and
        run it again: the fresh read finds the write if it landed, so it never lands twice.
        ``what`` names the write for the message when every attempt stays unclear."""
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.usage.retries += 1
                self._wait(attempt, None)
            try:
                return step(attempt)
            except MaybeLandedError as e:
                last = str(e)
                log.info("%s; reading the sheet back before writing again", last)
        raise MaybeLandedError(
            f"{last}; after {self.max_retries + 1} attempts it is still unclear whether {what} "
            "reached the sheet: open the sheet to check, and run the command again (it reads "
            "the sheet first, so nothing is written twice)")

    def _count(self, kind: str, payload: bytes | None) -> None:
        if kind == "read":
            self.usage.reads += 1
        else:
            self.usage.writes += 1
        size = len(payload or b"")
        self.usage.bytes_sent += size
        self.usage.largest_payload = max(self.usage.largest_payload, size)

    def _wait(self, attempt: int, retry_after: float | None, cap: float | None = None) -> float:
        # "Equal jitter": at least half the exponential step, so retries never bunch at zero.
        step = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = random.uniform(step / 2, step)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap or self.backoff_cap))
        self.sleep(delay)
        return delay

    def _error(self, e: APIError) -> BackendError:
        code = _code(e)
        status = str(e.error.get("status", ""))
        message = str(e.error.get("message", ""))
        sid = self.spreadsheet_id
        if code == 401:
            return AuthError(
                "Google refused the credentials (401): check [google] auth and credentials in "
                "sheetsync.toml"
            )
        if code == 403 and ("has not been used" in message or "disabled" in message.lower()):
            return BackendError(
                "the Google Sheets API is not enabled for the credentials' Cloud project: enable "
                "it at https://console.cloud.google.com/apis/library/sheets.googleapis.com"
            )
        if code == 403:
            who = self.account or "the Google account you signed in with"
            return SheetNotFoundError(
                f"spreadsheet {sid} is not shared with {who}: open it in Google Sheets, click "
                f"Share and add {who} as an Editor"
            )
        if code == 404:
            return SheetNotFoundError(
                f"no spreadsheet with id {sid}: check [google] spreadsheet in sheetsync.toml "
                "(paste the sheet's URL or id)"
            )
        return SheetsRequestError(code, status, message)


def _after_send(e: Exception) -> bool:
    """Whether a dropped connection may have carried the request (not a refused connect)."""
    text = repr(e)
    return not any(k in text for k in ("NewConnectionError", "Failed to establish",
                                       "NameResolutionError", "ConnectTimeout"))


def _code(e: APIError) -> int:
    code = e.code if isinstance(e.code, int) and e.code > 0 else 0
    return code or getattr(e.response, "status_code", 0) or 0


def _retry_after(response: requests.Response | None) -> float | None:
    value = None if response is None else response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
