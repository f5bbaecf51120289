"""Time the local .xlsx backend on 1,000 and 10,000 rows with real thumbnails.

Run: ``python -m bench.bench_local [ROWS ...]`` (default 1000 10000). The baseline, in the
same process, is what a naive backend would do: ``DataFrame.to_excel`` / ``read_excel``
(openpyxl engine, no thumbnails, no formatting).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _xlsx_helpers import make_layout, make_png, make_table  # noqa: E402

from sheetsync.sheets.local import LocalBackend  # noqa: E402


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(rows: int, work: Path) -> None:
    root = work / f"data{rows}"
    # Distinct files, a few hundred distinct pictures at the competition's typical size.
    table = make_table(root, rows, images=False)
    for i, rel in enumerate(table["path"]):
        make_png(root / rel, i % 300, size=(400, 300))
    layout = make_layout()
    book = work / f"bench{rows}.xlsx"
    naive = work / f"naive{rows}.xlsx"
    b = LocalBackend(book, root)

    base_write = timed(lambda: table.to_excel(naive, sheet_name="data", index=False))
    base_read = timed(lambda: pd.read_excel(naive, sheet_name="data", dtype=str))
    first = timed(lambda: b.write_table(table, layout))
    size = book.stat().st_size
    again = timed(lambda: b.write_table(table, layout))
    score = timed(lambda: b.append_score({"version": 1, "test_accuracy": 0.5}))
    read = timed(b.read_table)
    plain = LocalBackend(work / f"plain{rows}.xlsx", root, thumbnails=False)
    no_thumbs = timed(lambda: plain.write_table(table, layout))
    plain_read = timed(plain.read_table)

    print(
        f"\n{rows} rows (baseline: pandas to_excel {base_write:.2f} s, read_excel {base_read:.2f} s)"
    )
    print(
        f"  write, new workbook      {first:6.2f} s  x{first / base_write:5.1f}  {size / 1e6:.1f} MB"
    )
    print(f"  write over previous one  {again:6.2f} s  x{again / base_write:5.1f}")
    print(f"  append_score             {score:6.2f} s  x{score / base_write:5.1f}")
    print(f"  read_table               {read:6.2f} s  x{read / base_read:5.1f}")
    print(
        f"  write, thumbnails=False  {no_thumbs:6.2f} s  x{no_thumbs / base_write:5.1f}  "
        f"{plain.path.stat().st_size / 1e6:.1f} MB"
    )
    print(f"  read_table (no thumbs)   {plain_read:6.2f} s  x{plain_read / base_read:5.1f}")


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        for rows in sizes:
            bench(rows, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
