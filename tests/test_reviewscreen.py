"""The review sheet as people see it: layout of the workbook (openpyxl and a LibreOffice-rendered
page) and of Google Sheets (the stand-in), the info line, the highlight rule, the push summary."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tools import need
from openpyxl import load_workbook
from PIL import Image

from sheetsync import _reviewsheet as rs
from sheetsync._itemprogress import no_progress
from sheetsync._words import text_of
from sheetsync.config import Config
from sheetsync.project import Project
from sheetsync.rows import CORE, HEAD, TAIL, layout
from sheetsync.sheets import _xlsx_images as images
from sheetsync.sheets.base import INFO_PREFIX
from sheetsync.sheets.local import LocalBackend, header_row

try:
    from tests._sheets_standin import SheetsStandin, route
except ImportError:  # tests/ is not a package
    from _sheets_standin import SheetsStandin, route

FLAG_RGB = "FFFFE699"


def pushed(data_root: Path, tmp_path: Path, blank_png: Path) -> tuple[Project, Path, object]:
    shutil.copy(blank_png, data_root / "train" / "i" / "blank.png")
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    report = project.push()
    return project, project.config.resolve(project.config.local.path), report


def test_workbook_is_laid_out_for_review(data_root: Path, tmp_path: Path, blank_png: Path) -> None:
    project, book, report = pushed(data_root, tmp_path, blank_png)
    wb = load_workbook(book)
    ws = wb["data"]
    # Row 1: the info line, merged over the columns through `note`; row 2: the header.
    assert header_row(ws) == 2
    info = ws["A1"].value
    assert info.startswith(INFO_PREFIX) and "v1 pushed" in info and "no model yet" in info
    assert "1 blank" in info and "highlighted" in info
    assert [str(r) for r in ws.merged_cells.ranges] == ["A1:J1"]
    header = [c.value for c in ws[2]]
    assert header[:8] == ["image", "label", "action", "checked", "rank", "suggestion", "why",
                          "confidence"]
    assert header[-3:] == ["id", "path", "url"] and set(header) == set(CORE)
    col = {name: i + 1 for i, name in enumerate(header)}
    # Frozen: the info line, the header, and every column through the label.
    assert ws.freeze_panes == "C3"
    # The thumbnail column is sized from the box (112 px by default), each row from its own
    # picture: as tall as the thumbnail plus padding (at most MAX_HEIGHT), never below a line.
    assert project.config.local.thumb_size == 112
    assert ws.column_dimensions["A"].width == pytest.approx(images.column_width_for(112))
    shown = {img.anchor._from.row + 1: (img.anchor.to.rowOff - img.anchor._from.rowOff) // 9525
             for img in ws._images}
    assert len(shown) == ws.max_row - 2
    for r, h in shown.items():
        expected = max(h + 2 * images.PADDING, images.MIN_ROW_PIXELS) * 0.75
        assert ws.row_dimensions[r].height == pytest.approx(expected, abs=0.01), r
    assert max(shown.values()) <= images.MAX_HEIGHT
    assert max(ws.row_dimensions[r].height for r in shown) <= (images.MAX_HEIGHT + 6) * 0.75
    # Number formats, one font, centred cells, wrapped why.
    letter = {name: ws.cell(2, c).column_letter for name, c in col.items()}
    assert ws[f"{letter['confidence']}3"].number_format == "0%"
    assert ws[f"{letter['issue_score']}3"].number_format == "0.00"
    assert ws[f"{letter['margin']}3"].number_format == "+0.00;-0.00;0.00"
    fonts = {ws.cell(r, c).font.name for r in (1, 2, 3, 4) for c in col.values()}
    assert fonts == {"Calibri"}
    # why: one line (not wrapped); a longer text is in full in the cell's note, one reason a line.
    assert not ws[f"{letter['why']}3"].alignment.wrap_text
    assert ws[f"{letter['suggestion']}3"].alignment.wrap_text
    whys = [(ws.cell(r, col["why"]).value or "", ws.cell(r, col["why"]).comment)
            for r in range(3, ws.max_row + 1)]
    long = [(w, c) for w, c in whys if len(w) > ws.column_dimensions[letter["why"]].width]
    assert all(c is not None and c.text == w.replace("; ", ";\n") for w, c in long)
    assert all(c is None for w, c in whys if (w, c) not in long)
    assert ws["A3"].alignment.horizontal == "center" and ws["B3"].alignment.vertical == "center"
    # Header notes: what each column means, and which ones people edit.
    assert ws[f"{letter['label']}2"].comment.text.startswith("Edit:")
    assert ws[f"{letter['suggestion']}2"].comment.text.startswith("Read-only")
    assert "relabel" in ws[f"{letter['suggestion']}2"].comment.text
    # The suggestion column is filled from the review signals: with no model yet only the blank
    # image has one (a blank image is always "drop?"); every other row's cell stays empty.
    suggested = {ws.cell(r, col["path"]).value: ws.cell(r, col["suggestion"]).value
                 for r in range(3, ws.max_row + 1)}
    assert suggested.pop("train/i/blank.png") == "drop?"
    assert suggested and all(v is None for v in suggested.values())
    # Links: the url cell, and the picture.
    url = ws.cell(3, col["url"])
    assert url.hyperlink is not None and url.hyperlink.target == url.value
    assert url.value.startswith("file://") and url.font.u == "single"
    with zipfile.ZipFile(book) as z:
        drawing = z.read("xl/drawings/drawing1.xml").decode()
        rels = z.read("xl/drawings/_rels/drawing1.xml.rels").decode()
    assert drawing.count("<a:hlinkClick ") == ws.max_row - 2
    assert 'TargetMode="External"' in rels and url.value in rels
    # Print: landscape, one page wide, the info line and header on every page.
    assert ws.page_setup.orientation == "landscape"
    assert ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows == "$1:$2"
    # Only the rows the review flags are highlighted: here the blank image.
    flagged = [r for r in range(3, ws.max_row + 1) if ws.cell(r, col["label"]).fill.fgColor.rgb == FLAG_RGB]
    assert [ws.cell(r, col["path"]).value for r in flagged] == ["train/i/blank.png"]
    summary = report.summary
    assert (summary.flagged, summary.blank, summary.rows) == (1, 1, 20)
    # The byte-identical train/val pair: two rows with a copy, both across splits.
    assert (summary.duplicates, summary.duplicates_across_splits) == (2, 2)
    # No model: nothing it would say is counted (not "0 likely label errors").
    assert ("summary: 1 row highlighted; label errors and outliers not counted (no predictions "
            "yet); 2 duplicates") in text_of(report)
    # The scores tab: every header readable, also after an in-place append.
    project.backend.append_score({"version": 1, "best_val_accuracy": 0.5, "test_accuracy": 0.4})
    scores = load_workbook(book)["scores"]
    for c in scores[1]:
        assert scores.column_dimensions[c.column_letter].width >= len(c.value) + 2, c.value


def test_thumbnail_is_centred_in_its_cell(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "train" / "i").mkdir(parents=True)
    Image.new("L", (200, 50), 0).save(root / "train" / "i" / "wide.png")
    table = pd.DataFrame({"image": [""], "label": ["i"], "id": ["a"], "path": ["train/i/wide.png"],
                          "url": [""]})
    book = tmp_path / "b.xlsx"
    LocalBackend(book, root).write_table(table, layout(["i"], ["train"]))
    ws = load_workbook(book)["data"]
    (img,) = ws._images
    x, y = img.anchor._from.colOff // 9525, img.anchor._from.rowOff // 9525
    w = (img.anchor.to.colOff - img.anchor._from.colOff) // 9525
    h = (img.anchor.to.rowOff - img.anchor._from.rowOff) // 9525
    assert (w, h) == (112, 28)  # aspect ratio kept
    # Centred across the box's width, and in a row as tall as the picture plus padding.
    assert (x, y) == images.centre_offsets(112, images.Thumbnail(b"", w, h)) == (6, 3)


def test_why_shows_one_line_and_keeps_the_full_text_in_a_note(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "train" / "i").mkdir(parents=True)
    Image.new("L", (300, 300), 255).save(root / "train" / "i" / "a.png")  # square, as real data
    Image.new("L", (300, 300), 255).save(root / "train" / "i" / "b.png")
    long_why = ("model says iv (0.91); label i has 0.03; cleanlab suspects v; neighbours are iv "
                "(10% share label i); never learned in training (margin -0.52)")
    table = pd.DataFrame({"image": ["", ""], "label": ["i", "i"], "why": [long_why, "blank image"],
                          "id": ["a", "b"], "path": ["train/i/a.png", "train/i/b.png"],
                          "url": ["", ""]})
    book = tmp_path / "b.xlsx"
    LocalBackend(book, root).write_table(table, layout(["i"], ["train"]))
    ws = load_workbook(book)["data"]
    assert ws["C1"].value == "why" and ws["C2"].value == long_why and ws["C3"].value == "blank image"
    assert not ws["C2"].alignment.wrap_text
    assert ws["C2"].comment is not None and ws["C2"].comment.text == long_why.replace("; ", ";\n")
    assert ws["C3"].comment is None
    # A square picture is capped at MAX_HEIGHT: rows about 30 pt, not the box's 88 pt.
    assert ws.row_dimensions[2].height == pytest.approx((images.MAX_HEIGHT + 6) * 0.75)
    assert LocalBackend(book, root).read_table()["why"].tolist() == [long_why, "blank image"]


def test_pull_reads_rows_below_the_info_line(data_root: Path, tmp_path: Path, blank_png: Path) -> None:
    project, book, _ = pushed(data_root, tmp_path, blank_png)
    wb = load_workbook(book)
    ws = wb["data"]
    header = [c.value for c in ws[2]]
    ws.cell(3, header.index("label") + 1).value = "iii"
    path = ws.cell(3, header.index("path") + 1).value
    wb.save(book)
    sheet = project.backend.read_table()
    assert sheet.index[0] == 3 and list(sheet.columns[:2]) == ["image", "label"]
    assert "recorded v2" in text_of(project.pull())
    assert project.versions.load("v2").set_index("path").index.str.endswith(Path(path).name).any()
    v2 = project.versions.load("v2")
    moved = v2[v2["path"].str.endswith("/" + Path(path).name)]
    assert moved["label"].tolist() == ["iii"]


def need_soffice() -> None:
    need("soffice", "pdftoppm", "carlito")


def test_libreoffice_draws_the_thumbnail_at_its_size(tmp_path: Path) -> None:
    """Printed at 100% (a narrow sheet is not shrunk to the page), 96 dpi: 1 px = 1 screen px."""
    need_soffice()
    root = tmp_path / "data"
    (root / "train" / "i").mkdir(parents=True)
    Image.new("RGB", (64, 32), (255, 0, 0)).save(root / "train" / "i" / "red.png")  # 68 x 34
    table = pd.DataFrame({"image": [""], "label": ["i"], "id": ["a"], "path": ["train/i/red.png"],
                          "url": [""]})
    book = tmp_path / "book.xlsx"
    LocalBackend(book, root).write_table(table, layout(["i"], ["train"]))
    profile = tmp_path / "lo-profile"
    subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(tmp_path), str(book)],
                   check=True, capture_output=True, timeout=180)
    subprocess.run(["pdftoppm", "-r", "96", "-png", "-f", "1", "-l", "1", "-singlefile",
                    str(tmp_path / "book.pdf"), str(tmp_path / "page")], check=True, timeout=60)
    page = np.asarray(Image.open(tmp_path / "page.png").convert("RGB")).astype(int)
    red = (page[..., 0] > 200) & (page[..., 1] < 60) & (page[..., 2] < 60)
    ys, xs = np.nonzero(red)
    assert len(xs), "LibreOffice drew no picture"
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    tall = images.MAX_HEIGHT  # the box is 112 wide; the height cap decides here
    assert abs(width - round(64 * tall / 32)) <= 2 and abs(height - tall) <= 2, (width, height)
    assert red.sum() >= 0.95 * width * height  # one solid picture, not scattered pixels


def test_libreoffice_opens_the_image_from_picture_and_url(tmp_path: Path) -> None:
    """LibreOffice keeps both links (read back from its own .ods: draw:a around the picture)."""
    need_soffice()
    root = tmp_path / "data"
    (root / "train" / "i").mkdir(parents=True)
    Image.new("L", (64, 32), 0).save(root / "train" / "i" / "a.png")
    url = (root / "train" / "i" / "a.png").resolve().as_uri()
    table = pd.DataFrame({"image": [""], "label": ["i"], "id": ["a"], "path": ["train/i/a.png"],
                          "url": [url]})
    book = tmp_path / "book.xlsx"
    LocalBackend(book, root).write_table(table, layout(["i"], ["train"]))
    subprocess.run(["soffice", f"-env:UserInstallation=file://{tmp_path / 'lo'}", "--headless",
                    "--convert-to", "ods", "--outdir", str(tmp_path), str(book)],
                   check=True, capture_output=True, timeout=180)
    with zipfile.ZipFile(tmp_path / "book.ods") as z:
        content = z.read("content.xml").decode()
    assert f'<draw:a xlink:href="{url}"' in content  # the picture is a link
    # The url cell: LibreOffice saves it relative to the document (../data/train/i/a.png).
    assert re.search(r'<text:a [^>]*xlink:href="[^"]*data/train/i/a\.png"', content)


def test_review_rule_and_weak_model() -> None:
    ids = [f"r{i}" for i in range(6)]
    signals = pd.DataFrame({
        "priority": [0.9, 0.6, 0.4, 1.0, np.nan, 0.1],
        "blank": [False, False, False, True, False, False],
        "duplicate_conflict": [False] * 6,
        "suspected": ["ii", "", "", "", "", ""],
        "suggestion": ["relabel → ii", "drop?", "", "drop?", "", ""],
        "duplicate_of": [""] * 6, "outlier": [3.0, 1.0, np.nan, 1.0, 1.0, 2.6],
    }, index=ids)
    table = pd.DataFrame({"id": ids})
    # cleanlab's flag, a suggested drop, the blank
    assert rs.flagged_rows(table, signals, weak=False) == (0, 1, 3)
    assert rs.flagged_rows(table, signals.drop(columns="suggestion"), weak=False) == (0, 3)
    # In-sample predictions (no `predict` yet): the suggestions come from a model that saw the
    # labels, and only cleanlab's flags count.
    assert rs.flagged_rows(table, signals, weak=False, out_of_sample=False) == (0, 3)
    # A weak model's doubts are noise: only the blank image (and unreadable files) stay.
    assert rs.flagged_rows(table, signals, weak=True, unreadable_ids=["r5"]) == (3, 5)
    labels = pd.Series(["i", "ii", "iii"] * 2, index=ids)
    uniform = pd.DataFrame(np.full((6, 10), 0.1), index=ids, columns=[str(c) for c in range(10)])
    weak = rs.model_info("in-sample", 1, uniform, labels, current=2, epochs=5, val_accuracy=0.12)
    assert weak.weak.startswith("accuracy 12% is near chance") and weak.stale
    assert "MODEL TOO WEAK" in rs.model_text(weak) and "STALE" in rs.model_text(weak)
    sure = pd.DataFrame(np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.9 + 0.1 / 3, index=ids,
                        columns=["i", "ii", "iii"])
    good = rs.model_info("out-of-sample", 2, sure, labels, current=2)
    assert good.weak == "" and good.val_accuracy == 1.0 and not good.stale
    flat = rs.model_info("out-of-sample", 2, sure * 0 + 1 / 3 + np.eye(3)[[0, 1, 2] * 2] * 0.01,
                         labels, current=2)
    assert "near uniform" in flat.weak or "near chance" in flat.weak
    manifest = pd.DataFrame({"id": ids, "path": [f"p{i}" for i in range(6)],
                             "split": ["train"] * 6, "label": labels.tolist()})
    summary = rs.summarise(signals, manifest, flagged=3, unreadable=["p5"])
    assert (summary.likely_label_errors, summary.blank, summary.outliers, summary.unreadable) == (1, 1, 2, 1)
    assert "1 likely label error;" in rs.summary_text(summary) and "2 outliers" in rs.summary_text(summary)
    # Below the "too weak" line the model's counts are not stated.
    said = rs.summary_text(rs.summarise(signals, manifest, flagged=3, unreadable=["p5"], weak=True))
    assert "likely label errors" not in said and "2 outliers" not in said
    assert "not counted (model too weak)" in said and "1 blank" in said
    # Nor are cleanlab's flags counted from in-sample or stale predictions (no evidence of a
    # wrong label: the model learned those labels, or older ones); the outliers still are.
    for model, why in ((rs.model_info("in-sample", 2, sure, labels, current=2),
                        "in-sample predictions: run `sheetsync predict`"),
                       (rs.model_info("out-of-sample", 1, sure, labels, current=2),
                        "stale predictions: run `sheetsync predict` again")):
        said = rs.summary_text(rs.summarise(signals, manifest, flagged=3, unreadable=["p5"],
                                            uncounted=rs.uncounted(model)))
        assert f"; label errors not counted ({why}); " in said and "2 outliers" in said
    assert rs.uncounted(good) == ""


def test_suggestions_need_an_out_of_sample_model_strong_enough() -> None:
    """In-sample, stale or too-weak predictions: the cell says why there is no suggestion, and
    such a row is not highlighted for it; a picture with no numeral keeps its drop?."""
    ids = ["a", "b", "c", "d"]
    signals = pd.DataFrame({
        "suggestion": ["relabel → ii", "drop?", "", "drop?"],
        "blank": [False, False, False, True], "largest_piece": [0.9, 0.1, 0.9, np.nan],
        "suspected": [""] * 4, "duplicate_conflict": [False] * 4,
    }, index=ids)
    labels = pd.Series(["i", "ii", "iii", "i"], index=ids)
    sure = pd.DataFrame(np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.1 / 3, index=ids,
                        columns=["i", "ii", "iii"])
    weak_probs = sure * 0 + 1 / 3
    table = pd.DataFrame({"id": ids})
    # Every row says why, not only the ones the model would have advised on (c, which the
    # model does not doubt, says it too): which rows those are is the same unsupported advice.
    cases = {
        "out-of-sample": (rs.model_info("out-of-sample", 2, sure, labels, current=2),
                          ["relabel → ii", "drop?", "", "drop?"]),
        "in-sample": (rs.model_info("in-sample", 2, sure, labels, current=2),
                      ["none: in-sample", "drop?", "none: in-sample", "drop?"]),
        "stale": (rs.model_info("out-of-sample", 1, sure, labels, current=2),
                  ["none: stale model", "drop?", "none: stale model", "drop?"]),
        "weak": (rs.model_info("out-of-sample", 2, weak_probs, labels, current=2),
                 ["none: model too weak", "drop?", "none: model too weak", "drop?"]),
    }
    for name, (model, expected) in cases.items():
        gated = rs.gated_suggestions(signals, model)
        assert gated["suggestion"].tolist() == expected, name
        # b is dotted (largest piece 10% of the ink): its drop? stands, highlighted as a
        # suggestion from out-of-sample predictions; the blank d is highlighted whatever the model.
        flagged = rs.flagged_rows(table, gated, weak=bool(model.weak),
                                  out_of_sample=not rs.withheld_because(model))
        assert flagged == ((0, 1, 3) if name == "out-of-sample" else (3,)), name
    # A row the model never scored (new since it ran) says the model is stale, also when its
    # predictions were in-sample; without a model at all the cells stay empty.
    unscored = signals.assign(confidence=[0.9, 0.9, np.nan, np.nan])
    stale_in = rs.model_info("in-sample", 1, sure, labels, current=2)
    assert rs.gated_suggestions(unscored, stale_in)["suggestion"].tolist() == [
        "none: in-sample", "drop?", "none: stale model", "drop?"]
    nothing = rs.model_info("none", None, None, labels, current=2)
    assert rs.gated_suggestions(signals, nothing)["suggestion"].tolist() == list(signals["suggestion"])


def _predicted(project: Project, kind: str, doubted: str) -> None:
    """Predictions of v1 as ``train`` (in-sample) or ``predict`` (oos) leave them: sure of every
    label but ``doubted``'s, which the model reads as another class."""
    m = project.versions.load("latest")
    classes = list(project.config.classes)
    probs = np.full((len(m), len(classes)), 0.05)
    for k, (i, label) in enumerate(zip(m["id"], m["label"], strict=True)):
        other = classes[(classes.index(label) + 1) % len(classes)]
        probs[k, classes.index(other if i == doubted else label)] = 0.9
    emb = np.random.default_rng(0).normal(size=(len(m), 8))
    project.store.save_predictions(1, kind, list(m["id"]), classes, probs, emb, None)


def test_in_sample_push_says_why_on_every_row_and_counts_no_label_errors(
        data_root: Path, tmp_path: Path, blank_png: Path) -> None:
    """Issue 23: in-sample predictions support no suggestion and no count of label errors; the
    sheet says so on every row (not only where the model would have advised), and the info
    line and `push` say the same summary."""
    shutil.copy(blank_png, data_root / "train" / "i" / "blank.png")
    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    m = project.versions.load("latest")
    ids = dict(zip(m["path"], m["id"], strict=True))
    doubted = ids["train/iii/img-0009.png"]
    _predicted(project, "insample", doubted)
    result = project.push()
    sheet = project.backend.read_table().set_index("path")
    cells = sheet["suggestion"].fillna("").astype(str)
    assert cells.pop("train/i/blank.png") == "drop?"  # from the pixels: stands
    assert set(cells) == {"none: in-sample"}, cells.value_counts()
    assert result.summary.likely_label_errors >= 1  # cleanlab flags the doubted row ...
    said = text_of(result)
    # ... but from in-sample predictions that is no evidence, and is not counted as one.
    assert "likely label error" not in said
    assert ("label errors not counted (in-sample predictions: run `sheetsync predict`)"
            in said), said
    info = load_workbook(project.config.resolve(project.config.local.path))["data"]["A1"].value
    summary_line = next(line for line in said.splitlines() if line.startswith("summary: "))
    assert summary_line.removeprefix("summary: ") in info
    assert "labels cleanlab doubts" in info and "flags as likely wrong" not in info
    # Out-of-sample predictions of the same data: the suggestions and the count stand.
    _predicted(project, "oos", doubted)
    result = project.push()
    cells = project.backend.read_table().set_index("path")["suggestion"].fillna("").astype(str)
    assert not any(c.startswith("none:") for c in cells)
    assert "likely label error" in text_of(result) and "not counted" not in text_of(result)


def test_predictions_stay_current_while_only_rows_are_added_and_go_stale_on_a_relabel(
        data_root: Path, tmp_path: Path) -> None:
    """Rows added since the predictions (an augment, new images) change nothing the model
    judged: its suggestions and counts stand (seen: after predict then augment, every row said
    "none: stale model" until a 20-minute predict ran again). A pulled relabel makes them stale."""
    from test_review_rounds import edit_workbook

    project, _ = Project.init(data_root, tmp_path / "proj", progress=no_progress)
    m = project.versions.load("latest")
    ids = dict(zip(m["path"], m["id"], strict=True))
    doubted = ids["train/iii/img-0009.png"]
    _predicted(project, "oos", doubted)
    new = np.full((30, 30), 255, np.uint8)
    new[5:25, 14:17] = 0  # a new picture, like no other
    Image.fromarray(new).save(data_root / "train" / "ii" / "new.png")
    result = project.push()
    assert result.version.version == 2  # the new image made a version the model never saw
    sheet = project.backend.read_table().set_index("path")
    cells = sheet["suggestion"].fillna("").astype(str)
    assert cells.loc["train/iii/img-0009.png"].startswith("relabel → ")
    assert not any(c.startswith("none:") for c in cells), cells.value_counts()
    assert cells.loc["train/ii/new.png"] == ""  # never scored: no advice, and no claim
    said = text_of(result)
    assert "STALE" not in said and "not counted" not in said, said
    # A relabel pulled: what the model judged changed, its advice is stale now.
    other = next(c for c in project.config.classes if c != "i")
    edit_workbook(project, {ids["train/i/img-0001.png"]: {"label": other}})
    project.pull()
    result = project.push()
    cells = project.backend.read_table()["suggestion"].fillna("").astype(str)
    assert "none: stale model" in set(cells)
    assert "stale predictions: run `sheetsync predict` again" in text_of(result)


# -- Google Sheets: the same layout through the stand-in ---------------------------------------

BOT = "sheetsync-bot@team-project.iam.gserviceaccount.com"
BUCKET = "https://storage.googleapis.com/team-bucket/{path}"


def google_project(api: SheetsStandin, data_root: Path, tmp_path: Path) -> tuple[Project, str]:
    from sheetsync.sheets.google import GoogleBackend

    proj = tmp_path / "proj"
    Project.init(data_root, proj, backend="google", progress=no_progress)
    sid = api.create_spreadsheet("labels", shared_with=[BOT])
    key = proj / "credentials.json"
    key.write_text(json.dumps(api.service_account(BOT)))
    key.chmod(0o600)
    config = Config.load(proj)
    config = dataclasses.replace(config, google=dataclasses.replace(
        config.google, spreadsheet=f"https://docs.google.com/spreadsheets/d/{sid}/edit",
        image_url_template=BUCKET))
    config.save()
    backend = GoogleBackend.from_config(Config.load(proj))
    route(backend.client.http_client.session, api)
    return Project(Config.load(proj), progress=no_progress, backend=backend), sid


def test_google_sheet_has_the_same_layout(data_root: Path, tmp_path: Path, blank_png: Path) -> None:
    shutil.copy(blank_png, data_root / "train" / "i" / "blank.png")
    with SheetsStandin() as api:
        project, sid = google_project(api, data_root, tmp_path)
        report = project.push()
        project.push()  # a second push rebuilds the layout over the first one
        sheet = api.sheet(sid, "data")
        values = api.values(sid, "data", "FORMULA")
        assert str(values[0][0]).startswith(INFO_PREFIX) and "1 blank" in values[0][0]
        header = values[1]
        assert tuple(header) == (*HEAD, *TAIL)
        col = {name: i for i, name in enumerate(header)}
        assert (sheet.frozen_rows, sheet.frozen_cols) == (2, col["label"] + 1)
        assert sheet.merges == []  # through "note" would cross the frozen edge: Google refuses
        n = report.rows
        assert len(values) == n + 2
        fmt = sheet.formats
        assert fmt[(2, col["confidence"])]["numberFormat"] == {"type": "PERCENT", "pattern": "0%"}
        assert fmt[(2, col["issue_score"])]["numberFormat"]["pattern"] == "0.00"
        assert {fmt[(r, c)]["textFormat"]["fontFamily"] for r in range(n + 2) for c in col.values()} == {"Calibri"}
        url = values[2][col["url"]]
        assert url.startswith("https://storage.googleapis.com/")
        assert fmt[(2, col["url"])]["textFormat"]["link"] == {"uri": url}
        assert values[2][col["image"]] == f'=IMAGE("{url}")'
        flagged = [r for r in range(2, n + 2)
                   if fmt.get((r, col["label"]), {}).get("backgroundColor") == {"red": 1.0, "green": 0.9, "blue": 0.6}]
        assert [values[r][col["path"]] for r in flagged] == ["train/i/blank.png"]
        sizes = {(d["dimension"], d["start"], d["end"]): d["properties"]["pixelSize"]
                 for d in sheet.dimensions}
        assert sizes[("COLUMNS", col["image"], col["image"] + 1)] == 124
        assert sizes[("ROWS", 2, n + 2)] == 40 and sizes[("ROWS", 0, 1)] == 96
        assert fmt[(2, col["why"])]["wrapStrategy"] == "CLIP"  # one line; the cell holds it all
        assert fmt[(2, col["suggestion"])]["wrapStrategy"] == "WRAP"
        # The scores tab: columns as wide as their headers.
        project.backend.append_score({"version": 1, "best_val_accuracy": 0.5})
        scores = api.sheet(sid, "scores")
        widths = {d["start"]: d["properties"]["pixelSize"] for d in scores.dimensions}
        assert widths[1] >= 8 * len("best_val_accuracy")
        # Read back: the info line is skipped, the index is the sheet row.
        table = project.backend.read_table()
        assert table.index[0] == 3 and list(table.columns) == list(header)


# A 1600x1000 LibreOffice Calc window at 100% zoom: title bar, menu, two toolbars, formula bar,
# column letters, sheet tabs and status bar take about 240 px of its height (LibreOffice 7.4,
# default UI); the rest shows the info line, the header and the rows.
CALC_WINDOW_HEIGHT, CALC_CHROME_HEIGHT = 1000, 240


def test_libreoffice_shows_15_rows_of_real_shaped_images(tmp_path: Path) -> None:
    """The workbook as Calc draws it at 100% (printed at scale 100, 96 dpi, as
    docs/screenshot.py does): info line, header and 15 rows of about-square pictures (the
    competition's numerals are 180-470 px a side) with long ``why`` texts fit the window."""
    need_soffice()
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "screenshot", Path(__file__).resolve().parents[1] / "docs" / "screenshot.py")
    assert spec is not None and spec.loader is not None
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for k in range(20):
        w, h = (int(v) for v in rng.integers(180, 470, size=2))
        im = Image.new("L", (w, h), 255)
        pixels = np.asarray(im).copy()
        for x in rng.integers(w // 5, 4 * w // 5, size=3):  # three strokes: a III
            pixels[h // 6: 5 * h // 6, x: x + max(3, w // 25)] = 0
        (root / "train" / "iii").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "train" / "iii" / f"{k}.png")
        rows.append({"id": f"id{k:02d}", "path": f"train/iii/{k}.png", "url": "", "split": "train",
                     "label": "iii", "action": "keep", "note": "", "suggestion": "relabel → ii",
                     "why": ("model says ii (0.81); label iii has 0.07; cleanlab suspects ii; "
                             "neighbours are ii (20% share label iii); never learned in training "
                             "(margin -0.41); fold seeds disagree (0.35)")})
    table = pd.DataFrame(rows).reindex(columns=CORE, fill_value="")
    table[["confidence", "margin", "loss", "issue_score", "outlier", "map_x", "map_y",
           "cluster"]] = 0.5
    lay = dataclasses.replace(layout(["ii", "iii"], ["train", "val"]),
                              info="sheetsync · v1 pushed now\nmodel: ...\nsummary ...")
    book = tmp_path / "book.xlsx"
    LocalBackend(book, root).write_table(table, lay)
    screen = tmp_path / "screen.xlsx"
    shot.screen_copy(book, screen, 15)
    out = tmp_path / "screen.png"
    shot.render_png(screen, out, tmp_path, 1600, 15)
    page = Image.open(out)
    # The rendered page is as tall as the info line, the header and the 15 rows.
    assert page.height <= CALC_WINDOW_HEIGHT - CALC_CHROME_HEIGHT, page.size
    drawn = np.asarray(page.convert("L")) < 128
    assert drawn[:, :150].sum() > 15 * 100  # the pictures are drawn in the image column
