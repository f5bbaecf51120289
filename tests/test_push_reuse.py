"""A push reuses the work of the last one: thumbnails and pixel measures are kept by content
hash in the state folder, so a pull that moves files costs no decoding at the next push."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from _xlsx_helpers import make_layout, make_png, make_table
from openpyxl import load_workbook
from PIL import Image

from sheetsync.demo import draw_numeral
from sheetsync.project import Project
from sheetsync.review import review_signals
from sheetsync.sheets import _xlsx_images
from sheetsync.sheets._thumbcache import ThumbnailCache, draw_all
from sheetsync.sheets.local import LocalBackend, header_row


def count_opens(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[Path]:
    """Every image file under ``root`` that Pillow opens from now on."""
    opened: list[Path] = []
    real = Image.open
    base = root.resolve()

    def spy(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(fp, str | os.PathLike) and Path(fp).resolve().is_relative_to(base):
            opened.append(Path(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return opened


def relabel(book: Path, ids: dict[str, str]) -> None:
    """Set the label of rows by id, as a person would in a spreadsheet program."""
    wb = load_workbook(book)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    for r in range(head + 1, ws.max_row + 1):
        id_ = ws.cell(r, header.index("id") + 1).value
        if id_ in ids:
            ws.cell(r, header.index("label") + 1).value = ids[id_]
    wb.save(book)


def shown_thumbnails(book: Path) -> dict[str, bytes]:
    """The PNG each row's picture shows, by the image's path (the picture's alt text)."""
    from sheetsync.sheets._xlsx_package import Package

    package = Package.read(book)
    part = package.sheet_part("data")
    assert part is not None
    return {descr: png for descr, _, png in package.pictures(part)}


def test_a_push_after_a_pull_that_moved_files_decodes_no_image_again(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = Project.init(data_root, tmp_path / "proj")
    project.push()
    book = project.config.resolve(project.config.local.path)
    ids = dict(zip(*[project.versions.load("latest")[c] for c in ("path", "id")], strict=True))
    relabel(book, {ids["train/i/img-0001.png"]: "ii"})
    assert len(project.pull().moves) == 1
    # Same bytes written again: a new modification time, the same content.
    same = data_root / "train/iii/img-0009.png"
    same.write_bytes(same.read_bytes())
    os.utime(same, ns=(1, 1))

    opened = count_opens(monkeypatch, data_root)
    project.push()
    assert opened == []
    assert "(0 drawn)" in project.backend.usage()
    assert shown_thumbnails(book)["train/ii/img-0001.png"]  # the moved file keeps its picture

    # A changed image is decoded again, only it, and shows its new picture.
    draw_numeral("ii", __import__("random").Random(7)).resize((90, 30)).save(data_root / "val/ii/img-0017.png")
    project.push()
    assert {p.name for p in opened} == {"img-0017.png"}
    assert "(1 drawn)" in project.backend.usage()
    fresh = _xlsx_images.render_thumbnail(data_root / "val/ii/img-0017.png", 112)
    assert fresh is not None and shown_thumbnails(book)["val/ii/img-0017.png"] == fresh.png


def test_the_thumbnail_cache_holds_what_the_last_push_showed(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "state" / "thumbnails.zip"
    table = make_table(root, 5)
    b = LocalBackend(tmp_path / "book.xlsx", root, thumb_cache=cache)
    b.write_table(table, make_layout())
    assert len(zipfile.ZipFile(cache).namelist()) == 5
    b.write_table(table.iloc[:2], make_layout())
    assert len(zipfile.ZipFile(cache).namelist()) == 2  # pruned: bounded by one sheet
    # A damaged cache is only lost time: the push draws again and writes a good one.
    cache.write_bytes(b"not a zip")
    b.write_table(table, make_layout())
    assert "(5 drawn)" in b.usage() and len(zipfile.ZipFile(cache).namelist()) == 5


def test_thumbnails_drawn_in_parallel_are_those_drawn_one_by_one(tmp_path: Path) -> None:
    files = []
    for k in range(40):  # above the size at which a pool is used
        files.append(tmp_path / f"{k}.png")
        make_png(files[-1], k, size=(60 + k, 40))
    files.append(tmp_path / "missing.png")
    cache = ThumbnailCache(None)
    parallel = draw_all(files, 50, cache)
    assert parallel == [_xlsx_images.render_thumbnail(f, 50) for f in files]
    assert parallel[-1] is None and cache.drawn == 40
    assert draw_all(files, 50, cache) == parallel and cache.drawn == 40  # all found by content


def test_review_signals_from_the_pixel_cache_equal_those_decoded(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sheetsync.dataset import hash_file

    files = sorted(data_root.rglob("*.png"))
    items = pd.DataFrame({
        "id": [f"id{k}" for k in range(len(files))], "file": [str(f) for f in files],
        "hash": [hash_file(f) for f in files], "label": [f.parent.name for f in files],
        "split": [f.parent.parent.name for f in files], "action": "keep"})
    classes = ["i", "ii", "iii"]
    plain = review_signals(items, None, classes)
    cache = tmp_path / "pixels.npz"
    first = review_signals(items, None, classes, pixel_cache=cache)
    opened = count_opens(monkeypatch, data_root)
    again = review_signals(items.iloc[::-1], None, classes, pixel_cache=cache)
    assert opened == []
    pd.testing.assert_frame_equal(first, plain)
    pd.testing.assert_frame_equal(again.loc[plain.index], plain)
    assert plain["duplicate_of"].astype(bool).sum() == 2  # the byte-identical pair is found


def test_batch_path_checks_agree_with_the_one_by_one_checks(tmp_path: Path) -> None:
    from sheetsync.dataset import safe_join, safe_joiner
    from sheetsync.errors import UnsafePathError

    root, outside = tmp_path / "data", tmp_path / "outside"
    make_png(root / "train/i/a.png", 1)
    make_png(outside / "secret.png", 2)
    (root / "train/link").symlink_to(outside)  # a folder pointing out of the root
    (root / "train/i/out.png").symlink_to(outside / "secret.png")  # a file pointing out
    (root / "train/i/in.png").symlink_to(root / "train/i/a.png")  # a file pointing in
    rels = ["train/i/a.png", "train/link/secret.png", "train/i/out.png", "train/i/in.png",
            "../outside/secret.png", "/etc/passwd", "", "train\\i\\a.png", "train/i/none.png"]
    base = root.resolve()
    assert _xlsx_images.safe_image_paths(base, rels) == [
        _xlsx_images.safe_image_path(base, r) for r in rels]

    def outcome(join, rel):  # type: ignore[no-untyped-def]
        try:
            return join(rel)
        except UnsafePathError as e:
            return str(e)

    join = safe_joiner(root)
    assert [outcome(join, r) for r in rels] == [
        outcome(lambda r: safe_join(root, r), r) for r in rels]


def test_near_pairs_kept_between_pushes_equal_those_found_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second push compares only the new images with the others, and finds the groups
    that comparing all pairs finds (a near copy of an old image, of a new one, removed rows)."""
    import random

    import numpy as np

    from sheetsync import _duplicates
    from sheetsync._pixelcache import cached_near_pairs, pixel_features

    rng = random.Random(3)
    files = []
    for k in range(40):
        files.append(tmp_path / f"{k}.png")
        draw_numeral(["i", "ii", "iii"][k % 3], rng).save(files[-1])

    def near_copy(source: Path, name: str) -> Path:
        with Image.open(source) as im:  # resized: other bytes, other pixels, the same picture
            im.convert("L").resize((im.width - 2, im.height - 2)).save(tmp_path / name)
        return tmp_path / name

    files.append(near_copy(files[0], "copy-of-0.png"))
    cache = tmp_path / "pixels.npz"

    def groups(paths: list[Path], near):  # type: ignore[no-untyped-def]
        from sheetsync.dataset import hash_file

        hashes = [hash_file(p) for p in paths]
        ids = [p.stem for p in paths]
        px = pixel_features(paths, hashes, ids, cache)
        blank = _duplicates.blank_images(ids, px.thumbnails)
        return _duplicates.duplicate_groups(ids, hashes, px.thumbnails, blank=blank, near=near)

    first = groups(files, cached_near_pairs(cache))
    assert first == groups(files, None) and first["copy-of-0"] == ["0"]
    # Next push: rows 5-9 gone, a near copy of an old image and of a new one added.
    later = [f for k, f in enumerate(files) if not 5 <= k < 10]
    new = tmp_path / "new.png"
    draw_numeral("ii", rng).save(new)
    later += [near_copy(files[20], "copy-of-20.png"), new, near_copy(new, "copy-of-new.png")]
    calls: list[int] = []
    real = _duplicates.near_pairs

    def counted(pixels, threshold=_duplicates.NEAR_THRESHOLD, rows=None):  # type: ignore[no-untyped-def]
        calls.append(len(pixels) if rows is None else len(rows))
        return real(pixels, threshold, rows)

    monkeypatch.setattr(_duplicates, "near_pairs", counted)
    again = groups(later, cached_near_pairs(cache))
    monkeypatch.setattr(_duplicates, "near_pairs", real)
    assert again == groups(later, None)
    assert again["copy-of-20"] == ["20"] and again["copy-of-new"] == ["new"]
    assert calls == [3]  # only the three new images were compared with the rest
    assert np.load(cache.with_suffix(".pairs.npz"))["hashes"].size == len(later)
