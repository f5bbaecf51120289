"""Time the local .xlsx backend on 1,000 and 10,000 rows with real thumbnails.

Run: ``python -m bench.bench_local [ROWS ...]`` (default 1000 10000), plus one run on the
real competition images when ``../shared/data/dcai`` is there. The baseline, in the same
process, is what a naive backend would do: ``DataFrame.to_excel`` / ``read_excel``
(openpyxl engine, no thumbnails, no formatting). Timings on a shared machine are noisy:
compare the ratios.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        for rows in sizes:
            root = work / f"data{rows}"
            table = make_table(root, rows, images=False)
            for i, rel in enumerate(table["path"]):  # distinct pictures, a typical size
                make_png(root / rel, i, size=(400, 300))
            bench(f"synthetic-{rows}", table, root, work)
        if DCAI.is_dir() and not argv:
            bench("dcai", dcai_table(), DCAI, work)


if __name__ == "__main__":
    main(sys.argv[1:])
