"""Review rounds (sheetsync.rerank): the order learns from the checked rows only, keeps the
fixed order while few rows are checked, re-weights the evidence the answers favour, and raises
rows near confirmed problems in the fold spaces."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sheetsync import rerank as rr


def synthetic(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Signals where the fixed priority follows ``issue_score`` while the problems are told
    apart by ``outlier`` (what a dataset may teach): index = id, and the truth per id."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:04d}" for i in range(n)]
    truth = rng.random(n) < 0.15
    issue = rng.random(n) + 0.3 * truth
    outlier = rng.normal(1.0, 0.3, n) + 1.5 * truth
    signals = pd.DataFrame({"issue_score": issue, "outlier": outlier,
                            "knn_agreement": rng.random(n), "priority": issue}, index=ids)
    return signals, pd.Series(truth, index=ids)


def found(order: pd.Index, truth: pd.Series, unchecked: pd.Index, share: float) -> int:
    head = [i for i in order if i in set(unchecked)][: round(share * len(unchecked))]
    return int(truth[head].sum())


def test_without_enough_answers_the_order_is_the_fixed_one_with_checked_rows_last() -> None:
    signals, truth = synthetic()
    fixed = list(signals["priority"].sort_values(ascending=False, kind="stable").index)
    answers = truth[fixed[:3]]
    result = rr.rerank(signals, answers)
    assert not result.learned and result.checked == 3
    assert list(result.order) == fixed[3:] + fixed[:3]
    assert list(result.rank[result.order]) == list(range(1, len(fixed) + 1))


def test_answers_reweight_the_evidence_and_find_more_problems_among_unchecked_rows() -> None:
    signals, truth = synthetic()
    fixed = signals["priority"].sort_values(ascending=False, kind="stable").index
    read = fixed[:120]  # the first fifth, as a reviewer reads it
    result = rr.rerank(signals, truth[read])
    assert result.learned and result.weights["outlier"] > 1.0
    left = fixed.difference(read, sort=False)
    assert found(result.order, truth, left, 0.2) > 1.3 * found(fixed, truth, left, 0.2)
    assert set(result.order[-len(read):]) == set(read)  # checked rows after the rest


def test_rows_near_confirmed_problems_rise_and_near_clean_rows_fall() -> None:
    """Two tight clusters in one fold space, equal in every signal: the cluster whose checked
    rows were problems comes before the cluster whose checked rows were right."""
    rng = np.random.default_rng(1)
    n = 400
    ids = [f"r{i:04d}" for i in range(n)]
    signals = pd.DataFrame({"issue_score": rng.random(n), "outlier": rng.random(n),
                            "priority": rng.random(n)}, index=ids)
    emb = rng.normal(size=(n, 16))
    bad_cluster, good_cluster = range(0, 20), range(20, 40)
    emb[list(bad_cluster)] = rng.normal(size=16) * 10 + rng.normal(size=(20, 16)) * 0.1
    emb[list(good_cluster)] = rng.normal(size=16) * 10 + rng.normal(size=(20, 16)) * 0.1
    signals.iloc[:40, :] = 0.5  # the signals cannot tell the clusters apart
    space = (pd.DataFrame(emb, index=ids), pd.Series(0, index=ids))
    checked = [ids[i] for i in (*bad_cluster[:8], *good_cluster[:8])]
    # Elsewhere a few problems and clean rows, so the fit has both kinds away from the clusters.
    others = ids[100:140]
    answers = pd.Series([True] * 8 + [False] * 8 + [i < 6 for i in range(40)],
                        index=checked + others)
    result = rr.rerank(signals, answers, [space])
    assert result.weights["near_problems"] > 0 > result.weights["near_clean"]
    rank = result.rank
    bad_left = [ids[i] for i in bad_cluster[8:]]
    good_left = [ids[i] for i in good_cluster[8:]]
    assert rank[bad_left].max() < rank[good_left].min()
    without = rr.rerank(signals, answers)  # no spaces: the clusters are not told apart
    assert set(without.score[bad_left].round(9)) == set(without.score[good_left].round(9))


def test_a_group_where_people_found_more_problems_rises() -> None:
    """Equal signals, two splits: the checked rows of one held many problems, of the other
    few; the unchecked rows of the first come first, and no row's own answer scores it."""
    rng = np.random.default_rng(2)
    n = 400
    ids = [f"r{i:04d}" for i in range(n)]
    signals = pd.DataFrame({"issue_score": rng.random(n), "outlier": rng.random(n),
                            "priority": rng.random(n)}, index=ids)
    split = pd.Series(["train"] * 200 + ["val"] * 200, index=ids)
    groups = pd.DataFrame({"split": split, "label": "same"})
    checked = ids[:60] + ids[200:260]
    answers = pd.Series([i % 3 == 0 for i in range(60)] + [i % 20 == 0 for i in range(60)],
                        index=checked)
    result = rr.rerank(signals, answers, groups=groups)
    assert result.weights["split_share"] > 0.5 and "label_share" not in result.weights  # one label
    unchecked_train, unchecked_val = ids[60:200], ids[260:]
    assert result.score[unchecked_train].mean() > result.score[unchecked_val].mean() + 0.5
    without = rr.rerank(signals, answers)
    assert "split_share" not in without.weights

    share = rr.group_share(split, answers)
    assert share[ids[100]] > 0 > share[ids[300]]  # unchecked rows: the group's share
    # a checked row is scored by the other checked rows of its group, not by its own answer
    found_train = answers[ids[:60]]
    rest = (found_train.sum() - found_train[ids[0]]) / 59
    assert share[ids[0]] < share[ids[100]] and 0 < rest < 1


def test_answers_of_counts_ticks_relabels_and_drops_against_the_judged_labels() -> None:
    judged = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "label": ["i"] * 5,
                           "action": ["keep", "keep", "keep", "keep", "drop"]})
    now = judged.assign(label=["ii", "i", "i", "i", "i"],
                        action=["keep", "drop", "keep", "keep", "drop"],
                        checked=["", "", "TRUE", "false", "TRUE"])
    answers = rr.answers_of(now, judged)
    assert answers.to_dict() == {"a": True, "b": True, "c": False, "e": False}
    assert rr.answers_of(now.drop(columns="checked"), judged).to_dict() == {"a": True, "b": True}
    assert rr.answers_of(now, None).to_dict() == {"c": False, "e": False}


def test_the_fit_moves_from_the_prior_only_as_far_as_its_penalties_let_it() -> None:
    signals, truth = synthetic()
    x = rr.features(signals)
    prior = rr.prior_logit(signals["priority"])
    answers = truth.iloc[:200]
    held, _ = rr._fit(x, prior, answers, shrink=1e6, shrink_prior=1e6)
    free, _ = rr._fit(x, prior, answers, shrink=1e-3, shrink_prior=1e-3)
    default, _ = rr._fit(x, prior, answers)
    # Penalised hard, the weights stay at the prior (1 for it, 0 for the rest) ...
    assert abs(held["prior"] - 1.0) < 1e-2 and abs(held["outlier"]) < 1e-2
    # ... nearly free, the answers teach that `outlier` tells the problems apart,
    assert free["outlier"] > default["outlier"] > held["outlier"]
    # and the defaults are the module's constants.
    assert rr._fit(x, prior, answers, rr.SHRINK, rr.SHRINK_PRIOR)[0] == default
