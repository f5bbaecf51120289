"""Signals measured for issue 9 and left out of the review order, against the human review.

The issue asked for them. This reproduces the figures docs/review.md gives for leaving each one out,
as AUCs of "the review calls this image a problem" on the competition data as released.

* ``gap`` (no model): the widest empty gap between columns of ink, relative to the ink's height,
  as evidence of two numerals side by side. The AUC is over all 2,880 images.
* ``fold`` (trains one augmented fold as ``predict`` does: about 100 s on 2 cores). On its
  held-out images it compares the classifier's doubt (1 - p(given label), snapshot mean) on the
  original pictures with the same doubt under test-time views. It then measures:
  * the disagreement between the views (mean total variation from their mean), alone and
    added to the doubt at equal rank weight;
  * the label-book margin: the cosine similarity to the nearest label-book example of the
    image's own class, minus that of the nearest other class, in the fold's embedding space.
    It is given alone and added at rank weight 1 and 0.5.

Usage::

    python -m bench.bench_left_out gap
    python -m bench.bench_left_out fold --fold 0 --seed 123    # and --fold 1: docs/review.md's two folds

Measured (2 cores; fold training is not bit-for-bit repeatable, so a rerun moves the third
decimal): gap AUC 0.416. Fold 0 / fold 1 of seed 123:
* doubt: 0.840 / 0.886; with the six views 0.855 / 0.898
* view disagreement alone: 0.662 / 0.757; doubt + disagreement: 0.778 / 0.847
* label-book margin alone: 0.781 / 0.820; doubt + book: 0.835 / 0.879; doubt + book/2:
  0.843 / 0.887 (+0.003 and +0.001: within what a retraining moves)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_review import CLASSES, DATA, load_items
from bench.bench_review_human import load_review


def auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def rank(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).rank(pct=True).to_numpy()


def widest_gap(file: str) -> float:
    """The widest run of ink-free columns inside the ink's extent, over the ink's height."""
    from sheetsync import _picture

    ink = _picture._load(file)
    cols, rows = np.flatnonzero(ink.any(axis=0)), np.flatnonzero(ink.any(axis=1))
    if not len(cols):
        return 0.0
    best = run = 0
    for has_ink in ink.any(axis=0)[cols[0]: cols[-1] + 1]:
        run = 0 if has_ink else run + 1
        best = max(best, run)
    return best / (rows[-1] - rows[0] + 1)


def gap(items: pd.DataFrame, problem: pd.Series) -> None:
    score = np.array([widest_gap(f) for f in items["file"]])
    print(f"widest column gap / ink height: AUC {auc(problem.loc[items['id']].to_numpy(), score):.3f} "
          "(below 0.5: problems have smaller gaps)")


def book_items(root: Path) -> pd.DataFrame:
    rows = [{"id": "book-" + p.name, "file": str(p), "label": p.parent.name,
             "hash": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in sorted((root / "label_book").glob("*/*.png"))]
    return pd.DataFrame(rows)


def fold(items: pd.DataFrame, problem: pd.Series, args: argparse.Namespace) -> None:
    from sheetsync import _crossval, _foldaugment, review, train

    fold_of = _crossval.assign_folds(items, 4, args.seed, {})
    held = fold_of.to_numpy() == args.fold
    cache = args.work_dir / "images"
    xt, yt = train._arrays(items.loc[~held].reset_index(drop=True), "train", CLASSES, cache)
    xh = train._images(items.loc[held], "held out", cache)
    book = book_items(args.data)
    xb = train._images(book, "label book", cache)
    trainer = train._trainer(xt, yt, len(CLASSES), seed=args.seed, batch_size=8,
                             precision="float32", jit_compile=True,
                             augment=_foldaugment.class_preserving(CLASSES, args.seed))
    views = [xh, *_foldaugment.test_views(xh)]
    per_view: list[list[np.ndarray]] = [[] for _ in views]  # view -> snapshot probabilities
    for epoch in range(1, 21):
        trainer.run_epoch()
        if epoch in review.snapshot_epochs(20):
            for k, x in enumerate(views):
                per_view[k].append(train._softmax(trainer.evaluator.run(x)[1]))
        print(f"  epoch {epoch}/20", file=sys.stderr, flush=True)
    emb_held, emb_book = trainer.evaluator.run(xh)[0], trainer.evaluator.run(xb)[0]

    ids = items.loc[held, "id"].to_numpy()
    y = problem.loc[ids].to_numpy()
    labels = items.loc[held, "label"].map(CLASSES.index).to_numpy()
    r = np.arange(len(ids))
    P = np.stack([np.mean(v, axis=0) for v in per_view])  # (views, n, C), snapshot means
    doubt, doubt_views = -P[0][r, labels], -P.mean(axis=0)[r, labels]
    tv = 0.5 * np.abs(P - P.mean(axis=0)).sum(axis=2).mean(axis=0)

    def unit(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)

    sim = unit(emb_held) @ unit(emb_book).T
    book_cls = book["label"].map(CLASSES.index).to_numpy()
    best = np.stack([sim[:, book_cls == c].max(axis=1) for c in range(len(CLASSES))], axis=1)
    own = best[r, labels]
    best[r, labels] = -np.inf
    book_margin = -(own - best.max(axis=1))
    print(f"fold {args.fold} of seed {args.seed} ({len(ids)} held out, {int(y.sum())} problems), AUC:")
    for name, score in (
        ("doubt, original pictures", doubt),
        ("doubt, with the test-time views", doubt_views),
        ("view disagreement alone", tv),
        ("doubt + view disagreement", rank(doubt_views) + rank(tv)),
        ("label-book margin alone", book_margin),
        ("doubt + label-book margin", rank(doubt) + rank(book_margin)),
        ("doubt + label-book margin / 2", rank(doubt) + 0.5 * rank(book_margin)),
    ):
        print(f"  {name:<34} {auc(y, score):.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_left_out",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("gap", "fold"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work-dir", type=Path, default=Path("bench-out/review-human"))
    args = ap.parse_args(argv)
    items = load_items(args.data)
    rev = load_review(args.data / "reviews" / "independent_review.csv", items)
    problem = rev["verdict"] != "keep"
    if args.what == "gap":
        gap(items, problem)
    else:
        fold(items, problem, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
