"""From how many rows a Google push needs more than one write, measured (issue 8 case 11).

Builds the table a real push writes (``rows.build_table``: ids, paths and a storage-bucket URL
template as in docs/google.md, review signals from ``review.review_signals`` on made-up but
full-precision probabilities, duplicates searched) for the competition's train+val images
when ``../shared/data/dcai`` is there (else synthetic rows of the same shape), pushes the
first N rows to the local Sheets API stand-in with the real gspread client, and counts the
write requests the stand-in received. A bisection finds the largest N that is still one write.
It also prints the typed JSON bytes per row, which is what the rule depends on. The baseline
is the README's former claim (~2,400 rows); the ratio says how far off it was. The measured
limit is stated in docs/google.md, "Quota and the request budget" (a slow test compares them).

Usage::

    python -m bench.bench_push_writes
    python -m bench.bench_push_writes --synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sheetsync.dataset import scan
from sheetsync.rows import build_table, layout
from sheetsync.sheets import _google_cells as cells
from sheetsync.sheets.google import GoogleBackend
from tests._sheets_standin import SheetsStandin, standin_client, token_credentials

DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"
TEMPLATE = "https://storage.googleapis.com/my-bucket/{path}"
CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
README_CLAIM = 2400
WHO = "bench@example.com"


def real_table(seed: int = 0) -> pd.DataFrame:
    from sheetsync.review import review_signals

    result = scan(DCAI, ["train", "val"], CLASSES)
    manifest = result.manifest
    rng = np.random.default_rng(seed)
    probs = pd.DataFrame(rng.dirichlet(np.full(len(CLASSES), 0.3), len(manifest)),
                         index=manifest["id"], columns=CLASSES)
    items = pd.DataFrame({"id": manifest["id"], "file": [str(DCAI / p) for p in manifest["path"]],
                          "hash": manifest["hash"], "label": manifest["label"],
                          "split": manifest["split"], "action": manifest["action"]})
    signals = review_signals(items.reset_index(drop=True), probs, CLASSES)
    order = list(signals.sort_values("issue_score", ascending=False).index)
    return build_table(manifest, signals, lambda p: TEMPLATE.format(path=p), order)


def synthetic_table(n: int = 4000) -> pd.DataFrame:
    from bench.bench_google import make_table

    table = make_table(n)
    table["url"] = [TEMPLATE.format(path=p) for p in table["path"]]
    return table


def tiled(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows: the table repeated, with ids and paths made unique (same sizes)."""
    reps = -(-n // len(table))
    big = pd.concat([table] * reps, ignore_index=True).iloc[:n].copy()
    k = np.arange(n) // len(table)
    big["id"] = [i[:-2] + f"{j:02x}" for i, j in zip(big["id"], k, strict=True)]
    big["path"] = [p.replace(".png", f"-{j}.png") for p, j in zip(big["path"], k, strict=True)]
    return big


def writes_for(api: SheetsStandin, sid: str, table: pd.DataFrame, n: int) -> int:
    client = standin_client(api, token_credentials(api, WHO))
    backend = GoogleBackend(client, sid, account=WHO)
    api.reset_counts()
    backend.write_table(table.iloc[:n].reset_index(drop=True), layout(CLASSES, ["train", "val"]))
    return api.writes


def one_write_limit(api: SheetsStandin, sid: str, table: pd.DataFrame) -> int:
    """The most leading rows of ``table`` a push writes in one request (bisection)."""
    lo, hi = 1, len(table)
    if writes_for(api, sid, table, hi) == 1:
        return hi
    while hi - lo > 1:  # invariant: lo rows take one write, hi rows more
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if writes_for(api, sid, table, mid) == 1 else (lo, mid)
    return lo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", action="store_true", help="do not use the competition data")
    parser.add_argument("--more", type=int, nargs="*", default=[10_000],
                        help="also count the writes of bigger tables (the rows repeated)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    use_real = DCAI.is_dir() and not args.synthetic
    table = real_table() if use_real else synthetic_table()
    rows = cells.table_rows(table, layout(CLASSES, ["train", "val"]))
    per_row = np.array([len(json.dumps(r, separators=(",", ":"))) + 1 for r in rows])
    print(f"table: {'competition train+val' if use_real else 'synthetic'}, {len(table)} rows; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"typed cells per row: mean {per_row.mean():.0f} bytes (min {per_row.min()}, "
          f"max {per_row.max()})")
    # Counts requests and bytes of back-to-back pushes; Google's per-minute quota is checked
    # by tests/test_google_conformance.py, not here.
    with SheetsStandin(quota_per_minute=None) as api:
        sid = api.create_spreadsheet("bench", shared_with=[WHO])
        lo = one_write_limit(api, sid, table)
        hi = lo + 1
        if lo == len(table):
            print(f"all {lo} rows fit in one write")
            return
        print(f"one write up to {lo} rows; {hi} rows take {writes_for(api, sid, table, hi)} writes")
        print(f"bytes per row up to the limit: {per_row[:lo].mean():.0f}; "
              f"README's former claim ~{README_CLAIM} rows: measured/claimed = {lo / README_CLAIM:.2f}x")
        for n in args.more:
            big = tiled(table, n)
            print(f"{n} rows: {writes_for(api, sid, big, n)} writes")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
