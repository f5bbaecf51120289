"""Reading a workbook with a stray value at row 1,048,576: time and peak memory, before/after.

Writes a 2,880-row data sheet with ``LocalBackend.write_table`` (no thumbnails), types
``stray`` into the note cell of the last row Excel has (as a person pressing Ctrl+Down and
typing would), then reads the sheet in fresh subprocesses, each reporting its wall time and
peak RSS:

* baseline: the dense read sheetsync did before (calamine over the whole grid);
* sheetsync: ``LocalBackend.read_table`` (only the rows that exist);
* clean: ``read_table`` of the same workbook without the stray value (the floor).

Usage::

    python -m bench.bench_read_extent
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from openpyxl import load_workbook

CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
ROWS = 2880

_BASELINE = """
from python_calamine import CalamineWorkbook
from sheetsync.sheets.local import _rows_to_frame, _value_text
rows = CalamineWorkbook.from_path(BOOK).get_sheet_by_name("data").to_python(skip_empty_area=False)
frame = _rows_to_frame([[_value_text(v) for v in r] for r in rows])
"""
_SHEETSYNC = """
from pathlib import Path
from sheetsync.sheets.local import LocalBackend
frame = LocalBackend(Path(BOOK), Path(BOOK).parent).read_table()
"""
_TIMED = """
import json, resource, sys, time
BOOK = sys.argv[1]
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started, "rows": len(frame),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def make_books(folder: Path) -> tuple[Path, Path]:
    from bench.bench_google import make_table
    from sheetsync.rows import layout
    from sheetsync.sheets.local import LocalBackend

    clean = folder / "clean.xlsx"
    LocalBackend(clean, folder, thumbnails=False).write_table(make_table(ROWS), layout(CLASSES, ["train", "val"]))
    wb = load_workbook(clean)
    ws = wb["data"]
    note = [c.value for c in ws[1]].index("note") + 1
    ws.cell(1_048_576, note).value = "stray"
    stray = folder / "stray.xlsx"
    wb.save(stray)
    return clean, stray


def timed(body: str, book: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _TIMED.format(body=body), str(book)],
                         check=True, capture_output=True, text=True, env=os.environ)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clean, stray = make_books(Path(tmp))
        print(f"{ROWS} rows + a stray value at row 1,048,576; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        runs = {"baseline (dense read), stray": timed(_BASELINE, stray),
                "sheetsync read_table, stray": timed(_SHEETSYNC, stray),
                "sheetsync read_table, clean": timed(_SHEETSYNC, clean)}
    base = runs["baseline (dense read), stray"]
    print(f"{'read':32} {'rows':>9} {'seconds':>8} {'peak RSS MB':>12} {'speed-up':>9} {'memory':>7}")
    for name, r in runs.items():
        print(f"{name:32} {r['rows']:>9} {r['seconds']:>8.2f} {r['rss_mb']:>12.0f} "
              f"{base['seconds'] / r['seconds']:>8.1f}x {r['rss_mb'] / base['rss_mb']:>6.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
