"""``sheetsync watch``: keep the sheet, the folders and the scores in step while people edit.

The guarantee, first: **the watcher never writes a cell people edit** (split, label, action,
note, columns they added) of a row already in the sheet. It pulls only edits that stayed the
same for a quiet period, applies valid rows and holds back rows with a problem (the reason is
written into that row's ``sync_status`` cell), trains once per new version (one training at a
time, in this process), appends the score row, then republishes sheetsync's own columns
matched by id (:meth:`~sheetsync.sheets.base.Backend.update_own_columns`).

One cycle is: poll (read the sheet; the workbook only when its file changed) -> :func:`plan`
(pure: what to do next given the last state and what was read) -> do that one step. State that
must survive a restart is derived from the project itself (latest version, score rows,
``published.csv``) or kept in ``.sheetsync/watch-state.json``; a move batch a kill interrupted
is completed by the journal recovery every project command runs first.

Usage::

    result = run(Project.open("."), WatchSettings(interval=10, quiet=30), log=print)
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from .errors import BackendError, Problem, SheetsyncError, WatchError
from .journal import STAGING
from .results import WatchResult
from .rows import CHECKED, CORE, EDITABLE, checked_value
from .sheets.base import row_positions
from .sync import clean_cells, normalise_header
from .versions import now_iso

if TYPE_CHECKING:
    from .project import Project
    from .results import TrainOutcome

GONE = "image gone: no file has this id any more (the row is kept; delete it if you like)"
# Sheets allows 60 reads/min/user; a cycle reads once, a republish reads 2-3 times more.
GOOGLE_MIN_INTERVAL = 3.0

Action = Literal["idle", "wait", "pull", "train", "republish"]


@dataclass(frozen=True)
class WatchSettings:
    interval: float = 10.0  # seconds between polls
    quiet: float = 30.0  # seconds an edit must stay unchanged before it is pulled
    train: bool = True  # retrain after a pull that changed something
    epochs: int | None = None  # None: [train] epochs of sheetsync.toml
    once: bool = False  # one cycle (cron, CI)
    max_backoff: float = 300.0  # longest wait after repeated errors
    # A cycle (a training: each epoch) that runs longer is stopped and reported (0: no limit);
    # see _Watchdog.
    cycle_timeout: float = 1800.0


@dataclass(frozen=True)
class Observation:
    """What one poll saw."""

    edits: frozenset[tuple[str, str, str]]  # (id, column, value) cells differing from published
    version: int  # latest dataset version
    trained: bool  # the latest version has a score row
    published_key: str  # what the sheet's own columns should reflect now


@dataclass(frozen=True)
class WatchState:
    """What the planner remembers between cycles (saved to watch-state.json)."""

    edits: tuple[tuple[str, str, str], ...] = ()
    changed_at: float = 0.0  # when ``edits`` last changed
    attempted: tuple[tuple[str, str, str], ...] | None = None  # edits at the last pull attempt
    published_key: str = ""  # what the own columns reflect
    held: dict[str, str] = field(default_factory=dict)  # id -> why its edit waits


@dataclass(frozen=True)
class Plan:
    action: Action
    state: WatchState
    edits: int = 0  # edited cells seen
    left: float = 0.0  # "wait": seconds until they have been quiet long enough
    version: int = 0  # "train": the version with no score row
    key: str = ""  # "republish": what the sheet's own columns should show


@dataclass(frozen=True)
class Event:
    """One thing the watcher did or saw: its name and typed fields; the words people read
    are made by the command line (:func:`sheetsync._words.watch_event_text`)."""

    time: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)


# ---- pure planning ---------------------------------------------------------------------


def plan(state: WatchState, seen: Observation, now: float, settings: WatchSettings) -> Plan:
    """The next step: wait for edits to settle, pull them, train, republish, or nothing."""
    edits = tuple(sorted(seen.edits))
    if edits != state.edits:
        state = replace(state, edits=edits, changed_at=now)
    if edits and edits != state.attempted:
        left = settings.quiet - (now - state.changed_at)
        if left > 0:
            return Plan("wait", state, edits=len(edits), left=left)
        # Marked as attempted only once a pull applied or held them (Watcher.do_pull): a pull
        # that fails (a lock, an OS error) is tried again on the next cycle.
        return Plan("pull", state, edits=len(edits))
    # The new rank (sheetsync.rerank) is out in seconds, before a training of minutes.
    if seen.published_key != state.published_key:
        return Plan("republish", state, key=seen.published_key)
    if settings.train and not seen.trained:
        return Plan("train", state, version=seen.version)
    return Plan("idle", state)


def edit_cells(sheet: pd.DataFrame | None, published: pd.DataFrame | None) -> frozenset[tuple[str, str, str]]:
    """Cells people changed since the last publish, keyed by id (a sort changes nothing)."""
    if sheet is None or published is None or not len(sheet):
        return frozenset()
    mapping, problems = normalise_header(sheet)
    if problems:
        return frozenset(("", "header", p.message) for p in problems)
    cells = clean_cells(sheet, mapping)
    base = published.set_index("id")
    out = set()
    for row, id_ in zip(cells.index, cells["id"].str.strip(), strict=True):
        known = id_ in base.index
        for name in cells.columns:
            if name not in EDITABLE and name in CORE:
                continue
            now = str(cells.at[row, name])
            was = str(base.at[id_, name]) if known and name in base.columns else ""
            if not known or _differs(name, now, was):
                out.add((id_, name, now))
    return frozenset(out)


def _differs(name: str, now: str, was: str) -> bool:
    if name == CHECKED:  # FALSE and an empty cell are the same: not ticked
        a, b = checked_value(now), checked_value(was)
        return (now if a is None else a) != (was if b is None else b)
    if name in ("split", "label", "action"):
        a, b = now.strip().casefold(), was.strip().casefold()
        return a != b and not (name == "action" and a == "" and b == "keep")
    return now != was


def status_messages(problems: list[Problem], sheet: pd.DataFrame) -> dict[str, str]:
    """id -> the text of its row's sync_status cell, from held-back problems.

    The cell is found by id, so it is on the id's first row: a problem of a later row with
    the same id (a copied row) says which row it is about, never that the first row's own
    edit waits."""
    ids = sheet["id"].astype(str).str.strip() if "id" in sheet.columns else pd.Series(dtype=str)
    first = row_positions(sheet)
    out: dict[str, dict[int, list[str]]] = {}
    for p in problems:
        if p.row is None or p.row not in ids.index or not ids[p.row]:
            continue
        where = f"{p.column}: " if p.column else ""
        out.setdefault(ids[p.row], {}).setdefault(p.row, []).append(f"{where}{p.message}")
    return {id_: "; ".join(
        ("not applied: " if row == first.get(id_) else f"row {row} (a copy of this row's id) "
         "not applied: ") + "; ".join(texts) for row, texts in sorted(rows.items()))
        for id_, rows in out.items()}


def own_updates(table: pd.DataFrame, sheet: pd.DataFrame, own: list[str],
                held: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(updates by id for rows in the sheet, whole rows to append) for a republish (pure)."""
    in_sheet = set(sheet["id"].astype(str).str.strip()) - {""}
    by_id = table.set_index("id", drop=False)
    present = [i for i in by_id.index if i in in_sheet]
    updates = by_id.loc[present, own].copy()
    gone = sorted(in_sheet - set(by_id.index))
    if gone:
        # Only the status changes: path, url and the rest stay as last shown.
        blank = pd.DataFrame({c: [None] * len(gone) for c in own}, index=gone, dtype=object)
        blank["sync_status"] = GONE
        updates = pd.concat([updates, blank])
    # A gone image says so (its row also fails validation, with a longer message).
    updates["sync_status"] = [s if s == GONE else held.get(str(i), s) for i, s in zip(
        updates.index, updates["sync_status"], strict=True)]
    append = table[~table["id"].isin(in_sheet)].copy()
    return updates, append


# ---- the lock: one watcher, and no command while it runs -------------------------------


@contextmanager
def watcher_lock(path: Path) -> Iterator[None]:
    """Held for the watcher's whole life (``path``: the store's watch_lock); its pid is in
    the file for messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WatchError(f"another `sheetsync watch` is running on this project "
                             f"(pid {_pid_in(path)})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


def refuse_if_watched(path: Path) -> None:
    """A command while a watcher runs would race it: refuse (the watcher's own calls pass)."""
    if not path.exists():
        return
    with path.open("r") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(path)
            if pid != str(os.getpid()):
                raise WatchError(f"`sheetsync watch` (pid {pid}) is running on this project: "
                                 "stop it first (it exits cleanly on SIGTERM or Ctrl-C)") from None
        else:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_in(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


# ---- running ----------------------------------------------------------------------------


class _Stop:
    """SIGTERM / Ctrl-C set a flag; the loop finishes its step and returns."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


class CycleTimeout(WatchError):
    """A watch cycle ran past its time limit (``--cycle-timeout``); it was stopped."""


# After the limit plus this grace a cycle that ignored the stop signal ends the process
# (a supervisor restarts it; an interrupted move batch is finished by the journal).
HUNG_GRACE = 60.0
EXIT_HUNG = 75  # EX_TEMPFAIL: try again later


class _Watchdog:
    """A time limit on each cycle: a service must never hang.

    In the main thread (the CLI), SIGALRM raises :class:`CycleTimeout` in the cycle when the
    limit passes; the loop reports it and goes on. A cycle stuck where no signal reaches it
    (a C call holding the GIL's attention elsewhere) is ended by a backstop thread after
    :data:`HUNG_GRACE`: it reports, then exits the process with :data:`EXIT_HUNG`. Training
    pets the dog once per epoch. Outside the main thread (tests driving a watcher) there is
    no limit."""

    def __init__(self, seconds: float, on_hung: Callable[[float], None]):
        self.seconds, self.on_hung = seconds, on_hung
        self.deadline = 0.0
        self.armed = False

    def pet(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            yield
            return

        def expire(signum: int, frame: Any) -> None:
            self.armed = False
            raise CycleTimeout(f"a watch cycle ran past its {self.seconds:g} s limit "
                               "(--cycle-timeout) and was stopped; the next cycle starts afresh")

        old = signal.signal(signal.SIGALRM, expire)
        done = threading.Event()
        self.armed = True
        self.pet()
        threading.Thread(target=self._backstop, args=(done,), daemon=True,
                         name="watch-watchdog").start()
        try:
            yield
        finally:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            done.set()

    def _backstop(self, done: threading.Event) -> None:
        while not done.wait(1.0):
            if time.monotonic() > self.deadline + HUNG_GRACE:
                self.on_hung(self.seconds)
                os._exit(EXIT_HUNG)


class _Abandon(Exception):
    """Raised from the epoch callback to abandon a training when asked to stop."""


def _now_iso() -> str:
    return now_iso()


class Watcher:
    """The I/O side: polls, runs the planned step, logs events, keeps the health file."""

    def __init__(self, project: Project, settings: WatchSettings, log: Callable[[Event], None],
                 trainer: Callable[[Callable[..., None]], TrainOutcome] | None = None,
                 clock: Callable[[], float] = time.time):
        self.project, self.settings, self.log, self.clock = project, settings, log, clock
        self.trainer = trainer or (lambda on_epoch: project.train(epochs=settings.epochs,
                                                                  on_epoch=on_epoch))
        self.store = project.store
        self.state = self._load_state()
        self.result = WatchResult(once=settings.once)
        self.stop = _Stop()
        self.sheet: pd.DataFrame | None = None
        self._stamp: object = None
        self._folders: str | None = None  # folder_stamp at the last scan
        self.watchdog = _Watchdog(settings.cycle_timeout, self._hung)

    # -- events and files

    def emit(self, event: str, **data: Any) -> None:
        self.log(Event(_now_iso(), event, data))

    def _load_state(self) -> WatchState:
        path = self.store.watch_state
        try:
            raw = json.loads(path.read_text())
            return WatchState(edits=tuple(tuple(e) for e in raw.get("edits", [])),
                              changed_at=float(raw.get("changed_at", 0.0)),
                              attempted=(None if raw.get("attempted") is None else
                                         tuple(tuple(e) for e in raw["attempted"])),
                              published_key=str(raw.get("published_key", "")),
                              held=dict(raw.get("held", {})))
        except (OSError, ValueError, TypeError, AttributeError):
            return WatchState()  # no (or unreadable) state: derive everything again

    def _save_state(self) -> None:
        _write_json(self.store.watch_state, asdict(self.state))

    def _health(self, error: str = "") -> None:
        path = self.store.watch_health
        try:
            old = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            old = {}
        health = {**old, "pid": os.getpid(), "last_cycle": _now_iso(),
                  "cycles": self.result.cycles, "pulls": self.result.pulls,
                  "trainings": self.result.trainings, "ok": not error}
        if error:
            health.update(last_error=error, last_error_time=_now_iso())
        _write_json(path, health)

    # -- the loop

    def run(self) -> WatchResult:
        with watcher_lock(self.store.watch_lock), self._signals():
            self.emit("started", sheet=self.project.backend.describe(),
                      interval=self.settings.interval, quiet=self.settings.quiet)
            errors = 0
            while not self.stop.requested:
                delay = self.settings.interval
                try:
                    self.result.cycles += 1
                    with self.watchdog():
                        self.cycle()
                    errors = 0
                    self._health()
                except _Abandon:
                    self.result.abandoned_training = True
                    self.emit("training-abandoned")
                    break
                except SheetsyncError as e:
                    errors += 1
                    self.result.errors += 1
                    self.result.last_error = str(e)
                    delay = min(self.settings.interval * 2 ** min(errors, 10),
                                self.settings.max_backoff)
                    self.emit("retry" if isinstance(e, BackendError) else "error",
                              error=type(e).__name__, detail=str(e), delay=delay)
                    self._health(str(e))
                if self.settings.once:
                    break
                self._sleep(delay)
            self.emit("stopped", cycles=self.result.cycles, pulls=self.result.pulls,
                      trainings=self.result.trainings)
        return self.result

    def _hung(self, seconds: float) -> None:
        """The backstop's last words: the cycle ignored its stop; the process exits."""
        detail = (f"a watch cycle ran past its {seconds:g} s limit and did not stop within "
                  f"{HUNG_GRACE:g} s more; exiting (exit code {EXIT_HUNG}) so that a supervisor "
                  "restarts the watcher")
        self.emit("hung", detail=detail)
        self._health(detail)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        try:
            old = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread (tests drive it from a thread): no handlers
            yield
            return
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop.requested and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def cycle(self) -> Action:
        seen = self.poll()
        step = plan(self.state, seen, self.clock(), self.settings)
        self.state = step.state
        if step.action == "wait":
            self.emit("waiting", edits=step.edits, left=step.left)
        elif step.action == "pull":
            self.do_pull(step)
        elif step.action == "train":
            self.do_train(step)
        elif step.action == "republish":
            self.do_republish(seen.published_key)
        self._save_state()
        return step.action

    def poll(self) -> Observation:
        project = self.project
        folders = folder_stamp(project.config.root)
        if folders != self._folders:  # files added, removed or moved: new rows, gone rows
            project.rescan()
            self._folders = folders
        if self._stale():
            self.sheet = project.backend.read_table()
            if self.sheet is None:
                self.emit("push")  # the sheet has no data yet
                project.push()
                self.sheet = project.backend.read_table()
        latest = project.versions.latest()
        version = latest.version if latest else 0
        scores = project.scores.read()
        trained = bool(len(scores)) and str(version) in set(scores["version"].astype(str))
        return Observation(edit_cells(self.sheet, project.store.read_published()), version, trained,
                           f"v{version}/{len(scores)} score(s)")

    def _stale(self) -> bool:
        """Read again? Always for Google; for the workbook only when its file changed."""
        backend = self.project.backend
        path = getattr(backend, "path", None)
        if path is None or self.sheet is None:
            self._stamp = None
            return True
        try:
            st = Path(path).stat()
            stamp: object = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        changed = stamp != self._stamp
        self._stamp = stamp
        return changed

    def do_pull(self, step: Plan) -> None:
        assert self.sheet is not None
        self.emit("pulling", edits=step.edits, quiet=self.settings.quiet)
        result = self.project.pull(sheet=self.sheet, hold_invalid=True)
        if result.recovered is not None:
            self.emit("recovered", **asdict(result.recovered))
        if result.skipped:
            self.emit("skipped", files=[asdict(f) for f in result.skipped])
        for w in result.notices:
            self.emit("warning", text=w)
        held = list(result.held)
        messages = status_messages(held, self.sheet)
        if held:
            self.emit("validation", problems=[str(p) for p in held])
        if result.version is not None:
            self.result.pulls += 1
            self.emit("pulled", version=result.version.version, name=result.version.name,
                      edited=result.edited)
        else:
            self.emit("pulled", version=None)
        if result.followed and result.version is not None:
            self.show_followed([f.id for f in result.followed])
        # Edits left (the held rows') count as attempted until someone changes them again.
        left = tuple(sorted(edit_cells(self.sheet, self.project.store.read_published())))
        if messages != self.state.held:
            self.write_statuses(messages, self.state.held)
        self.state = replace(self.state, held=messages, edits=left, attempted=left)
        self._stamp = None  # read again next cycle: the sheet is the base for what follows

    def show_followed(self, ids: list[str]) -> None:
        """Derived rows that followed their source show their new label, action and note
        (each row only while it still shows what was published: a newer edit wins)."""
        cols = ["label", "action", "note"]
        now = self.project.versions.load("latest").set_index("id").reindex(ids)[cols]
        published = self.project.store.read_published()
        if published is None:
            return
        shown = published.set_index("id").reindex(ids)[cols].fillna("")
        _, sheet_layout, _, _ = self.project.review_table()
        written = self.project.backend.update_followed(now.astype(str), shown, sheet_layout)
        if written:
            self.project.published_followed(now.loc[written].astype(str))
        self.emit("followed", rows=len(written), ids=written)
        self._stamp = None

    def write_statuses(self, messages: dict[str, str], before: dict[str, str]) -> None:
        """Say in the sheet why rows wait (and clear the rows fixed since); nothing else."""
        ids = sorted(set(messages) | set(before))
        updates = pd.DataFrame({"sync_status": [messages.get(i, "") for i in ids]}, index=ids)
        # The layout a push would write now: a workbook is rebuilt with its info line and
        # highlighted rows as a push makes them.
        _, sheet_layout, _, _ = self.project.review_table()
        result = self.project.backend.update_own_columns(updates, sheet_layout)
        self.emit("status", rows=result.updated, ids=ids)

    def do_train(self, step: Plan) -> None:
        def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
            self.watchdog.pet()  # the limit holds per epoch: a long training is no hang
            if self.stop.requested:
                raise _Abandon()

        self.emit("training", version=step.version)
        outcome = self.trainer(on_epoch)
        self.result.trainings += 1
        self.emit("trained", score=dict(outcome.score))
        if outcome.sheet_error:
            self.emit("score-local", detail=outcome.sheet_error)  # kept locally only

    def do_republish(self, key: str) -> None:
        project = self.project
        sheet = project.backend.read_table()  # the read republishing is matched against
        if sheet is None or "id" not in sheet.columns:
            raise BackendError(f"{project.backend.describe()} has no data sheet with an id "
                               "column; run `sheetsync push`")
        table, sheet_layout, info, source = project.review_table()
        own = [c.name for c in sheet_layout.columns if not c.editable and c.name not in
               ("id", "image")]
        updates, append = own_updates(table, sheet, own, self.state.held)
        result = project.backend.update_own_columns(updates, sheet_layout, append=append)
        project.published_own_columns(updates, append if result.appended else append.iloc[:0])
        self.result.republished += 1
        self.state = replace(self.state, published_key=key)
        gone = int((updates["sync_status"] == GONE).sum())
        self.emit("republished", **asdict(result), gone=gone, predictions=asdict(source))
        if result.missing_columns:
            self.emit("missing-columns", columns=list(result.missing_columns))
        self._stamp = None


def folder_stamp(root: Path) -> str:
    """What tells the dataset folders apart from their state at the last look: every file's
    path, size and modification time (a stat per file, no reading), as one digest."""
    import hashlib

    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != STAGING)
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between the listing and the stat: the next look sees it
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "replace"))
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def check_settings(project: Project, settings: WatchSettings) -> WatchSettings:
    """Refuse settings that would break the quota or make no sense."""
    if settings.interval <= 0 or settings.quiet < 0 or settings.cycle_timeout < 0:
        raise WatchError("--interval must be above 0, --quiet and --cycle-timeout at least 0 "
                         "seconds")
    if project.config.backend == "google" and settings.interval < GOOGLE_MIN_INTERVAL:
        raise WatchError(f"--interval {settings.interval:g} s would exceed Google's 60 reads per "
                         f"minute; use at least {GOOGLE_MIN_INTERVAL:g} s")
    return settings


def run(project: Project, settings: WatchSettings, *, log: Callable[[Event], None],
        trainer: Callable[[Callable[..., None]], TrainOutcome] | None = None) -> WatchResult:
    """Watch until SIGTERM/Ctrl-C (or one cycle with ``settings.once``); returns what it did."""
    return Watcher(project, check_settings(project, settings), log, trainer).run()


__all__ = ["CycleTimeout", "Event", "Observation", "Plan", "WatchResult", "WatchSettings", "WatchState",
           "edit_cells", "own_updates", "plan", "refuse_if_watched", "run", "status_messages"]
