from __future__ import annotations

import pandas as pd
import pytest

from sheetsync.rows import CORE
from sheetsync.sync import plan_pull, unpulled_edits

CLASSES = ["i", "ii", "iii"]
SPLITS = ["train", "val"]


def manifest() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a1", "0042", "1e3"],
        "hash": ["h1", "h2", "h3"],
        "path": ["train/i/1.png", "train/ii/2.png", "val/iii/3.png"],
        "split": ["train", "train", "val"],
        "label": ["i", "ii", "iii"],
        "action": ["keep", "keep", "keep"],
        "note": ["", "", ""],
    }).astype(object)


def sheet_from(m: pd.DataFrame, **edits: dict[str, str]) -> pd.DataFrame:
    """The sheet as a backend reads it: all str, index = sheet row (data starts at 2)."""
    rows = []
    for _, r in m.iterrows():
        row = {c: "" for c in CORE}
        row.update({c: str(r[c]) for c in ("id", "path", "split", "label", "action", "note")})
        row.update(edits.get(r["id"], {}))
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(CORE))
    df.index = range(2, len(df) + 2)
    return df


def published(m: pd.DataFrame) -> pd.DataFrame:
    return m[["id", "split", "label", "action", "note"]].copy()


def test_clean_edits_merge_with_trimming_and_case_folding() -> None:
    m = manifest()
    sheet = sheet_from(m, **{"a1": {"label": "  II "}, "1e3": {"action": "DROP", "note": "=1+1"}})
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    assert not plan.problems
    out = plan.manifest.set_index("id")
    assert out.at["a1", "label"] == "ii"
    assert out.at["1e3", "action"] == "drop"
    assert out.at["1e3", "note"] == "=1+1"
    assert sorted(plan.edited) == ["1e3", "a1"]


def test_resorted_rows_are_matched_by_id_not_position() -> None:
    m = manifest()
    sheet = sheet_from(m, **{"0042": {"split": "val"}}).iloc[::-1]
    sheet.index = range(2, 5)
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    assert plan.manifest.set_index("id").at["0042", "split"] == "val"
    assert plan.edited == ["0042"]


@pytest.mark.parametrize("edit, row, column, text", [
    ({"a1": {"label": "iv"}}, 2, "label", "'iv' is not a class"),
    ({"0042": {"split": "test"}}, 3, "split", "'test' is not a split"),
    ({"1e3": {"action": "delete"}}, 4, "action", "'delete' is not an action"),
    ({"1e3": {"id": "zzz"}}, 4, "id", "unknown id"),
    ({"1e3": {"id": "a1"}}, 4, "id", "also appears on row 2"),
    ({"1e3": {"id": " ", "note": "x"}}, 4, "id", "has no id"),
])
def test_every_bad_cell_is_named(edit, row, column, text) -> None:
    m = manifest()
    plan = plan_pull(sheet_from(m, **edit), m, published(m), CLASSES, SPLITS)
    assert [(p.row, p.column) for p in plan.problems] == [(row, column)]
    assert text in plan.problems[0].message


def test_all_problems_are_reported_at_once() -> None:
    m = manifest()
    sheet = sheet_from(m, **{"a1": {"label": "nope"}, "0042": {"split": "x", "action": "?"}})
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    assert {(p.row, p.column) for p in plan.problems} == {(2, "label"), (3, "split"), (3, "action")}


def test_missing_image_is_named_as_such() -> None:
    m = manifest()
    sheet = sheet_from(m)
    plan = plan_pull(sheet, m[m["id"] != "1e3"], published(m), CLASSES, SPLITS, known_ids={"1e3"})
    assert "image is missing" in plan.problems[0].message and plan.problems[0].row == 4


@pytest.mark.parametrize("rename", [{"label": "class"}, {"split": "Split2"}, {"id": ""}])
def test_renamed_or_removed_header_is_an_error(rename) -> None:
    m = manifest()
    sheet = sheet_from(m).rename(columns=rename)
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    missing = next(iter(rename))
    assert any(p.row == 1 and p.column == missing and "missing" in p.message for p in plan.problems)


def test_header_case_and_spaces_are_tolerated_and_extras_kept() -> None:
    m = manifest()
    sheet = sheet_from(m).rename(columns={"label": " Label "})
    sheet["reviewer"] = ["ann", "", "bob"]
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    assert not plan.problems
    assert plan.manifest.set_index("id").at["1e3", "reviewer"] == "bob"


def test_blank_rows_are_ignored_and_deleted_rows_warned() -> None:
    m = manifest()
    sheet = sheet_from(m).iloc[:2].copy()
    sheet.loc[9] = [""] * len(sheet.columns)
    plan = plan_pull(sheet, m, published(m), CLASSES, SPLITS)
    assert not plan.problems and not plan.edited
    assert "1 image(s) have no row" in plan.warnings[0]


def test_untouched_cells_do_not_revert_folder_changes_and_conflicts_are_errors() -> None:
    m = manifest()
    base = published(m)
    now = m.copy()
    now.loc[now["id"] == "a1", "label"] = "iii"  # someone moved the file on disk after the push
    plan = plan_pull(sheet_from(m), now, base, CLASSES, SPLITS)
    assert plan.manifest.set_index("id").at["a1", "label"] == "iii" and not plan.edited
    conflict = plan_pull(sheet_from(m, a1={"label": "ii"}), now, base, CLASSES, SPLITS)
    assert conflict.problems[0].row == 2 and "changed it to 'iii'" in conflict.problems[0].message


def test_unpulled_edits_are_listed() -> None:
    m = manifest()
    assert unpulled_edits(sheet_from(m), published(m)) == []
    assert unpulled_edits(sheet_from(m, a1={"label": " I "}), published(m)) == []
    lines = unpulled_edits(sheet_from(m, a1={"note": "check"}, **{"0042": {"label": "i"}}), published(m))
    assert lines == ["row 2, note: '' -> 'check'", "row 3, label: 'ii' -> 'i'"]
    extra = sheet_from(m)
    extra["reviewer"] = ["", "x", ""]
    assert unpulled_edits(extra, published(m)) == ["row 3, reviewer: '' -> 'x'"]
