"""The second ``predict`` after a pull of a few dozen edits (issue 25): fold models fine-tuned
from the previous version's against the same folds trained from scratch.

On all of the competition's train+val images, in a fresh project on the local backend:

1. ``predict`` from scratch (nothing cached), then ``push``;
2. a reviewer reads the pushed sheet from the top and applies the independent review's answer
   to the first ``--edits`` problems met (relabel to the review's class, or drop), then ``pull``;
3. ``predict`` (the changed folds fine-tune the previous version's fold models for
   ``[review] warm_epochs`` epochs), then ``push``;
4. ``predict --from-scratch`` on the same version (the changed folds train from scratch), then
   ``push``.

It prints each predict's wall and CPU seconds and the machine's load, and the share of the
review's problems that the first 5/10/15/20% of the pushed rows hold (the edited rows left out:
they are checked and go last). Floors: the warm predict within a third of the first one's wall
time, and its share at 15% within one point of the from-scratch one's.

    python -m bench.bench_predict_warm                      # 40 edits, ../shared/data/dcai
    python -m bench.bench_predict_warm --edits 60 --work /tmp/warm
    python -m bench.bench_predict_warm --warm-epochs 5      # another fine-tuning length

Run it alone on the machine: each predict trains fold models in two worker processes, and a
second heavy job slows one predict more than another.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.bench_predict_scale import CUTS, DEFAULT_DATA, cpu_seconds, slice_project

FLOOR_TIME = 1 / 3
FLOOR_POINTS = 0.01


def apply_review(workbook: Path, review: pd.DataFrame, edits: int) -> list[str]:
    """Read the sheet from the top and apply the review's answer to the first ``edits``
    problems: the review's class in ``label`` for a fix, ``drop`` in ``action`` for a removal.
    Returns the paths edited."""
    from openpyxl import load_workbook

    from sheetsync.sheets.local import header_row

    wb = load_workbook(workbook)
    ws = wb["data"]
    top = header_row(ws)
    names = [c.value for c in ws[top]]
    col = {n: names.index(n) + 1 for n in names if isinstance(n, str)}
    done: list[str] = []
    for r in range(top + 1, ws.max_row + 1):
        if len(done) >= edits:
            break
        path = str(ws.cell(r, col["path"]).value)
        if path not in review.index or review.at[path, "verdict"] == "keep":
            continue
        if review.at[path, "verdict"] == "fix" and isinstance(review.at[path, "corrected_label"], str):
            ws.cell(r, col["label"]).value = review.at[path, "corrected_label"]
        else:
            ws.cell(r, col["action"]).value = "drop"
        done.append(path)
    wb.save(workbook)
    return done


def shares(project, review: pd.DataFrame, edited: set[str]) -> list[float]:
    """Push, then the share of the review's problems among the unedited train/val rows that
    the first rows of the sheet hold."""
    project.push()
    sheet = project.backend.read_table()
    sheet = sheet[sheet["split"].astype(str).isin(["train", "val"])
                  & ~sheet["path"].astype(str).isin(edited)]
    verdict = review["verdict"].reindex(sheet["path"].astype(str).to_numpy())
    problem = (verdict.fillna("keep") != "keep").to_numpy()
    total = max(1, int(problem.sum()))
    return [float(problem[: round(c * len(problem))].sum()) / total for c in CUTS]


def timed_predict(project, label: str, **kw) -> tuple[float, object]:
    load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), cpu_seconds()
    result = project.predict(**kw)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"{label}: {wall:6.0f} s wall, {cpu:6.0f} s CPU, load {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; fine-tuned {result.fine_tuned}, reused {result.reused} "
          f"of {result.folds * result.seeds} folds", flush=True)
    return wall, result


def share_line(found: list[float]) -> str:
    return ", ".join(f"{c:.0%}: {x:.1%}" for c, x in zip(CUTS, found, strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--edits", type=int, default=40, help="problems the reviewer fixes (40)")
    ap.add_argument("--work", type=Path, help="keep the project here (default: a temp folder)")
    ap.add_argument("--size", type=int, help="a random slice of this many images (all: default)")
    ap.add_argument("--epochs", type=int, help="epochs per fold from scratch (a quick check)")
    ap.add_argument("--fold-seeds", type=int, help="k-fold runs (a quick check)")
    ap.add_argument("--warm-epochs", type=int,
                    help="[review] warm_epochs for the fine-tuned predict (default: the project's)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    review = pd.read_csv(args.data / "reviews" / "independent_review.csv").set_index("path")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-predict-warm-"))
    project, n = slice_project(args.data, work, args.size)
    if args.warm_epochs is not None:
        review_cfg = dataclasses.replace(project.config.review, warm_epochs=args.warm_epochs)
        project.config = dataclasses.replace(project.config, review=review_cfg)
    quick = {"epochs": args.epochs, "fold_seeds": args.fold_seeds}
    cfg = project.config.review
    print(f"{os.cpu_count()} CPUs, {n} images; [review] folds {cfg.folds}, epochs {cfg.epochs}, "
          f"fold_seeds {cfg.fold_seeds}, warm_epochs {cfg.warm_epochs}", flush=True)
    first, _ = timed_predict(project, "1. predict, nothing cached", **quick)
    print(f"   the review's problems in the first {share_line(shares(project, review, set()))}")
    edited = set(apply_review(project.backend.path, review, args.edits))
    pulled = project.pull()
    name = pulled.version.name if pulled.version else "nothing recorded"
    print(f"2. pulled {len(edited)} edits from the top of the sheet ({name}, "
          f"{pulled.edited} rows changed)",
          flush=True)
    warm, _ = timed_predict(project, "3. predict after the pull (warm start)", **quick)
    warm_found = shares(project, review, edited)
    print(f"   the review's other problems in the first {share_line(warm_found)}")
    cold, _ = timed_predict(project, "4. predict --from-scratch, same version", from_scratch=True,
                            **quick)
    cold_found = shares(project, review, edited)
    print(f"   the review's other problems in the first {share_line(cold_found)}")
    ratio = warm / first
    gap = warm_found[CUTS.index(0.15)] - cold_found[CUTS.index(0.15)]
    ok_time, ok_recall = ratio <= FLOOR_TIME, abs(gap) <= FLOOR_POINTS
    print(f"floor: the warm predict within a third of the first ({ratio:.1%}; "
          f"{warm / cold:.1%} of the from-scratch one): {'PASS' if ok_time else 'FAIL'}")
    print(f"floor: at 15% within one point of from scratch ({gap * 100:+.1f} points): "
          f"{'PASS' if ok_recall else 'FAIL'}")
    return 0 if ok_time and ok_recall else 1


if __name__ == "__main__":
    sys.exit(main())
