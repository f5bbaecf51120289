"""The Cloud Storage edge: credentials, one bucket, counted requests, errors in one line.

Everything that talks to Google Cloud Storage is here; :mod:`sheetsync.publish` only plans and
calls :class:`Bucket`'s four operations (list, upload, delete, anonymous HEAD). The official
``google-cloud-storage`` client does the HTTP; its own retries are switched off so that the
bound is ours (``max_retries`` per call, backoff 1, 2, 4 ... s, at most 32 s, with jitter).

Usage::

    creds, account = storage_credentials(config.google, config.resolve)
    bucket = Bucket("my-bucket", creds, account=account)
    bucket.list("sheetsync/")          # {name: size}
    bucket.upload("sheetsync/ab12....png", data, "image/png")
    bucket.traffic.kinds, bucket.traffic.bytes_sent   # Counter({"list": 1, "upload": 1}), 41_000
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from .errors import (
    AuthError,
    BucketNotFoundError,
    BucketPermissionError,
    ConfigError,
    PublishError,
    UploadQuotaError,
)

T = TypeVar("T")

# Read and write objects, nothing else (no bucket settings, no other Google API).
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
PUBLIC_HOST = "https://storage.googleapis.com"
# Content-addressed objects never change: let Google's image fetcher cache them for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_OAUTH_CACHE = Path("~/.config/sheetsync/storage_authorized_user.json")


@dataclass
class Traffic:
    """Requests sent to Cloud Storage, by kind, and the bytes in their bodies."""

    kinds: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())

    def count(self, kind: str, sent: int = 0) -> None:
        with self._lock:
            self.kinds[kind] += 1
            self.bytes_sent += sent


def storage_credentials(google: Any, resolve: Callable[[str], Path]) -> tuple[Any, str | None]:
    """Credentials for the bucket from the same ``[google]`` settings as the sheet."""
    if google.auth == "service_account":
        from google.oauth2 import service_account

        from .sheets._google_auth import read_key_file

        path = resolve(google.credentials)
        info = read_key_file(path)
        try:
            creds = service_account.Credentials.from_service_account_info(info, scopes=[STORAGE_SCOPE])
        except (ValueError, TypeError):
            raise AuthError(f"{path}: its private_key cannot be read; download a new JSON key") from None
        return creds, str(info["client_email"])
    if google.auth == "default":
        return _default_credentials()
    if google.auth == "oauth":
        return _oauth_credentials(resolve(google.credentials)), None
    raise ConfigError(f"[google] auth = {google.auth!r} is not one of service_account, oauth, default")


def _default_credentials() -> tuple[Any, str | None]:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default(scopes=[STORAGE_SCOPE])
    except DefaultCredentialsError:
        raise AuthError("no application-default credentials: run `gcloud auth application-default "
                        "login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file") from None
    account = getattr(creds, "service_account_email", None)
    return creds, account if isinstance(account, str) else None


def _oauth_credentials(client_file: Path) -> Any:
    """The installed-app flow with the storage scope; the sign-in is cached apart from the sheet's."""
    from google.oauth2.credentials import Credentials

    cache = _OAUTH_CACHE.expanduser()
    if cache.exists():
        return Credentials.from_authorized_user_file(str(cache), [STORAGE_SCOPE])
    if not client_file.is_file():
        raise AuthError(f"no OAuth client file at {client_file}: create an OAuth client ID of type "
                        "'Desktop app' (APIs & Services > Credentials) and download its JSON there")
    from google_auth_oauthlib.flow import InstalledAppFlow

    creds = InstalledAppFlow.from_client_secrets_file(str(client_file), [STORAGE_SCOPE]).run_local_server(port=0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(creds.to_json())
    cache.chmod(0o600)
    return creds


class Bucket:
    """One bucket through the official client, every request counted and errors translated."""

    def __init__(self, name: str, credentials: Any, *, account: str | None = None,
                 endpoint: str = "", session: Any = None, timeout: float = 60.0,
                 max_retries: int = 5, workers: int = 8, backoff_base: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        from google.cloud import storage

        self.name = name
        self.account = account
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.traffic = Traffic()
        self.session = session if session is not None else _session(credentials, workers)
        # Count at the HTTP edge: every request the client sends, retries and lookups included.
        self.session.hooks.setdefault("response", []).append(self._count)
        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        self.client = storage.Client(project="_", credentials=credentials,
                                     client_options=options, _http=self.session)
        # The client fetches bucket metadata in a background thread for tracing labels: an
        # extra request (needing bucket-read permission) that publishing has no use for.
        self.client._bucket_metadata_cache = None
        self.bucket = self.client.bucket(name)

    # -- the four operations ----------------------------------------------------------------

    def list(self, prefix: str) -> dict[str, int]:
        """``{object name: size}`` of every object under ``prefix``."""
        def run() -> dict[str, int]:
            pages = self.client.list_blobs(self.bucket, prefix=prefix, retry=None,
                                           timeout=self.timeout, fields="items(name,size),nextPageToken")
            out: dict[str, int] = {}
            for page in pages.pages:
                out.update({b.name: int(b.size or 0) for b in page})
            return out

        return self._retrying(run, "list the objects of")

    def upload(self, name: str, data: bytes, content_type: str) -> bool:
        """Create ``name`` unless it exists (True: sent; False: it was there already)."""
        from google.api_core.exceptions import PreconditionFailed

        def run() -> bool:
            blob = self.bucket.blob(name)
            blob.cache_control = IMMUTABLE
            try:
                # if_generation_match=0: never overwrite; the same name is the same content.
                blob.upload_from_string(data, content_type=content_type, if_generation_match=0,
                                        retry=None, timeout=self.timeout)
            except PreconditionFailed:
                return False
            return True

        return self._retrying(run, f"upload {name} to")

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        def run() -> None:
            try:
                self.bucket.blob(name).delete(retry=None, timeout=self.timeout)
            except NotFound as e:
                if "bucket" in str(e).lower() and "object" not in str(e).lower():
                    raise
        self._retrying(run, f"delete {name} from")

    def head_anonymously(self, url: str) -> int:
        """HTTP status of an anonymous HEAD of ``url``: what Google's image fetcher would get."""
        import requests

        def run() -> int:
            self.traffic.count("check")
            return requests.head(url, timeout=self.timeout, allow_redirects=True).status_code

        return self._retrying(run, f"check {url} in")

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = request.path_url.split("?")[0]
        kind = ("upload" if "/upload/" in path else "delete" if request.method == "DELETE"
                else "list" if request.method == "GET" and path.endswith("/o") else "other")
        body = request.body
        self.traffic.count(kind, len(body) if isinstance(body, bytes | str) else 0)

    def public_url(self, name: str) -> str:
        return public_url(self.name, name, self.endpoint)

    # -- retries and errors -----------------------------------------------------------------

    def _retrying(self, call: Callable[[], T], doing: str) -> T:
        for attempt in range(self.max_retries + 1):
            try:
                return call()
            except Exception as e:  # noqa: BLE001 - sorted into transient or one-line errors
                if not _transient(e):
                    raise self._translate(e, doing) from None
                if attempt == self.max_retries:
                    raise UploadQuotaError(
                        f"Cloud Storage kept refusing to {doing} gs://{self.name} ({_status(e)}) "
                        f"after {self.max_retries} retries; try again in a minute") from None
                delay = min(32.0, self.backoff_base * 2**attempt) * (0.5 + random.random() / 2)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _translate(self, e: Exception, doing: str) -> PublishError | AuthError:
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import RefreshError

        who = self.account or "this account"
        if isinstance(e, RefreshError):
            return AuthError(f"Google refused the credentials while trying to {doing} "
                             f"gs://{self.name}; check [google] auth and credentials")
        if isinstance(e, gexc.NotFound):
            return BucketNotFoundError(
                f"bucket gs://{self.name} does not exist: create it (Cloud Storage > Buckets > "
                f"Create) or fix [publish] bucket in sheetsync.toml")
        if isinstance(e, gexc.Forbidden | gexc.Unauthorized):
            return BucketPermissionError(
                f"{who} may not {doing} gs://{self.name}: on the bucket's Permissions tab, grant "
                f"{who} the role Storage Object User")
        return PublishError(f"could not {doing} gs://{self.name}: {_status(e)}")


def public_url(bucket: str, name: str, endpoint: str = "") -> str:
    """The anonymous URL of an object: what ``=IMAGE`` fetches."""
    return f"{endpoint.rstrip('/') or PUBLIC_HOST}/{bucket}/{quote(name)}"


def _transient(e: Exception) -> bool:
    import requests
    from google.api_core import exceptions as gexc

    if isinstance(e, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
        return True
    return isinstance(e, gexc.GoogleAPICallError) and e.code in _TRANSIENT_STATUS


def _status(e: Exception) -> str:
    code = getattr(e, "code", None)
    return f"HTTP {code}" if isinstance(code, int) else type(e).__name__


def _session(credentials: Any, workers: int) -> Any:
    """An authorized session whose connection pool fits the parallel uploads."""
    import requests
    from google.auth.transport.requests import AuthorizedSession

    session = AuthorizedSession(credentials)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(workers, 10))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
