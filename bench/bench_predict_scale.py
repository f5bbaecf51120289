"""Does ``predict``'s cost follow the data? (issue 25) ``predict`` with its defaults, from
scratch, on a random slice of the competition's train+val images and on all of them.

For each size it copies the images (and label_book) into a fresh project, runs
``sheetsync predict`` there with nothing cached, pushes, and prints the wall and CPU seconds, the
machine's load, and the share of the independent review's problems among those images that the
first 5/10/15/20% of the pushed rows hold. Floor: the small project's predict within a quarter
of the full one's wall time.

By default the small size runs twice, before and after the full one, and the floor takes the
mean of its runs: these machines drift in speed by 10-15% over a quarter of an hour, and a
drift that is steady over the three runs cancels in the mean (each run is printed as well).
Each predict runs as its own ``sheetsync predict`` process, as a person runs it, so that every
size pays the same start (in one process, later predicts found the imports done).

    python -m bench.bench_predict_scale                      # 600, all 2,880, 600 again
    python -m bench.bench_predict_scale --sizes 600 2880 --data ../shared/data/dcai

Run it alone on the machine (``flock /work/cache/cpu.lock`` where helpers share it): both runs
train twelve fold models in two worker processes and a second heavy job halves their speed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"
CUTS = (0.05, 0.10, 0.15, 0.20)
FLOOR_SHARE = 0.25


def slice_project(data: Path, work: Path, size: int | None, seed: int = 0):
    """A fresh project on ``size`` train+val images drawn at random (all when None)."""
    from sheetsync import Project

    root = work / f"n{size or 'all'}" / "data"
    shutil.rmtree(root.parent, ignore_errors=True)
    files = sorted(p for split in ("train", "val") for p in (data / split).rglob("*.png"))
    picked = files if size is None or size >= len(files) else random.Random(seed).sample(files, size)
    for f in picked:
        target = root / f.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    shutil.copytree(data / "label_book", root / "label_book")
    project, _ = Project.init(root, root.parent, progress=lambda items, *a, **k: items)
    return project, len(picked)


def cpu_seconds() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def predict_fresh(project_dir: Path) -> None:
    """``sheetsync predict`` in a process of its own (its output kept for an error)."""
    done = subprocess.run([sys.executable, "-m", "sheetsync", "-C", str(project_dir), "predict"],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"sheetsync predict failed ({done.returncode}): {done.stderr[-2000:]}")


def recall(project, review: pd.DataFrame) -> list[float]:
    """Share of the review's problems (remove or fix) in the first rows of the pushed sheet."""
    project.push()
    sheet = project.backend.read_table()
    sheet = sheet[sheet["split"].astype(str).isin(["train", "val"])]
    verdict = review["verdict"].reindex(sheet["path"].astype(str).to_numpy())
    problem = (verdict.fillna("keep") != "keep").to_numpy()
    total = max(1, int(problem.sum()))
    return [float(problem[: round(c * len(problem))].sum()) / total for c in CUTS]


def time_share(walls: dict[int, list[float]]) -> tuple[float, list[float]]:
    """The smallest size's mean wall time over the largest size's, and each run of the smallest
    against that mean: what the floor judges, and the single ratios it is printed with."""
    small, large = mean(walls[min(walls)]), mean(walls[max(walls)])
    return small / large, [w / large for w in walls[min(walls)]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", type=int, nargs="+", default=[600, 2880, 600],
                    help="a size given twice runs twice (each time a fresh project)")
    ap.add_argument("--work", type=Path, help="keep the projects here (default: a temp folder)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    review = pd.read_csv(args.data / "reviews" / "independent_review.csv").set_index("path")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-predict-scale-"))
    walls: dict[int, list[float]] = {}
    print(f"{os.cpu_count()} CPUs; predict's defaults ([review] folds 4, epochs 20, fold_seeds 3)",
          flush=True)
    for size in args.sizes:
        project, n = slice_project(args.data, work, size)
        load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), cpu_seconds()
        predict_fresh(project.config.project_dir)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        walls.setdefault(n, []).append(wall)
        found = recall(project, review)
        print(f"{n:5d} images: predict {wall:6.0f} s wall, {cpu:6.0f} s CPU, load {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f}; the review's problems in the first "
              + ", ".join(f"{c:.0%}: {x:.1%}" for c, x in zip(CUTS, found, strict=True)), flush=True)
    if len(walls) >= 2:
        small, large = min(walls), max(walls)
        share, singles = time_share(walls)
        runs = ", ".join(f"{r:.1%}" for r in singles)
        each = f"; each run of {small}: {runs}" if len(singles) > 1 else ""
        print(f"floor: {small} images within {FLOOR_SHARE:.0%} of the {large}-image time "
              f"({share:.1%}, mean wall times{each}): {'PASS' if share <= FLOOR_SHARE else 'FAIL'}")
        return 0 if share <= FLOOR_SHARE else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
