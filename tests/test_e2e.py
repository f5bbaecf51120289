"""End to end: the loop on a slice of the competition data, edited in a real spreadsheet program."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _tools import need
from _xlsx_helpers import libreoffice_macro
from conftest import dcai_root
from openpyxl import load_workbook

from sheetsync._words import text_of
from sheetsync.dataset import QUARANTINE
from sheetsync.project import Project
from sheetsync.rows import CORE


def need_soffice() -> None:
    need("soffice")


def copy_slice(src: Path, dst: Path, per_class: dict[str, int]) -> None:
    for split, n in per_class.items():
        for class_dir in sorted((src / split).iterdir()):
            target = dst / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.glob("*.png"))[:n]:
                shutil.copy2(f, target / f.name)


def edit_in_libreoffice(book: Path, profile: Path, edits: dict[str, dict[str, str]]) -> None:
    """Type into cells by id with LibreOffice Calc, then let it save the .xlsx itself."""
    col = {name: i for i, name in enumerate(CORE)}
    # Row 0 is the info line, row 1 the header (0-based, as the macro API counts).
    lines = ['  sh = doc.Sheets.getByName("data")',
             "  For r = 2 To 20000",
             f"    id = sh.getCellByPosition({col['id']}, r).String",
             '    If id = "" Then Exit For']
    for id_, cells in edits.items():
        for name, value in cells.items():
            # .Formula is what typing does (TRUE in the checked column becomes Calc's boolean);
            # .String puts the text in as it is.
            prop = "Formula" if name == "checked" else "String"
            lines.append(f'    If id = "{id_}" Then sh.getCellByPosition({col[name]}, r).{prop} = "{value}"')
    lines.append("  Next r")
    libreoffice_macro(book, profile, "\n".join(lines))


def score_rows(book: Path) -> list[tuple]:
    ws = load_workbook(book, read_only=True)["scores"]
    return [r for r in ws.iter_rows(values_only=True)][1:]


@pytest.mark.dcai
def test_loop_on_the_competition_data_edited_in_libreoffice(tmp_path: Path) -> None:
    src = dcai_root()
    need_soffice()
    data = tmp_path / "data"
    copy_slice(src, data, {"train": 6, "val": 3})
    shutil.copytree(src / "label_book", data / "label_book")
    project, _ = Project.init(data, tmp_path / "proj")
    assert project.config.classes == ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
    assert project.config.test_dir == data / "label_book"

    project.train(epochs=1, jit_compile=False)  # XLA compiling costs more than 1 epoch saves
    project.push()
    book = project.config.resolve(project.config.local.path)
    m = project.versions.load("latest")
    by_path = dict(zip(m["path"], m["id"], strict=True))
    relabel, to_val, drop = (by_path[p] for p in sorted(by_path)[:3])
    edit_in_libreoffice(book, tmp_path / "lo", {
        relabel: {"label": "x", "note": "=looks like a formula"},
        to_val: {"split": "val"},
        drop: {"action": "drop", "checked": "TRUE"},
    })

    report = project.pull()
    assert "recorded v2" in text_of(report)
    v2 = project.versions.load("v2").set_index("id")
    assert v2.at[relabel, "label"] == "x" and v2.at[relabel, "note"] == "=looks like a formula"
    assert (data / v2.at[relabel, "path"]).parent == data / "train" / "x"
    assert v2.at[to_val, "split"] == "val" and (data / v2.at[to_val, "path"]).exists()
    assert v2.at[drop, "path"].startswith(QUARANTINE) and (data / v2.at[drop, "path"]).exists()
    # Calc saves the ticked box and every unticked one as numbers (1 / 0): read as TRUE / FALSE.
    assert v2.at[drop, "checked"] == "TRUE" and (v2.drop(index=drop)["checked"] == "").all()
    assert len(list(data.rglob("*.png"))) == 6 * 10 + 3 * 10 + 52

    project.train(epochs=1, jit_compile=False)  # XLA compiling costs more than 1 epoch saves
    rows = score_rows(book)
    assert [r[0] for r in rows] == [1, 2]
    assert len(project.scores.read()) == 2
    assert list(project.log()["version"]) == [1, 2]
