"""Odd images in real files, through init / push / pull / train: none of them stops a command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from PIL import Image

from sheetsync._imagecheck import check_image, check_images
from sheetsync._itemprogress import no_progress
from sheetsync._words import text_of
from sheetsync.dataset import QUARANTINE
from sheetsync.project import Project
from sheetsync.sheets.local import header_row

ODD = {
    "truncated": "train/i/truncated.png",
    "tiff": "train/ii/scan.tif",
    "sixteen": "train/iii/deep.png",
    "rgba": "train/i/alpha.png",
    "exif": "val/ii/rotated.jpg",
    "garbage": "val/iii/notes.png",
}


def write_odd_images(root: Path) -> None:
    """One real file of each odd kind, beside the ordinary ones (each a different picture:
    copies of one picture under several labels would be flagged as conflicting copies)."""

    def numeral(k: int) -> Image.Image:
        img = Image.new("L", (64, 32), 255)
        img.paste(0, (4 + 9 * k, 4, 14 + 9 * k, 28))
        return img

    full = root / ODD["truncated"]
    numeral(0).save(full)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])  # cut mid-stream, as an interrupted copy leaves it
    numeral(1).save(root / ODD["tiff"])
    deep = (np.asarray(numeral(2), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / ODD["sixteen"])
    assert Image.open(root / ODD["sixteen"]).mode == "I;16"
    alpha = Image.new("RGBA", (64, 32), (0, 0, 0, 0))  # transparent, stored black
    alpha.paste((0, 0, 0, 255), (31, 4, 41, 28))
    alpha.save(root / ODD["rgba"])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    numeral(4).convert("RGB").save(root / ODD["exif"], exif=exif)
    (root / ODD["garbage"]).write_bytes(b"this is not an image\n")


def test_each_odd_image_is_named_and_explained(data_root: Path) -> None:
    write_odd_images(data_root)
    checks = {k: check_image(data_root / p) for k, p in ODD.items()}
    assert "truncated" in checks["truncated"].problem
    assert checks["tiff"].problem.startswith("TIFF format")
    assert checks["garbage"].problem == "not an image file Pillow recognises"
    assert checks["sixteen"] == checks["sixteen"].__class__(note="16-bit image: the model sees it scaled to 8 bits")
    assert "ignores transparency" in checks["rgba"].note and not checks["rgba"].problem
    assert "EXIF says 90° clockwise: ignored" in checks["exif"].note


def test_checks_are_cached_by_hash(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from sheetsync import _imagecheck

    write_odd_images(data_root)
    manifest = pd.DataFrame({"path": list(ODD.values()), "hash": [f"h{i}" for i in range(len(ODD))]})
    cache = tmp_path / "cache.json"
    first = check_images(data_root, manifest, cache)
    calls: list[Path] = []
    monkeypatch.setattr(_imagecheck, "check_image", lambda f: calls.append(f))
    assert check_images(data_root, manifest, cache) == first and calls == []


def test_odd_images_go_through_init_push_pull(data_root: Path, tmp_path: Path) -> None:
    write_odd_images(data_root)
    project, report = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    text = text_of(report)
    # Every unusable file is named at once, at scan time.
    assert "3 image(s) the model cannot read" in text
    for key in ("truncated", "tiff", "garbage"):
        assert ODD[key] in text
    push = project.push()  # does not stop at the first bad file
    summary = push.summary
    assert summary.unreadable == 3 and set(summary.unreadable_paths) == {ODD[k] for k in ("truncated", "tiff", "garbage")}
    assert "unreadable (flagged in the sheet, excluded from training)" in text_of(push)
    book = project.config.resolve(project.config.local.path)
    wb = load_workbook(book)
    ws = wb["data"]
    head = header_row(ws)
    header = [c.value for c in ws[head]]
    col = {n: i + 1 for i, n in enumerate(header)}
    rows = {ws.cell(r, col["path"]).value: r for r in range(head + 1, ws.max_row + 1)}
    why = {k: ws.cell(rows[p], col["why"]).value or "" for k, p in ODD.items()}
    assert why["truncated"].startswith("unreadable: image file is truncated")
    assert why["tiff"].startswith("unreadable: TIFF format") and "drop it" in why["tiff"]
    assert "16-bit" in why["sixteen"] and "EXIF" in why["exif"] and "transparency" in why["rgba"]
    # Unreadable rows are highlighted, so people find them; the odd but usable ones are not.
    flag = "FFFFE699"
    fill = {k: ws.cell(rows[p], col["label"]).fill.fgColor.rgb for k, p in ODD.items()}
    assert all(fill[k] == flag for k in ("truncated", "tiff", "garbage"))
    assert fill["sixteen"] != flag and fill["exif"] != flag
    # Thumbnails: every file Pillow can decode has one (16-bit included); the broken ones not.
    anchored = {img.anchor._from.row + 1 for img in ws._images}
    assert rows[ODD["sixteen"]] in anchored and rows[ODD["tiff"]] in anchored
    assert rows[ODD["truncated"]] not in anchored and rows[ODD["garbage"]] not in anchored
    # People drop the broken files in the sheet; pull sets them aside, nothing is deleted.
    for key in ("truncated", "garbage"):
        ws.cell(rows[ODD[key]], col["action"]).value = "drop"
    wb.save(book)
    assert "recorded v2" in text_of(project.pull())
    v2 = project.versions.load("v2").set_index("id")
    dropped = v2[v2["action"] == "drop"]["path"].tolist()
    assert sorted(Path(p).name for p in dropped) == ["notes.png", "truncated.png"]
    assert all(p.startswith(QUARANTINE) and (data_root / p).exists() for p in dropped)
    assert "unreadable" in text_of(project.push())


@pytest.mark.slow
def test_train_skips_unreadable_images_with_one_line(data_root: Path, tmp_path: Path) -> None:
    write_odd_images(data_root)
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    report = project.train(epochs=1, jit_compile=False)
    text = text_of(report)
    assert ("excluded 3 unreadable image(s) from training: train/i/truncated.png, "
            "train/ii/scan.tif, val/iii/notes.png") in text
    assert "trained on v1" in text
    push = project.push()
    # One epoch on 20 images: the sheet says the ranking means little, and what to run.
    assert push.model is not None and push.model.weak and "MODEL TOO WEAK" in text_of(push)
    assert "sheetsync train --epochs 30" in text_of(push)
