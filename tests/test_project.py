"""The loop on the local backend without training: push, edit the workbook, pull, versions."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from sheetsync._words import describe, text_of, warnings_of
from sheetsync.dataset import QUARANTINE
from sheetsync.errors import SheetValidationError, UnpulledEditsError
from sheetsync.project import Project
from sheetsync.sheets.local import header_row


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def edit(workbook: Path, changes: dict[str, dict[str, object]]) -> None:
    """Change cells by id, as a person would in a spreadsheet program."""
    wb = load_workbook(workbook)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    for r in range(head + 1, ws.max_row + 1):
        id_ = ws.cell(r, header.index("id") + 1).value
        for column, value in changes.get(id_, {}).items():
            if column not in header:
                header.append(column)
                ws.cell(head, len(header)).value = column
            cell = ws.cell(r, header.index(column) + 1)
            cell.value = value
            if isinstance(value, str) and value.startswith("="):
                cell.data_type = "s"  # typed as text, like '=moved in a spreadsheet program
    wb.save(workbook)


@pytest.fixture
def project(data_root: Path, tmp_path: Path) -> Project:
    p, _ = Project.init(data_root, tmp_path / "proj")
    return p


def ids_by_path(project: Project) -> dict[str, str]:
    m = project.versions.load("latest")
    return dict(zip(m["path"], m["id"], strict=True))


def workbook(project: Project) -> Path:
    return project.config.resolve(project.config.local.path)


def test_init_writes_config_and_version_1(project: Project) -> None:
    assert project.config.path.exists()
    assert [v.version for v in project.versions.list()] == [1]
    assert project.versions.list()[0].counts["train"] == 12


def test_push_edit_pull_rearranges_and_records_a_version(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    a, b, c = ids["train/i/img-0001.png"], ids["train/ii/img-0005.png"], ids["val/iii/img-0018.png"]
    edit(workbook(project), {a: {"label": "II"}, b: {"split": "val", "note": "=moved"},
                             c: {"action": "drop"}})
    report = project.pull()
    assert "recorded v2" in text_of(report)
    assert (root / "train/ii/img-0001.png").exists() and not (root / "train/i/img-0001.png").exists()
    assert (root / "val/ii/img-0005.png").exists()
    assert (root / QUARANTINE / "val/iii/img-0018.png").exists()
    m = project.versions.load("v2").set_index("id")
    assert m.at[b, "note"] == "=moved" and m.at[c, "action"] == "drop"
    # Nothing pending now, and the next push goes through without --force.
    assert "no pending edits" in text_of(project.status())
    project.push()
    # A dropped image comes back when its action returns to keep.
    edit(workbook(project), {c: {"action": "keep"}})
    project.pull()
    assert (root / "val/iii/img-0018.png").exists()


def test_identical_images_keep_separate_rows(project: Project) -> None:
    project.push()
    wb = load_workbook(workbook(project))
    ws = wb["data"]
    col = [c.value for c in ws[header_row(ws)]].index("id")
    ids = [r[col].value for r in ws.iter_rows(min_row=header_row(ws) + 1)]
    assert len(ids) == len(set(ids)) == 19


def test_bad_sheet_changes_nothing_and_names_rows(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    before = tree(root)
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "vii"},
                             ids["train/i/img-0002.png"]: {"split": "../../etc"},
                             ids["train/i/img-0003.png"]: {"label": "ii"}})
    with pytest.raises(SheetValidationError) as e:
        project.pull()
    text = str(e.value)
    assert "'vii' is not a class" in text and "'../../etc' is not a split" in text
    assert "row " in text
    assert tree(root) == before
    assert [v.version for v in project.versions.list()] == [1]


def test_push_refuses_unpulled_edits_and_force_backs_up(project: Project) -> None:
    ids = ids_by_path(project)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"note": "please check"}})
    with pytest.raises(UnpulledEditsError, match="please check"):
        project.push()
    report = project.push(force=True)
    backups = list((project.state / "backups").glob("sheet-*.csv"))
    assert len(backups) == 1 and "please check" in backups[0].read_text()
    assert "backed up" in text_of(report)


def test_extra_columns_survive_pull_and_push(project: Project) -> None:
    ids = ids_by_path(project)
    a = ids["train/i/img-0001.png"]
    project.push()
    edit(workbook(project), {a: {"reviewer": "ann"}})
    project.pull()
    project.push()
    table = project.backend.read_table()
    assert table.set_index("id").at[a, "reviewer"] == "ann"


def test_diff_log_and_checkout(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    original = tree(root)
    project.push()
    edit(workbook(project), {ids["train/i/img-0001.png"]: {"label": "iii"}})
    project.pull()
    d = project.diff("v1", "v2")
    assert set(d["field"]) == {"label", "path"}
    log = project.log()
    assert list(log["version"]) == [1, 2]
    project.checkout("v1")
    assert tree(root) == original
    assert project.versions.latest().message == "checkout v1"


def test_folder_changes_after_push_are_not_reverted_by_pull(project: Project) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    os.rename(root / "train/i/img-0001.png", root / "train/iii/img-0001.png")
    edit(workbook(project), {ids["train/i/img-0002.png"]: {"label": "ii"}})
    project.pull()
    assert (root / "train/iii/img-0001.png").exists()
    assert (root / "train/ii/img-0002.png").exists()


KILL_SCRIPT = """
import sys
from sheetsync.project import Project
from sheetsync._itemprogress import no_progress
Project.open(sys.argv[1], progress=no_progress).pull()
"""


@pytest.mark.parametrize("kill_after", [1, 7, 13])
def test_killed_pull_loses_nothing_and_next_command_completes_it(
        project: Project, kill_after: int) -> None:
    root = project.config.root
    ids = ids_by_path(project)
    project.push()
    # Seven moves, including a swap of two same-named files between folders.
    changes = {ids[f"train/i/img-000{k}.png"]: {"label": "ii"} for k in (1, 2, 3)}
    changes.update({ids[f"train/ii/img-000{k}.png"]: {"split": "val"} for k in (5, 6)})
    changes.update({ids["val/iii/img-0017.png"]: {"action": "drop"},
                    ids["val/ii/twin.png"]: {"label": "i"}})
    edit(workbook(project), changes)
    contents_before = sorted(tree(root).values())
    env = {**os.environ, "SHEETSYNC_FAULT_AFTER_RENAMES": str(kill_after)}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(project.config.project_dir)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (project.state / "journal.json").exists()
    # Killed mid-move: every image still exists somewhere (staging included).
    assert sorted(tree(root).values()) == contents_before
    report = Project.open(project.config.project_dir).status(check_sheet=False)
    assert "completed an interrupted pull" in warnings_of(report)[0]
    assert sorted(tree(root).values()) == contents_before
    assert not (project.state / "journal.json").exists()
    assert (root / "train/ii/img-0001.png").exists()
    assert (root / QUARANTINE / "val/iii/img-0017.png").exists()
    latest = project.versions.load("latest").set_index("id")
    assert latest.at[ids["val/iii/img-0017.png"], "action"] == "drop"
    assert [v.message for v in project.versions.list()][-1].startswith("pull")
    assert describe(Project.open(project.config.project_dir).pull())[0].startswith("nothing to pull")


def test_manifest_is_a_dataframe_usable_from_python(project: Project) -> None:
    m = project.versions.load("latest")
    assert isinstance(m, pd.DataFrame)
    assert {"id", "hash", "path", "split", "label", "action"} <= set(m.columns)
