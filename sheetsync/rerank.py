"""Review rounds: the order learns from the rows people checked (pure: numpy, pandas, scipy).

A row people checked is labelled data about what a problem looks like in *this* dataset:
relabelled or dropped = a problem, checked and unchanged = clean. :func:`rerank` uses those
answers, and nothing else, to order the rows nobody checked yet, in two ways:

* **re-weighting the evidence**: a small logistic regression over the per-row signals the
  review already has (:data:`FEATURES`, each turned into its percentile rank, so scales do not
  matter), fitted on the checked rows only. The fixed combination (``priority``,
  :mod:`sheetsync._evidence`) is its prior: it enters as a feature whose weight is pulled
  towards 1 and every other weight towards 0 (a ridge penalty around the prior), so with few
  checked rows the order stays the fixed one and moves only as far as the answers pull it;
* **neighbours of what was found**: an unchecked row near confirmed problems in the fold models'
  embedding space (the rows of its own fold, nearest by cosine, one space per fold seed) is
  raised, one near confirmed clean rows lowered; the two neighbour counts are features of the
  same regression, so how much they count is learned too (a checked row is never its own
  neighbour);
* **look-alikes among the checked rows**: the share of problems among the checked rows whose
  picture statistics (:data:`LOOKALIKE`) are nearest, another feature of the regression;
* **groups where more was found**: the share of problems among the checked rows of a row's
  split and of its label (:func:`group_share`), features of the regression too.

Nothing here reads the answers of rows that were not checked: the caller passes only the
checked rows' answers (``answers``: id -> True for a problem), and the rows are ranked by the
model fitted on them. No fold model is trained again: one re-rank of the 2,880 competition
images took 0.6-0.8 s, neighbours included (bench/bench_review_human ``--rounds``, 2 cores). On
those images, reading 5% per round, the rounds found 52.4/68.6/78.5% of an independent review's
problems after 10/15/20% read, against 51.9/65.7/73.7% for the fixed order (docs/review.md).

Usage::

    result = rerank(signals, answers, spaces=[(oos.embeddings, oos.fold)],
                    groups=items.set_index("id")[["split", "label"]])
    result.order       # ids: unchecked rows by the learned score, then the checked rows
    result.rank        # id -> 1, 2, ... in that order
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._neighbours import neighbours
from .rows import CHECKED, checked_value

# Evidence column -> True when larger means more doubtful (missing columns are left out).
FEATURES: dict[str, bool] = {
    "issue_score": True, "knn_agreement": False, "outlier": True, "train_margin": False,
    "far_all": True, "isolation": True, "max_prob": False, "seed_disagreement": True,
    "confidence": False, "largest_piece": False, "border_ink": True,
    "ink": True, "speck_share": True, "components": True,
}
# How strongly each weight is pulled towards the prior (1 for the fixed combination, 0 for the
# rest): a ridge penalty, in units of checked rows. With a few dozen checked rows the answers
# move the order a little, with hundreds they can reorder it.
SHRINK = 3.0
SHRINK_PRIOR = 30.0
# Neighbours per row and fold space; their answers, weighted by cosine similarity.
K = 10
# Spaces in which "near confirmed problems" is measured among the checked rows, and k.
LOOKALIKE: dict[str, tuple[str, ...]] = {
    "like_problems_picture": ("largest_piece", "border_ink", "ink", "speck_share", "components"),
}
LOOKALIKE_K = 25
# Fewer checked rows than this, or no problem or no clean row among them: the fixed order.
MIN_CHECKED = 10
# Groups (the split, the label the models judged) whose share of problems among the checked
# rows is a feature: its weight in checked rows towards the share of all checked rows.
GROUP_PRIOR = 20.0


@dataclass(frozen=True)
class Rerank:
    """What :func:`rerank` found: the score of every row (higher: review sooner), the order
    (unchecked rows by score, then the checked ones), the rank (1-based) per id, the weights
    fitted (feature -> weight; empty when the fixed order was kept) and the counts."""

    score: pd.Series
    order: pd.Index
    rank: pd.Series
    weights: dict[str, float] = field(default_factory=dict)
    checked: int = 0
    problems: int = 0
    learned: bool = False


def answers_of(manifest: pd.DataFrame, judged: pd.DataFrame | None) -> pd.Series:
    """What people found on the rows they checked (index = id): True for a problem (its label
    or its action changed since ``judged``, the manifest whose labels the models judged: a
    relabel or a drop counts as checked), False for a row ticked in ``checked`` and unchanged.
    Rows nobody checked are not in it."""
    m = manifest.set_index(manifest["id"].astype(str))
    ticked = (m[CHECKED].map(checked_value) == "TRUE") if CHECKED in m.columns \
        else pd.Series(False, index=m.index)
    changed = pd.Series(False, index=m.index)
    if judged is not None and len(judged):
        then = judged.set_index(judged["id"].astype(str)).reindex(m.index)
        known = then["label"].notna()
        changed = known & ((m["label"].astype(str) != then["label"].astype(str))
                           | ((m["action"].astype(str) == "drop")
                              & (then["action"].astype(str) != "drop")))
    answers = changed[ticked | changed]
    return answers.astype(bool).rename("problem").rename_axis("id")


def features(signals: pd.DataFrame) -> pd.DataFrame:
    """The percentile rank of each evidence column, turned so that 1 = most doubtful, centred
    on 0 (-0.5 .. 0.5); 0 where a row lacks the value; columns no row has are left out."""
    out = {}
    for col, larger_doubts in FEATURES.items():
        if col not in signals.columns:
            continue
        values = pd.to_numeric(signals[col], errors="coerce").astype(float)
        if values.notna().sum() < 2 or values.nunique() < 2:
            continue
        r = (values if larger_doubts else -values).rank(pct=True, method="average")
        out[col] = (r - 0.5).fillna(0.0)
    return pd.DataFrame(out, index=signals.index)


def prior_logit(priority: pd.Series) -> pd.Series:
    """The fixed combination as log-odds of its percentile rank (1 = first in the fixed order);
    rows without a priority sit at the bottom."""
    r = priority.astype(float).fillna(-np.inf).rank(pct=True, method="average")
    r = r.clip(0.5 / len(r), 1 - 0.5 / len(r))
    return pd.Series(np.log(r / (1 - r)), index=priority.index, name="prior")


def neighbour_counts(spaces: Iterable[tuple[pd.DataFrame, pd.Series]], index: pd.Index,
                     answers: pd.Series, k: int = K) -> pd.DataFrame:
    """Per row, the similarity-weighted number of confirmed problems and of confirmed clean rows
    among its k nearest rows of the same fold, averaged over the fold spaces (one per seed)."""
    problem = answers.reindex(index)
    is_p = (problem == True).to_numpy(dtype=float)  # noqa: E712 (NaN: not checked)
    is_c = (problem == False).to_numpy(dtype=float)  # noqa: E712
    near_p, near_c, n = np.zeros(len(index)), np.zeros(len(index)), 0
    for emb, fold in spaces:
        emb = emb.copy()
        emb.index = emb.index.astype(str)
        nb = neighbours(emb.reindex(index), fold.set_axis(fold.index.astype(str)), k=k)
        w = np.clip(nb.similarity, 0.0, None)
        near_p += (w * is_p[nb.positions]).sum(axis=1)
        near_c += (w * is_c[nb.positions]).sum(axis=1)
        n += 1
    if not n:
        return pd.DataFrame(index=index)
    return pd.DataFrame({"near_problems": near_p / n, "near_clean": near_c / n}, index=index)


def checked_share(x: pd.DataFrame, answers: pd.Series, k: int) -> pd.Series:
    """Per row, the share of problems among its k nearest checked rows (itself left out) in
    the space of ``x`` (feature ranks): rows that look like confirmed problems, by the evidence
    and the picture, rather than by the fold models' embedding."""
    rows = x.index.get_indexer(answers.index)
    ref = x.to_numpy(dtype=float)[rows]
    y = answers.to_numpy(dtype=float)
    k = max(1, min(k, len(rows) - 1))
    d = ((x.to_numpy(dtype=float)[:, None, :] - ref[None, :, :]) ** 2).sum(axis=2)
    d[rows, np.arange(len(rows))] = np.inf  # a checked row is not its own neighbour
    near = np.argpartition(d, k - 1, axis=1)[:, :k]
    return pd.Series(y[near].mean(axis=1), index=x.index)


def group_share(group: pd.Series, answers: pd.Series, prior: float = GROUP_PRIOR) -> pd.Series:
    """Per row, the log-odds of a problem among the checked rows of its group (e.g. its split),
    against the log-odds among all checked rows: 0 for a group like the rest, > 0 for one
    where people found more problems. Shrunk towards all checked rows (``prior`` rows' worth),
    and a checked row's own answer left out, so a row never scores itself."""
    group = group.astype(str)
    y = answers.astype(float)
    base = float(y.mean())
    g = group.reindex(answers.index)
    found, seen = y.groupby(g).sum(), y.groupby(g).count()
    own = answers.reindex(group.index)
    p = group.map(found).fillna(0.0).to_numpy(dtype=float) - own.fillna(0.0).to_numpy(dtype=float)
    n = group.map(seen).fillna(0.0).to_numpy(dtype=float) - own.notna().to_numpy(dtype=float)
    eps = 0.5 / max(1.0, len(answers))
    base = min(max(base, eps), 1 - eps)
    rate = np.clip((p + prior * base) / (n + prior), eps, 1 - eps)
    return pd.Series(np.log(rate / (1 - rate)) - np.log(base / (1 - base)), index=group.index)


def rerank(signals: pd.DataFrame, answers: pd.Series,
           spaces: Sequence[tuple[pd.DataFrame, pd.Series]] = (),
           groups: pd.DataFrame | None = None) -> Rerank:
    """The review order learned from ``answers`` (id -> True: a problem, False: clean; the
    checked rows only) over ``signals`` (the review frame, with ``priority``). ``spaces``: the
    fold models' embeddings and fold numbers, one pair per fold seed. ``groups``: per id, the
    groups whose share of problems is a feature (columns such as ``split`` and ``label``, the
    label the models judged)."""
    index = pd.Index(signals.index.astype(str), name="id")
    signals = signals.set_axis(index)
    answers = answers.set_axis(answers.index.astype(str)).astype(bool)
    answers = answers[answers.index.isin(index)]
    prior = prior_logit(signals["priority"])
    n_problems = int(answers.sum())
    enough = len(answers) >= MIN_CHECKED and 0 < n_problems < len(answers)
    weights: dict[str, float] = {}
    if enough:
        x = features(signals)
        for name, cols in LOOKALIKE.items():
            have = [c for c in cols if c in x.columns]
            if have:
                x[name] = checked_share(x[have], answers, LOOKALIKE_K) - 0.5
        if groups is not None:
            g = groups.set_axis(groups.index.astype(str)).reindex(index)
            for col in g.columns:
                if g[col].notna().all() and g[col].nunique() > 1:
                    x[f"{col}_share"] = group_share(g[col], answers)
        if spaces:
            near = neighbour_counts(spaces, index, answers)
            # log1p: the first confirmed neighbour says more than the fifth
            x = x.join(near.apply(np.log1p))
        weights, score = _fit(x, prior, answers)
    else:
        score = prior.copy()
    score = score.rename("score")
    checked = index.isin(answers.index)
    # Unchecked rows first, by score; ties (and the checked rows) keep the fixed order, and
    # its ties id order (as sheetsync.review.review_order).
    key = np.lexsort((index.to_numpy(dtype=str), -prior.to_numpy(), -score.to_numpy(), checked))
    order = index[key]
    rank = pd.Series(np.arange(1, len(order) + 1), index=order, name="rank").reindex(index)
    return Rerank(score, order, rank, weights, len(answers), n_problems, learned=enough)


def _fit(x: pd.DataFrame, prior: pd.Series, answers: pd.Series, shrink: float = SHRINK,
         shrink_prior: float = SHRINK_PRIOR) -> tuple[dict[str, float], pd.Series]:
    """Penalised logistic regression on the checked rows: intercept free, the prior's weight
    pulled towards 1, the others towards 0; returns the weights and every row's log-odds."""
    from scipy.optimize import minimize

    design = np.column_stack([np.ones(len(x)), prior.to_numpy(), x.to_numpy(dtype=float)])
    centre = np.zeros(design.shape[1])
    centre[1] = 1.0
    penalty = np.full(design.shape[1], shrink)
    penalty[0], penalty[1] = 1e-6, shrink_prior
    rows = x.index.get_indexer(answers.index)
    a, y = design[rows], answers.to_numpy(dtype=float)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = a @ w
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        d = w - centre
        return nll + 0.5 * np.sum(penalty * d * d), a.T @ (p - y) + penalty * d

    start = centre.copy()
    start[0] = np.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3)) - float(np.mean(a[:, 1]))
    w = minimize(loss, start, jac=True, method="L-BFGS-B").x
    names = ["intercept", "prior", *x.columns]
    return dict(zip(names, map(float, w), strict=True)), pd.Series(design @ w, index=x.index)
