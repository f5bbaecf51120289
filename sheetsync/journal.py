"""Plan folder moves (pure) and apply them through a journal that survives a crash or kill.

Applying a plan is two phases of ``os.rename`` (atomic on one filesystem): every file first goes
to a staging folder under a unique name, then to its destination. Two phases make swaps and
chains (a file moving into a place another file is leaving) safe without ordering tricks. The
journal, written and fsynced before the first rename, lists every move; at any moment each file
is at exactly one of its three places, so the next run can always finish the job
(:func:`complete`), or put everything back (:func:`roll_back`).

The commit protocol, one for every command that moves or creates files (:func:`carry_out`):

1. **plan** (pure, the caller): the moves (:func:`plan_moves`, :func:`plan_locations`) and a
   :class:`Commit`: the version to record and the ``(staged, final)`` files it makes real;
2. **stage**: the caller's ``stage()`` writes every staged file (nothing is final yet);
3. **begin**: the journal, holding the moves and the commit, is written durably;
4. **apply**: both phases of renames;
5. **commit**: each staged file replaces its final one, then ``record(commit)`` (the version
   index);
6. **finish**: the journal is removed.

Every path (sources, destinations, staging names, and the staging folder itself) is validated
before anything is staged. A refusal before step 3 removes the staged files. An OS error during
step 4 (an unwritable folder, a file where a folder should be) rolls the batch back at once and
stops with one line; if it cannot be rolled back, the journal stays for the next command. A
crash after step 3 is finished by :func:`recover` (or rolled back, staged files removed, when
the files cannot all be found or moved).

How another command plugs in (``augment``, which creates files): create the new images in a
folder of its own inside the root, plan moves from there to their destinations, stage the new
manifest with ``VersionStore.stage``, and call :func:`carry_out` with a ``Commit`` listing the
staged manifest; a crash then ends with every new image either in place and recorded, or back
in the work folder and not recorded.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pandas as pd

from .dataset import hash_file, location, safe_join
from .errors import JournalError, MoveError, UnsafePathError

T = TypeVar("T")

STAGING = ".sheetsync-staging"


@dataclass(frozen=True)
class Move:
    id: str
    src: str  # relative to the root
    dst: str
    hash: str = ""  # sha256 of the file: tells it apart from another file at src or dst


def plan_moves(
    moving: Iterable[tuple[str, str, str, str]],
    staying: Iterable[str],
    exists: Callable[[str], bool] = lambda _: False,
) -> list[Move]:
    """Moves for ``(id, src, wanted_dst, hash)``; names that clash get ``-1``, ``-2``…

    ``staying`` are paths that stay occupied; ``exists`` tells whether a path holds some file
    we do not manage (never overwritten). Sources that are vacated may be reused.
    """
    moving = [m for m in moving if m[1] != m[2]]
    vacated = {m[1] for m in moving}
    occupied = set(staying)
    moves = []
    for id_, src, wanted, digest in moving:
        dst = wanted
        n = 0
        while dst in occupied or (dst not in vacated and exists(dst)):
            n += 1
            p = PurePosixPath(wanted)
            dst = p.with_name(f"{p.stem}-{n}{p.suffix}").as_posix()
        occupied.add(dst)
        moves.append(Move(id_, src, dst, digest))
    return moves


@dataclass(frozen=True)
class Commit:
    """What a batch makes real once every file is in place; the journal keeps it until then.

    ``files``: ``(staged, final)`` absolute paths; each staged file replaces its final one at
    commit (a staged file already gone was committed before a crash).
    """

    version: int = 0
    message: str = ""
    files: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "message": self.message,
                "files": [list(pair) for pair in self.files]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Commit:
        files = tuple((str(a), str(b)) for a, b in data.get("files", ()))
        return cls(int(data.get("version", 0)), str(data.get("message", "")), files)


@dataclass(frozen=True)
class Recovery:
    """What recovery did with an interrupted batch: completed it, or rolled it back (why)."""

    completed: bool
    version: int
    reason: str = ""


def plan_locations(manifest: pd.DataFrame,
                   exists: Callable[[str], bool] = lambda _: False) -> tuple[list[Move], pd.DataFrame]:
    """Moves that put every image where its split/label/action say, and the manifest after."""
    wanted = [location(s, lab, a, PurePosixPath(p).name) for s, lab, a, p in zip(
        manifest["split"], manifest["label"], manifest["action"], manifest["path"], strict=True)]
    moving = [(i, p, w, h) for i, p, w, h in zip(
        manifest["id"], manifest["path"], wanted, manifest["hash"], strict=True) if p != w]
    staying = [p for p, w in zip(manifest["path"], wanted, strict=True) if p == w]
    moves = plan_moves(moving, staying, exists=exists)
    dst = {m.id: m.dst for m in moves}
    out = manifest.copy()
    out["path"] = [dst.get(i, p) for i, p in zip(out["id"], out["path"], strict=True)]
    return moves, out


def staging_folder(root: Path) -> Path:
    """The staging folder under ``root``, refused when it is a link or a file (a link could
    lead outside the root); a command that creates files (augment) writes them there first."""
    staging = root / STAGING
    if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
        raise UnsafePathError(f"{staging} is a link or a file, not sheetsync's staging folder "
                              f"(a link could lead outside the dataset root): remove it")
    return staging


def _staging(move: Move) -> str:
    return f"{STAGING}/{move.id}{PurePosixPath(move.src).suffix}"


class Journal:
    """The on-disk record of one batch of moves and what to do once they are done."""

    def __init__(self, path: Path, root: Path):
        self.path = path
        self.root = root

    @property
    def pending(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise JournalError(f"journal {self.path} cannot be read ({e}); move it aside to continue") from None

    def begin(self, moves: list[Move], after: Commit | Mapping[str, Any]) -> None:
        self.validate(moves)
        commit = after if isinstance(after, Commit) else Commit.from_json(after)
        data = {"root": str(self.root), "moves": [asdict(m) for m in moves],
                "commit": commit.to_json()}
        _write_durably(self.path, json.dumps(data, indent=1))

    def validate(self, moves: list[Move]) -> None:
        """Every path of every move inside the root, before anything is written."""
        if moves:
            staging_folder(self.root)
        for m in moves:
            safe_join(self.root, m.src), safe_join(self.root, m.dst), safe_join(self.root, _staging(m))

    def moves(self) -> list[Move]:
        return [Move(**m) for m in self.load()["moves"]]

    def commit(self) -> Commit:
        data = self.load()
        if "commit" in data:
            return Commit.from_json(data["commit"])
        # A journal written before the commit record existed: {version, message, published}.
        after = data.get("after", {})
        published = str(after.get("published") or "")
        files = ((published, str(Path(published).with_name("published.csv"))),) if published else ()
        return Commit(int(after.get("version", 0)), str(after.get("message", "")), files)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        staging = self.root / STAGING
        if staging.is_dir() and not staging.is_symlink() and not any(staging.iterdir()):
            staging.rmdir()


def carry_out(journal: Journal, moves: list[Move], commit: Commit, stage: Callable[[], None],
              record: Callable[[Commit], T],
              progress: Callable[[Iterable[Move]], Iterable[Move]] | None = None) -> T:
    """The whole protocol (see the module docstring): stage, begin, apply, commit, finish."""
    journal.validate(moves)
    try:
        stage()
        journal.begin(moves, commit)
    except OSError as e:
        if journal.pending:  # written after all: recovery needs the staged files
            raise
        discard(commit)  # refused before the journal: nothing may be left behind
        raise JournalError(f"could not write the state files ({e}); nothing was changed") from None
    except BaseException:
        if not journal.pending:
            discard(commit)
        raise
    try:
        apply(journal, progress)
    except MoveError as e:
        _abandon(journal, commit, e)
    return _commit(journal, record)


def _undo(journal: Journal, commit: Commit, failed_too: Callable[[JournalError], str]) -> None:
    """Put every file back and forget the batch. If rolling back fails too, the journal stays
    (so nothing is forgotten) and ``failed_too(error)`` says why, as a JournalError."""
    try:
        roll_back(journal)
    except JournalError as again:
        raise JournalError(failed_too(again)) from None
    discard(commit)
    journal.finish()


def _abandon(journal: Journal, commit: Commit, error: MoveError) -> None:
    """Put every file back after an OS error mid-apply; the journal stays if that fails too."""
    _undo(journal, commit, lambda again: f"{error}; rolling back failed too ({again}): the next "
                                         f"sheetsync command tries again (see {journal.path})")
    raise MoveError(f"{error}; everything was rolled back, nothing changed") from None


def recover(journal: Journal, record: Callable[[Commit], object]) -> Recovery | None:
    """Complete (or, failing that, roll back) a batch a crash interrupted; None when idle."""
    if not journal.pending:
        return None
    commit = journal.commit()
    try:
        complete(journal)
    except JournalError as e:
        reason = str(e)
        _undo(journal, commit, lambda again: f"an interrupted pull can be neither completed "
                                             f"({reason}) nor rolled back ({again}); see {journal.path}")
        return Recovery(False, commit.version, reason)
    _commit(journal, record)
    return Recovery(True, commit.version)


def discard(commit: Commit) -> None:
    """Remove the staged files of a batch that will not be committed."""
    for staged, _ in commit.files:
        path = Path(staged)
        if path.is_file() or path.is_symlink():
            path.unlink()


def _commit(journal: Journal, record: Callable[[Commit], T]) -> T:
    commit = journal.commit()
    for staged, final in commit.files:
        if Path(staged).exists():  # idempotent: recovery may repeat a commit
            os.replace(staged, final)
    result = record(commit)
    journal.finish()
    return result


def apply(journal: Journal, progress: Callable[[Iterable[Move]], Iterable[Move]] | None = None) -> None:
    """Carry out every move of the journal (both phases)."""
    moves = journal.moves()
    try:
        (journal.root / STAGING).mkdir(exist_ok=True)
    except OSError as e:
        raise MoveError(f"could not make the staging folder {STAGING}: {e.strerror or e}") from None
    fault_after = int(os.environ.get("SHEETSYNC_FAULT_AFTER_RENAMES", "0") or 0)
    done = 0
    for phase in (0, 1):
        for m in progress(moves) if (progress and phase == 0) else moves:
            here, there = (m.src, _staging(m)) if phase == 0 else (_staging(m), m.dst)
            _rename(journal.root, here, there)
            done += 1
            if fault_after and done >= fault_after:
                # Fault injection for the crash tests: die as `kill -9` would, mid-move.
                os.kill(os.getpid(), signal.SIGKILL)
    _fsync_dir(journal.root)


def complete(journal: Journal) -> None:
    """Finish an interrupted batch: move every file on to its destination.

    Two phases again (everything to staging, then everything on), so swaps finish safely.
    """
    root = journal.root
    moves = journal.moves()
    places = [_locate(root, m) for m in moves]
    for m, where in zip(moves, places, strict=True):
        if where == "src":
            _rename(root, m.src, _staging(m))
    for m, where in zip(moves, places, strict=True):
        if where != "dst":
            _rename(root, _staging(m), m.dst)


def roll_back(journal: Journal) -> None:
    """Undo an interrupted batch: move every file back to where it was."""
    root = journal.root
    moves = journal.moves()
    places = [_locate(root, m) for m in moves]
    for m, where in zip(moves, places, strict=True):
        if where == "dst":
            _rename(root, m.dst, _staging(m))
    for m, where in zip(moves, places, strict=True):
        if where != "src":
            _rename(root, _staging(m), m.src)


def _locate(root: Path, m: Move) -> str:
    """Where the file of ``m`` is now: "src", "staging" or "dst"."""
    if safe_join(root, _staging(m)).exists():
        return "staging"
    for name, rel in (("src", m.src), ("dst", m.dst)):
        path = safe_join(root, rel)
        # Mid-swap both ends hold files: the content hash says which one is ours.
        if path.is_file() and (not m.hash or _digest(path) == m.hash):
            return name
    raise JournalError(f"image {m.id} is at none of {m.src}, {_staging(m)}, {m.dst}; "
                       f"the journal {STAGING!r} cannot finish it")


def _digest(path: Path) -> str:
    try:
        return hash_file(path)
    except OSError as e:
        raise MoveError(f"cannot read {path}: {e.strerror or e}") from None


def _rename(root: Path, src: str, dst: str) -> None:
    a, b = safe_join(root, src), safe_join(root, dst)
    if b.exists() or b.is_symlink():  # a dangling link is no file, yet a rename replaces it
        # A MoveError: the batch is rolled back at once, like any other refused move.
        raise MoveError(f"refusing to overwrite {dst} while moving {src} (something appeared "
                        f"there; move it away)")
    try:
        b.parent.mkdir(parents=True, exist_ok=True)
        os.rename(a, b)
    except OSError as e:
        # Permissions, a file where a folder should be, a full disk: say which move, in one line.
        where = f" ({e.filename})" if e.filename else ""
        raise MoveError(f"could not move {src} to {dst}: {e.strerror or e}{where}") from None


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
