"""`sheetsync watch`: the pure planner, own-column writes that never touch a person's cell
(workbook and the Sheets API stand-in, with a collaborator sorting between read and write),
held-back invalid rows, locks, 429/5xx bursts, and `watch --once` through the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from sheetsync._itemprogress import no_progress
from sheetsync._words import watch_event_text
from sheetsync.cli import cli
from sheetsync.errors import BackendError, WatchError
from sheetsync.project import Project
from sheetsync.results import TrainOutcome
from sheetsync.sheets.base import INFO_PREFIX
from sheetsync.sheets.local import LocalBackend, header_row
from sheetsync.versions import now_iso
from sheetsync.watch import (
    GONE,
    Event,
    Observation,
    Watcher,
    WatchSettings,
    WatchState,
    edit_cells,
    plan,
    refuse_if_watched,
    watcher_lock,
)

try:
    from tests._google_project import ALICE, init_google_project, open_google_project
    from tests._sheets_standin import SheetsStandin, standin_client, token_credentials
except ImportError:  # tests/ is not a package
    from _google_project import ALICE, init_google_project, open_google_project
    from _sheets_standin import SheetsStandin, standin_client, token_credentials

OWN = ["predicted", "why", "sync_status"]


# ---- the planner (pure) -----------------------------------------------------------------


def obs(edits: set[tuple[str, str, str]] = frozenset(), trained: bool = True,
        key: str = "k") -> Observation:
    return Observation(frozenset(edits), 2, trained, key)


def test_plan_waits_for_quiet_then_pulls_once_then_trains_then_republishes() -> None:
    s = WatchSettings(quiet=30)
    state = WatchState(published_key="k")
    e1 = {("a", "label", "ii")}
    p = plan(state, obs(e1), 100.0, s)
    assert p.action == "wait"
    p = plan(p.state, obs(e1 | {("b", "note", "x")}), 125.0, s)  # a new edit restarts the clock
    assert p.action == "wait" and p.state.changed_at == 125.0
    p = plan(p.state, obs(e1 | {("b", "note", "x")}), 150.0, s)
    assert p.action == "wait"
    p = plan(p.state, obs(e1 | {("b", "note", "x")}), 155.0, s)
    assert p.action == "pull"
    # Until a pull applied or held them (Watcher.do_pull marks them attempted), they are
    # pulled again; then the same (held-back) edits wait until someone changes them.
    assert plan(p.state, obs(e1 | {("b", "note", "x")}), 156.0, s).action == "pull"
    pulled = dataclasses.replace(p.state, attempted=p.state.edits)
    again = plan(pulled, obs(e1 | {("b", "note", "x")}, trained=False), 999.0, s)
    assert again.action == "train"
    assert plan(again.state, obs(trained=True, key="new"), 1000.0, s).action == "republish"
    assert plan(replace_key(again.state, "new"), obs(key="new"), 1000.0, s).action == "idle"


def replace_key(state: WatchState, key: str) -> WatchState:
    return dataclasses.replace(state, published_key=key)


def test_plan_does_not_train_while_edits_settle_and_respects_no_train() -> None:
    p = plan(WatchState(), obs({("a", "label", "i")}, trained=False), 0.0, WatchSettings(quiet=5))
    assert p.action == "wait"
    p = plan(WatchState(published_key="k"), obs(trained=False), 0.0, WatchSettings(train=False))
    assert p.action == "idle"


def test_edit_cells_are_keyed_by_id_so_a_sort_is_no_edit() -> None:
    published = pd.DataFrame({"id": ["a", "b"], "split": ["train", "val"], "label": ["i", "ii"],
                              "action": ["keep", "keep"], "note": ["", ""]})
    sheet = pd.DataFrame({"id": ["b", "a"], "path": ["p", "q"], "split": ["val", "train"],
                          "label": ["ii", " I "], "action": ["", "keep"], "note": ["", "hm"],
                          "predicted": ["x", "y"]}, index=[2, 3])
    assert edit_cells(sheet, published) == {("a", "note", "hm")}


# ---- the workbook --------------------------------------------------------------------------


@pytest.fixture
def local(data_root: Path, tmp_path: Path) -> Project:
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    project.push()
    return project


def workbook(project: Project) -> Path:
    return project.config.resolve(project.config.local.path)


def edit_workbook(path: Path, changes: dict[str, dict[str, object]]) -> None:
    """Type into cells by id and save, as a person in a spreadsheet program would."""
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)  # 2 below the review sheet's info line
    header = [c.value for c in ws[head]]
    for r in range(head + 1, ws.max_row + 1):
        for column, value in changes.get(ws.cell(r, header.index("id") + 1).value, {}).items():
            ws.cell(r, header.index(column) + 1).value = value
    wb.save(path)


def sort_workbook(path: Path, column: str, reverse: bool = True) -> None:
    """Sort every data row by one column, as a person would."""
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)  # 2 below the review sheet's info line
    header = [c.value for c in ws[head]]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=head + 1)]
    rows.sort(key=lambda r: str(r[header.index(column)] or ""), reverse=reverse)
    for r, values in enumerate(rows, start=head + 1):
        for c, v in enumerate(values, start=1):
            ws.cell(r, c).value = v
    wb.save(path)


def sheet_by_id(backend: Any) -> pd.DataFrame:
    return backend.read_table().set_index("id")


def updates_for(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"predicted": [f"p-{i}" for i in ids], "why": [f"w-{i}" for i in ids],
                         "sync_status": ""}, index=ids)


class SortingBackend(LocalBackend):
    """The workbook, with a person sorting and saving right after sheetsync's first read."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reads = 0

    def read_table(self) -> pd.DataFrame | None:
        frame = super().read_table()
        self.reads += 1
        if self.reads == 1:
            sort_workbook(self.path, "id")
            edit_workbook(self.path, {frame["id"].iloc[0]: {"note": "typed meanwhile"}})
        return frame


def test_workbook_own_columns_survive_a_sort_and_a_save_between_read_and_write(local: Project) -> None:
    path = workbook(local)
    ids = list(local.backend.read_table()["id"])
    edit_workbook(path, {ids[1]: {"label": "iii", "note": "Alice"}})
    backend = SortingBackend(path, root=local.config.root)
    _, sheet_layout, _, _ = local.review_table()
    result = backend.update_own_columns(updates_for(ids), sheet_layout)
    assert result.repairs == 1  # the save meanwhile made it start again from the new file
    after = sheet_by_id(backend)
    assert list(backend.read_table()["id"]) == sorted(ids, reverse=True)  # their sort kept
    assert after.at[ids[0], "note"] == "typed meanwhile"  # their save kept
    assert (after.at[ids[1], "label"], after.at[ids[1], "note"]) == ("iii", "Alice")
    for i in ids:
        assert (after.at[i, "predicted"], after.at[i, "why"]) == (f"p-{i}", f"w-{i}")


def test_workbook_is_never_written_while_a_program_holds_its_lock(local: Project) -> None:
    from sheetsync.sheets.local import WorkbookLockedError

    path = workbook(local)
    before = path.read_bytes()
    lock = path.with_name(f".~lock.{path.name}#")
    lock.write_text("alice")
    with pytest.raises(WorkbookLockedError):
        local.backend.update_own_columns(updates_for(["x"]), local.review_table()[1])
    assert path.read_bytes() == before


FLAG_RGB = "FFFFE699"  # the review's highlight (as in test_reviewscreen)


def test_workbook_republish_keeps_the_review_sheet_layout_a_push_makes(
        data_root: Path, tmp_path: Path, blank_png: Path) -> None:
    import shutil

    shutil.copy(blank_png, data_root / "train" / "i" / "blank.png")  # a row the review flags
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    project.push()
    path = workbook(project)
    sort_workbook(path, "path")  # the flagged row is elsewhere now
    ids = list(project.backend.read_table()["id"])
    _, sheet_layout, _, _ = project.review_table()
    result = project.backend.update_own_columns(updates_for(ids), sheet_layout)
    assert result.updated == len(ids) and result.repairs == 0
    ws = load_workbook(path)["data"]
    assert header_row(ws) == 2 and ws["A1"].value == sheet_layout.info
    assert ws["A1"].value.startswith(INFO_PREFIX) and "1 blank" in ws["A1"].value
    assert [str(r) for r in ws.merged_cells.ranges] == ["A1:J1"]
    assert ws.freeze_panes == "C3" and ws.print_title_rows == "$1:$2"
    header = [c.value for c in ws[2]]
    col = {name: i + 1 for i, name in enumerate(header)}
    letter = {name: ws.cell(2, c).column_letter for name, c in col.items()}
    assert [ws.cell(r, col["id"]).value for r in range(3, ws.max_row + 1)] == ids  # order kept
    assert ws[f"{letter['confidence']}3"].number_format == "0%"
    url = ws.cell(3, col["url"])
    assert url.hyperlink is not None and url.hyperlink.target == url.value
    flagged = [r for r in range(3, ws.max_row + 1)
               if ws.cell(r, col["label"]).fill.fgColor.rgb == FLAG_RGB]
    assert [ws.cell(r, col["path"]).value for r in flagged] == ["train/i/blank.png"]
    after = sheet_by_id(project.backend)
    for i in ids:
        assert (after.at[i, "predicted"], after.at[i, "why"]) == (f"p-{i}", f"w-{i}")


def run_once(project: Project, **settings: Any) -> list[Event]:
    events: list[Event] = []
    fresh = Project.open(project.config.project_dir, progress=no_progress)
    Watcher(fresh, WatchSettings(once=True, **settings), events.append).run()
    return events


def test_watch_holds_a_corrupt_row_applies_the_valid_one_and_says_why_in_the_sheet(local: Project) -> None:
    path = workbook(local)
    sheet = local.backend.read_table()
    good, bad = sheet["id"].iloc[0], sheet["id"].iloc[1]
    bad_label = sheet.set_index("id").at[bad, "label"]
    edit_workbook(path, {good: {"label": "iii"}, bad: {"label": "seven", "note": "also this"}})
    run_once(local, quiet=0, train=False)  # the pull
    m = local.versions.load("latest").set_index("id")
    assert m.at[good, "label"] == "iii"
    assert (m.at[bad, "label"], m.at[bad, "note"]) == (bad_label, "")  # nothing of that row
    after = sheet_by_id(local.backend)
    assert "not applied" in after.at[bad, "sync_status"] and "seven" in after.at[bad, "sync_status"]
    assert (after.at[bad, "label"], after.at[bad, "note"]) == ("seven", "also this")  # kept
    assert after.at[good, "sync_status"] == ""
    # Nothing is pulled twice; once fixed, the held row goes through and its status clears.
    versions = len(local.versions.list())
    run_once(local, quiet=0, train=False)
    assert len(local.versions.list()) == versions
    edit_workbook(path, {bad: {"label": "ii"}})
    run_once(local, quiet=0, train=False)
    m = local.versions.load("latest").set_index("id")
    assert (m.at[bad, "label"], m.at[bad, "note"]) == ("ii", "also this")
    assert sheet_by_id(local.backend).at[bad, "sync_status"] == ""


def test_watch_republish_appends_new_images_and_marks_gone_ones(local: Project) -> None:
    root = local.config.root
    sheet = local.backend.read_table().set_index("id")
    gone_id = sheet.index[0]
    (root / sheet.at[gone_id, "path"]).unlink()
    src = root / sheet.at[sheet.index[1], "path"]
    new = root / "train" / "i" / "new-one.png"
    from PIL import Image

    Image.open(src).rotate(90).save(new)
    run_once(local, quiet=0, train=False)
    after = local.backend.read_table()
    assert len(after) == len(sheet) + 1
    assert "new-one.png" in after["path"].str.cat()
    assert after.set_index("id").at[gone_id, "sync_status"] == GONE
    assert after.set_index("id").at[gone_id, "path"] == sheet.at[gone_id, "path"]  # kept
    assert not edit_cells(after, local.store.read_published())  # the appended row is no "edit"


def test_second_watcher_and_a_command_are_refused(local: Project, tmp_path: Path) -> None:
    state = local.store.watch_lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from sheetsync.watch import watcher_lock\n"
        f"with watcher_lock(Path({str(state)!r})):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WatchError, match="another `sheetsync watch`"), watcher_lock(state):
            pass
        with pytest.raises(WatchError, match="is running on this project"):
            refuse_if_watched(state)
        result = CliRunner().invoke(cli, ["-C", str(local.config.project_dir), "pull"])
        assert result.exit_code == 1 and "stop it first" in result.output
    finally:
        holder.kill()
        holder.wait()
    refuse_if_watched(state)  # released with its process


def test_watch_once_cli_pulls_republishes_and_writes_health(local: Project) -> None:
    sheet = local.backend.read_table()
    a = sheet["id"].iloc[2]
    edit_workbook(workbook(local), {a: {"action": "drop", "note": "blurry"}})
    args = ["-C", str(local.config.project_dir), "watch", "--once", "--quiet", "0", "--no-train",
            "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line)["event"] for line in result.output.splitlines()]
    assert events == ["started", "pulling", "pulled", "stopped"]
    result = CliRunner().invoke(cli, args)
    events = [json.loads(line)["event"] for line in result.output.splitlines()]
    assert events == ["started", "republished", "stopped"]
    m = local.versions.load("latest").set_index("id")
    assert (m.at[a, "action"], m.at[a, "note"]) == ("drop", "blurry")
    after = sheet_by_id(local.backend)
    assert (after.at[a, "action"], after.at[a, "note"]) == ("drop", "blurry")
    assert ".sheetsync-dropped" in after.at[a, "path"]  # own column republished
    health = json.loads(local.store.watch_health.read_text())
    assert health["ok"] and health["cycles"] == 1
    # The republished path is the new base of the pull's row check: the next edit goes through.
    b = sheet["id"].iloc[3]
    edit_workbook(workbook(local), {b: {"note": "next"}})
    result = CliRunner().invoke(cli, args)
    events = [json.loads(line)["event"] for line in result.output.splitlines()]
    assert events == ["started", "pulling", "pulled", "stopped"], result.output
    assert local.versions.load("latest").set_index("id").at[b, "note"] == "next"


# ---- training, injected at the edge ----------------------------------------------------------


def fake_trainer(project: Project, during: Any = None) -> Any:
    """Writes the score row a training of the latest version would; ``during`` acts meanwhile."""
    calls: list[int] = []

    def train(on_epoch: Any) -> Any:
        info = project.versions.latest()
        assert info is not None
        if during is not None:
            during(len(calls))
        on_epoch(1, 1, {})
        row = {"version": info.version, "time": now_iso(), "best_val_accuracy": 0.5,
               "test_accuracy": "", "epochs": 1}
        project.scores.append(row)
        project.backend.append_score(row)
        calls.append(info.version)
        return TrainOutcome(info, row, False, project.backend.describe())

    train.calls = calls  # type: ignore[attr-defined]
    return train


def test_an_edit_during_training_queues_exactly_one_more_run(local: Project) -> None:
    path = workbook(local)
    sheet = local.backend.read_table()
    ids = list(sheet["id"])
    relabel = "i" if sheet["label"].iloc[0] != "i" else "ii"
    moved = "val" if sheet["split"].iloc[4] == "train" else "train"
    edit_workbook(path, {ids[0]: {"label": relabel}})
    project = Project.open(local.config.project_dir, progress=no_progress)

    def during(n: int) -> None:
        if n == 0:  # while v2 trains, Alice edits twice
            edit_workbook(path, {ids[3]: {"note": "first"}})
            edit_workbook(path, {ids[3]: {"note": "second"}, ids[4]: {"split": moved}})

    trainer = fake_trainer(project, during)
    watcher = Watcher(project, WatchSettings(quiet=0, once=True), lambda e: None, trainer)
    actions = [watcher.cycle() for _ in range(10)]
    # The new version's columns (its rank) go out before each training (issue 24).
    assert actions[:8] == ["pull", "republish", "train", "pull", "republish", "train",
                           "republish", "idle"]
    assert set(actions[8:]) == {"idle"}
    assert trainer.calls == [2, 3]  # one run per version, never two at once
    scores = project.backend.read_scores()
    assert scores["version"].tolist() == ["2", "3"]
    m = project.versions.load("v3").set_index("id")
    assert (m.at[ids[0], "label"], m.at[ids[3], "note"]) == (relabel, "second")
    assert m.at[ids[4], "split"] == moved
    assert len(project.versions.list()) == 3  # each edit applied once ("first" never settled)


def test_stop_requested_during_training_abandons_it_without_a_score_row(local: Project) -> None:
    project = Project.open(local.config.project_dir, progress=no_progress)
    watcher: Watcher

    def stop_now(n: int) -> None:
        watcher.stop.requested = True  # what SIGTERM does

    watcher = Watcher(project, WatchSettings(quiet=0), lambda e: None,
                      fake_trainer(project, stop_now))
    result = watcher.run()
    assert result.abandoned_training and not len(project.scores.read())


# ---- Google, through the Sheets API stand-in -----------------------------------------------


@pytest.fixture
def api():
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def google(api: SheetsStandin, data_root: Path, tmp_path: Path) -> Project:
    proj = init_google_project(api, data_root, tmp_path / "gproj", max_retries=2)
    project = open_google(api, proj)
    project.push()
    return project


def open_google(api: SheetsStandin, proj: Path) -> Project:
    return open_google_project(api, proj, no_waits=True)


def alice(api: SheetsStandin, project: Project) -> Any:
    sid = project.backend.spreadsheet_id
    return standin_client(api, token_credentials(api, ALICE)).open_by_key(sid).worksheet("data")


def type_cells(ws: Any, changes: dict[str, dict[str, str]]) -> None:
    values = ws.get_all_values()
    head = 2 if values and values[0][0].startswith(INFO_PREFIX) else 1  # below the info line
    header = values[head - 1]
    for r, row in enumerate(values[head:], start=head + 1):
        for column, value in changes.get(row[header.index("id")], {}).items():
            ws.update_cell(r, header.index(column) + 1, value)


def test_google_own_columns_repaired_after_a_sort_between_write_and_read_back(
        api: SheetsStandin, google: Project) -> None:
    sid = google.backend.spreadsheet_id
    ids = list(google.backend.read_table()["id"])
    type_cells(alice(api, google), {ids[0]: {"label": "iii", "note": "Alice"}})
    header = google.backend.read_table().columns.tolist()
    # Alice sorts the whole table between sheetsync's read and its write.
    api.before_next("values:batchUpdate", lambda a: a.sort_rows(sid, "data", header.index("path"),
                                                                descending=True))
    api.reset_counts()
    _, sheet_layout, _, _ = google.review_table()
    result = google.backend.update_own_columns(updates_for(ids), sheet_layout)
    assert result.repairs == 1 and result.updated == len(ids)
    assert (api.reads, api.writes) == (4, 2)  # read, write, read ids; read, write, read ids
    after = sheet_by_id(google.backend)
    assert (after.at[ids[0], "label"], after.at[ids[0], "note"]) == ("iii", "Alice")
    for i in ids:
        assert (after.at[i, "predicted"], after.at[i, "why"]) == (f"p-{i}", f"w-{i}")
    paths = google.backend.read_table()["path"].tolist()
    assert paths == sorted(paths, reverse=True)  # their order kept


def test_google_own_columns_land_below_the_info_line(api: SheetsStandin, google: Project) -> None:
    sid = google.backend.spreadsheet_id
    before = api.values(sid, "data", "FORMULA")
    assert str(before[0][0]).startswith(INFO_PREFIX)
    ids = list(google.backend.read_table()["id"])
    _, sheet_layout, _, _ = google.review_table()
    result = google.backend.update_own_columns(updates_for(ids), sheet_layout)
    assert result.updated == len(ids) and result.not_found == ()
    values = api.values(sid, "data", "FORMULA")
    assert values[0][0] == sheet_layout.info and values[1] == before[1]  # info line, header
    header = values[1]
    for row in values[2:]:
        i = row[header.index("id")]
        assert (row[header.index("predicted")], row[header.index("why")]) == (f"p-{i}", f"w-{i}")
    assert api.sheet(sid, "data").merges == []  # none across the frozen edge (Google's rule)


def test_google_watch_rides_out_429_and_503_bursts(api: SheetsStandin, google: Project) -> None:
    ids = list(google.backend.read_table()["id"])
    type_cells(alice(api, google), {ids[1]: {"label": "iii"}})
    events: list[Event] = []
    project = open_google(api, google.config.project_dir)
    watcher = Watcher(project, WatchSettings(quiet=0, train=False), events.append)
    api.fail_next(3, 429)  # more than max_retries=2: the cycle fails, the watcher carries on
    actions = []
    for _ in range(6):
        try:
            actions.append(watcher.cycle())
        except BackendError as e:  # what run() turns into a "retry" event
            actions.append(type(e).__name__)
            api.fail_next(2, 503)  # a burst retries can absorb
    assert actions[0] == "QuotaError"
    assert "pull" in actions and actions[-1] == "idle"
    m = project.versions.load("latest").set_index("id")
    assert m.at[ids[1], "label"] == "iii"
    assert sheet_by_id(project.backend).at[ids[1], "label"] == "iii"


def test_google_corrupt_cell_is_reported_in_the_sheet_and_nothing_of_it_applied(
        api: SheetsStandin, google: Project) -> None:
    ids = list(google.backend.read_table()["id"])
    type_cells(alice(api, google), {ids[2]: {"split": "nowhere", "note": "x"}})
    project = open_google(api, google.config.project_dir)
    watcher = Watcher(project, WatchSettings(quiet=0, train=False), lambda e: None)
    assert watcher.cycle() == "pull"
    assert len(project.versions.list()) == 1
    after = sheet_by_id(project.backend)
    assert "nowhere" in after.at[ids[2], "sync_status"]
    assert (after.at[ids[2], "split"], after.at[ids[2], "note"]) == ("nowhere", "x")


# ---- the quiet period, on the workbook ------------------------------------------------------


def test_an_edit_changed_during_the_quiet_period_is_pulled_once_settled(local: Project) -> None:
    path = workbook(local)
    ids = list(local.backend.read_table()["id"])
    now = [0.0]
    project = Project.open(local.config.project_dir, progress=no_progress)
    watcher = Watcher(project, WatchSettings(quiet=30, train=False), lambda e: None,
                      clock=lambda: now[0])
    edit_workbook(path, {ids[0]: {"note": "half-typ"}})
    assert watcher.cycle() == "wait"
    now[0] = 20.0
    edit_workbook(path, {ids[0]: {"note": "half-typed, now done"}})  # still typing
    assert watcher.cycle() == "wait"
    now[0] = 45.0  # 25 s since the last change: not yet
    assert watcher.cycle() == "wait"
    assert len(project.versions.list()) == 1
    now[0] = 51.0
    assert watcher.cycle() == "pull"
    assert project.versions.load("latest").set_index("id").at[ids[0], "note"] == "half-typed, now done"
    assert [watcher.cycle() for _ in range(2)] == ["republish", "idle"]
    assert len(project.versions.list()) == 2


# ---- processes: kill -9 at points of a cycle, SIGTERM during a real training ------------------


def tree_hashes(root: Path) -> list[str]:
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
                  if p.is_file() and ".sheetsync-staging" not in p.parts)


def watch_process(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sheetsync", "-C", str(project.config.project_dir), "watch",
         "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.mark.slow
def test_kill_9_at_points_of_a_cycle_loses_nothing_and_resumes(local: Project) -> None:
    root = local.config.root
    files = tree_hashes(root)
    rng = random.Random(7)
    path = workbook(local)
    for delay in (0.3, 0.8, 1.5, 2.5, 4.0):
        sheet = local.backend.read_table()
        # Many moves at once, so that some kills land inside the journal's renames.
        edit_workbook(path, {i: {"split": rng.choice(["train", "val"]),
                                 "label": rng.choice(["i", "ii", "iii"])} for i in sheet["id"]})
        proc = watch_process(local, "--quiet", "0", "--interval", "0.1", "--no-train")
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert tree_hashes(root) == files  # every image still there, once
        for _ in range(4):  # the next runs complete (or roll back) and catch up
            done = watch_process(local, "--once", "--quiet", "0", "--no-train")
            out, _ = done.communicate(timeout=300)
            assert done.returncode == 0, out
        assert tree_hashes(root) == files
        manifest = Project.open(local.config.project_dir).versions.load("latest")
        for rel in manifest["path"]:
            assert (root / rel).is_file()
        now = Project.open(local.config.project_dir).backend.read_table()
        assert not edit_cells(now, Project.open(local.config.project_dir).store.read_published())


@pytest.mark.slow
def test_sigterm_during_a_real_training_abandons_it_and_exits_0(local: Project) -> None:
    proc = watch_process(local, "--quiet", "0", "--epochs", "300", "--interval", "0.5")
    assert proc.stdout is not None
    events = []
    for line in proc.stdout:
        events.append(json.loads(line)["event"])
        if events[-1] == "training":
            break
    time.sleep(20)  # into the epochs
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    events += [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, out
    assert events[-2:] == ["training-abandoned", "stopped"]
    assert not len(Project.open(local.config.project_dir).scores.read())
    refuse_if_watched(local.store.watch_lock)  # the lock went with it


def test_google_republish_appends_new_images_and_marks_gone_ones(
        api: SheetsStandin, google: Project) -> None:
    from PIL import Image

    root = google.config.root
    sheet = google.backend.read_table().set_index("id")
    gone_id = sheet.index[0]
    (root / sheet.at[gone_id, "path"]).unlink()
    Image.open(root / sheet.at[sheet.index[1], "path"]).rotate(90).save(root / "val/ii/new.png")
    type_cells(alice(api, google), {sheet.index[2]: {"note": "mine"}})
    project = open_google(api, google.config.project_dir)
    watcher = Watcher(project, WatchSettings(quiet=0, train=False), lambda e: None)
    assert [watcher.cycle() for _ in range(3)] == ["pull", "republish", "idle"]
    after = project.backend.read_table().set_index("id")
    assert len(after) == len(sheet) + 1
    new_id = after.index[after["path"] == "val/ii/new.png"][0]
    assert after.at[new_id, "label"] == "ii" and after.at[new_id, "sync_status"] == ""
    assert after.at[gone_id, "sync_status"] == GONE
    assert after.at[gone_id, "path"] == sheet.at[gone_id, "path"]  # only its status changes
    assert after.at[sheet.index[2], "note"] == "mine"


def test_own_ranges_leave_other_rows_alone_and_split_under_the_payload_budget() -> None:
    from sheetsync.sheets import _google_own as own

    header = {"id": 0, "predicted": 3, "why": 30}
    rows = {2: "a", 3: "b", 4: "c", 5: "a"}
    updates = pd.DataFrame({"predicted": ["x", "z"], "why": [float("nan"), None]},
                           index=["a", "c"], dtype=object)
    ranges = own.own_ranges("it's", header, rows, updates)
    assert ranges == [
        {"range": "'it''s'!D2:D4", "majorDimension": "COLUMNS", "values": [["x", None, "z"]]},
        {"range": "'it''s'!AE2:AE4", "majorDimension": "COLUMNS", "values": [["", None, None]]},
    ]
    assert [len(b) for b in own.batches(ranges * 3, 120)] == [1] * 6
    assert [len(b) for b in own.batches(ranges * 3, 10_000)] == [6]
    assert own.moved({2: "a", 4: "c"}, {2: "a", 3: "b", 4: "b"}) == [4]


def test_run_turns_a_quota_burst_into_a_retry_event_and_an_unhealthy_health_file(
        api: SheetsStandin, google: Project) -> None:
    project = open_google(api, google.config.project_dir)
    events: list[Event] = []
    api.fail_next(3, 429)
    result = Watcher(project, WatchSettings(once=True), events.append).run()
    assert [e.event for e in events] == ["started", "retry", "stopped"]
    assert "kept failing" in watch_event_text(events[1]) and "next try in" in watch_event_text(events[1])
    assert events[1].data["error"] == "QuotaError"
    health = json.loads(project.store.watch_health.read_text())
    assert health["ok"] is False and health["last_error"] == result.last_error
    events.clear()
    Watcher(project, WatchSettings(once=True, train=False), events.append).run()
    assert [e.event for e in events] == ["started", "republished", "stopped"]
    assert json.loads(project.store.watch_health.read_text())["ok"] is True


@pytest.mark.slow
def test_real_training_score_rows_match_the_versions_they_trained(local: Project) -> None:
    path = workbook(local)
    sheet = local.backend.read_table()
    ids = list(sheet["id"])
    project = Project.open(local.config.project_dir, progress=no_progress)
    edited = {"n": 0}

    def trainer(on_epoch: Any) -> Any:
        report = project.train(epochs=1, on_epoch=on_epoch)
        if edited["n"] == 0:  # Alice edits while the first training runs
            edit_workbook(path, {ids[0]: {"note": "during training"}})
        edited["n"] += 1
        return report

    watcher = Watcher(project, WatchSettings(quiet=0), lambda e: None, trainer)
    actions = [watcher.cycle() for _ in range(6)]
    # The push's rank goes out first (republish: seconds, sheetsync.rerank), then the training.
    assert actions == ["republish", "train", "pull", "republish", "train", "republish"]
    scores = project.backend.read_scores()
    assert scores["version"].tolist() == ["1", "2"]
    assert project.scores.read()["version"].astype(str).tolist() == ["1", "2"]
    assert project.versions.load("v2").set_index("id").at[ids[0], "note"] == "during training"
    after = sheet_by_id(project.backend)
    assert after.at[ids[0], "note"] == "during training"
    assert (after["predicted"] != "").all()  # republished from v2's model
