"""Every benchmark, one after the other: ``python -m bench [--quick]``.

--quick leaves out the ones that train the fixed model (bench_train, a few minutes;
bench_review, 20+ minutes on 2 cores; bench_review_human, 30+ minutes; bench_predict_scale, 20+ minutes; bench_predict_warm, 35+ minutes; bench_watch, a
30-minute soak of `sheetsync watch`; bench_augment, a training pair at 10,000 images) and
bench_report (UMAP of 100,000 points, minutes).
"""

from __future__ import annotations

import importlib
import sys
import time

QUICK = [("bench_loop", []), ("bench_local", []), ("bench_google", ["--rows", "1000", "10000"]),
         ("bench_push_writes", []), ("bench_read_extent", []),
         ("bench_publish", [])]
MODEL = [("bench_train", ["--epochs", "3"]), ("bench_review", ["--flip", "0.05", "0.10"]),
         ("bench_review_human", []), ("bench_predict_scale", []),
         ("bench_predict_warm", []), ("bench_watch", ["--minutes", "30"]),
         ("bench_report", ["10000", "100000"]),
         ("bench_augment", ["--sheets"]), ("bench_augment", ["--epochs", "10"])]


def main(argv: list[str]) -> int:
    benches = QUICK if "--quick" in argv else QUICK + MODEL
    for name, args in benches:
        print(f"\n=== python -m bench.{name} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        module.main(args)
        print(f"=== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
