"""Issue 22: a simulated team under faults (hypothesis.stateful), on both backends.

People edit random cells (labels, actions, notes, a column of their own, typos), sort, copy
and delete rows, add and delete image files, while sheetsync pushes, pulls and runs watch
cycles; faults are injected at the edges: a crash (a ``kill -9`` stand-in raised from the
journal's rename step, so the batch is left half done for the next command's recovery), an
OS error mid-move, a person saving the workbook while a push prepares its rows, and 429s /
timeouts from the Sheets stand-in (real HTTP to the real gspread).

After every step:
* no image file lost or duplicated (the files under the root, staging included, are the
  ones the team has: a multiset of contents);
* no cell a person typed is changed by sheetsync (compared as a pull normalises it);
* the manifest and the folders agree (every row's file is where its split/label/action say,
  with its hash), once a command ran to its end;
and after the watcher settled (a few cycles until idle): every edit a person typed is
applied, or its row's ``sync_status`` says why it waits; one more cycle changes nothing
(applied exactly once).

Budget: a few examples in the default run (``SIM_EXAMPLES``/``SIM_STEPS`` override it);
the ``slow`` variants run longer under ``make test-all``. Each run adds its counts to
``SIM_REPORT`` (a JSON lines file) when that variable is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from gspread.utils import rowcol_to_a1
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from openpyxl import load_workbook

from sheetsync import journal as jr
from sheetsync._itemprogress import no_progress
from sheetsync.dataset import location
from sheetsync.demo import draw_numeral
from sheetsync.errors import SheetsyncError
from sheetsync.project import Project
from sheetsync.sheets.local import header_row
from sheetsync.watch import Watcher, WatchSettings

try:
    from tests._google_project import ALICE, init_google_project, open_google_project
    from tests._sheets_standin import SheetsStandin, standin_client, token_credentials
except ImportError:  # tests/ is not a package
    from _google_project import ALICE, init_google_project, open_google_project
    from _sheets_standin import SheetsStandin, standin_client, token_credentials

CLASSES = ["i", "ii", "iii"]
SPLITS = ["train", "val"]
CHOICE = ("split", "label", "action")
VALUES = {
    "hash": ["ok", ""],  # a column people name like an internal one (case 1)
    "label": ["i", "ii", "iii", " III ", "Ii", "seven", ""],
    "split": ["train", "val", "VAL ", "test"],
    "action": ["keep", "drop", "DROP", "", "maybe"],
    "note": ["", "blurry", "ok by me", "=1+1", "0042", "see row 3"],
    "mine": ["", "x", "checked", "2"],
}
# Columns people type into, weighted as a team would (an own column named "hash" is rare).
COLUMNS = ["label"] * 4 + ["note"] * 3 + ["action"] * 2 + ["split"] * 2 + ["mine"] * 2 + ["hash"]
STATS: Counter[str] = Counter()


LANDED_TIMEOUT = 2.0  # seconds: the Google projects' request timeout in the simulation

class Crash(BaseException):
    """A kill -9 stand-in: raised from the journal's rename step, caught by nothing inside."""


def norm(column: str, value: str) -> str:
    """A cell as a pull reads it (choices trimmed and case-folded; empty action = keep)."""
    if column not in CHOICE:
        return value
    v = value.strip().casefold()
    return "keep" if column == "action" and v == "" else v


def valid(column: str, value: str) -> bool:
    v = norm(column, value)
    return {"label": v in CLASSES, "split": v in SPLITS, "action": v in ("keep", "drop")}.get(
        column, True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Team(RuleBasedStateMachine):
    """One project, two people, sheetsync; ``backend``: "local" or "google"."""

    backend = "local"
    api: SheetsStandin | None = None

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sheetsync-team-"))
        self.root = self.tmp / "data"
        rng = random.Random(0)
        for split in SPLITS:
            for cls in CLASSES:
                folder = self.root / split / cls
                folder.mkdir(parents=True)
                for k in range(2 if split == "train" else 1):
                    draw_numeral(cls, rng).save(folder / f"{cls}-{k}.png")
        self.files = Counter(digest(p) for p in self.root.rglob("*") if p.is_file())
        if self.backend == "google":
            assert self.api is not None
            # A short request timeout, so a write that lands and answers late (the "landed"
            # fault) times out on the client as it would against Google.
            proj = init_google_project(self.api, self.root, self.tmp / "proj", max_retries=2,
                                       timeout=LANDED_TIMEOUT)
            self.project = open_google_project(self.api, proj, no_waits=True)
        else:
            self.project, _ = Project.init(self.root, self.tmp / "proj", progress=no_progress)
        self.project.push()
        if self.backend == "google":
            assert self.api is not None
            sid = self.project.backend.spreadsheet_id  # type: ignore[attr-defined]
            self.ws = standin_client(self.api, token_credentials(self.api, ALICE)).open_by_key(
                sid).worksheet("data")
        self.typed: dict[tuple[str, str], str] = {}  # (id, column) -> what a person typed last
        self.steps = 0
        STATS["examples"] += 1

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the sheet as people see it -----------------------------------------------------

    def rows(self) -> tuple[list[str], list[list[str]]]:
        """(header, data rows as text), as sheetsync reads them."""
        sheet = self.project.backend.read_table()
        assert sheet is not None
        return [str(c) for c in sheet.columns], sheet.astype(str).values.tolist()

    def first_rows(self) -> dict[str, dict[str, str]]:
        header, rows = self.rows()
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            cells = dict(zip(header, r, strict=True))
            out.setdefault(cells.get("id", "").strip(), cells)
        return out

    def id_counts(self) -> Counter[str]:
        header, rows = self.rows()
        return Counter(r[header.index("id")].strip() for r in rows)

    def type_cell(self, id_: str, column: str, value: str) -> None:
        """A person types into the first row holding ``id_`` (adding ``column`` if missing)."""
        if self.backend == "google":
            values = self.ws.get_all_values()
            head = next(k for k, r in enumerate(values[:3]) if "id" in r)
            header = values[head]
            if column not in header:  # a column added at the right, as in the UI
                if len(header) >= self.ws.col_count:
                    self.ws.add_cols(1)
                self.ws.update_cell(head + 1, len(header) + 1, column)
                header = [*header, column]
            r = next(k for k, row in enumerate(values[head + 1:], start=head + 2)
                     if row[header.index("id")] == id_)
            # As typed into a text column: "0042" and "=1+1" stay text (RAW input).
            self.ws.update([[value]], rowcol_to_a1(r, header.index(column) + 1), raw=True)
        else:
            path = self.workbook
            wb = load_workbook(path)
            ws = wb["data"]
            head = header_row(ws)
            header = [c.value for c in ws[head]]
            if column not in header:
                ws.cell(head, len(header) + 1).value = column
                header.append(column)
            for r in range(head + 1, ws.max_row + 1):
                if ws.cell(r, header.index("id") + 1).value == id_:
                    cell = ws.cell(r, header.index(column) + 1)
                    cell.value = value
                    # A spreadsheet program keeps "=1+1" typed into a text column as text
                    # (openpyxl alone would store a formula with no value: see case 12).
                    cell.data_type = "s"
                    break
            wb.save(path)
        self.typed[(id_, column)] = value

    @property
    def workbook(self) -> Path:
        return self.project.config.resolve(self.project.config.local.path)

    def sheet_ids(self) -> list[str]:
        return [i for i in self.first_rows() if i]

    # ---- people -----------------------------------------------------------------------

    @rule(pick=st.integers(0, 10**6), column=st.sampled_from(COLUMNS), data=st.data())
    def edit(self, pick: int, column: str, data: Any) -> None:
        ids = self.sheet_ids()
        if not ids:
            return
        value = data.draw(st.sampled_from(VALUES[column]))
        self.type_cell(ids[pick % len(ids)], column, value)

    @rule()
    def rename_refused_column(self) -> None:
        """What the refusal says to do: rename the column named like an internal one."""
        if self.backend == "google":
            values = self.ws.get_all_values()
            head = next(k for k, r in enumerate(values[:3]) if "id" in r)
            if "hash" in values[head]:
                self.ws.update_cell(head + 1, values[head].index("hash") + 1, "hash (mine)")
        else:
            wb = load_workbook(self.workbook)
            ws = wb["data"]
            for cell in ws[header_row(ws)]:
                if cell.value == "hash":
                    cell.value = "hash (mine)"
            wb.save(self.workbook)
        self.typed = {(i, "hash (mine)" if c == "hash" else c): v for (i, c), v in self.typed.items()}

    @rule(column=st.sampled_from(["id", "label", "note", "path"]), reverse=st.booleans())
    def sort(self, column: str, reverse: bool) -> None:
        if self.backend == "google":
            header, _ = self.rows()
            assert self.api is not None
            self.api.sort_rows(self.project.backend.spreadsheet_id, "data",  # type: ignore[attr-defined]
                               header.index(column), descending=reverse)
            return
        wb = load_workbook(self.workbook)
        ws = wb["data"]
        head = header_row(ws)
        header = [c.value for c in ws[head]]
        rows = [[c.value for c in r] for r in ws.iter_rows(min_row=head + 1)]
        rows.sort(key=lambda r: str(r[header.index(column)] or ""), reverse=reverse)
        for r, values in enumerate(rows, start=head + 1):
            for c, v in enumerate(values, start=1):
                ws.cell(r, c).value = v
        wb.save(self.workbook)

    @precondition(lambda self: self.backend == "local")
    @rule(pick=st.integers(0, 10**6), delete=st.booleans())
    def copy_or_delete_row(self, pick: int, delete: bool) -> None:
        wb = load_workbook(self.workbook)
        ws = wb["data"]
        head = header_row(ws)
        header = [c.value for c in ws[head]]
        if ws.max_row <= head:
            return
        r = head + 1 + pick % (ws.max_row - head)
        id_ = ws.cell(r, header.index("id") + 1).value
        if delete:  # the row's typed cells go with it (a copy left behind shows its own)
            ws.delete_rows(r)
            self.typed = {k: v for k, v in self.typed.items() if k[0] != id_}
        else:
            last = ws.max_row + 1
            for c in range(1, len(header) + 1):
                ws.cell(last, c).value = ws.cell(r, c).value
        wb.save(self.workbook)

    @rule(split=st.sampled_from(SPLITS), cls=st.sampled_from(CLASSES), seed=st.integers(0, 10**6))
    def new_image(self, split: str, cls: str, seed: int) -> None:
        path = self.root / split / cls / f"new-{seed}.png"
        if path.exists():
            return
        draw_numeral(cls, random.Random(seed)).save(path)
        self.files[digest(path)] += 1

    @rule(pick=st.integers(0, 10**6))
    def delete_image(self, pick: int) -> None:
        files = sorted(p for p in self.root.rglob("*.png") if jr.STAGING not in p.parts)
        if len(files) <= 4:
            return
        path = files[pick % len(files)]
        self.files[digest(path)] -= 1
        path.unlink()

    # ---- sheetsync, with faults ---------------------------------------------------------

    def attempt(self, fn: Any) -> str:
        try:
            fn()
            return "ok"
        except SheetsyncError as e:  # a refusal or a fault said in one line: fine
            STATS[f"refused:{type(e).__name__}"] += 1
            return type(e).__name__

    @rule()
    def pull(self) -> None:
        STATS[f"pull:{self.attempt(self.project.pull)}"] += 1

    @rule()
    def push(self) -> None:
        STATS[f"push:{self.attempt(self.project.push)}"] += 1

    @rule(cycles=st.integers(1, 3))
    def watch(self, cycles: int) -> None:
        watcher = Watcher(self.reopen(), WatchSettings(quiet=0, train=False), lambda e: None)
        for _ in range(cycles):
            STATS[f"watch:{self.attempt(watcher.cycle)}"] += 1

    @rule(after=st.integers(0, 3), how=st.sampled_from(["crash", "oserror"]))
    def fault_mid_move(self, after: int, how: str) -> None:
        """A pull whose (after+1)-th rename dies (a kill) or fails (an OS error)."""
        real = jr._rename
        calls = [0]

        def rename(root: Path, src: str, dst: str) -> None:
            calls[0] += 1
            if calls[0] > after + 1:
                return real(root, src, dst)
            if calls[0] == after + 1:
                if how == "crash":
                    raise Crash()
                raise jr.MoveError(f"could not move {src} to {dst}: injected OS error")
            return real(root, src, dst)

        jr._rename = rename
        try:
            watcher = Watcher(self.reopen(), WatchSettings(quiet=0, train=False), lambda e: None)
            STATS[f"fault:{how}:{self.attempt(watcher.cycle)}"] += 1
        except Crash:
            STATS["fault:crash:killed"] += 1
        finally:
            jr._rename = real

    @precondition(lambda self: self.backend == "local")
    @rule(pick=st.integers(0, 10**6), value=st.sampled_from(["iii", "ii", "a note"]))
    def save_during_push(self, pick: int, value: str) -> None:
        """A person saves the workbook while push prepares its rows."""
        project = self.reopen()
        backend = project.backend
        read = backend.read_table
        calls = [0]

        def read_then_save() -> Any:
            frame = read()
            calls[0] += 1
            ids = self.sheet_ids() if calls[0] == 1 else []
            if ids:
                id_ = ids[pick % len(ids)]
                self.type_cell(id_, "note" if value == "a note" else "label", value)
            return frame

        backend.read_table = read_then_save  # type: ignore[method-assign]
        STATS[f"save-during-push:{self.attempt(project.push)}"] += 1

    @precondition(lambda self: self.backend == "google")
    @rule(n=st.integers(1, 4), fault=st.sampled_from([429, 503, "timeout", "landed"]))
    def api_faults(self, n: int, fault: int | str) -> None:
        assert self.api is not None
        if fault == "landed":  # the next write is applied, its answer comes after the timeout
            self.api.land_then_timeout(after=0, n=1, delay=LANDED_TIMEOUT + 0.5)
        else:
            self.api.fail_next(n, fault, delay=0.05)
        self.watch(1)
        STATS[f"api-fault:{fault}"] += 1
        self.api.fail_next(0)
        with self.api.lock:
            self.api.faults.clear()
            self.api.hangs = []

    @rule()
    def settle(self) -> None:
        """The watcher runs until idle; then every typed edit is applied or its row says why."""
        watcher = Watcher(self.reopen(), WatchSettings(quiet=0, train=False), lambda e: None)
        actions = []
        for _ in range(8):
            try:
                actions.append(watcher.cycle())
            except SheetsyncError as e:
                actions.append(type(e).__name__)
            if actions[-1] == "idle":
                break
        if actions[-1] != "idle":  # a sheet the watcher refuses as a whole (said in its log)
            STATS[f"settle:refused:{actions[-1]}"] += 1
            return
        STATS["settle:idle"] += 1
        versions = len(self.project.versions.list())
        assert watcher.cycle() == "idle" and len(self.project.versions.list()) == versions
        self.check_applied_or_held()

    # ---- invariants -------------------------------------------------------------------

    def reopen(self) -> Project:
        if self.backend == "google":
            assert self.api is not None
            return open_google_project(self.api, self.project.config.project_dir, no_waits=True)
        return Project.open(self.project.config.project_dir, progress=no_progress)

    @invariant()
    def no_file_lost_or_duplicated(self) -> None:
        self.steps += 1
        STATS["steps"] += 1
        now = Counter(digest(p) for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())
        assert +now == +self.files, "image files lost or duplicated"

    @invariant()
    def no_typed_cell_changed(self) -> None:
        rows = self.first_rows()
        for (id_, column), value in self.typed.items():
            if id_ in rows and column in rows[id_]:
                shown = rows[id_][column]
                assert norm(column, shown) == norm(column, value), (
                    f"row {id_}, {column}: typed {value!r}, the sheet shows {shown!r}")

    @invariant()
    def manifest_and_folders_agree(self) -> None:
        if jr.Journal(self.project.store.journal_path, self.root).pending:
            return  # a crash left a batch: the next command finishes it
        latest = self.project.versions.latest()
        if latest is None:
            return
        m = self.project.versions.load(latest.version)
        for id_, path, split, label, action, digest_ in zip(
                m["id"], m["path"], m["split"], m["label"], m["action"], m["hash"], strict=True):
            file = self.root / path
            if not file.exists():
                continue  # deleted by a person since the last scan
            assert digest(file) == digest_, f"{path}: not the file the manifest says"
            assert Path(path).parent == Path(location(split, label, action, "x")).parent, (
                f"{id_} at {path} but its row says {split}/{label}/{action}")

    def check_applied_or_held(self) -> None:
        rows = self.first_rows()
        counts = self.id_counts()
        m = self.project.versions.load("latest").set_index("id")
        for (id_, column), value in self.typed.items():
            if id_ not in rows or counts[id_] != 1 or id_ not in m.index:
                continue
            status = rows[id_].get("sync_status", "")
            have = str(m.at[id_, column]) if column in m.columns else ""
            if have == "nan":
                have = ""
            applied = norm(column, have) == norm(column, value)
            assert applied or status.strip(), (
                f"row {id_}, {column}: typed {value!r}, the folders say {have!r}, and the row "
                f"says nothing")
            STATS["applied" if applied else "held:" + ("typo" if not valid(column, value)
                                                       else "row has a problem")] += 1


def run_team(machine: type[Team], examples: int, steps: int) -> None:
    STATS.clear()
    started = time.monotonic()
    run_state_machine_as_test(machine, settings=settings(
        max_examples=int(os.environ.get("SIM_EXAMPLES", examples)),
        stateful_step_count=int(os.environ.get("SIM_STEPS", steps)),
        deadline=None, derandomize=os.environ.get("SIM_RANDOM") is None,
        suppress_health_check=list(HealthCheck), database=None))
    report = {"machine": machine.backend, "seconds": round(time.monotonic() - started, 1),
              **dict(STATS)}
    print(json.dumps(report))
    if os.environ.get("SIM_REPORT"):
        with open(os.environ["SIM_REPORT"], "a", encoding="utf-8") as f:
            f.write(json.dumps(report) + "\n")


class GoogleTeam(Team):
    backend = "google"


def test_team_simulation_workbook() -> None:
    run_team(Team, examples=15, steps=12)


def test_team_simulation_google() -> None:
    # Many short projects within a minute: the per-minute quota would refuse them all; 429s
    # come from the api_faults rule instead.
    with SheetsStandin(quota_per_minute=None) as api:
        GoogleTeam.api = api
        run_team(GoogleTeam, examples=6, steps=10)


@pytest.mark.slow
def test_team_simulation_workbook_long() -> None:
    run_team(Team, examples=60, steps=40)


@pytest.mark.slow
def test_team_simulation_google_long() -> None:
    with SheetsStandin(quota_per_minute=None) as api:
        GoogleTeam.api = api
        run_team(GoogleTeam, examples=20, steps=30)
