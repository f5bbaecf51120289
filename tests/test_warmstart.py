"""Warm starts (issue 25): after a few edits, a fold model fine-tunes the previous version's
model of the same fold, only where its held-out images were held out then too.

A real, cheap model (logistic regression on pixels, sheetsync's fit_predict signature) stands in
for the fixed model; it tags the weights it returns, so a test can tell which model a fold
started from. The fixed model's own warm start is in tests/test_train.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_review import CLASSES, LogisticFitPredict, Pred, dataset

from sheetsync import _crossval, _warmstart, review
from sheetsync._trainbars import fold_text


class WarmFit(LogisticFitPredict):
    """Logistic regression that also returns snapshots (so margins are kept) and weights tagged
    with its call number, and records how each call was asked to train."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[dict] = []

    def __call__(self, train, predict_items, classes, *, epochs, warm_weights=None,
                 snapshots=(), **kw):
        self.asked.append({"epochs": epochs, "ids": frozenset(train["id"]),
                           "from": None if warm_weights is None else int(warm_weights[0][0]),
                           "snapshots": list(snapshots)})
        pred = super().__call__(train, predict_items, classes, epochs=epochs, **kw)
        out = Pred(pred.probs, pred.embeddings)
        out.snapshots = np.stack([pred.probs] * max(1, len(snapshots)))
        out.weights = [np.array([len(self.asked) - 1], dtype=np.int64)]
        return out


def run(items, work, fit, *, warm_epochs=2, events=None):
    return review.out_of_sample(items, CLASSES, folds=3, epochs=6, work_dir=work,
                                fit_predict=fit, snapshots=(3, 6), warm_epochs=warm_epochs,
                                progress=None if events is None else events.append)


def test_a_few_edits_fine_tune_the_previous_fold_models(tmp_path):
    items, work = dataset(tmp_path), tmp_path / "w"
    first = WarmFit()
    a = run(items, work, first)
    assert [c["epochs"] for c in first.asked] == [6, 6, 6]
    assert all(c["from"] is None for c in first.asked)

    edited = items.copy()
    edited.loc[edited["id"] == "ii03", "label"] = "iii"  # one label of 24: 1/16 of a fold's rows
    second, events = WarmFit(), []  # typed events, as the bars get them
    b = run(edited, work, second, events=events)
    assert b.fold.equals(a.fold) and b.reused == (int(a.fold["ii03"]),)
    assert [c["epochs"] for c in second.asked] == [2, 2]
    assert all(c["snapshots"] == [1, 2] for c in second.asked)  # halfway and at the end
    for call in second.asked:
        # each fold starts from the first version's model that trained on the same images
        assert first.asked[call["from"]]["ids"] == call["ids"]
    held = {f: set(b.fold[b.fold == f].index) for f in range(3)}
    for call in second.asked:
        assert sum(1 for f in held.values() if not f & call["ids"]) == 1  # still out of sample
    words = [fold_text(e) for e in events]
    assert sum("fine-tuning the previous version's fold model (2 epochs)" in w for w in words) == 2

    # Unchanged labels keep the margins they had when learned from scratch; the edited row's
    # margin is the fine-tuning one (a cold retrain would move every row's margin a little).
    assert a.train_margin is not None and b.train_margin is not None
    pd.testing.assert_series_equal(a.train_margin.drop("ii03"), b.train_margin.drop("ii03"))
    assert a.train_margin["ii03"] != b.train_margin["ii03"]

    # The same edits again: nothing trains (the fine-tuned folds are cached under their own key).
    again = WarmFit()
    run(edited, work, again)
    assert again.asked == []

    # warm_epochs = 0 (`predict --from-scratch`): the changed folds train from scratch, on this
    # very version too (its fine-tuned models are not taken for fresh ones).
    cold = WarmFit()
    run(edited, work, cold, warm_epochs=0)
    assert [c["epochs"] for c in cold.asked] == [6, 6] and all(c["from"] is None for c in cold.asked)
    # ... and once they exist, they are used again, warm starts on or off.
    for warm_epochs in (0, 2):
        later = WarmFit()
        run(edited, work, later, warm_epochs=warm_epochs)
        assert later.asked == []


def test_many_changes_train_from_scratch(tmp_path):
    items, work = dataset(tmp_path), tmp_path / "w"
    run(items, work, WarmFit())
    edited = items.copy()
    flip = edited["label"] == "i"  # a third of the images relabelled
    edited.loc[flip, "label"] = "ii"
    fit = WarmFit()
    run(edited, work, fit)
    assert [c["epochs"] for c in fit.asked] == [6, 6, 6]


def test_warm_starts_in_a_row_are_capped(tmp_path):
    items, work = dataset(tmp_path), tmp_path / "w"
    a = run(items, work, WarmFit())
    in_fold_0 = [i for i in a.fold[a.fold == 0].index if not i.startswith("i0")]
    edited = items.copy()
    generations = []
    for k in range(_warmstart.MAX_CHAIN + 1):  # one more edit each version, all in fold 0:
        edited.loc[edited["id"] == in_fold_0[k], "label"] = "i"  # folds 1 and 2 train each time
        fit = WarmFit()
        run(edited, work, fit)
        generations.append(sorted({c["epochs"] for c in fit.asked}))
    assert generations[: _warmstart.MAX_CHAIN] == [[2]] * _warmstart.MAX_CHAIN
    assert generations[-1] == [6]  # the chain is cut: from scratch again


def test_old_fold_results_are_pruned_keeping_every_record_and_the_newest_others(tmp_path):
    items, work = dataset(tmp_path), tmp_path / "w"
    a = run(items, work, WarmFit())
    in_fold_0 = [i for i in a.fold[a.fold == 0].index if not i.startswith("i0")]
    edited, before = items.copy(), set()
    for k in range(_warmstart.MAX_CHAIN + 1):  # fold 0 trains again every version
        before = {p.name for p in work.glob("fold-*.npz")}
        edited.loc[edited["id"] == in_fold_0[k], "label"] = "i"
        run(edited, work, WarmFit())
    files = {p.name for p in work.glob("fold-*.npz")}
    recorded = {_warmstart._read(_warmstart.record_path(work, 3, 123, f))["file"] for f in range(3)}
    assert recorded <= files  # every fold's latest model is there to start from
    # 3 recorded, 6 others kept: the versions before (6 runs wrote 3 + 5 * 3 = 18 files)
    assert len(files) == 3 + _warmstart.KEEP_UNRECORDED * 3
    assert len(before - files) > 0 and files - recorded <= before  # the oldest went first
    # Nothing lost but time: the same data again reuses the recorded results, trains nothing.
    again = WarmFit()
    run(edited, work, again)
    assert again.asked == []


def test_prune_ignores_damaged_records_and_keeps_what_they_cannot_name(tmp_path):
    for i in range(4):
        (tmp_path / f"fold-{i}.npz").write_bytes(b"x")
    _warmstart.record(tmp_path, 3, 7, 0, base="B", data="D", source="fold-3.npz", generation=0)
    _warmstart.record_path(tmp_path, 3, 7, 1).write_text("{not json", encoding="utf-8")
    import os
    for i in range(4):
        os.utime(tmp_path / f"fold-{i}.npz", (1000 + i, 1000 + i))
    assert _warmstart.prune(tmp_path) == ["fold-0.npz"]  # fold-3 recorded; 1 and 2 the newest
    assert sorted(p.name for p in tmp_path.glob("fold-*")) == ["fold-1.npz", "fold-2.npz", "fold-3.npz"]


def _prior(train_ids, labels, weights=True) -> _crossval.FoldResult:
    n = len(train_ids)
    return _crossval.FoldResult(
        np.array(["h"]), np.ones((1, 2)) / 2, np.zeros((1, 4)), np.zeros((1, 2)),
        train_ids=np.array(train_ids), train_labels=np.array(labels),
        train_margin=np.zeros(n), weights=[np.zeros(3)] if weights else None)


@pytest.mark.parametrize("case", ["ok", "saw_held", "other_settings", "no_weights", "damaged"])
def test_find_checks_the_previous_model_before_starting_from_it(tmp_path, case):
    ids = [f"r{i}" for i in range(8)]
    _prior(ids, ["a"] * 8, weights=case != "no_weights").save(tmp_path / "fold-x.npz")
    _warmstart.record(tmp_path, 3, 7, 0, base="B", data="D", source="fold-x.npz",
                      generation=1)
    if case == "damaged":
        _warmstart.record_path(tmp_path, 3, 7, 0).write_text("{not json", encoding="utf-8")
    train = pd.DataFrame({"id": ids[:7] + ["new"], "label": ["a"] * 8})
    held = {"r7"} if case == "saw_held" else {"h"}
    found = _warmstart.find(tmp_path, 3, 7, 0, base="other" if case == "other_settings" else "B",
                            train=train, held_ids=held)
    if case == "ok":
        assert found is not None and found.source == "fold-x.npz" and found.generation == 2
    else:
        assert found is None


def test_changed_share_counts_new_relabelled_and_gone_rows():
    prior = _prior(["a", "b", "c", "d"], ["x", "x", "y", "y"])
    now = pd.DataFrame({"id": ["a", "b", "c", "e"], "label": ["x", "y", "y", "x"]})
    assert _warmstart.changed_share(prior, now) == 3 / 4  # b relabelled, e new, d gone


def test_prediction_words_say_how_many_folds_were_fine_tuned():
    from sheetsync._words import describe
    from sheetsync.results import PredictResult
    from sheetsync.versions import VersionInfo

    info = VersionInfo(version=2, time="", message="", counts={})
    lines = describe(PredictResult(info, 2880, 4, 20, seeds=3, fine_tuned=9, warm_epochs=4,
                                   reused=3))
    assert lines[-1] == ("9 of 12 fold models fine-tuned from the previous version's for 4 "
                         "epochs; 3 unchanged, reused (`sheetsync predict --from-scratch`: "
                         "train them from scratch)")
