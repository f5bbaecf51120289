"""Time the local .xlsx backend on 1,000 and 10,000 rows with real thumbnails, and the
push / pull loop of a project at 10,000 (and 100,000) rows.

Run: ``python -m bench.bench_local [ROWS ...] [--loop ROWS ...]``. Without ROWS: 1000 10000,
plus one run on the real competition images when ``../shared/data/dcai`` is there; without
``--loop``: the loop at 10,000 rows. The baseline, in the same process, is what a naive
backend would do: ``DataFrame.to_excel`` / ``read_excel`` (openpyxl engine, no thumbnails, no
formatting). Timings on a shared machine are noisy: compare the ratios (the load average is
printed with them).

The loop (``sheetsync init``, push, a reviewer relabels 1% of the rows, pull: 1% of the files
move, push again) checks the floors of issue 25 on 2 cores: the second push of 10,000 rows
within 5x the pull of the same sheet; 100,000 rows pushed and pulled at all, within the
machine's memory (peak RSS printed); time per row flat (within 1.5x) from 10,000 to 100,000.
"""

from __future__ import annotations

import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _xlsx_helpers import make_layout, make_png, make_table  # noqa: E402

from sheetsync.sheets import _xlsx_images as images  # noqa: E402
from sheetsync.sheets.local import LocalBackend  # noqa: E402

DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(label: str, table: pd.DataFrame, root: Path, work: Path) -> None:
    layout = make_layout()
    book = work / f"{label}.xlsx"
    naive = work / f"{label}-naive.xlsx"
    b = LocalBackend(book, root)

    base_write = timed(lambda: table.to_excel(naive, sheet_name="data", index=False))
    base_read = timed(lambda: pd.read_excel(naive, sheet_name="data", dtype=str))
    thumbs = timed(lambda: [images.render_thumbnail(root / p, b.thumb_size) for p in table["path"]])
    first = timed(lambda: b.write_table(table, layout))
    size = book.stat().st_size
    again = timed(lambda: b.write_table(table, layout))
    score = timed(lambda: b.append_score({"version": 1, "test_accuracy": 0.5}))
    read = timed(b.read_table)
    plain = LocalBackend(work / f"{label}-plain.xlsx", root, thumbnails=False)
    no_thumbs = timed(lambda: plain.write_table(table, layout))
    plain_read = timed(plain.read_table)

    print(
        f"\n{label}: {len(table)} rows (baseline: pandas to_excel {base_write:.2f} s, read_excel {base_read:.2f} s)"
    )
    rows = [
        ("write, new workbook", first, base_write, f"{size / 1e6:.1f} MB"),
        ("  of which thumbnails", thumbs, base_write, ""),
        ("write over previous one", again, base_write, ""),
        ("append_score", score, base_write, ""),
        ("read_table", read, base_read, ""),
        (
            "write, thumbnails=False",
            no_thumbs,
            base_write,
            f"{plain.path.stat().st_size / 1e6:.1f} MB",
        ),
        ("read_table (no thumbs)", plain_read, base_read, ""),
    ]
    for name, seconds, base, extra in rows:
        print(f"  {name:26s} {seconds:6.2f} s  x{seconds / base:5.2f}  {extra}")


def dcai_table() -> pd.DataFrame:
    files = sorted(p for split in ("train", "val") for p in (DCAI / split).glob("*/*.png"))
    table = make_table(DCAI, len(files), images=False)
    table["path"] = [p.relative_to(DCAI).as_posix() for p in files]
    return table


LOOP_CLASSES = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")


def make_small_images(root: Path, n: int, seed: int = 0) -> None:
    """``n`` distinct 48x48 grey PNGs in train/val class folders, quickly (no drawing calls)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(n):
        folder = root / ("train" if k % 4 else "val") / LOOP_CLASSES[k % 10]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.full((48, 48), 255, np.uint8)
        pixels[rng.integers(4, 44, 3)[:, None], 4:44] = 0  # three strokes, placed at random
        pixels[4:44, rng.integers(4, 44, 3)] = 0
        pixels[24, 24] = k % 251  # distinct bytes for every image
        pixels[25, 24] = k // 251 % 251
        Image.fromarray(pixels, "L").save(folder / f"img-{k:06d}.png", compress_level=1)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def loop(rows: int, work: Path) -> dict[str, float]:
    """init, push, relabel 1% in the workbook, pull, push again: seconds of each step."""
    from sheetsync._itemprogress import no_progress
    from sheetsync.project import Project
    from sheetsync.rows import extra_columns, layout

    data = work / f"loop{rows}"
    started = time.perf_counter()
    make_small_images(data, rows)
    made = time.perf_counter() - started
    made_project: list[Project] = []
    init = timed(lambda: made_project.append(
        Project.init(data, work / f"proj{rows}", progress=no_progress)[0]))
    project = made_project[0]
    first = timed(project.push)
    drawn_first = project.backend.usage()
    table = project.backend.read_table()
    assert table is not None
    rng = random.Random(1)
    labels = table.columns.get_loc("label")
    for r in rng.sample(range(len(table)), rows // 100):
        old = table.iloc[r, labels]
        table.iloc[r, labels] = rng.choice([c for c in LOOP_CLASSES if c != old])
    cfg = project.config
    project.backend.write_table(table.reset_index(drop=True),
                                layout(cfg.classes, cfg.splits, extra_columns(table)))
    moved: list[int] = []
    pull = timed(lambda: moved.append(len(project.pull().moves)))
    second = timed(project.push)
    naive = work / f"loop{rows}-naive.xlsx"
    base = timed(lambda: table.to_excel(naive, sheet_name="data", index=False))
    print(f"\nloop-{rows}: {rows} images made in {made:.1f} s, init {init:.1f} s, "
          f"{moved[0]} files moved by the pull; baseline pandas to_excel {base:.2f} s; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, seconds, extra in (("first push", first, drawn_first),
                                 ("pull (1% relabelled)", pull, ""),
                                 ("second push", second, project.backend.usage())):
        print(f"  {name:26s} {seconds:7.2f} s  x{seconds / base:5.2f}  "
              f"{seconds / rows * 1e3:6.3f} ms/row  {extra}")
    print(f"  peak RSS so far: {peak_rss_gib():.2f} GiB")
    return {"first": first, "pull": pull, "second": second, "rows": rows}


def floors(results: list[dict[str, float]]) -> None:
    """The issue's floors, PASS or FAIL, from the loops run."""
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print("\nfloors:")
    for r in results:
        if r["rows"] == 10_000:
            ratio = r["second"] / r["pull"]
            print(f"  {verdict(ratio <= 5)}  second push of 10,000 rows within 5x the pull: "
                  f"{r['second']:.2f} s / {r['pull']:.2f} s = {ratio:.2f}x")
        if r["rows"] >= 100_000:
            ok = peak_rss_gib() < 24
            print(f"  {verdict(ok)}  {int(r['rows']):,} rows pushed and pulled, peak RSS "
                  f"{peak_rss_gib():.2f} GiB (machine: 24 GiB)")
    small = next((r for r in results if r["rows"] == 10_000), None)
    big = next((r for r in results if r["rows"] >= 100_000), None)
    if small and big:
        for step in ("first", "second", "pull"):
            ratio = (big[step] / big["rows"]) / (small[step] / small["rows"])
            floor = "" if step == "pull" else f"{verdict(ratio <= 1.5)}  "
            print(f"  {floor or '      '}{step} per row, {int(big['rows']):,} vs 10,000 rows: "
                  f"{ratio:.2f}x" + ("" if floor else " (not a floor)"))


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return
    args = list(argv)
    loops = [10_000]
    if "--loop" in args:
        at = args.index("--loop")
        loops = [int(a) for a in args[at + 1:]] or loops
        args = args[:at]
    sizes = [int(a) for a in args] or ([] if "--loop" in argv else [1000, 10000])
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        floors([loop(rows, work) for rows in loops])
        for rows in sizes:
            root = work / f"data{rows}"
            table = make_table(root, rows, images=False)
            for i, rel in enumerate(table["path"]):  # distinct pictures, a typical size
                make_png(root / rel, i, size=(400, 300))
            bench(f"synthetic-{rows}", table, root, work)
        if DCAI.is_dir() and not args and "--loop" not in argv:
            bench("dcai", dcai_table(), DCAI, work)


if __name__ == "__main__":
    main(sys.argv[1:])
