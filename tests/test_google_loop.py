"""The whole loop with ``backend = "google"``: init, push to the Sheets API stand-in, edit the
sheet through gspread as a collaborator would, pull (folders rearranged, a version recorded),
push again, and (slow) train one epoch so a score row lands in the ``scores`` worksheet."""

from __future__ import annotations

from pathlib import Path

import pytest

from sheetsync._words import text_of
from sheetsync.dataset import QUARANTINE
from sheetsync.errors import UnpulledEditsError
from sheetsync.project import Project
from sheetsync.sheets.base import INFO_PREFIX

try:
    from tests._google_project import ALICE, init_google_project, open_google_project
    from tests._sheets_standin import SheetsStandin, standin_client, token_credentials
except ImportError:  # tests/ is not a package
    from _google_project import ALICE, init_google_project, open_google_project
    from _sheets_standin import SheetsStandin, standin_client, token_credentials

BUCKET = "https://storage.googleapis.com/team-bucket/{path}"


@pytest.fixture
def api():
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def project(api: SheetsStandin, data_root: Path, tmp_path: Path) -> Project:
    proj = init_google_project(api, data_root, tmp_path / "proj", sheet_url=True,
                               image_url_template=BUCKET)
    return open_project(api, proj)


open_project = open_google_project


def collaborator(api: SheetsStandin, project: Project):
    sid = project.backend.spreadsheet_id
    return standin_client(api, token_credentials(api, ALICE)).open_by_key(sid).worksheet("data")


def header_index(values: list[list[str]]) -> int:
    """0-based row of the header: 1 under sheetsync's info line."""
    return 1 if values and values[0] and values[0][0].startswith(INFO_PREFIX) else 0


def edit(ws, changes: dict[str, dict[str, str]]) -> None:
    """Type into cells by id, as a person would (values parsed as typed in the UI)."""
    values = ws.get_all_values()
    head = header_index(values)
    header = values[head]
    for r, row in enumerate(values[head + 1:], start=head + 2):
        for column, value in changes.get(row[header.index("id")], {}).items():
            ws.update_cell(r, header.index(column) + 1, value)


def ids_by_path(project: Project) -> dict[str, str]:
    m = project.versions.load("latest")
    return dict(zip(m["path"], m["id"], strict=True))


def test_push_edit_in_sheets_pull_rearranges_folders(api: SheetsStandin, project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    api.reset_counts()
    report = project.push()
    # The unpulled-edit check, that check again right before writing (an edit made while the
    # rows were prepared is never overwritten), the sheet ids; one batchUpdate.
    assert (api.reads, api.writes) == (3, 1)
    assert "4 requests (3 read, 1 write)" in text_of(report)
    ws = collaborator(api, project)
    values = ws.get_all_values(value_render_option="FORMULA")
    head = header_index(values)
    assert head == 1 and values[0][0].startswith(INFO_PREFIX)  # the info line is row 1
    first = dict(zip(values[head], values[head + 1], strict=False))
    assert first["image"] == f'=IMAGE("{BUCKET.format(path=first["path"])}")'

    a, b, c = ids["train/i/img-0001.png"], ids["train/ii/img-0005.png"], ids["val/iii/img-0018.png"]
    edit(ws, {a: {"label": "ii"}, b: {"split": "val", "note": "'=moved"}, c: {"action": "drop"}})
    with pytest.raises(UnpulledEditsError):
        open_project(api, project.config.project_dir).push()

    project = open_project(api, project.config.project_dir)
    api.reset_counts()
    report = project.pull()
    assert api.reads == 1 and api.writes == 0
    assert "recorded v2" in text_of(report)
    assert (root / "train/ii/img-0001.png").exists() and not (root / "train/i/img-0001.png").exists()
    assert (root / "val/ii/img-0005.png").exists()
    assert (root / QUARANTINE / "val/iii/img-0018.png").exists()
    m = project.versions.load("v2").set_index("id")
    assert m.at[b, "note"] == "=moved" and m.at[c, "action"] == "drop"

    # The pulled sheet is not "unpulled edits": the next push goes through and shows new paths.
    project.push()
    sheet = project.backend.read_table().set_index("id")
    assert sheet.at[a, "path"] == "train/ii/img-0001.png"
    assert sheet.at[b, "note"] == "=moved"


@pytest.mark.slow
def test_train_appends_a_score_row_to_the_sheet(api: SheetsStandin, project: Project) -> None:
    project.push()
    project.train(epochs=1)
    project.train(epochs=1)
    scores = project.backend.read_scores()
    assert len(scores) == 2
    assert {"version", "best_val_accuracy", "epochs", "seconds"} <= set(scores.columns)
    assert scores["epochs"].tolist() == ["1", "1"]
