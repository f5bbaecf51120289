"""The CLI's words: compact tables, the next command, -C and the project found from a subfolder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from sheetsync import Project
from sheetsync._tables import diff_lines, scores_lines, table
from sheetsync.cli import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def _relabel_first_row(workbook: Path) -> tuple[str, str]:
    """Give the first data row another label and a long note, as a person would: its path
    and the new label."""
    from openpyxl import load_workbook

    from sheetsync.sheets.local import header_row

    wb = load_workbook(workbook)
    ws = wb["data"]
    top = header_row(ws)  # below the info line
    header = [c.value for c in ws[top]]
    path = str(ws.cell(top + 1, header.index("path") + 1).value)
    new = next(c for c in ("i", "ii", "iii") if c != path.split("/")[1])
    ws.cell(top + 1, header.index("label") + 1).value = new
    ws.cell(top + 1, header.index("note") + 1).value = "a note long enough to be cut in a narrow table " * 3
    wb.save(workbook)
    return path, new


def test_each_command_suggests_the_next_one(runner: CliRunner, data_root: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    assert "next: sheetsync train" in run(runner, "-C", str(proj), "init", str(data_root))
    out = run(runner, "-C", str(proj), "push")
    assert out.strip().splitlines()[-1].startswith("next: edit label") and "sheetsync pull" in out
    # Nothing to pull or push: a clean status says what is left, as the README promises.
    clean = run(runner, "-C", str(proj), "status").strip().splitlines()
    assert clean[-1] == "next: sheetsync train (a score for v1), then sheetsync push"
    Project.open(proj).scores.append({"version": 1, "best_val_accuracy": 0.5, "test_accuracy": ""})
    clean = run(runner, "-C", str(proj), "status").strip().splitlines()
    assert clean[-1] == (f"next: edit label / split / action / note in {proj / 'sheetsync.xlsx'}, "
                         "then sheetsync pull")
    path, _ = _relabel_first_row(proj / "sheetsync.xlsx")
    edited = run(runner, "-C", str(proj), "status")
    assert edited.strip().splitlines()[-1] == "next: sheetsync pull"
    # The unpulled edits are listed within 100 columns (the long note is cut).
    pending = [line for line in edited.splitlines() if line.startswith("  row ")]
    assert len(pending) == 2 and max(map(len, pending)) == 100 and pending[1].endswith("…")
    assert "next: sheetsync pull (without --dry-run)" in run(runner, "-C", str(proj), "pull", "--dry-run")
    out = run(runner, "-C", str(proj), "pull")
    assert "next: sheetsync train (a score for v2)" in out, (out, path)
    assert "next:" not in run(runner, "-C", str(proj), "pull")  # nothing to pull


def test_diff_log_and_dry_run_are_compact(runner: CliRunner, data_root: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    run(runner, "-C", str(proj), "init", str(data_root))
    run(runner, "-C", str(proj), "push")
    first, new = _relabel_first_row(proj / "sheetsync.xlsx")
    dry = run(runner, "-C", str(proj), "pull", "--dry-run")
    assert f"label {first.split('/')[1]} → {new}" in dry
    run(runner, "-C", str(proj), "pull")
    out = run(runner, "-C", str(proj), "diff", "v1", "v2")
    lines = out.splitlines()
    assert lines[0] == "1 image(s) differ between v1 and v2 (1 label, 1 note)"
    assert lines[1].split() == ["id", "image", "changes"]
    moved = f"train/{new}/{first.rsplit('/', 1)[1]}"
    assert moved in lines[2] and f"label {first.split('/')[1]} → {new}" in lines[2]
    assert "…" in lines[2]  # the long note is cut
    log = run(runner, "-C", str(proj), "log").splitlines()
    assert log[0].split()[:4] == ["version", "when", "(UTC)", "train"]
    assert log[2].startswith("v2 ") and "pull: 1 row(s) edited" in log[2]
    for text in (dry, out, "\n".join(log)):
        assert max(map(len, text.splitlines())) <= 100, text


def test_scores_table_fits_100_columns_and_reads_seconds() -> None:
    rows = [{"version": v, "time": "2026-12-01T07:34:43+00:00", "train": 2067, "val": 813,
             "dropped": 12, "test": 52, "best_val_accuracy": 0.81234, "test_accuracy": 0.8,
             "epochs": 100, "best_epoch": 87, "seed": 123, "seconds": 4243.4685} for v in (1, 12)]
    lines = scores_lines(pd.DataFrame(rows))
    assert max(map(len, lines)) <= 100
    assert "1 h 10 min" in lines[1] and "0.81" in lines[1] and "4243" not in lines[1]
    assert lines[2].startswith("v12 ")


def test_table_cuts_the_flexible_column_to_fit() -> None:
    lines = table(["id", "changes"], [["abc", "x" * 300]], width=40)
    assert max(map(len, lines)) == 40 and lines[1].endswith("…")


def test_diff_of_identical_versions() -> None:
    empty = pd.DataFrame(columns=["id", "change", "field", "before", "after"])
    assert diff_lines(empty, "v1", "v2") == ["no differences between v1 and v2"]


def test_dash_c_names_the_folder_given(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    out = run(runner, "-C", str(missing), "status", code=1)
    assert out.strip() == f"Error: -C {missing}: no such folder"


def test_project_found_from_a_subfolder(runner: CliRunner, data_root: Path, tmp_path: Path,
                                        tmp_path_factory: pytest.TempPathFactory,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run(runner, "-C", str(tmp_path), "init", str(data_root))  # tmp_path/sheetsync.toml, tmp_path/data
    monkeypatch.chdir(data_root / "train" / "ii")
    assert f"{data_root}: v1, 19 images" in run(runner, "status", "--no-sheet")
    # and in a real process, as a person runs it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "sheetsync", "log"], cwd=data_root / "val",
                          env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[1].startswith("v1 ")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    outside = subprocess.run([sys.executable, "-m", "sheetsync", "log"], cwd=elsewhere, env=env,
                             capture_output=True, text=True)
    assert outside.returncode == 1
    assert outside.stderr.startswith(f"Error: no sheetsync.toml in {elsewhere} or any folder above")


def test_scores_of_real_score_rows_fit_100_columns() -> None:
    # A score row as train writes it (sheetsync.inputs.score_row + score_intervals +
    # repeat_fields): its intervals, digest and spread stay out of the terminal table.
    from sheetsync._bootstrap import score_fields, set_digest

    rows = [{"version": v, "time": "2026-12-01T07:34:43+00:00", "train": 2067, "val": 813,
             "dropped": 12, "test": 52, "derived": 0, "best_val_accuracy": 0.81234,
             "test_accuracy": 0.8, "epochs": 100, "best_epoch": 87, "seed": 123,
             "seconds": 4243.4685, **score_fields("val", [True, False, True] * 271),
             "val_set": set_digest(["a", "b"], ["i", "ii"]),
             **score_fields("test", [True, False] * 26), "repeats": 3, "val_repeat_sd": 0.0123,
             "test_repeat_sd": 0.0211} for v in (1, 12)]
    lines = scores_lines(pd.DataFrame(rows))
    assert max(map(len, lines)) <= 100, "\n".join(lines)
    assert lines[0].split()[:6] == ["version", "when", "(UTC)", "train", "val", "test"]


def test_log_diff_and_scores_end_with_the_next_command(runner: CliRunner, data_root: Path,
                                                       tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    run(runner, "-C", str(proj), "init", str(data_root))
    # One version: nothing to compare yet; the next version comes from the sheet.
    assert run(runner, "-C", str(proj), "log").splitlines()[-1] == (
        "next: sheetsync push, edit the sheet, then sheetsync pull (a new version)")
    assert run(runner, "-C", str(proj), "scores").splitlines()[-1] == (
        "next: sheetsync train (a first score row)")
    run(runner, "-C", str(proj), "push")
    _relabel_first_row(proj / "sheetsync.xlsx")
    run(runner, "-C", str(proj), "pull")
    log = run(runner, "-C", str(proj), "log").splitlines()
    assert log[-1] == "next: sheetsync diff v1 v2 (what changed), or sheetsync checkout VERSION to go back"
    diff = run(runner, "-C", str(proj), "diff", "v1", "v2").splitlines()
    assert diff[-1].startswith("next: sheetsync checkout v1 ")
    assert all(len(line) <= 100 for line in [*log, *diff])


def test_the_summary_line_says_one_row_not_one_rows() -> None:
    from sheetsync._reviewsheet import PushSummary, summary_text

    one = PushSummary(rows=5, likely_label_errors=1, duplicates=1, duplicates_across_splits=0,
                      conflicting_duplicates=0, blank=1, unreadable=0, outliers=1, flagged=1)
    assert summary_text(one) == ("1 row highlighted; 1 likely label error; 1 duplicate (0 across "
                                 "splits, 0 under another label); 1 blank, 0 unreadable; 1 outlier; "
                                 "0 rows checked (0 relabelled or dropped, 0 right)")
    two = PushSummary(rows=5, likely_label_errors=2, duplicates=2, duplicates_across_splits=2,
                      conflicting_duplicates=0, blank=0, unreadable=0, outliers=0, flagged=2, checked=1,
                      checked_problems=1)
    assert summary_text(two).endswith("; 1 row checked (1 relabelled or dropped, 0 right)")
    assert summary_text(two).startswith("2 rows highlighted; 2 likely label errors; 2 duplicates")


def test_the_report_map_hides_tensorflows_start_up_lines(tmp_path: Path) -> None:
    # umap imports TensorFlow, which writes its start-up lines straight to descriptor 2.
    code = ("import numpy as np; from sheetsync.report import umap_coords; "
            "print(umap_coords(np.random.default_rng(0).normal(size=(30, 8)), 0).shape)")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SHEETSYNC_VERBOSE")}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(30, 2)"
    assert "oneDNN" not in done.stderr and "cuda" not in done.stderr.lower(), done.stderr
    assert done.stderr.strip() == ""


def test_watch_says_a_pulls_skipped_files_and_recovery_as_the_pull_command_does() -> None:
    # The watcher emits typed fields (JSON-able); the words are the ones `sheetsync pull` prints.
    from dataclasses import asdict

    from sheetsync._words import warnings_of, watch_event_json, watch_event_text
    from sheetsync.dataset import SkippedFile
    from sheetsync.journal import Recovery
    from sheetsync.results import CheckoutResult
    from sheetsync.versions import VersionInfo
    from sheetsync.watch import Event

    skipped = [SkippedFile("train/i/a\\b.png", "backslash")]
    recovered = Recovery(completed=False, version=3, reason="a file changed meanwhile")
    result = CheckoutResult(1, VersionInfo(2, "", "", {}), 0, 0, recovered=recovered,
                            skipped=skipped)
    events = [Event("t", "recovered", asdict(recovered)),
              Event("t", "skipped", {"files": [asdict(s) for s in skipped]})]
    assert [watch_event_text(e) for e in events] == warnings_of(result)
    assert '"event": "skipped"' in watch_event_json(events[1])
