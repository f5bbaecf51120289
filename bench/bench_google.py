"""Requests, bytes and local CPU of a push and a pull to Google Sheets, against baselines.

All three writers talk to the same local Sheets API stand-in (tests/_sheets_standin.py) in
this process, with the real gspread client:

* ``sheetsync``: GoogleBackend.write_table (typed cells + layout in one batchUpdate per ~2 MB)
  and read_table (one values.batchGet);
* ``gspread-dataframe``: set_with_dataframe / get_as_dataframe (values only, no layout);
* ``append_row loop``: one ``worksheet.append_row`` per row, the naive way. It is timed on the
  first 200 rows only and extrapolated linearly (marked ``~``).

"local CPU" is the CPU time of the calling thread (the stand-in's threads are not counted).
"quota min" is how many minutes of the 60-writes-per-minute-per-user quota the writes take.
"ids changed" counts ids (random 10-hex-digit strings; about 1 in 100 is all digits, and some
look like 12e345...) that did not read back exactly as written.

Usage::

    python -m bench.bench_google                      # 1,000 and 10,000 rows
    python -m bench.bench_google --rows 1000 10000 100000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sheetsync.rows import CORE, NUMERIC_SIGNALS, layout
from sheetsync.sheets.google import GoogleBackend
from tests._sheets_standin import SheetsStandin, standin_client, token_credentials

CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
NAIVE_CAP = 200
WHO = "bench@example.com"


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = ["".join(rng.choice(list("0123456789abcdef"), 10)) for _ in range(n)]
    labels = rng.choice(CLASSES, n)
    paths = [f"train/{c}/{i}.png" for c, i in zip(labels, ids, strict=True)]
    table = pd.DataFrame({name: [""] * n for name in CORE})
    table["id"] = ids
    table["path"] = paths
    table["url"] = [f"https://storage.googleapis.com/team-bucket/{p}" for p in paths]
    table["split"] = rng.choice(["train", "val"], n, p=[0.8, 0.2])
    table["label"] = labels
    table["action"] = "keep"
    table["predicted"] = rng.choice(CLASSES, n)
    for name in NUMERIC_SIGNALS:
        table[name] = rng.random(n).round(6)
    table["why"] = "label disagrees with the model"
    return table


@dataclass
class Run:
    method: str
    rows: int
    writes: float
    reads: float
    sent: float
    largest: int
    cpu_push: float
    pull_requests: int | None
    cpu_pull: float | None
    ids_changed: int | None
    estimated: bool = False


def measure(api: SheetsStandin, fn: Callable[[], object]) -> tuple[float, int, int, int, int]:
    api.reset_counts()
    t0 = time.thread_time()
    fn()
    cpu = time.thread_time() - t0
    return cpu, api.writes, api.reads, api.bytes_in, api.largest_body


def run_sheetsync(api: SheetsStandin, table: pd.DataFrame) -> Run:
    sid = api.create_spreadsheet(shared_with=[WHO])
    backend = GoogleBackend(standin_client(api, token_credentials(api, WHO)), sid)
    lay = layout(CLASSES, ["train", "val"])
    cpu, w, r, sent, big = measure(api, lambda: backend.write_table(table, lay))
    out: dict[str, pd.DataFrame] = {}
    cpu_pull, _, pr, _, _ = measure(api, lambda: out.update(df=backend.read_table()))
    ok = _changed(out["df"]["id"], table["id"])
    return Run("sheetsync", len(table), w, r, sent, big, cpu, pr, cpu_pull, ok)


def run_gspread_dataframe(api: SheetsStandin, table: pd.DataFrame) -> Run:
    from gspread_dataframe import get_as_dataframe, set_with_dataframe

    sid = api.create_spreadsheet(shared_with=[WHO])
    client = standin_client(api, token_credentials(api, WHO))
    frame = table.copy()
    frame["image"] = [f'=IMAGE("{u}")' for u in frame["url"]]

    def push() -> None:
        ws = client.open_by_key(sid).sheet1
        set_with_dataframe(ws, frame, resize=True)

    cpu, w, r, sent, big = measure(api, push)
    out: dict[str, pd.DataFrame] = {}
    cpu_pull, _, pr, _, _ = measure(
        api, lambda: out.update(df=get_as_dataframe(client.open_by_key(sid).sheet1, dtype=str)))
    ok = _changed(out["df"]["id"], table["id"])
    return Run("gspread-dataframe", len(table), w, r, sent, big, cpu, pr, cpu_pull, ok)


def _changed(got: pd.Series, want: pd.Series) -> int:
    got = got.astype(str).tolist()
    return sum(a != b for a, b in zip(got, want.tolist(), strict=False)) + abs(len(got) - len(want))


def run_append_loop(api: SheetsStandin, table: pd.DataFrame) -> Run:
    sid = api.create_spreadsheet(shared_with=[WHO])
    client = standin_client(api, token_credentials(api, WHO))
    sample = table.head(NAIVE_CAP)
    rows = sample.astype(object).where(sample.notna(), "").values.tolist()

    def push() -> None:
        ws = client.open_by_key(sid).sheet1
        ws.append_row(list(table.columns))
        for row in rows:
            ws.append_row(row)

    cpu, w, r, sent, big = measure(api, push)
    scale = len(table) / len(sample)
    return Run("append_row loop", len(table), w * scale, r, sent * scale, big, cpu * scale,
               None, None, None, estimated=len(table) > NAIVE_CAP)


def fmt(run: Run, base: Run) -> list[str]:
    approx = "~" if run.estimated else ""

    def ratio(a: float | None, b: float | None) -> str:
        return "" if a is None or not b else f" ({a / b:.1f}x)"

    return [
        run.method, f"{run.rows:,}",
        f"{approx}{run.writes:,.0f}{ratio(run.writes, base.writes)}",
        f"{run.reads:,.0f}",
        f"{approx}{run.sent / 1e6:,.1f}{ratio(run.sent, base.sent)}",
        f"{run.largest / 1e6:.2f}",
        f"{approx}{run.cpu_push:.2f}{ratio(run.cpu_push, base.cpu_push)}",
        "-" if run.pull_requests is None else f"{run.pull_requests}",
        "-" if run.cpu_pull is None else f"{run.cpu_pull:.2f}{ratio(run.cpu_pull, base.cpu_pull)}",
        f"{approx}{run.writes / 60:.2f}",
        "-" if run.ids_changed is None else f"{run.ids_changed:,}",
    ]


HEADER = ["method", "rows", "push writes", "push reads", "MB sent", "largest MB",
          "push CPU s", "pull reqs", "pull CPU s", "quota min", "ids changed"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args(argv)
    lines = []
    # Counts requests and bytes of back-to-back pushes; Google's per-minute quota is checked
    # by tests/test_google_conformance.py, not here.
    with SheetsStandin(quota_per_minute=None) as api:
        for n in args.rows:
            table = make_table(n)
            base = run_sheetsync(api, table)
            for run in (base, run_gspread_dataframe(api, table), run_append_loop(api, table)):
                lines.append(fmt(run, base))
            api.books.clear()  # free the stand-in's memory between sizes
    widths = [max(len(r[i]) for r in [HEADER, *lines]) for i in range(len(HEADER))]
    for row in [HEADER, *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"\nratios in () are against sheetsync for the same rows; ~ = timed on {NAIVE_CAP} rows "
          "and extrapolated; CPU = this thread only (the stand-in runs in other threads).")


if __name__ == "__main__":
    main()
