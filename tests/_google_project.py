"""A Google-backed project whose sheet lives in the Sheets API stand-in.

The set-up every Google test shares (and ``bench/bench_watch.py``): ``init`` a project on the
google backend, make a spreadsheet shared with the service account (and with people), write
the account's key, point ``sheetsync.toml`` at the sheet; then open it as the CLI would, with
the client's session routed to the stand-in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sheetsync._itemprogress import no_progress
from sheetsync.config import Config
from sheetsync.project import Project
from sheetsync.sheets.google import GoogleBackend

try:
    from tests._sheets_standin import SheetsStandin, route
except ImportError:  # tests/ is not a package
    from _sheets_standin import SheetsStandin, route  # type: ignore[no-redef]

BOT = "sheetsync-bot@team-project.iam.gserviceaccount.com"
ALICE = "alice@example.com"


def init_google_project(api: SheetsStandin, data_root: Path, proj: Path, *,
                        title: str = "labels", people: Iterable[str] = (ALICE,),
                        sheet_url: bool = False, publish: dict[str, Any] | None = None,
                        **google: Any) -> Path:
    """``proj`` set up for the stand-in; ``google``/``publish``: settings of those sections;
    ``sheet_url``: name the spreadsheet by its URL, as people paste it, rather than its id."""
    Project.init(data_root, proj, backend="google", progress=no_progress)
    sid = api.create_spreadsheet(title, shared_with=[BOT, *people])
    key = proj / "credentials.json"
    key.write_text(json.dumps(api.service_account(BOT)))
    key.chmod(0o600)
    config = Config.load(proj)
    spreadsheet = f"https://docs.google.com/spreadsheets/d/{sid}/edit" if sheet_url else sid
    config = dataclasses.replace(
        config, google=dataclasses.replace(config.google, spreadsheet=spreadsheet, **google))
    if publish:
        config = dataclasses.replace(config, publish=dataclasses.replace(config.publish, **publish))
    config.save()
    return proj


def open_google_project(api: SheetsStandin, proj: Path, *, no_waits: bool = False) -> Project:
    """What the CLI does (Project.open -> open_backend -> from_config), routed to the stand-in;
    ``no_waits``: retries without their backoff sleeps."""
    config = Config.load(proj)
    backend = GoogleBackend.from_config(config)
    if no_waits:
        backend.http.sleep = lambda s: None  # backoff waits are not what such tests measure
    route(backend.client.http_client.session, api)
    return Project(config, progress=no_progress, backend=backend)
