"""Issue 22: a person's edit is never lost, ignored or put on the wrong row.

One test per case of the issue, each made as a person would make it (openpyxl for the
workbook, files copied into the folders), on a real project of real PNG files.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import load_workbook

from sheetsync._itemprogress import no_progress
from sheetsync._words import watch_event_text
from sheetsync.demo import draw_numeral
from sheetsync.errors import SheetsyncError, SheetValidationError, UnpulledEditsError
from sheetsync.project import Project
from sheetsync.sheets.local import LocalBackend, header_row
from sheetsync.watch import Watcher, WatchSettings

try:
    from tests.test_watch import alice, api, edit_workbook, google, run_once, type_cells, workbook
except ImportError:  # tests/ is not a package
    from test_watch import alice, api, edit_workbook, google, run_once, type_cells, workbook

__all__ = ["api", "google"]  # fixtures


@pytest.fixture
def local(data_root: Path, tmp_path: Path) -> Project:
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    project.push()
    return project


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def add_column(path: Path, name: str, values: dict[str, str]) -> None:
    """A person adds a column ``name`` and types ``values`` (by id) into it."""
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    col = len(header) + 1
    ws.cell(head, col).value = name
    for r in range(head + 1, ws.max_row + 1):
        id_ = ws.cell(r, header.index("id") + 1).value
        if id_ in values:
            ws.cell(r, col).value = values[id_]
    wb.save(path)


def fresh(project: Project) -> Project:
    return Project.open(project.config.project_dir, progress=no_progress)


# ---- 1: a column named like an internal one ---------------------------------------------------


def test_1_a_column_people_name_hash_is_refused_by_name_and_no_hash_changes(local: Project) -> None:
    ids = list(local.backend.read_table()["id"])
    before = local.versions.load("latest").set_index("id")["hash"]
    add_column(workbook(local), "Hash", {ids[0]: "ok", ids[1]: "ok"})
    edit_workbook(workbook(local), {ids[0]: {"label": "iii"}, ids[1]: {"label": "ii"}})
    with pytest.raises(SheetValidationError) as info:
        local.pull()
    assert any(p.column == "Hash" and "rename" in p.message for p in info.value.problems)
    assert local.versions.load("latest").set_index("id")["hash"].equals(before)


# ---- 2: a failed pull is tried again -----------------------------------------------------------


def test_2_after_a_failed_pull_a_running_watcher_applies_the_edit(local: Project) -> None:
    ids = list(local.backend.read_table()["id"])
    watcher = Watcher(fresh(local), WatchSettings(quiet=0, train=False), lambda e: None)
    while watcher.cycle() != "idle":  # settled: the folders scanned, the sheet republished
        pass
    edit_workbook(workbook(local), {ids[0]: {"note": "Alice was here"}})
    pulls = []
    real = watcher.project.pull
    watcher.project.pull = lambda **kw: pulls.append(1) or real(**kw)  # type: ignore[method-assign]
    with local.store.lock(), pytest.raises(SheetsyncError, match="another sheetsync command"):
        watcher.cycle()  # the pull meets another command holding the project
    assert pulls == [1]
    assert watcher.cycle() == "pull"  # the obstacle is gone: the same edit goes through
    assert local.versions.load("latest").set_index("id").at[ids[0], "note"] == "Alice was here"


# ---- 2b: watch never hangs ---------------------------------------------------------------------


def test_2b_label_issues_forks_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork after TensorFlow's threads started can deadlock: cleanlab must run in-process."""
    import multiprocessing

    import numpy as np

    from sheetsync._signals import label_issues

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("a multiprocessing pool was started")

    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 4)  # a machine with cores to use
    monkeypatch.setattr(multiprocessing, "Pool", no_fork)
    rng = np.random.default_rng(0)
    classes = ["i", "ii", "iii"]
    labels = pd.Series(rng.choice(classes, 300))
    probs = pd.DataFrame(rng.dirichlet(np.ones(3), 300), columns=classes)
    flags = label_issues(probs, labels)
    assert len(flags) == 300 and flags.dtype == bool


def test_2b_a_cycle_past_its_time_limit_is_reported_and_the_watcher_returns(local: Project) -> None:
    import time

    def stuck(on_epoch: object) -> object:
        time.sleep(120)  # a training (or a lock wait) that never ends
        raise AssertionError("the watchdog did not stop the cycle")

    events: list = []
    # A first cycle republishes (a new rank goes out before any training), so the next is the training.
    Watcher(fresh(local), WatchSettings(once=True, quiet=0, train=False), lambda e: None).run()
    started = time.monotonic()
    result = Watcher(fresh(local), WatchSettings(once=True, quiet=0, cycle_timeout=1),
                     events.append, trainer=stuck).run()
    assert time.monotonic() - started < 30
    assert result.errors == 1 and "limit" in result.last_error
    assert [e.event for e in events][-2:] == ["error", "stopped"]


# ---- 3: refused data never becomes a column -----------------------------------------------------


def test_3_a_value_without_a_header_stays_without_one_after_the_watcher_writes(local: Project) -> None:
    path = workbook(local)
    ids = list(local.backend.read_table()["id"])
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)
    far = ws.max_column + 3  # three columns right of the last header: nothing above it
    ws.cell(head + 3, far).value = "stray"  # below the header: no header above it
    held_id = ws.cell(head + 3, [c.value for c in ws[head]].index("id") + 1).value
    wb.save(path)
    edit_workbook(path, {ids[-1] if ids[-1] != held_id else ids[0]: {"note": "valid"}})
    run_once(local, quiet=0, train=False)  # the valid note is pulled, row 5 held, status written
    ws = load_workbook(path)["data"]
    assert ws.cell(head, far).value is None and ws.cell(head + 3, far).value == "stray"
    assert "no header" in local.backend.read_table().set_index("id").at[held_id, "sync_status"]
    run_once(local, quiet=0, train=False)
    assert f"column {far}" not in local.versions.load("latest").columns


# ---- 6: a dangling link at a destination ------------------------------------------------------


def test_6_a_dangling_link_at_the_destination_neither_blocks_nor_strands_a_pull(local: Project) -> None:
    root = local.config.root
    sheet = local.backend.read_table().set_index("id")
    id_ = sheet.index[sheet["path"] == "train/i/img-0001.png"][0]
    (root / "train" / "iii" / "img-0001.png").symlink_to(root / "nowhere.png")  # dangling
    edit_workbook(workbook(local), {id_: {"label": "iii"}})
    local.pull()
    moved = root / local.versions.load("latest").set_index("id").at[id_, "path"]
    assert moved.is_file() and not moved.is_symlink() and moved.name == "img-0001-1.png"
    assert not (root / ".sheetsync-staging").exists()


def test_6_a_move_onto_a_dangling_link_is_rolled_back_at_once(tmp_path: Path) -> None:
    from sheetsync import journal as jr
    from sheetsync.errors import MoveError

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.png").write_bytes(b"x")
    (root / "b" / "x.png").symlink_to(root / "gone.png")
    journal = jr.Journal(tmp_path / "journal.json", root)
    with pytest.raises(MoveError, match="rolled back"):
        jr.carry_out(journal, [jr.Move("1", "a/x.png", "b/x.png")], jr.Commit(2, "pull"),
                     lambda: None, lambda c: c)
    assert (root / "a" / "x.png").read_bytes() == b"x" and not journal.pending
    assert not (root / jr.STAGING).exists()


# ---- 9: every bad value in sheetsync.toml is a ConfigError naming its key ------------------


@pytest.mark.parametrize("old, new, key", [
    ("thumb_size = 112", "thumb_size = 4", "thumb_size"),
    ("thumb_size = 112", 'thumb_size = "big"', "thumb_size"),
    ("thumbnails = true", 'thumbnails = "yes"', "thumbnails"),
    ('splits = [\n    "train",\n    "val",\n]', 'splits = ["train", 2]', "splits"),
    ("epochs = 100", "epochs = 0", "epochs"),
    ("batch_size = 8", "batch_size = 2.5", "batch_size"),
    ('precision = "float32"', 'precision = "float8"', "precision"),
    ("folds = 4", "folds = 1", "folds"),
    ('root = "', 'root = 3\nx = "', "root"),
])
def test_9_a_bad_value_in_the_config_names_its_key(local: Project, old: str, new: str, key: str) -> None:
    from sheetsync.config import Config
    from sheetsync.errors import ConfigError

    text = local.config.path.read_text(encoding="utf-8")
    assert old in text
    local.config.path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=key):
        Project.open(local.config.project_dir).backend.read_table()
    with pytest.raises(ConfigError):
        Config.load(local.config.project_dir)


# ---- 10: a symlinked workbook ---------------------------------------------------------------------


def test_10_a_workbook_that_is_a_link_is_written_through_the_link(local: Project, tmp_path: Path) -> None:
    path = workbook(local)
    shared = tmp_path / "shared drive" / "team.xlsx"
    shared.parent.mkdir()
    path.rename(shared)
    path.symlink_to(shared)
    ids = list(local.backend.read_table()["id"])
    edit_workbook(shared, {ids[0]: {"note": "typed on the shared copy"}})
    local.pull()
    local.push()
    assert path.is_symlink() and path.resolve() == shared.resolve()
    assert not list(shared.parent.glob(".*.tmp")) and not list(path.parent.glob(".*.tmp"))
    edit_workbook(shared, {ids[1]: {"label": "iii"}})
    local.pull()  # the pushed rows are in the shared file, so the row check passes there
    assert local.versions.load("latest").set_index("id").at[ids[1], "label"] == "iii"


# ---- 5: push and the score row never overwrite a save made meanwhile ----------------------------


class SavingMeanwhile(LocalBackend):
    """The workbook, with a person saving an edit right after sheetsync's first read."""

    def __init__(self, *args: Any, edit: dict[str, dict[str, object]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.edit, self.reads = edit, 0

    def read_table(self) -> pd.DataFrame | None:
        frame = super().read_table()
        self.reads += 1
        if self.reads == 1:
            edit_workbook(self.path, self.edit)
        return frame


def meanwhile(project: Project, edit: dict[str, dict[str, object]]) -> Project:
    cfg = project.config
    backend = SavingMeanwhile(cfg.resolve(cfg.local.path), cfg.root, edit=edit, thumbnails=False)
    return Project(cfg, progress=no_progress, backend=backend)


def test_5_a_label_saved_while_push_prepares_the_rows_is_not_overwritten(local: Project) -> None:
    ids = list(local.backend.read_table()["id"])
    with pytest.raises(UnpulledEditsError, match="saved while push prepared"):
        meanwhile(local, {ids[0]: {"label": "iii", "note": "mine"}}).push()
    row = local.backend.read_table().set_index("id").loc[ids[0]]
    assert (row["label"], row["note"]) == ("iii", "mine")
    local.pull()
    assert local.versions.load("latest").set_index("id").at[ids[0], "note"] == "mine"


def test_5_a_score_row_never_overwrites_a_save_made_meanwhile(local: Project) -> None:
    ids = list(local.backend.read_table()["id"])

    class Racing(LocalBackend):
        saved = False

        def _read_package(self) -> Any:
            package = super()._read_package()
            if not self.saved:  # the person saves between sheetsync's read and its write
                self.saved = True
                edit_workbook(self.path, {ids[0]: {"note": "saved meanwhile"}})
            return package

    cfg = local.config
    Racing(cfg.resolve(cfg.local.path), cfg.root).append_score({"version": 1, "score": 0.5})
    assert local.backend.read_table().set_index("id").at[ids[0], "note"] == "saved meanwhile"
    assert local.backend.read_scores()["score"].tolist() == ["0.5"]


def test_5_google_push_reads_again_before_writing(api: Any, google: Project) -> None:
    ids = list(google.backend.read_table()["id"])
    first = google.backend.read_table
    reads = []

    def read_then_alice_types() -> Any:
        frame = first()
        reads.append(1)
        if len(reads) == 1:
            type_cells(alice(api, google), {ids[0]: {"note": "typed meanwhile"}})
        return frame

    google.backend.read_table = read_then_alice_types  # type: ignore[method-assign]
    with pytest.raises(UnpulledEditsError, match="typed meanwhile"):
        google.push()
    assert first().set_index("id").at[ids[0], "note"] == "typed meanwhile"


# ---- 7: sync_status on the right row ------------------------------------------------------------


def test_7_a_copied_row_held_back_never_says_the_original_row_waits(local: Project) -> None:
    path = workbook(local)
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    first, copy = head + 1, ws.max_row + 1
    for col in range(1, len(header) + 1):
        ws.cell(copy, col).value = ws.cell(first, col).value
    id_ = ws.cell(first, header.index("id") + 1).value
    ws.cell(copy, header.index("label") + 1).value = "iii" if ws.cell(
        first, header.index("label") + 1).value != "iii" else "ii"
    ws.cell(first, header.index("note") + 1).value = "row 3's own edit"
    wb.save(path)
    run_once(local, quiet=0, train=False)
    assert local.versions.load("latest").set_index("id").at[id_, "note"] == "row 3's own edit"
    status = load_workbook(path)["data"].cell(first, header.index("sync_status") + 1).value
    assert status.startswith(f"row {copy} (a copy of this row's id) not applied: ")
    assert "also appears on row" in status


# ---- 12: a formula with no computed value ------------------------------------------------------


def test_12_a_note_that_is_a_formula_without_a_computed_value_is_refused_naming_the_cell(
        local: Project) -> None:
    path = workbook(local)
    ids = list(local.backend.read_table()["id"])
    wb = load_workbook(path)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    cell = ws.cell(head + 2, header.index("note") + 1)
    cell.value = '=IMPORTXML("https://example.com","//title")'  # openpyxl stores no value
    wb.save(path)
    with pytest.raises(SheetValidationError) as info:
        local.pull()
    assert any(p.row == head + 2 and f"cell {cell.coordinate}" in p.message and "IMPORTXML"
               in p.message for p in info.value.problems)
    with pytest.raises(UnpulledEditsError, match="no computed value"):
        local.push()  # it would overwrite the formula
    edit_workbook(path, {ids[0]: {"note": "fine"}})  # the watcher applies that row, holds H5's
    events = run_once(local, quiet=0, train=False)
    assert local.versions.load("latest").set_index("id").at[ids[0], "note"] == "fine"
    assert any("no computed value" in watch_event_text(e) for e in events if e.event in ("error", "retry"))
    formula = load_workbook(path)["data"][cell.coordinate].value  # never rewritten as empty
    assert formula == '=IMPORTXML("https://example.com","//title")'


# ---- 11: an edited info line -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["overtype", "clear", "insert above", "insert between"])
def test_11_the_header_is_found_where_people_left_it(local: Project, how: str) -> None:
    path = workbook(local)
    ids = list(local.backend.read_table()["id"])
    edit_workbook(path, {ids[0]: {"note": "still pulled"}})
    wb = load_workbook(path)
    ws = wb["data"]
    assert header_row(ws) == 2
    if how == "overtype":
        ws["A1"] = "Bob: please check the blurry ones first"
    elif how == "clear":
        ws["A1"] = None
    else:
        ws.insert_rows(1 if how == "insert above" else 2)
    wb.save(path)
    local.pull()
    assert local.versions.load("latest").set_index("id").at[ids[0], "note"] == "still pulled"


def test_11_a_missing_header_is_the_first_problem_named(local: Project) -> None:
    path = workbook(local)
    wb = load_workbook(path)
    ws = wb["data"]
    for cell in ws[2]:
        cell.value = None  # the whole header row cleared
    wb.save(path)
    with pytest.raises(SheetValidationError) as info:
        local.pull()
    assert "header 'id' is missing" in info.value.problems[0].message


# ---- 8: the watcher sees new image files --------------------------------------------------------


def test_8_a_new_image_copied_in_while_the_watcher_runs_gets_a_row(local: Project) -> None:
    root = local.config.root
    watcher = Watcher(fresh(local), WatchSettings(quiet=0, train=False), lambda e: None)
    for _ in range(3):
        watcher.cycle()  # settled: nothing to do
    assert watcher.cycle() == "idle"
    new = root / "train" / "i" / "copied-in.png"
    draw_numeral("i", random.Random(7)).save(new)  # a new image, copied in by a person
    actions = [watcher.cycle() for _ in range(2)]
    assert "republish" in actions
    assert "train/i/copied-in.png" in set(local.backend.read_table()["path"])


# ---- 4: derived rows that followed their source ---------------------------------------------------


def test_4_a_derived_row_that_followed_its_source_shows_it_and_takes_later_edits(local: Project) -> None:
    local.augment(budget=6, families=["hflip"])
    local.push()
    m = local.versions.load("latest").set_index("id")
    derived = m[m["source_id"].astype(str) != ""]
    child = derived[derived["label"] == "iii"].index[0] if (derived["label"] == "iii").any() \
        else derived.index[0]
    source = derived.at[child, "source_id"]
    new = "ii" if m.at[source, "label"] != "ii" else "i"
    edit_workbook(workbook(local), {source: {"label": new}})
    run_once(local, quiet=0, train=False)
    m = local.versions.load("latest").set_index("id")
    assert m.at[source, "label"] == new
    followed = m.at[child, "label"]
    sheet = local.backend.read_table().set_index("id")
    assert (sheet.at[child, "label"], sheet.at[child, "note"]) == (followed, m.at[child, "note"])
    edit_workbook(workbook(local), {child: {"note": "ok by me"}})
    run_once(local, quiet=0, train=False)
    assert local.versions.load("latest").set_index("id").at[child, "note"] == "ok by me"
    assert local.backend.read_table().set_index("id").at[child, "sync_status"] == ""
