"""Review rounds in the sheet: the ``checked`` column (TRUE/FALSE in the workbook, a checkbox in
Google Sheets) is validated and kept across pushes and pulls, push puts unchecked rows first
with a ``rank``, status and the info line count the checked rows, and a watcher republishes
``rank`` after a pull without moving rows, on both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from sheetsync._itemprogress import no_progress
from sheetsync.cli import cli
from sheetsync.errors import SheetValidationError
from sheetsync.project import Project
from sheetsync.sheets.base import INFO_PREFIX
from sheetsync.sheets.local import header_row
from sheetsync.watch import Watcher, WatchSettings

try:
    from tests._google_project import ALICE, init_google_project, open_google_project
    from tests._sheets_standin import SheetsStandin, standin_client, token_credentials
except ImportError:  # tests/ is not a package
    from _google_project import ALICE, init_google_project, open_google_project
    from _sheets_standin import SheetsStandin, standin_client, token_credentials


@pytest.fixture
def local(data_root: Path, tmp_path: Path) -> Project:
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    project.push()
    return project


def edit_workbook(project: Project, changes: dict[str, dict[str, object]]) -> None:
    """Type into cells by id and save, as a person in a spreadsheet program would."""
    path = project.config.resolve(project.config.local.path)
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    for r in range(head + 1, ws.max_row + 1):
        for column, value in changes.get(ws.cell(r, header.index("id") + 1).value, {}).items():
            ws.cell(r, header.index(column) + 1).value = value
    wb.save(path)


def ranks(project: Project) -> dict[str, int]:
    sheet = project.backend.read_table()
    return {i: int(r) for i, r in zip(sheet["id"], sheet["rank"], strict=True)}


def run_once(project: Project) -> None:
    fresh = Project.open(project.config.project_dir, progress=no_progress,
                         backend=project.backend)
    Watcher(fresh, WatchSettings(once=True, quiet=0, train=False), lambda e: None).run()


def test_push_writes_unticked_boxes_and_the_rank_in_row_order(local: Project) -> None:
    sheet = local.backend.read_table()
    assert set(sheet["checked"]) == {"FALSE"}
    assert sheet["rank"].astype(int).tolist() == list(range(1, len(sheet) + 1))
    wb = load_workbook(local.config.resolve(local.config.local.path))
    ws = wb["data"]
    col = [c.value for c in ws[header_row(ws)]].index("checked") + 1
    assert ws.cell(header_row(ws) + 1, col).value is False  # a boolean cell, not text
    # ... shown as FALSE (LibreOffice shows a boolean under the General format as 0)
    assert ws.cell(header_row(ws) + 1, col).number_format == '"TRUE";"TRUE";"FALSE"'
    rules = [dv for dv in ws.data_validations.dataValidation
             if dv.formula1 == '"TRUE,FALSE"']
    assert len(rules) == 1


def test_ticks_and_relabels_are_kept_and_push_puts_checked_rows_last(local: Project) -> None:
    sheet = local.backend.read_table()
    first, second, third = sheet["id"].iloc[:3]
    label = sheet.set_index("id").at[second, "label"]
    other = next(c for c in local.config.classes if c != label)
    edit_workbook(local, {first: {"checked": True}, second: {"label": other},
                          third: {"checked": "true"}})
    result = local.pull()
    assert result.version is not None
    m = local.versions.load("latest").set_index("id")
    assert (m.at[first, "checked"], m.at[third, "checked"]) == ("TRUE", "TRUE")
    status = local.status()
    assert (status.checked, status.checked_problems) == (3, 1)
    local.push()
    after = local.backend.read_table()
    assert set(after["id"].iloc[-3:]) == {first, second, third}  # checked rows after the rest
    assert after.set_index("id").loc[[first, third], "checked"].tolist() == ["TRUE", "TRUE"]
    assert after["rank"].astype(int).tolist() == list(range(1, len(after) + 1))
    wb = load_workbook(local.config.resolve(local.config.local.path))
    info = str(wb["data"].cell(1, 1).value)
    assert info.startswith(INFO_PREFIX) and "3 rows checked (1 relabelled or dropped, 2 right)" in info
    out = CliRunner().invoke(cli, ["-C", str(local.config.project_dir), "status"],
                             catch_exceptions=False)
    # Counted from the labels the newest predictions judged: here none, so the first version's.
    assert "review since v1: 3 rows checked (1 relabelled or dropped, 2 right)" in out.output
    # Unticking is an edit too, and the next pull records it; a checkout brings the tick back.
    ticked = local.versions.latest()
    assert ticked is not None
    edit_workbook(local, {first: {"checked": False}})
    local.pull()
    assert local.versions.load("latest").set_index("id").at[first, "checked"] == ""
    assert local.status().checked == 2
    local.checkout(str(ticked.version))
    assert local.versions.load("latest").set_index("id").at[first, "checked"] == "TRUE"


def test_a_checked_cell_that_is_not_true_or_false_is_refused_naming_its_row(local: Project) -> None:
    sheet = local.backend.read_table()
    edit_workbook(local, {sheet["id"].iloc[1]: {"checked": "maybe"},
                          sheet["id"].iloc[0]: {"checked": True}})
    with pytest.raises(SheetValidationError) as e:
        local.pull()
    assert [(p.row, p.column) for p in e.value.problems] == [(sheet.index[1], "checked")]
    assert "'maybe' is not TRUE or FALSE" in str(e.value)
    assert "checked" not in local.versions.load("latest").columns  # nothing applied


def test_watch_republishes_the_rank_after_a_pull_without_moving_rows(local: Project) -> None:
    before = local.backend.read_table()
    order = list(before["id"])
    top = order[0]
    edit_workbook(local, {top: {"checked": True}, order[3]: {"note": "seen"}})
    run_once(local)  # the pull
    run_once(local)  # the republish
    after = local.backend.read_table()
    assert list(after["id"]) == order  # the rows stay where people have them
    rank = ranks(local)
    assert rank[top] == len(order)  # the checked row goes after every unchecked one
    assert [rank[i] for i in order[1:]] == list(range(1, len(order)))
    assert after.set_index("id").at[order[3], "note"] == "seen"
    # A cell that is no tick waits, and its row says why; the other rows' ranks stay.
    edit_workbook(local, {order[1]: {"checked": "maybe"}})
    run_once(local)
    status = local.backend.read_table().set_index("id").at[order[1], "sync_status"]
    assert "checked: 'maybe' is not TRUE or FALSE" in status
    assert local.versions.load("latest").set_index("id").at[order[1], "checked"] == ""


# ---- Google, through the Sheets API stand-in -----------------------------------------------


@pytest.fixture
def api() -> Any:
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def google(api: SheetsStandin, data_root: Path, tmp_path: Path) -> Project:
    proj = init_google_project(api, data_root, tmp_path / "gproj", max_retries=2)
    project = open_google_project(api, proj, no_waits=True)
    project.push()
    return project


def type_cells(api: SheetsStandin, project: Project, changes: dict[str, dict[str, Any]]) -> None:
    sid = project.backend.spreadsheet_id
    ws = standin_client(api, token_credentials(api, ALICE)).open_by_key(sid).worksheet("data")
    values = ws.get_all_values()
    head = 2 if values and values[0][0].startswith(INFO_PREFIX) else 1
    header = values[head - 1]
    for r, row in enumerate(values[head:], start=head + 1):
        for column, value in changes.get(row[header.index("id")], {}).items():
            ws.update_cell(r, header.index(column) + 1, value)


def test_google_checked_is_a_checkbox_and_watch_republishes_the_rank(
        api: SheetsStandin, google: Project) -> None:
    sid = google.backend.spreadsheet_id
    values = api.values(sid, "data", "UNFORMATTED_VALUE")
    header = values[1]
    col = header.index("checked")
    assert {row[col] for row in values[2:]} == {False}  # booleans, not text
    rules = [v for v in api.sheet(sid, "data").validation if v["c0"] == col]
    assert [r["rule"]["condition"]["type"] for r in rules] == ["BOOLEAN"]
    order = list(google.backend.read_table()["id"])
    type_cells(api, google, {order[0]: {"checked": True}})
    run_once(google)  # the pull
    assert google.versions.load("latest").set_index("id").at[order[0], "checked"] == "TRUE"
    run_once(google)  # the republish
    assert list(google.backend.read_table()["id"]) == order
    rank = ranks(google)
    assert rank[order[0]] == len(order)
    assert [rank[i] for i in order[1:]] == list(range(1, len(order)))


def test_after_a_pull_the_watcher_republishes_the_rank_before_it_trains() -> None:
    """The new order is out in seconds; the training (minutes) comes after it."""
    from sheetsync.watch import Observation, WatchState, plan

    pulled = WatchState(published_key="v2/1 score(s)")
    seen = Observation(frozenset(), 3, False, "v3/1 score(s)")  # a new version, not trained
    step = plan(pulled, seen, 0.0, WatchSettings(quiet=0))
    assert step.action == "republish"
    step = plan(step.state if step.action != "republish" else
                WatchState(published_key=step.key), seen, 1.0, WatchSettings(quiet=0))
    assert step.action == "train"


def store_fold_run(project: Project, seed: int = 0) -> None:
    """Out-of-sample predictions of the latest version as `predict` stores them (one fold
    seed, two folds), with made-up numbers: the re-rank's inputs without training."""
    import numpy as np
    import pandas as pd

    from sheetsync.review import LATEST, OutOfSample

    info = project.versions.latest()
    assert info is not None
    ids = list(project.versions.load(info.version)["id"].astype(str))
    classes = list(project.config.classes)
    rng = np.random.default_rng(seed)
    probs = pd.DataFrame(rng.dirichlet(np.ones(len(classes)), len(ids)), index=ids, columns=classes)
    emb = pd.DataFrame(rng.normal(size=(len(ids), 8)), index=ids)
    dist = pd.DataFrame(rng.random((len(ids), len(classes))) * 3, index=ids, columns=classes)
    fold = pd.Series(np.arange(len(ids)) % 2, index=ids, name="fold")
    project.store.oos_dir.mkdir(parents=True, exist_ok=True)
    OutOfSample(probs, emb, dist, fold).save(project.store.oos_dir / LATEST)
    project.store.save_predictions(info.version, "oos", ids, classes, probs.to_numpy(),
                                   emb.to_numpy(), dist.to_numpy())


def test_with_predictions_the_order_is_learned_from_ticks_relabels_and_drops(local: Project) -> None:
    store_fold_run(local)
    local.push()
    sheet = local.backend.read_table()
    ids = list(sheet["id"])
    labels = sheet.set_index("id")["label"]
    changes: dict[str, dict[str, object]] = {i: {"checked": True} for i in ids[:8]}
    for i in ids[8:10]:
        changes[i] = {"label": next(c for c in local.config.classes if c != labels[i])}
    for i in ids[10:12]:
        changes[i] = {"action": "drop"}
    edit_workbook(local, changes)
    local.pull()
    assert (local.status().checked, local.status().checked_problems) == (12, 4)
    local.push()
    after = local.backend.read_table()
    assert set(after["id"].iloc[-12:]) == set(ids[:12])  # the checked rows last
    assert after["rank"].astype(int).tolist() == list(range(1, len(after) + 1))
    info = str(load_workbook(local.config.resolve(local.config.local.path))["data"].cell(1, 1).value)
    assert "12 rows checked (4 relabelled or dropped, 8 right)" in info
