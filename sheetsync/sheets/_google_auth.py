"""Credentials for the Google Sheets backend: service-account key, OAuth installed app, or ADC.

Every failure is one :class:`~sheetsync.errors.AuthError` line that names the file and what to
do. Nothing read from a credentials file (keys, tokens, secrets) ever goes into a message or a
log record: messages are built from our own words and field *names* only.

Usage::

    login = sign_in(config.google, config.resolve)
    login.client    # a gspread.Client
    login.account   # the service account's client_email (for "share the sheet with ...")
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gspread

from ..config import GoogleConfig
from ..errors import AuthError, ConfigError

log = logging.getLogger("sheetsync.google")

# Least privilege: sheetsync only reads and writes spreadsheet cells, never Drive files.
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
AUTH_KINDS = ("service_account", "oauth", "default")
_KEY_FIELDS = ("client_email", "private_key", "token_uri")
_HOW_TO_KEY = (
    "create one in the Google Cloud console (IAM & Admin > Service accounts > Keys > Add key > "
    "JSON) and save it there, or point [google] credentials in sheetsync.toml at it"
)


@dataclass(frozen=True)
class Login:
    """A ready gspread client and the account e-mail to share the sheet with (when known)."""

    client: gspread.Client
    account: str | None


def sign_in(google: GoogleConfig, resolve: Callable[[str], Path]) -> Login:
    """Build an authorized gspread client the way ``[google] auth`` says."""
    if google.auth == "service_account":
        return service_account_login(resolve(google.credentials))
    if google.auth == "oauth":
        return oauth_login(resolve(google.credentials))
    if google.auth == "default":
        return default_login()
    raise ConfigError(
        f"[google] auth = {google.auth!r} is not one of {', '.join(AUTH_KINDS)}"
    )


def service_account_login(path: Path) -> Login:
    from google.oauth2 import service_account

    info = read_key_file(path)
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    except (ValueError, TypeError):
        # The library's message may quote the key material: say what is wrong in our words.
        raise AuthError(
            f"{path}: its private_key cannot be read; download a new JSON key"
        ) from None
    return Login(gspread.Client(auth=creds), str(info["client_email"]))


def read_key_file(path: Path) -> dict[str, Any]:
    """The service-account key as a dict, after checks that never echo its content."""
    if not path.is_file():
        raise AuthError(f"no service-account key at {path}: {_HOW_TO_KEY}")
    warn_if_world_readable(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{path} is not a JSON key file; download the key again") from None
    if not isinstance(info, dict):
        raise AuthError(f"{path} is not a service-account key (not a JSON object)")
    kind = info.get("type")
    if kind != "service_account":
        hint = (
            'set auth = "oauth" in [google] of sheetsync.toml to use it'
            if kind == "authorized_user" or "installed" in info
            else _HOW_TO_KEY
        )
        shown = repr(kind) if isinstance(kind, str) and len(kind) < 40 else "missing"
        raise AuthError(f"{path} is not a service-account key (type {shown}): {hint}")
    missing = [f for f in _KEY_FIELDS if not isinstance(info.get(f), str) or not info.get(f)]
    if missing:
        raise AuthError(f"{path} lacks {', '.join(missing)}; download the key again")
    return info


def warn_if_world_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning(
            "%s can be read by every user of this computer; protect it with `chmod 600 %s`",
            path,
            path,
        )


def oauth_login(path: Path) -> Login:
    """The installed-app flow: a browser window once, then a cached token (gspread's place)."""
    from gspread.auth import DEFAULT_AUTHORIZED_USER_FILENAME

    cached = Path(DEFAULT_AUTHORIZED_USER_FILENAME)
    if not cached.exists() and not path.is_file():
        raise AuthError(
            f"no OAuth client file at {path}: create an OAuth client ID of type 'Desktop app' in "
            "the Google Cloud console (APIs & Services > Credentials), download its JSON there"
        )
    if cached.exists():
        warn_if_world_readable(cached)
    try:
        client = gspread.oauth(
            scopes=list(SCOPES), credentials_filename=str(path), authorized_user_filename=str(cached)
        )
    except (ValueError, KeyError, json.JSONDecodeError):
        raise AuthError(
            f"{path} is not an OAuth client file of type 'Desktop app' (or {cached} is damaged: "
            "delete it to sign in again)"
        ) from None
    return Login(client, None)


def default_login() -> Login:
    """Application-default credentials (gcloud, GOOGLE_APPLICATION_CREDENTIALS, metadata)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise AuthError(
            "no application-default credentials: run `gcloud auth application-default login "
            "--scopes=https://www.googleapis.com/auth/spreadsheets,"
            "https://www.googleapis.com/auth/cloud-platform` or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a key file"
        ) from None
    account = getattr(creds, "service_account_email", None)
    return Login(gspread.Client(auth=creds), account if isinstance(account, str) else None)
