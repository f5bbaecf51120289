"""Does the review order put the wrong labels first? Measured on the competition data.

On top of the data as it is (already noisy), a known fraction of labels is flipped to another
class at random (seeded). Out-of-sample probabilities are computed as ``push`` would (k-fold with
the fixed model through ``sheetsync.train.fit_predict``), and for each order the bench reports
the fraction of the flipped images found in the first 5/10/15/20% of rows:

* sheetsync's combined order (the ``push`` default),
* in-sample confidence (train on all images, score the same images: what a naive sheet does),
* cleanlab's default ranking (``get_label_quality_scores`` on the same out-of-sample probs),
* random order.

Floor: at 5% flipped, the first 15% of rows hold >= 75% of the flipped images.

Usage::

    python -m bench.bench_review                      # --flip 0.05 0.10 --folds 4 --epochs 20
    python -m bench.bench_review --model pixels       # a fast stand-in model, for prototyping

Per-fold results and decoded images are cached under ``--work-dir`` (default bench-out/review),
so a repeated run with the same settings is cheap; delete it to measure the full cost.

Measured (flip seed 7; the folds as ``predict`` trains them: augmented, snapshots, test-time
views, fold seeds 123 321 519, two folds at a time; 2 cores, load about 2), first 15% of rows:
5% flipped: combined 95.8%, classic 96.5%, cleanlab default 96.5%, in-sample confidence 42.4%,
random 14.6%; 10% flipped: 89.9%, 89.6%, 88.9%, 28.8%, 14.6%. The three seeds' folds: 1,034 s
for all twelve (10% flipped), 918 s for ten (5%, two reused). At 5-10% of rows the combined
order is below classic (59.7 vs 65.3% at 5% flipped, first 5%): it puts the pictures that hold
no numeral (dotted, blank) first, which this bench counts as misses. Before issue 9 (plain
folds, one seed, the order now called classic): 82.6% and 71.2%, measured then; ``--plain``
trains such folds again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sheetsync import review
from sheetsync.config import ReviewConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"
CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
CUTS = (0.05, 0.10, 0.15, 0.20)
FLOOR = (0.05, 0.15, 0.75)  # at 5% flipped, the first 15% of rows hold >= 75% of the flips


def load_items(root: Path) -> pd.DataFrame:
    rows = []
    for split in ("train", "val"):
        for path in sorted((root / split).glob("*/*.png")):
            rel = path.relative_to(root).as_posix()
            rows.append({
                "id": hashlib.sha256(rel.encode()).hexdigest()[:10],
                "file": str(path),
                "hash": hashlib.sha256(path.read_bytes()).hexdigest(),
                "label": path.parent.name,
                "split": split,
                "path": rel,
            })
    if not rows:
        sys.exit(f"no images under {root}/train and {root}/val")
    return pd.DataFrame(rows)


def flip(items: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, set[str]]:
    """Flip ``fraction`` of the labels to another class, uniformly at random (seeded)."""
    rng = np.random.default_rng(seed)
    n = round(fraction * len(items))
    chosen = rng.choice(len(items), size=n, replace=False)
    out = items.copy()
    labels = out["label"].to_numpy(dtype=object)
    for i in chosen:
        others = [c for c in CLASSES if c != labels[i]]
        labels[i] = others[rng.integers(len(others))]
    out["label"] = labels
    return out, set(out["id"].iloc[chosen])


def recall_at(order: pd.Index, flipped: set[str]) -> list[float]:
    n = len(order)
    return [len(flipped & set(order[: round(c * n)])) / len(flipped) for c in CUTS]


def pixel_fit_predict(train, predict_items, classes, *, epochs, seed=123, cache_dir=None,
                      progress=None, **_):
    """A fast stand-in for the fixed model: logistic regression on 16x16 grayscale pixels."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from sheetsync.train import Prediction

    def pixels(files):
        return np.stack([
            np.asarray(Image.open(f).convert("L").resize((16, 16)), np.float32).reshape(-1) / 255
            for f in files
        ])

    y = train["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    clf = LogisticRegression(C=0.5, max_iter=200, tol=1e-3, random_state=seed)
    clf.fit(pixels(train["file"]), y)
    xp = pixels(predict_items["file"])
    probs = np.zeros((len(xp), len(classes)))
    probs[:, clf.classes_] = clf.predict_proba(xp)
    return Prediction(list(predict_items["id"]), probs, xp)


def in_sample(noisy: pd.DataFrame, fit_predict, args: argparse.Namespace, cache: Path) -> pd.DataFrame:
    """Train on all images and score the same ones (cached like a fold, by content)."""
    key = hashlib.sha256(
        repr((sorted(zip(noisy["id"], noisy["hash"], noisy["label"], strict=True)), args.epochs)).encode()
    ).hexdigest()[:24]
    path = args.work_dir / args.model / f"in-sample-{key}.csv"
    if path.exists():
        return pd.read_csv(path, index_col=0, dtype={0: str})
    pred = fit_predict(noisy, noisy, CLASSES, epochs=args.epochs, seed=123, cache_dir=cache)
    probs = pd.DataFrame(pred.probs, index=noisy["id"].to_numpy(), columns=CLASSES)
    path.parent.mkdir(parents=True, exist_ok=True)
    probs.to_csv(path)
    return probs


def cleanlab_order(items: pd.DataFrame, probs: pd.DataFrame) -> pd.Index:
    from cleanlab.rank import get_label_quality_scores

    labels = items["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    quality = get_label_quality_scores(labels, probs.loc[items["id"], CLASSES].to_numpy())
    return pd.Index(items["id"].to_numpy()[np.argsort(quality, kind="stable")])


def run(args: argparse.Namespace) -> bool:
    items = load_items(args.data)
    if args.model == "pixels":
        fit_predict = pixel_fit_predict
    else:
        from sheetsync.train import fit_predict
    # The folds as `predict` trains them (augmented, snapshots, [review] fold_seeds runs) unless
    # --plain; the pixel stand-in has no augmentation or snapshots.
    rich = args.model == "fixed" and not args.plain
    fold_options = ({"augment": True, "snapshots": review.snapshot_epochs(args.epochs), "batch_size": 8,
                     "precision": "float32", "jit_compile": True} if rich else {"fit_predict": fit_predict})
    seeds = review.fold_seeds(123, args.fold_seeds if rich else 1)
    cache = args.work_dir / "images"
    print(f"{len(items)} images; {args.folds} folds x {args.epochs} epochs x {len(seeds)} fold seed(s), "
          f"{'augmented with snapshots' if rich else 'plain'}; model {args.model}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    ok = True
    for fraction in args.flip:
        noisy, flipped = flip(items, fraction, args.seed)
        log = (lambda m: print(f"  {m}", flush=True)) if args.verbose else None
        t0 = time.perf_counter()
        runs = review.out_of_sample_runs(
            noisy, CLASSES, seeds=seeds, folds=args.folds, epochs=args.epochs,
            work_dir=args.work_dir / args.model,
            cache_dir=cache, progress=log, **fold_options,
        )
        oos_s = time.perf_counter() - t0
        reused = sum(len(r.reused) for r in runs)
        t1 = time.perf_counter()
        signals = review.review_signals(noisy, runs, CLASSES)
        sig_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        in_probs = in_sample(noisy, fit_predict, args, cache)
        in_s = time.perf_counter() - t2
        in_signals = review.review_signals(noisy, in_probs, CLASSES, find_duplicates=False)
        orders = {
            "sheetsync combined (OOS)": review.review_order(signals, "combined"),
            "sheetsync classic (OOS)": review.review_order(signals, "classic"),
            "sheetsync issue (OOS)": review.review_order(signals, "issue"),
            "OOS confidence": review.review_order(signals, "confidence"),
            "cleanlab default (OOS)": cleanlab_order(noisy, review.ensemble_probs(runs)),
            "in-sample confidence": review.review_order(in_signals, "confidence"),
            "random": review.review_order(signals, "random", seed=args.seed),
        }
        print(f"\n{fraction:.0%} flipped ({len(flipped)} images). Out-of-sample pass "
              f"{oos_s:.0f} s (folds reused: {reused}/{args.folds * len(seeds)}); signals {sig_s:.1f} s; "
              f"in-sample training {in_s:.0f} s")
        head = "order".ljust(28) + "".join(f"first {c:.0%}".rjust(11) for c in CUTS)
        print(head + "   vs random@15%")
        print("-" * len(head) + "-" * 17)
        base = recall_at(orders["random"], flipped)[2] or 1e-9
        found = {}
        for name, order in orders.items():
            r = recall_at(order, flipped)
            found[name] = r
            print(name.ljust(28) + "".join(f"{x:11.1%}" for x in r) + f"{r[2] / base:13.1f}x")
        comb, ins = found["sheetsync combined (OOS)"][2], found["in-sample confidence"][2]
        print(f"combined vs in-sample confidence at 15%: {comb / max(ins, 1e-9):.2f}x")
        if abs(fraction - FLOOR[0]) < 1e-9:
            passed = comb >= FLOOR[2]
            ok &= passed
            print(f"floor (first 15% hold >= 75% of flips at 5%): {comb:.1%} "
                  f"{'PASS' if passed else 'FAIL'}")
        if args.save_signals:
            out = args.work_dir / f"signals-{args.model}-{fraction:.2f}.csv"
            s = signals.copy()
            s["flipped"] = s.index.isin(list(flipped))
            s["in_sample_confidence"] = in_signals["confidence"]
            s.to_csv(out)
            print(f"signals written to {out}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_review", description=__doc__.split("\n")[0])
    ap.add_argument("--flip", type=float, nargs="+", default=[0.05, 0.10])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7, help="seed of the flips and the random order")
    ap.add_argument("--model", choices=("fixed", "pixels"), default="fixed")
    ap.add_argument("--fold-seeds", type=int, default=ReviewConfig().fold_seeds,
                    help="k-fold runs, as [review] fold_seeds (default 3)")
    ap.add_argument("--plain", action="store_true",
                    help="plain folds, one seed, no snapshots (the order before issue 9)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=Path("bench-out/review"))
    ap.add_argument("--save-signals", action="store_true", help="write each run's signals as CSV")
    ap.add_argument("-v", "--verbose", action="store_true", help="print per-fold progress")
    args = ap.parse_args(argv)
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
