from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import CLASSES

from sheetsync.dataset import (
    QUARANTINE,
    HashCache,
    detect_layout,
    location,
    order_classes,
    parse_location,
    safe_join,
    scan,
)
from sheetsync.errors import DatasetError, UnsafePathError


def test_detect_layout_finds_splits_classes_and_test_folder(data_root: Path) -> None:
    (data_root / "label_book" / "i").mkdir(parents=True)
    splits, classes, test = detect_layout(data_root)
    assert splits == ["train", "val"]
    assert classes == ["i", "ii", "iii"]
    assert test == "label_book"


def test_detect_layout_rejects_flat_folder(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no <split>/<class>/ folders"):
        detect_layout(tmp_path)


def test_classes_in_natural_order() -> None:
    assert order_classes(["x", "ix", "i", "v", "iv"]) == ["i", "iv", "v", "ix", "x"]
    assert order_classes(["10", "9", "1"]) == ["1", "9", "10"]
    assert order_classes(["dog", "cat"]) == ["cat", "dog"]


def test_scan_assigns_unique_ids_even_to_identical_files(data_root: Path) -> None:
    result = scan(data_root, ["train", "val"], CLASSES)
    m = result.manifest
    assert len(m) == 19
    assert m["id"].is_unique
    twins = m[m["hash"] == m.loc[m["path"] == "val/ii/twin.png", "hash"].iloc[0]]
    assert len(twins) == 2 and twins["id"].nunique() == 2


def test_ids_survive_moves_and_new_files_get_new_ids(data_root: Path) -> None:
    first = scan(data_root, ["train", "val"], CLASSES).manifest
    old_id = first.loc[first["path"] == "train/i/img-0001.png", "id"].iloc[0]
    (data_root / "val" / "iii").mkdir(exist_ok=True)
    os.rename(data_root / "train/i/img-0001.png", data_root / "val/iii/moved.png")
    shutil.copy(data_root / "train/i/img-0002.png", data_root / "train/ii/copy.png")
    second = scan(data_root, ["train", "val"], CLASSES, previous=first)
    row = second.manifest.set_index("id").loc[old_id]
    assert (row["path"], row["split"], row["label"]) == ("val/iii/moved.png", "val", "iii")
    assert second.moved == [old_id]
    assert len(second.added) == 1 and second.added[0] not in set(first["id"])
    assert second.manifest["id"].is_unique


def test_removed_and_modified_files_are_reported(data_root: Path) -> None:
    first = scan(data_root, ["train", "val"], CLASSES).manifest
    (data_root / "train/i/img-0001.png").unlink()
    target = data_root / "train/i/img-0002.png"
    target.write_bytes((data_root / "train/i/img-0003.png").read_bytes())
    second = scan(data_root, ["train", "val"], CLASSES, previous=first)
    assert len(second.removed) == 1
    assert len(second.modified) == 1


def test_quarantined_files_scan_as_dropped(data_root: Path) -> None:
    q = data_root / QUARANTINE / "train" / "ii"
    q.mkdir(parents=True)
    os.rename(data_root / "train/ii/img-0005.png", q / "img-0005.png")
    m = scan(data_root, ["train", "val"], CLASSES).manifest.set_index("path")
    assert m.loc[f"{QUARANTINE}/train/ii/img-0005.png", "action"] == "drop"


def test_unknown_class_folder_is_an_error(data_root: Path) -> None:
    (data_root / "train" / "zebra").mkdir()
    with pytest.raises(DatasetError, match="zebra"):
        scan(data_root, ["train", "val"], CLASSES)


def test_hash_cache_avoids_rereading(data_root: Path, tmp_path: Path, mocker) -> None:
    cache = HashCache(tmp_path / "h.json")
    scan(data_root, ["train", "val"], CLASSES, hash_cache=cache)
    cache.save()
    spy = mocker.spy(__import__("sheetsync.dataset", fromlist=["x"]), "hash_file")
    scan(data_root, ["train", "val"], CLASSES, hash_cache=HashCache(tmp_path / "h.json"))
    assert spy.call_count == 0


def test_location_round_trip() -> None:
    for args in [("train", "ii", "keep", "a.png"), ("val", "x", "drop", "b.png")]:
        rel = location(*args)
        assert parse_location(rel) == args[:3]


@pytest.mark.parametrize("bad", ["../x.png", "/etc/passwd", "a/../../b", "..", "a\\..\\b", ""])
def test_safe_join_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, bad)


def test_safe_join_refuses_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "train").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        safe_join(root, "train/x.png")
