from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sheetsync import journal as jr
from sheetsync.errors import JournalError, UnsafePathError


def _digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_plan_renames_on_collision_and_reuses_vacated_paths() -> None:
    moves = jr.plan_moves(
        [("a", "train/i/x.png", "train/ii/x.png", ""), ("b", "val/i/x.png", "train/ii/x.png", ""),
         ("c", "train/ii/y.png", "train/i/y.png", ""), ("d", "train/i/y.png", "train/ii/y.png", "")],
        staying=["train/ii/x-1.png"],
    )
    dst = {m.id: m.dst for m in moves}
    assert dst["a"] == "train/ii/x.png"
    assert dst["b"] == "train/ii/x-2.png"  # x-1 is taken by a file that stays
    # c and d swap places: both vacate their source, so both keep their names.
    assert dst["c"] == "train/i/y.png" and dst["d"] == "train/ii/y.png"


def test_plan_never_targets_an_unmanaged_existing_file() -> None:
    moves = jr.plan_moves([("a", "train/i/x.png", "train/ii/x.png", "")], staying=[],
                          exists=lambda rel: rel == "train/ii/x.png")
    assert moves[0].dst == "train/ii/x-1.png"


def _setup_swap(tmp_path: Path) -> tuple[Path, jr.Journal]:
    root = tmp_path / "root"
    for rel, content in {"train/i/y.png": b"first", "train/ii/y.png": b"second",
                         "train/i/z.png": b"third"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    h = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
         for rel in ("train/i/y.png", "train/ii/y.png", "train/i/z.png")}
    moves = jr.plan_moves([("c", "train/ii/y.png", "train/i/y.png", h["train/ii/y.png"]),
                           ("d", "train/i/y.png", "train/ii/y.png", h["train/i/y.png"]),
                           ("e", "train/i/z.png", "val/iii/z.png", h["train/i/z.png"])], staying=[])
    journal = jr.Journal(tmp_path / "journal.json", root)
    journal.begin(moves, after={"version": 2})
    return root, journal


def test_apply_swaps_without_losing_anything(tmp_path: Path) -> None:
    root, journal = _setup_swap(tmp_path)
    jr.apply(journal)
    assert (root / "train/i/y.png").read_bytes() == b"second"
    assert (root / "train/ii/y.png").read_bytes() == b"first"
    assert (root / "val/iii/z.png").read_bytes() == b"third"
    journal.finish()
    assert not journal.pending and not (root / jr.STAGING).exists()


@pytest.mark.parametrize("done", [0, 1, 2, 3, 4, 5])
def test_complete_and_roll_back_from_every_interruption_point(tmp_path: Path, done: int) -> None:
    root, journal = _setup_swap(tmp_path)
    before = _digest_tree(root)
    moves = journal.moves()
    # Replay the first `done` renames exactly as apply() would, then "crash".
    steps = [(m.src, jr._staging(m)) for m in moves] + [(jr._staging(m), m.dst) for m in moves]
    (root / jr.STAGING).mkdir()
    for src, dst in steps[:done]:
        jr._rename(root, src, dst)
    jr.roll_back(journal)
    assert _digest_tree(root) == before
    for src, dst in steps[:done]:
        jr._rename(root, src, dst)
    jr.complete(journal)
    after = _digest_tree(root)
    assert sorted(after.values()) == sorted(before.values())
    assert after["val/iii/z.png"] == before["train/i/z.png"]


def test_missing_file_is_a_journal_error(tmp_path: Path) -> None:
    root, journal = _setup_swap(tmp_path)
    (root / "train/i/z.png").unlink()
    with pytest.raises(JournalError, match="none of"):
        jr.complete(journal)


def test_journal_refuses_paths_outside_the_root(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path / "j.json", tmp_path)
    with pytest.raises(UnsafePathError):
        journal.begin([jr.Move("a", "train/i/x.png", "../x.png")], after={})
    assert not journal.pending


def test_a_journal_in_the_old_format_is_still_recovered(tmp_path: Path) -> None:
    root, journal = _setup_swap(tmp_path)
    pending = tmp_path / "published.pending.csv"
    pending.write_text("id\n")
    data = {"root": str(root), "moves": [vars(m) for m in journal.moves()],
            "after": {"version": 2, "message": "pull: 3 row(s) edited", "published": str(pending)}}
    journal.path.write_text(json.dumps(data))
    recorded: list[jr.Commit] = []
    assert jr.recover(journal, recorded.append) == jr.Recovery(True, 2)
    assert recorded[0].version == 2 and recorded[0].message.startswith("pull")
    assert (tmp_path / "published.csv").exists() and not pending.exists()
    assert (root / "val/iii/z.png").read_bytes() == b"third"
    assert not journal.pending
