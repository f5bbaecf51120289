"""Scan + pull + rearrange of N images (default 10,000) on the local backend.

    python -m bench.bench_loop [--images 10000] [--edited 0.1]

Each step is timed beside a bare baseline doing the same I/O in the same process
(os.walk + sha256 for the scan; plain os.rename of the same files for the rearrange), so the
ratios say what sheetsync's bookkeeping (ids, validation, journal, versions) costs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from sheetsync._itemprogress import no_progress
from sheetsync.project import Project
from sheetsync.rows import extra_columns, layout

CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]


def make_images(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k in range(n):
        split = "train" if k % 4 else "val"
        folder = root / split / CLASSES[k % 10]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 3, size=(16, 16), dtype=np.uint8) * 127
        Image.fromarray(pixels, "L").save(folder / f"img-{k:06d}.png")


def baseline_scan(root: Path) -> int:
    n = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                hashlib.file_digest(fh, "sha256")
            n += 1
    return n


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--edited", type=float, default=0.1, help="fraction of rows relabelled")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        make_images(data, args.images)
        copy = work / "copy"
        shutil.copytree(data, copy)

        t_base_scan, n = timed(baseline_scan, data)
        tracemalloc.start()
        t_init, (project, _) = timed(Project.init, data, work / "proj", progress=no_progress)
        _, peak_init = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        cfg = project.config
        # Thumbnails are a push cost, not a pull one; keep the bench about pull + rearrange.
        project.backend.thumbnails = False
        t_rescan, _ = timed(project.status, check_sheet=False)
        t_push, _ = timed(project.push)

        # A reviewer relabels a fraction of the rows (written straight into the workbook).
        table = project.backend.read_table()
        rng = random.Random(1)
        rows = rng.sample(range(len(table)), int(len(table) * args.edited))
        for r in rows:
            table.iloc[r, table.columns.get_loc("label")] = rng.choice(CLASSES)
        table = table.reset_index(drop=True)
        project.backend.write_table(table, layout(cfg.classes, cfg.splits, extra_columns(table)))

        tracemalloc.start()
        t_pull, report = timed(project.pull)
        _, peak_pull = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        moves = report.moves

        # Baseline: the same renames, bare, on an identical copy of the tree.
        def bare_moves() -> None:
            for m in moves:
                dst = copy / m.dst
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(copy / m.src, dst)

        t_base_moves, _ = timed(bare_moves)

    print(f"images: {n}, rows relabelled: {len(rows)}, files moved: {len(moves)}")
    print(f"{'step':<34}{'seconds':>10}{'baseline':>10}{'ratio':>8}")
    print(f"{'scan + ids + v1 (init, cold)':<34}{t_init:>10.2f}{t_base_scan:>10.2f}{t_init / t_base_scan:>8.2f}")
    print(f"{'rescan (warm hash cache)':<34}{t_rescan:>10.2f}{t_base_scan:>10.2f}{t_rescan / t_base_scan:>8.2f}")
    print(f"{'push (no thumbnails)':<34}{t_push:>10.2f}{'':>10}{'':>8}")
    print(f"{'pull + validate + rearrange':<34}{t_pull:>10.2f}{t_base_moves:>10.2f}{t_pull / max(t_base_moves, 1e-9):>8.1f}")
    print(f"peak Python memory: init {peak_init / 2**20:.0f} MiB, pull {peak_pull / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
