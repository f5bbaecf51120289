"""`sheetsync report` end to end on a tiny real project, and the page in a real browser.

One module fixture trains the fixed model for one epoch twice (v1, then v2 after a val image
moved to train on disk) and writes the report; the tests read the result, the
score rows, the sheet and the page (headless Chromium through Playwright, network blocked).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tools import need
from click.testing import CliRunner
from conftest import CLASSES, write_images
from PIL import Image

from sheetsync import Project
from sheetsync.cli import cli
from sheetsync.errors import ReportError, SheetValidationError
from sheetsync.report import INSTALL_HINT, sample_points

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "data"
    write_images(root, {"train": {c: 10 for c in CLASSES}, "val": {c: 5 for c in CLASSES},
                        "label_book": {c: 2 for c in CLASSES}})
    Image.new("L", (40, 20), 255).save(root / "train" / "i" / "blank.png")
    project, _ = Project.init(root, tmp / "proj")
    project.train(epochs=1, jit_compile=False)
    moved = sorted((root / "val" / "ii").iterdir())[0]
    shutil.move(moved, root / "train" / "ii" / moved.name)  # v2: the val set changes
    project.train(epochs=1, jit_compile=False)
    result = project.report(out=tmp / "report.html")
    return project, result


def test_score_rows_carry_intervals_and_val_set(reported) -> None:
    project, _ = reported
    scores = project.scores.read()
    assert list(scores["version"]) == ["1", "2"]
    for row in scores.to_dict("records"):
        low, acc, high = (float(row[k]) for k in ("val_ci_low", "best_val_accuracy", "val_ci_high"))
        assert low <= acc <= high and high - low > 0.05  # 15 val images: a wide interval
        assert float(row["test_ci_low"]) <= float(row["test_accuracy"]) <= float(row["test_ci_high"])
        assert row["test_n"] == "6"
    assert scores.loc[0, "val_n"] == "15" and scores.loc[1, "val_n"] == "14"
    assert scores.loc[0, "val_set"] != scores.loc[1, "val_set"]


@pytest.mark.slow
def test_train_repeats_records_the_spread_of_seeds(data_root: Path, tmp_path: Path) -> None:
    project, _ = Project.init(data_root, tmp_path / "proj")
    project.train(epochs=2, jit_compile=False, repeats=3)
    row = project.scores.read().iloc[-1]
    assert row["repeats"] == "3" and float(row["val_repeat_sd"]) >= 0
    assert list((project.state).glob("tmp-*")) == []  # the extra runs' weights are gone


def test_report_result_and_map_columns(reported) -> None:
    project, result = reported
    assert result.version == 2 and result.n_images == result.n_shown == 46
    assert result.path.stat().st_size == result.size_bytes > 900_000  # the Vega bundle is inlined
    found = {f.key: f for f in result.findings}
    assert found["blank"].count == 1 and found["blank"].ids == [_id_of(project, "train/i/blank.png")]
    assert result.coverage.n_train == 32 and result.coverage.n_val == 14
    # One epoch on 46 images: a model below the "too weak" line. The page states no coverage
    # verdict and no counts of label errors or outliers, and says the sheet's model line.
    assert result.coverage.withheld.startswith("accuracy")
    assert result.coverage.verdict.startswith("No verdict: the model is too weak")
    assert not result.coverage.covers and result.coverage.gaps == []
    assert "label-errors" not in found and "outliers" not in found
    page = result.path.read_text()
    assert "MODEL TOO WEAK" in page and "Likely label errors and outliers are not counted" in page
    assert "in-sample predictions of v2, 1 epoch, val accuracy" in page
    m = pd.read_csv(result.map_csv, dtype={"id": str})
    assert set(m["id"]) == set(project.versions.load("latest")["id"])
    assert np.isfinite(m[["map_x", "map_y"]].to_numpy()).all()


def test_push_puts_map_columns_into_the_sheet(reported) -> None:
    project, result = reported
    project.push()
    sheet = project.backend.read_table().set_index("id")
    m = pd.read_csv(result.map_csv, dtype={"id": str}).set_index("id")
    cols = list(sheet.columns)
    # The review sheet's order: the map columns end the review columns, the identifiers last.
    assert cols.index("map_x") > cols.index("why")
    assert cols[-5:] == ["map_x", "map_y", "cluster", "path", "url"]
    got = sheet.loc[m.index, ["map_x", "map_y", "cluster"]].astype(float)
    assert np.allclose(got.to_numpy(), m[["map_x", "map_y", "cluster"]].to_numpy(), atol=1e-3)
    # The page's suggestion for each image is the sheet's cell, word for word ("" where empty).
    import json

    page = result.path.read_text()
    payload = json.loads(re.search(r"<script type=application/json id=payload>(.*?)</script>",
                                   page, re.S).group(1).replace("<\\/", "</"))
    points = payload["specs"]["map"]["datasets"][payload["mapData"]]
    shown = {p["id"]: p["suggestion"] for p in points}
    cells = sheet["suggestion"].fillna("").astype(str)
    assert shown == {i: cells[i] for i in shown}
    assert set(shown.values()) <= {"", "drop?", "none: model too weak"}  # weak: nothing else
    assert shown[_id_of(project, "train/i/blank.png")] == "drop?"


def test_pull_checks_the_map_columns_as_numbers(reported) -> None:
    from openpyxl import load_workbook

    project, _ = reported
    project.push()
    published = project.store.read_published()
    assert {"map_x", "map_y", "cluster"} <= set(published.columns)
    assert project.pull().edited == 0  # the sheet's numbers are what the push saved
    path = project.config.resolve(project.config.local.path)
    wb = load_workbook(path)
    ws = wb["data"]
    top = next(r for r in (1, 2) if "map_x" in [c.value for c in ws[r]])  # the header row
    col = [c.value for c in ws[top]].index("map_x") + 1
    first, second = ws.cell(top + 1, col).value, ws.cell(top + 2, col).value
    assert first != second
    ws.cell(top + 1, col).value, ws.cell(top + 2, col).value = second, first  # a sort of map_x alone
    wb.save(path)
    with pytest.raises(SheetValidationError, match="map_x"):
        project.pull()
    project.push(force=True)  # the later tests read a clean sheet


def test_page_is_self_contained(reported) -> None:
    _, result = reported
    page = result.path.read_text()
    assert not re.search(r"<script[^>]*\ssrc=", page) and "<link" not in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "val set changed" in page or "were validated on different images" in page
    assert "v1 #1 and v2 #2 were validated on different images" in page
    # Each score is drawn with how its model was trained.
    assert "v1 #1 (1 epoch, seed " in page and "v2 #2 (1 epoch, seed " in page


def test_page_renders_hovers_and_brushes_in_chromium(reported) -> None:
    need("chromium")
    from playwright.sync_api import sync_playwright

    project, result = reported
    ids = set(project.versions.load("latest")["id"])
    errors: list[str] = []
    blocked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1300, "height": 1000})

        def only_files(route):  # no network: anything but the file itself is refused
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(result.path.as_uri())
        page.wait_for_function("window.sheetsyncReport && window.sheetsyncReport.ready",
                               timeout=30_000)
        # The first symbol mark is the points layer (then the gap rings; legends are not marks).
        dots = page.locator("#map g.mark-symbol.role-mark").first.locator("path")
        assert dots.count() == result.n_shown
        for chart in ("counts", "cm-val", "cm-test", "per-class", "scores"):
            assert page.locator(f"#{chart} svg").count() == 1, chart

        box = dots.nth(0).bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        tip = page.locator("#vg-tooltip-element")
        tip.locator("img").wait_for(state="visible", timeout=5_000)
        assert tip.locator("img").get_attribute("src").startswith("data:image/png;base64,")
        hovered = [i for i in ids if i in tip.inner_text()]
        assert len(hovered) == 1
        # The tooltip's suggestion is the sheet's cell: empty here (in-sample, too weak), and
        # never a "keep" the sheet does not say.
        assert "keep" not in tip.inner_text()
        page.screenshot(path=str(result.path.with_suffix(".png")), full_page=True)

        # A box around the hovered point: the list shows it, and not every image.
        page.mouse.move(cx - 30, cy - 30)
        page.mouse.down()
        page.mouse.move(cx + 30, cy + 30, steps=8)
        page.mouse.up()
        page.wait_for_function("document.querySelectorAll('#selection figure').length > 0",
                               timeout=5_000)
        shown = page.locator("#selection figure")
        n = shown.count()
        assert page.locator("#selection-count").inner_text().startswith(f"{n} image(s) selected")
        assert 0 < n < result.n_shown
        listed = {shown.nth(k).get_attribute("data-id") for k in range(n)}
        assert hovered[0] in listed and listed <= ids
        assert shown.nth(0).locator("img").get_attribute("src").startswith("data:image/png")

        assert page.locator("#map-legend").inner_text().split()[:2] == ["class", "i"]
        colours = dots.evaluate_all("els => new Set(els.map(e => e.getAttribute('fill'))).size")
        page.select_option("#map select", "split")
        page.wait_for_function("document.getElementById('map-legend').innerText.startsWith('split')",
                               timeout=5_000)
        assert page.locator("#map-legend").inner_text().split() == ["split", "train", "val"]
        after = dots.evaluate_all("els => new Set(els.map(e => e.getAttribute('fill'))).size")
        assert (colours, after) == (3, 2)  # three classes, then two splits
        browser.close()
    assert blocked == [] and errors == []


def test_report_before_training_says_what_to_do(data_root: Path, tmp_path: Path) -> None:
    project, _ = Project.init(data_root, tmp_path / "proj")
    with pytest.raises(ReportError, match="nothing trained yet: run `sheetsync train` first"):
        project.report()


def test_without_the_extra_the_cli_says_how_to_install(data_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    Project.init(data_root, tmp_path / "proj")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "umap" else real(name, *a))
    out = CliRunner().invoke(cli, ["-C", str(tmp_path / "proj"), "report"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [f"Error: {INSTALL_HINT} (missing: umap)"]


def test_sampling_keeps_flagged_points_and_the_budget() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    points = pd.DataFrame({"id": [f"p{i}" for i in range(n)],
                           "split": rng.choice(["train", "val"], n, p=[0.7, 0.3]),
                           "label": rng.choice(CLASSES, n),
                           "suggestion": np.where(rng.random(n) < 0.02, "relabel → ii", "")})
    shown = sample_points(points, 1000, seed=1)
    assert 990 <= len(shown) <= 1000 and shown["id"].is_unique
    assert set(points.loc[points["suggestion"] != "", "id"]) <= set(shown["id"])
    share = shown[shown["suggestion"] == ""]["split"].value_counts(normalize=True)
    assert abs(share["val"] - 0.3) < 0.03
    assert sample_points(points.head(50), 1000, seed=1)["id"].tolist() == points["id"][:50].tolist()


def _id_of(project: Project, path: str) -> str:
    m = project.versions.load("latest")
    return str(m.loc[m["path"] == path, "id"].iloc[0])


def test_a_torn_embeddings_file_is_one_clear_error(data_root: Path, tmp_path: Path) -> None:
    project, _ = Project.init(data_root, tmp_path / "proj")
    torn = project.state / "predictions" / "v0001-insample.npz"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(ReportError, match=r"cannot read the embeddings in .*v0001-insample.npz"):
        project.report()
    assert torn.read_bytes() == b"PK\x03\x04 not a whole zip"  # nothing was touched


def test_report_and_scores_at_the_terminal_show_progress_and_fit_100_columns(reported) -> None:
    project, _ = reported
    runner = CliRunner()
    out = runner.invoke(cli, ["-C", str(project.config.project_dir), "report", "-o",
                              str(project.config.project_dir / "again.html")])
    assert out.exit_code == 0, out.output
    # The long steps are said as they start (stderr); the map of this data is cached by now.
    assert out.stderr.splitlines() == ["mapping 46 images (cached)…", "drawing 46 thumbnails…",
                                       "writing the page…"]
    assert out.stdout.splitlines()[-1].startswith(
        f"next: open {project.config.project_dir / 'again.html'} in a browser")
    scores = runner.invoke(cli, ["-C", str(project.config.project_dir), "scores"])
    lines = scores.output.splitlines()
    assert scores.exit_code == 0 and max(map(len, lines)) <= 100, scores.output
    assert lines[-1].startswith("next: sheetsync report")


def test_an_in_sample_page_counts_no_label_errors_and_shows_the_sheets_cells(
        data_root: Path, tmp_path: Path) -> None:
    """Issue 23: the page says what the push summary says for the same model (in-sample
    predictions: cleanlab's flags are not counted as label errors) and each point's suggestion
    is the sheet's cell, "none: in-sample" on every row the model scored."""
    from sheetsync._words import text_of

    project, _ = Project.init(data_root, tmp_path / "proj")
    m = project.versions.load("latest")
    doubted = _id_of(project, "train/iii/img-0009.png")
    probs = np.full((len(m), len(CLASSES)), 0.05)
    for k, (i, label) in enumerate(zip(m["id"], m["label"], strict=True)):
        probs[k, CLASSES.index("i" if i == doubted else label)] = 0.9  # sure, but of one
    emb = np.random.default_rng(0).normal(size=(len(m), 8))
    project.store.save_predictions(1, "insample", list(m["id"]), list(CLASSES), probs, emb, None)
    pushed = project.push()
    assert pushed.summary.likely_label_errors >= 1  # cleanlab flags the doubted row
    result = project.report(out=tmp_path / "page.html")
    why = "in-sample predictions: run `sheetsync predict`"
    assert result.uncounted == why and not result.weak
    found = {f.key for f in result.findings}
    assert "label-errors" not in found and "outliers" in found
    page = result.path.read_text()
    assert f"Likely label errors are not counted: {why}." in page
    assert f"label errors not counted ({why})" in text_of(pushed)
    assert f"  Likely label errors: not counted ({why})" in text_of(result).splitlines()
    import json

    payload = json.loads(re.search(r"<script type=application/json id=payload>(.*?)</script>",
                                   page, re.S).group(1).replace("<\\/", "</"))
    points = payload["specs"]["map"]["datasets"][payload["mapData"]]
    cells = project.backend.read_table().set_index("id")["suggestion"].fillna("").astype(str)
    assert {p["id"]: p["suggestion"] for p in points} == cells.to_dict()
    assert set(cells) == {"none: in-sample"}


def test_the_page_prefers_predicts_out_of_sample_results_and_then_states_a_verdict(reported) -> None:
    """Out-of-sample predictions of the current version (as `predict` saves them) replace the
    in-sample ones on the page, as in the sheet; a model above the "too weak" line gets its
    coverage verdict and its counts back. Runs last: it adds predictions to the project."""
    project, _ = reported
    m = project.versions.load("latest")
    ids, labels = list(m["id"].astype(str)), list(m["label"])
    probs = np.full((len(ids), len(CLASSES)), 0.05)
    for k, lab in enumerate(labels):
        probs[k, CLASSES.index(lab)] = 0.9  # a strong model that agrees with every label
    project.store.save_predictions(2, "oos", ids, list(CLASSES), probs, None, None)
    result = project.report(out=project.state / "strong.html")
    page = result.path.read_text()
    assert "model: out-of-sample predictions of v2" in page and "MODEL TOO WEAK" not in page
    assert not result.coverage.withheld
    assert result.coverage.verdict.startswith(("Yes:", "No:", "Cannot tell:"))
    found = {f.key for f in result.findings}
    assert {"label-errors", "outliers"} <= found
