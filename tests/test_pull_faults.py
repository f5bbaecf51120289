"""Issue 8, cases 2, 3, 7, 8, 9: OS errors during moves, unsafe staging, false checkout warning,
leftover pending files, pulls that change only people's own columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_project import KILL_SCRIPT, edit, ids_by_path, tree, workbook

from sheetsync._words import describe, text_of, warnings_of
from sheetsync.dataset import QUARANTINE
from sheetsync.errors import UnsafePathError
from sheetsync.journal import STAGING
from sheetsync.project import Project


@pytest.fixture
def project(data_root: Path, tmp_path: Path) -> Project:
    p, _ = Project.init(data_root, tmp_path / "proj")
    return p


def _pending_files(project: Project) -> list[Path]:
    return sorted(p for p in project.state.rglob("*pending*"))


def _run_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sheetsync", "-C", str(project.config.project_dir),
                           *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


# ---- case 2: an OS error during the moves rolls back, with one clear line --------------------


def test_os_error_during_moves_rolls_back_with_one_clear_line(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"},
                             ids["val/iii/img-0017.png"]: {"action": "drop"}})
    (root / QUARANTINE).write_text("not a folder")  # where the dropped image should go
    before = tree(root)
    proc = _run_cli(project, "pull")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "rolled back" in lines[0]
    assert QUARANTINE in lines[0]
    # Nothing moved, nothing recorded, nothing left to recover, nothing pending.
    assert tree(root) == before
    assert not (root / STAGING).exists()
    assert not (project.state / "journal.json").exists()
    assert [v.version for v in project.versions.list()] == [1]
    assert _pending_files(project) == []
    status = _run_cli(project, "status", "--no-sheet")
    assert status.returncode == 0, status.stderr
    # Once the obstacle is gone the same pull goes through.
    (root / QUARANTINE).unlink()
    assert "recorded v2" in text_of(Project.open(project.config.project_dir).pull())
    assert (root / QUARANTINE / "val/iii/img-0017.png").exists()


def test_recovery_handles_os_errors_by_rolling_back(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"},
                             ids["val/iii/img-0017.png"]: {"action": "drop"}})
    contents = sorted(tree(root).values())
    env = {**os.environ, "SHEETSYNC_FAULT_AFTER_RENAMES": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(project.config.project_dir)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    (root / QUARANTINE).write_text("not a folder")  # completing the pull now fails with an OSError
    status = _run_cli(project, "status", "--no-sheet")
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stderr and "rolled back" in status.stderr
    assert not (project.state / "journal.json").exists()
    assert sorted(v for k, v in tree(root).items() if k != QUARANTINE) == contents
    assert (root / "train/i/img-0001.png").exists() and (root / "val/iii/img-0017.png").exists()
    assert _pending_files(project) == []


def test_recovery_that_can_neither_finish_nor_roll_back_keeps_the_journal(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["val/iii/img-0017.png"]: {"action": "drop"}})
    env = {**os.environ, "SHEETSYNC_FAULT_AFTER_RENAMES": "1"}
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(project.config.project_dir)], env=env,
                   capture_output=True, text=True)
    staged = list((root / STAGING).iterdir())
    assert len(staged) == 1
    # Block both ways out of the staging folder: the quarantine and the original class folder.
    (root / QUARANTINE).write_text("not a folder")
    os.rename(root / "val/iii", root / "val-iii-aside")
    (root / "val/iii").write_text("not a folder either")
    status = _run_cli(project, "status", "--no-sheet")
    assert status.returncode != 0 and "Traceback" not in status.stderr
    assert "neither completed" in status.stderr
    assert (project.state / "journal.json").exists()  # nothing forgotten
    assert staged[0].exists()


# ---- case 3: staging paths are validated before the journal is written ----------------------


def test_staging_folder_linking_out_of_the_root_is_refused_before_the_journal(
        project: Project, tmp_path: Path) -> None:
    root = project.config.root
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / STAGING)
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"}})
    before = tree(root)
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        Project.open(project.config.project_dir).pull()
    assert not (project.state / "journal.json").exists()
    assert list(outside.iterdir()) == []
    assert tree(root) == before
    # Other commands are not blocked by a journal that cannot finish.
    assert "v1" in text_of(Project.open(project.config.project_dir).status(check_sheet=False))


# ---- case 7: no false "no longer on disk" warning on checkout --------------------------------


def test_checkout_after_a_pull_warns_only_about_images_really_gone(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"}})
    project.pull()
    result = Project.open(project.config.project_dir).checkout("v1")
    assert warnings_of(result) == []
    assert (root / "train/i/img-0001.png").exists()
    (root / "train/i/img-0002.png").unlink()
    result = Project.open(project.config.project_dir).checkout("v1")
    assert result.gone == 1
    assert warnings_of(result) == ["1 image(s) of v1 are no longer on disk"]


# ---- case 8: a late refusal leaves no pending files ------------------------------------------


@pytest.mark.parametrize("obstacle", ["staging-is-a-file", "journal-cannot-be-written"])
def test_refused_pull_leaves_no_pending_files(project: Project, obstacle: str) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"}})
    if obstacle == "staging-is-a-file":
        (root / STAGING).write_text("not a folder")
    else:  # the journal's temporary file cannot be created: refused after staging
        (project.state / "journal.json.tmp").mkdir()
    before = tree(root)
    proc = _run_cli(project, "pull")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert _pending_files(project) == []
    assert not (project.state / "journal.json").exists()
    assert tree(root) == before
    assert [v.version for v in project.versions.list()] == [1]


def test_a_failing_stage_step_removes_what_it_staged(project: Project) -> None:
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "ii"}})
    # A folder where the staged sheet state goes: writing it fails after the manifest is staged.
    blocker = project.state / "published.pending.csv"
    blocker.mkdir()
    proc = _run_cli(project, "pull")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nothing was changed" in proc.stderr
    assert _pending_files(project) == [blocker]  # the staged manifest is gone
    assert [v.version for v in project.versions.list()] == [1]
    assert not (project.state / "journal.json").exists()


# ---- case 9: a pull that changes only people's own columns says so, and diff shows it ---------


def test_pull_of_only_a_user_column_says_what_changed_and_diff_shows_it(project: Project) -> None:
    ids = ids_by_path(project)
    project.push()
    a = ids["train/i/img-0001.png"]
    edit(workbook(project), {a: {"reviewer": "ana"}})
    result = Project.open(project.config.project_dir).pull()
    text = "\n".join(describe(result))
    assert "no change" not in text
    assert "1 change(s) in column 'reviewer'" in text and "recorded v2" in text
    changes = project.diff("v1", "v2")
    assert changes.to_dict("records") == [
        {"id": a, "change": "changed", "field": "reviewer", "before": "", "after": "ana"}]
    cli = _run_cli(project, "diff", "v1", "v2")
    assert cli.returncode == 0 and "reviewer" in cli.stdout and "ana" in cli.stdout
