"""Time `sheetsync report` and measure its file size at 10,000 and 100,000 images.

Run: ``python -m bench.bench_report [POINTS ...]`` (default 10000 100000). The baseline, in the
same process, is the same report for 1,000 images. For each size: the UMAP that a first build
computes (fitted on at most 20,000 images, the rest transformed), then the build with UMAP cached
(what a second `report` of the same version costs); first build = the two together. Inputs are synthetic: 256-d embeddings
drawn around eleven centres (class iv in two styles, the val split lacking
one of them, so the coverage check has a gap to find) and 2,000 real PNG numerals reused as the image files; the map draws at most
5,000 points whatever the size. Timings on a shared machine are noisy: compare the ratios.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sheetsync.demo import draw_numeral
from sheetsync.report import ReportInputs, umap_coords, write_report
from sheetsync.store import StateStore

CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
N_FILES = 2000


def make_files(folder: Path) -> list[str]:
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(N_FILES):
        path = folder / f"img-{k:05d}.png"
        draw_numeral(CLASSES[k % 10], rng).save(path)
        files.append(str(path))
    return files


def make_inputs(n: int, files: list[str], seed: int = 0) -> ReportInputs:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 10, n)
    centres = rng.normal(0, 4, (11, 256))
    # Class iv comes in two styles (centres 3 and 10); the validation split lacks the second.
    style = np.where((label == 3) & (rng.random(n) < 0.5), 10, label)
    emb = (centres[style] + rng.normal(0, 1, (n, 256))).astype(np.float32)
    split = np.where(rng.random(n) < 0.28, "val", "train")
    split[style == 10] = "train"
    ids = [f"{k:06d}" for k in range(n)]
    items = pd.DataFrame({"id": ids, "split": split, "label": np.asarray(CLASSES)[label],
                          "action": "keep", "path": [f"{s}/x/{k}.png" for k, s in enumerate(split)],
                          "file": [files[k % len(files)] for k in range(n)]})
    wrong = rng.random(n) < 0.03
    signals = pd.DataFrame({
        "predicted": np.asarray(CLASSES)[np.where(wrong, (label + 1) % 10, label)],
        "suspected": np.where(wrong, np.asarray(CLASSES)[(label + 1) % 10], ""),
        "issue_score": np.where(wrong, rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n)),
        "duplicate_of": "", "blank": False, "duplicate_conflict": False,
        "outlier": rng.gamma(4, 0.3, n)}, index=pd.Index(ids, name="id"))
    return ReportInputs(classes=CLASSES, version=1, items=items, embeddings=emb,
                        signals=signals, title=f"bench: {n} images", seed=seed)


def run(n: int, files: list[str], work: Path) -> dict[str, float]:
    inputs = make_inputs(n, files)
    store = StateStore(work / f"state-{n}")
    start = time.perf_counter()
    umap_coords(inputs.embeddings, inputs.seed, store.report_cache)  # what a first build computes
    umap_s = time.perf_counter() - start
    rest = write_report(inputs, work / f"report-{n}.html", store=store)  # UMAP now cached
    return {"n": n, "umap": umap_s, "first": umap_s + rest.seconds, "cached": rest.seconds,
            "mb": rest.size_bytes / 1e6, "shown": rest.n_shown,
            "gaps": len(rest.coverage.gaps), "covers": rest.coverage.covers}


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as d:
        work = Path(d)
        files = make_files(work / "images")
        base = run(1000, files, work)
        print(f"{'images':>8} {'drawn':>6} {'UMAP s':>7} {'first build s':>14} {'x base':>7} "
              f"{'cached s':>9} {'x base':>7} {'size MB':>8} {'x base':>7}  coverage", flush=True)
        for n in [None, *sizes]:
            r = base if n is None else run(n, files, work)
            print(f"{r['n']:>8,} {r['shown']:>6,} {r['umap']:>7.1f} {r['first']:>14.1f} "
                  f"{r['first'] / base['first']:>7.2f} {r['cached']:>9.1f} "
                  f"{r['cached'] / base['cached']:>7.2f} {r['mb']:>8.2f} {r['mb'] / base['mb']:>7.2f}"
                  f"  {'covers' if r['covers'] else 'gap found'} ({r['gaps']} region(s))", flush=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
