"""The evidence signals behind the review order (issue 9): neighbours, pictures, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from sheetsync import _foldaugment, _picture
from sheetsync import _neighbours as nbr
from sheetsync._trainbars import fold_text
from sheetsync._workers import FoldEvent

ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]


def test_flip_tables_keep_or_swap_classes_and_refuse_the_rest():
    h = _foldaugment.flip_table(ROMAN, _foldaugment.HFLIP)
    v = _foldaugment.flip_table(ROMAN, _foldaugment.VFLIP)
    name = dict(enumerate(ROMAN))
    assert {ROMAN[i]: (name[int(t)] if t >= 0 else None) for i, t in enumerate(h)} == {
        "i": "i", "ii": "ii", "iii": "iii", "iv": "vi", "v": "v", "vi": "iv",
        "vii": None, "viii": None, "ix": None, "x": "x"}
    assert [ROMAN[i] for i, t in enumerate(v) if t >= 0] == ["i", "ii", "iii", "ix", "x"]
    assert (v[v >= 0] == np.flatnonzero(v >= 0)).all()  # upside down never changes the class
    # A project whose classes are not numerals gets no flips at all.
    assert (_foldaugment.flip_table(["cat", "dog"], _foldaugment.HFLIP) == -1).all()


def test_augmented_batches_swap_iv_and_vi_labels_with_the_mirrored_picture():
    tf = pytest.importorskip("tensorflow")
    x = np.full((64, 32, 32, 3), 255.0, np.float32)
    x[:, 8:24, 4:8] = 0.0  # a stroke on the left: mirrored, it is on the right
    classes = ["iv", "vi", "vii"]
    y = np.eye(3, dtype=np.float32)[np.arange(64) % 3]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    xa, ya = (t.numpy() for t in next(iter(_foldaugment.class_preserving(classes)(ds))))
    before, after = y.argmax(1), ya.argmax(1)
    right = xa[:, 8:24, 20:30, 0].mean(axis=(1, 2)) < xa[:, 8:24, 2:12, 0].mean(axis=(1, 2))
    swapped = before != after
    assert swapped.any() and (~swapped).any()
    assert (before[before == 2] == after[before == 2]).all()  # vii is never mirrored
    assert (right == swapped).all()  # a label changes exactly when the picture was mirrored
    assert {(int(b), int(a)) for b, a in zip(before[swapped], after[swapped], strict=True)} <= {(0, 1), (1, 0)}


def test_test_views_shift_and_turn_a_little_and_fill_white():
    pytest.importorskip("tensorflow")
    x = np.full((2, 32, 32, 3), 255.0, np.float32)
    x[:, 10:22, 15:17] = 0.0  # a vertical stroke two pixels wide, columns 15-16
    views = _foldaugment.test_views(x)
    assert len(views) == len(_foldaugment.TEST_VIEWS) and all(v.shape == x.shape for v in views)

    def centre(img: np.ndarray, axis: int) -> float:
        ink = 255.0 - img[..., 0]
        return float((ink.sum(axis=axis) * np.arange(32)).sum() / ink.sum())

    for (degrees, dx, dy), v in zip(_foldaugment.TEST_VIEWS, views, strict=True):
        assert centre(v[0], 0) == pytest.approx(15.5 + dx, abs=0.05)  # columns
        assert centre(v[0], 1) == pytest.approx(15.5 + dy, abs=0.05)  # rows
        assert v.min() >= 0.0 and v.max() <= 255.0
        assert (v[:, 0, :] == 255.0).all()  # nothing dark comes in from outside the frame
        if degrees:  # the stroke leans: its top and bottom ends sit in different columns
            rows = 255.0 - v[0, ..., 0]
            top, bottom = (float((r * np.arange(32)).sum() / r.sum()) for r in (rows[11], rows[20]))
            assert abs(top - bottom) > 0.5


def _clusters(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3) * 5
    ids = [f"r{i:02d}" for i in range(60)]
    cls = np.arange(60) % 3
    emb = centres[cls] + rng.normal(scale=0.3, size=(60, 3))
    labels = pd.Series(np.array(["i", "ii", "iii"])[cls], index=ids)
    labels.iloc[0] = "ii"  # lies among the i's
    fold = pd.Series(np.arange(60) // 30, index=ids)
    return pd.DataFrame(emb, index=ids), labels, fold


def test_knn_agreement_and_vote_point_at_the_label_that_sits_among_another_class():
    emb, labels, fold = _clusters()
    nb = nbr.neighbours(emb, fold, k=5)
    same_fold = fold.to_numpy()[nb.positions] == fold.to_numpy()[:, None]
    assert same_fold.all() and (nb.positions != np.arange(60)[:, None]).all()
    agree = nbr.knn_agreement(nb, labels, ["i", "ii", "iii"])
    assert agree["r00"] == 0.0 and agree.drop("r00").min() >= 0.8
    vote = nbr.knn_vote(nb, labels, ["i", "ii", "iii"])
    assert vote.loc["r00"].idxmax() == "i" and vote.sum(axis=1).to_numpy() == pytest.approx(1.0)


def test_vote_among_training_images_finds_the_class_a_mislabelled_image_sits_with():
    emb, labels, fold = _clusters()
    code = {"i": 0, "ii": 1, "iii": 2}
    y = labels.map(code).to_numpy()
    train, held = fold.to_numpy() == 1, fold.to_numpy() == 0
    vote = nbr.vote_among(emb.to_numpy()[held], emb.to_numpy()[train], y[train], 3, k=6)
    assert vote.shape == (30, 3) and vote.sum(axis=1) == pytest.approx(1.0)
    # r00 is labelled ii but drawn among the i's: the training images around it are i's.
    assert vote[0].argmax() == 0 and vote[0, 1] == 0.0
    assert (vote[np.arange(1, 30), y[held][1:]] >= 0.8).all()
    # k is capped at half the smallest class of the references (here 1 image each: k = 1).
    few = nbr.vote_among(emb.to_numpy()[:2], emb.to_numpy()[2:5], y[2:5], 3, k=50)
    assert few.sum(axis=1) == pytest.approx(1.0) and set(np.unique(few)) == {0.0, 1.0}
    # No references: no votes.
    assert nbr.vote_among(emb.to_numpy()[:2], np.zeros((0, 3)), y[:0], 3).sum() == 0.0


def test_isolation_is_large_for_a_point_far_from_everything():
    emb, labels, fold = _clusters()
    emb.iloc[1] = [3.0, -4.0, 3.0]  # a direction no class has
    iso = nbr.isolation(nbr.neighbours(emb, fold, k=5))
    assert iso.idxmax() == "r01" and iso["r01"] > 5 * iso.drop("r01").median()


def _png(path: Path, draw) -> Path:
    im = Image.new("L", (200, 120), 255)
    draw(ImageDraw.Draw(im))
    im.save(path)
    return path


def test_picture_stats_on_real_pngs(tmp_path):
    rng = np.random.default_rng(1)
    files = {
        "clean": _png(tmp_path / "clean.png", lambda d: d.line([(100, 20), (100, 100)], fill=0, width=6)),
        "cut": _png(tmp_path / "cut.png", lambda d: d.line([(0, 60), (199, 60)], fill=0, width=6)
                    or d.line([(150, 0), (150, 119)], fill=0, width=6)),
        "blank": _png(tmp_path / "blank.png", lambda d: None),
    }
    noisy = Image.new("L", (200, 120), 255)
    px = noisy.load()
    for x, y in zip(rng.integers(0, 200, 400), rng.integers(0, 120, 400), strict=True):
        px[int(x), int(y)] = 0
    noisy.save(tmp_path / "noise.png")
    files["noise"] = tmp_path / "noise.png"
    pic = _picture.picture_stats([str(f) for f in files.values()], list(files))
    assert list(pic.columns) == list(_picture.COLUMNS)
    assert pic.at["clean", "border_ink"] == 0.0 and pic.at["cut", "border_ink"] > 0.005
    assert pic.at["blank", "ink"] == 0.0 and pic.at["clean", "ink"] > 0.01
    assert pic.at["noise", "speck_share"] > 0.9 and pic.at["clean", "speck_share"] == 0.0


def _dotted_iii(d) -> None:
    for x in (60, 100, 140):  # three vertical strokes drawn as dots, as some people did
        for y in range(15, 106, 9):
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=0)


def _stroked_iii(d) -> None:
    for x in (60, 100, 140):  # the same three strokes, each drawn in one go, with serifs
        d.line([(x, 15), (x, 105)], fill=0, width=5)
    d.line([(50, 15), (150, 15)], fill=0, width=4)


def test_a_numeral_drawn_in_dots_has_no_large_piece_and_a_stroked_one_does(tmp_path):
    files = {"dotted": _png(tmp_path / "dotted.png", _dotted_iii),
             "stroked": _png(tmp_path / "stroked.png", _stroked_iii),
             "three": _png(tmp_path / "three.png",
                           lambda d: [d.line([(x, 15), (x, 105)], fill=0, width=5) for x in (60, 100, 140)]),
             "blank": _png(tmp_path / "blank.png", lambda d: None)}
    pic = _picture.picture_stats([str(f) for f in files.values()], list(files))
    assert pic.at["dotted", "largest_piece"] < _picture.DOTTED / 2
    assert pic.at["stroked", "largest_piece"] > 0.9  # serifs join the strokes: one piece
    assert pic.at["three", "largest_piece"] == pytest.approx(1 / 3, abs=0.02)  # still above
    assert pic.at["blank", "largest_piece"] == 1.0  # blank is its own finding


# ----------------------------------------------------------------------------- combination, suggestion

from sheetsync import _evidence, review  # noqa: E402
from sheetsync.errors import ConfigError, TrainingError  # noqa: E402

CLS3 = ["i", "ii", "iii"]


def _frame(rows: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=CLS3)


def test_combine_is_the_mean_rank_of_the_views_a_row_has():
    s = pd.DataFrame({"issue_score": [0.9, 0.1, 0.5, np.nan], "knn_agreement": [0.0, 1.0, 0.5, np.nan],
                      "outlier": [np.nan, np.nan, np.nan, np.nan]}, index=list("abcd"))
    prio = _evidence.combine(s)
    assert prio["a"] == pytest.approx(1.0) and prio["b"] == pytest.approx(1 / 3)
    assert prio["c"] == pytest.approx(2 / 3) and np.isnan(prio["d"])


def test_suggestion_relabels_only_when_models_and_neighbours_agree_and_never_a_blank():
    probs = _frame({"agree": [0.1, 0.8, 0.1], "split": [0.1, 0.8, 0.1], "lost": [0.3, 0.3, 0.4],
                    "fine": [0.9, 0.05, 0.05], "blank": [0.05, 0.9, 0.05]})
    vote = _frame({"agree": [0.1, 0.7, 0.2], "split": [0.3, 0.3, 0.4], "lost": [0.4, 0.3, 0.3],
                   "fine": [0.9, 0.1, 0.0], "blank": [0.1, 0.9, 0.0]})
    labels = pd.Series(["i", "i", "i", "i", "i"], index=probs.index)
    blank = pd.Series([False, False, False, False, True], index=probs.index)
    out = _evidence.suggestion(probs, vote, labels, blank)
    assert out.to_dict() == {"agree": "relabel → ii", "split": "", "lost": "drop?", "fine": "",
                             "blank": "drop?"}
    # Without neighbours (no embeddings), the models alone decide.
    assert _evidence.suggestion(probs, None, labels, blank)["split"] == "relabel → ii"
    # Rows low in the review order get no action, blank pictures still do.
    low = pd.Series(0.3, index=probs.index)
    assert _evidence.suggestion(probs, vote, labels, blank, low).to_dict() == {
        "agree": "", "split": "", "lost": "", "fine": "", "blank": "drop?"}


def test_a_legible_numeral_under_the_wrong_label_gets_relabel_not_drop():
    """Issue 23: the models unsure (no class above 0.5) but leaning to ii, the neighbours
    clearly ii: a legible ii, relabel (the rule before gave drop?). Only a picture no class
    reads as gets drop?; models and neighbours pointing at different classes get nothing."""
    probs = _frame({"legible": [0.30, 0.45, 0.25], "nothing": [0.30, 0.36, 0.34],
                    "torn": [0.05, 0.60, 0.35]})
    vote = _frame({"legible": [0.05, 0.90, 0.05], "nothing": [0.40, 0.25, 0.35],
                   "torn": [0.05, 0.25, 0.70]})
    labels = pd.Series(["i", "i", "i"], index=probs.index)
    blank = pd.Series(False, index=probs.index)
    out = _evidence.suggestion(probs, vote, labels, blank)
    assert out.to_dict() == {"legible": "relabel → ii", "nothing": "drop?", "torn": ""}
    support = _evidence.support(probs, vote)
    assert support.loc["legible", "ii"] - support.loc["legible", "i"] >= _evidence.RELABEL_MARGIN
    assert support.loc["nothing"].max() < _evidence.LEGIBLE <= support.loc["torn"].max()
    # A drop? takes more doubt than a relabel: the views must put the row near the very top.
    doubtful = pd.Series((_evidence.SUGGEST_FROM + _evidence.DROP_FROM) / 2, index=probs.index)
    assert _evidence.suggestion(probs, vote, labels, blank, doubtful).to_dict() == {
        "legible": "relabel → ii", "nothing": "", "torn": ""}
    top = pd.Series(_evidence.DROP_FROM, index=probs.index)
    assert _evidence.suggestion(probs, vote, labels, blank, top)["nothing"] == "drop?"


def _run(probs: pd.DataFrame, emb: np.ndarray, margin: pd.Series | None = None) -> review.OutOfSample:
    ids = probs.index
    dist = pd.DataFrame(1.0 - probs.to_numpy(), index=ids, columns=probs.columns)
    return review.OutOfSample(probs=probs, embeddings=pd.DataFrame(emb, index=ids), class_distance=dist,
                              fold=pd.Series(0, index=ids), snapshot_probs=probs if margin is not None else None,
                              train_margin=margin)


def test_review_signals_from_two_runs_on_real_pngs(tmp_path):
    rng = np.random.default_rng(3)
    rows, probs, emb = [], {}, []
    for k, c in enumerate(CLS3):
        for j in range(8):
            path = tmp_path / c / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            im = Image.new("L", (48, 48), 255)
            ImageDraw.Draw(im).line([(10 + 10 * k, 6 + j), (10 + 10 * k, 40)], fill=0, width=3)
            im.save(path)
            rows.append({"id": f"{c}{j}", "file": str(path), "hash": f"{c}{j}", "label": c, "split": "train"})
            p = np.full(3, 0.05)
            p[k] = 0.9
            probs[f"{c}{j}"] = p
            emb.append(np.eye(3)[k] + rng.normal(scale=0.05, size=3))
    items = pd.DataFrame(rows)
    items.loc[0, "label"] = "iii"  # a picture of i, labelled iii
    p = pd.DataFrame.from_dict(probs, orient="index", columns=CLS3)
    margin = pd.Series(0.5, index=p.index)
    margin["i0"] = -0.8
    runs = [_run(p, np.array(emb), margin), _run(p * 0.98 + 0.02 / 3, np.array(emb) + 0.01, margin)]
    out = review.review_signals(items, runs, CLS3)
    assert list(out.columns[: len(review.SIGNAL_COLUMNS)]) == list(review.SIGNAL_COLUMNS)
    assert set(review.EVIDENCE_COLUMNS) <= set(out.columns)
    assert review.review_order(out, "combined")[0] == "i0"
    assert out.at["i0", "suggestion"] == "relabel → i" and out.at["i0", "knn_class"] == "i"
    assert (out["suggestion"].drop("i0") == "").all()
    assert "neighbours are i" in out.at["i0", "why"] and "never learned" in out.at["i0", "why"]
    assert out["seed_disagreement"].notna().all() and out["ink"].gt(0).all()

    # Redraw one ii in dots: the pixels alone put it right after the blank images and the
    # conflicting copies (the models still think it a fine ii), with drop? and the reason.
    dotted = Path(items.at[9, "file"])
    im = Image.new("L", (48, 48), 255)
    for y in range(6, 42, 5):
        ImageDraw.Draw(im).point([(20, y), (30, y)], fill=0)
    im.save(dotted)
    again = review.review_signals(items, runs, CLS3)
    assert again.at["ii1", "largest_piece"] < _picture.DOTTED
    first = int((again["priority"] >= _evidence.TOP).sum())  # copies of one picture under two labels
    assert review.review_order(again, "combined")[first] == "ii1"
    assert again.at["ii1", "priority"] == _evidence.PICTURE and again.at["ii1", "suggestion"] == "drop?"
    assert again.at["ii1", "why"].startswith("drawn in dots or dashes")


# ----------------------------------------------------------------------------- snapshots through the folds


def mean_pixels_fit_predict(train, predict_items, classes, *, epochs, seed=123, cache_dir=None,
                            progress=None, snapshots=(), **_):
    """A cheap stand-in for the fixed model with fit_predict's signature, snapshots included:
    per-class mean pixels as the 'model' (real images in, real numbers out). Module-level, so
    it can be sent to a worker process."""
    from sheetsync.train import Prediction

    px = {f: np.asarray(Image.open(f).convert("L").resize((12, 12)), np.float32).ravel() / 255
          for f in set(train["file"]) | set(predict_items["file"])}
    centres = np.stack([np.mean([px[f] for f in train["file"][train["label"] == c]], axis=0)
                        for c in classes])
    x = np.stack([px[f] for f in predict_items["file"]])
    logits = -((x[:, None, :] - centres[None]) ** 2).sum(axis=2) * 4
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for epoch in range(1, epochs + 1):
        if progress is not None:
            progress(epoch, epochs, {"loss": 1.0 / epoch})
    snaps = np.stack([probs] * len(snapshots)) if snapshots else None
    return Prediction(list(predict_items["id"]), probs, 1.0 - x, snaps)


def _stand_in(calls: list[dict]):
    """:func:`mean_pixels_fit_predict`, recording each call (a closure: trains in-process)."""

    def fit_predict(train, predict_items, classes, *, snapshots=(), **kw):
        calls.append({"n": len(train), "snapshots": tuple(snapshots)})
        return mean_pixels_fit_predict(train, predict_items, classes, snapshots=snapshots, **kw)

    return fit_predict


def _stroke_items(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for k, c in enumerate(CLS3):
        for j in range(6):
            path = tmp_path / "img" / c / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            im = Image.new("L", (48, 48), 255)
            ImageDraw.Draw(im).line([(8 + 14 * k, 6 + j), (8 + 14 * k, 40)], fill=0, width=4)
            im.save(path)
            rows.append({"id": f"{c}{j}", "file": str(path), "hash": f"{c}{j}", "label": c})
    items = pd.DataFrame(rows)
    items.loc[0, "label"] = "iii"  # a picture of i labelled iii
    return items


def test_out_of_sample_keeps_snapshots_and_training_margins_and_caches_them_apart(tmp_path):
    items = _stroke_items(tmp_path)
    calls: list[dict] = []
    fp = _stand_in(calls)
    plain = review.out_of_sample(items, CLS3, folds=3, epochs=4, work_dir=tmp_path / "w", fit_predict=fp)
    assert plain.snapshot_probs is None and plain.train_margin is None
    snap = review.out_of_sample(items, CLS3, folds=3, epochs=4, work_dir=tmp_path / "w", fit_predict=fp,
                                snapshots=review.snapshot_epochs(4))
    assert len(calls) == 6 and calls[-1]["snapshots"] == (1, 2, 3, 4)  # not reused from the plain run
    assert snap.train_margin is not None and snap.train_margin.notna().all()
    assert snap.train_margin.idxmin() == "i0"  # its label is the one the models cannot learn
    again = review.OutOfSample.load(tmp_path / "w" / review.LATEST)
    assert again is not None and again.train_margin.equals(snap.train_margin)
    assert again.snapshot_probs.equals(snap.snapshot_probs)
    review.out_of_sample(items, CLS3, folds=3, epochs=4, work_dir=tmp_path / "w", fit_predict=fp,
                         snapshots=(1, 2, 3, 4))
    assert len(calls) == 6  # every fold reused


def test_folds_trained_in_two_worker_processes_match_the_folds_trained_here(tmp_path):
    """sheetsync._workers: the same fold results and files, the same progress lines (each
    fold's own, in order), whether the folds train here or two at a time in workers."""
    import os

    items = _stroke_items(tmp_path)
    here: list[FoldEvent] = []
    events: list[FoldEvent] = []
    kw = dict(folds=3, epochs=2, snapshots=(1, 2), fit_predict=mean_pixels_fit_predict)
    a = review.out_of_sample(items, CLS3, work_dir=tmp_path / "a", workers=1,
                             progress=here.append, **kw)
    b = review.out_of_sample(items, CLS3, work_dir=tmp_path / "b", workers=2,
                             progress=events.append, **kw)
    there = [fold_text(e) for e in events]
    pd.testing.assert_frame_equal(a.probs, b.probs)
    pd.testing.assert_frame_equal(a.train_vote, b.train_vote)
    pd.testing.assert_series_equal(a.train_margin, b.train_margin)
    assert sorted(p.name for p in (tmp_path / "a").glob("fold-*.npz")) == sorted(
        p.name for p in (tmp_path / "b").glob("fold-*.npz"))
    for f in (1, 2, 3):
        mine = [m.split(": ", 1)[1].split(" in ")[0] for m in there if m.startswith(f"fold {f}/3: ")]
        assert mine == ["training on 12 images, scoring 6", "epoch 1/2, loss 1.000",
                        "epoch 2/2, loss 0.500", "done"]
    assert len(there) == len(here) == 12
    assert os.environ.get("TF_NUM_INTRAOP_THREADS") is None  # set in the workers only
    again = review.out_of_sample(items, CLS3, work_dir=tmp_path / "b", workers=2, **kw)
    assert again.reused == (0, 1, 2)


def test_every_seeds_folds_go_to_one_pool_of_workers(tmp_path, mocker):
    """Two seeds of three folds on two workers: one pool for the six folds (no worker idles
    while another seed's last fold trains), with the results of training them here."""
    from sheetsync import _workers

    items = _stroke_items(tmp_path)
    kw = dict(seeds=review.fold_seeds(123, 2), folds=3, epochs=2, fit_predict=mean_pixels_fit_predict)
    here = review.out_of_sample_runs(items, CLS3, work_dir=tmp_path / "a", workers=1, **kw)
    pools = mocker.spy(_workers, "_in_workers")
    events: list[FoldEvent] = []
    there = review.out_of_sample_runs(items, CLS3, work_dir=tmp_path / "b", workers=2,
                                      progress=events.append, **kw)
    messages = [fold_text(e) for e in events]
    assert pools.call_count == 1 and len(pools.call_args.args[2]) == 6
    for a, b in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(a.probs, b.probs)
        assert b.reused == ()
    assert sorted(m.split(":")[0] for m in messages if m.endswith(" s")) == sorted(
        f"fold {n}/6" for n in range(1, 7))


_UNGUARDED_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_review_evidence import CLS3, _stroke_items, mean_pixels_fit_predict
from sheetsync import review
print("the script ran", flush=True)
items = _stroke_items(Path({tmp!r}))
run = review.out_of_sample(items, CLS3, folds=3, epochs=1, work_dir=Path({tmp!r}) / "w", workers=2,
                           fit_predict=mean_pixels_fit_predict, progress=lambda m: None)
print("scored", len(run.probs), flush=True)
"""


def test_workers_do_not_run_the_callers_script_again(tmp_path):
    """A script that calls predict's machinery at top level, with no __name__ guard, works:
    the workers do not import the caller's __main__ (multiprocessing's spawn would)."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)),
                      encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the script ran", "scored 18"]
    assert len(list((tmp_path / "w").glob("fold-*.npz"))) == 3


def sleepy_fit_predict(train, predict_items, classes, *, pid_dir, **kw):
    """Says which process it runs in, then takes a minute (module-level: it runs in a worker)."""
    import os
    import time

    (Path(pid_dir) / f"{os.getpid()}.pid").write_text("", encoding="utf-8")
    time.sleep(60)
    return mean_pixels_fit_predict(train, predict_items, classes, **kw)


_KILLED_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_review_evidence import CLS3, _stroke_items, sleepy_fit_predict
from sheetsync import review
items = _stroke_items(Path({tmp!r}))
review.out_of_sample(items, CLS3, folds=3, epochs=1, work_dir=Path({tmp!r}) / "w", workers=2,
                     fit_predict=sleepy_fit_predict, pid_dir={tmp!r})
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_stop_when_their_parent_is_killed(tmp_path):
    """SIGKILL leaves the parent no chance to stop its workers: they notice and stop by
    themselves, instead of training their folds on as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "killed.py"
    script.write_text(_KILLED_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)),
                      encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False
        return state != "Z"  # a zombie has stopped; only its exit status is left

    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def refusing_fit_predict(train, predict_items, classes, **kw):
    """Refuses the fold that holds out image i0 (module-level: it runs in a worker)."""
    if "i0" not in set(train["id"]):
        raise TrainingError("this fold cannot be trained")
    return mean_pixels_fit_predict(train, predict_items, classes, **kw)


def test_a_fold_that_fails_in_a_worker_raises_its_own_training_error_here(tmp_path):
    items = _stroke_items(tmp_path)
    with pytest.raises(TrainingError, match="this fold cannot be trained"):
        review.out_of_sample(items, CLS3, folds=3, epochs=1, work_dir=tmp_path / "w", workers=2,
                             fit_predict=refusing_fit_predict)


def test_folds_keep_the_probabilities_of_the_original_pictures_beside_the_viewed_ones(tmp_path):
    """With test-time views the fold results keep both, so a benchmark can compare them on the
    same trained folds; they are saved with the run and read back."""
    import dataclasses

    items, calls = _stroke_items(tmp_path), []
    base = _stand_in(calls)

    def viewed(train, predict_items, classes, **kw):
        pred = base(train, predict_items, classes, **kw)
        blurred = 0.5 * pred.snapshots + 0.5 / len(classes)  # what views would do: less sure
        return dataclasses.replace(pred, probs=blurred[-1], snapshots=blurred,
                                   original_probs=pred.probs, original_snapshots=pred.snapshots)

    run = review.out_of_sample(items, CLS3, folds=3, epochs=2, work_dir=tmp_path / "w",
                               fit_predict=viewed, snapshots=(1, 2))
    assert run.original_probs is not None
    pd.testing.assert_frame_equal(run.snapshot_probs, 0.5 * run.original_probs + 0.5 / 3)
    back = review.OutOfSample.load(tmp_path / "w" / review.LATEST)
    pd.testing.assert_frame_equal(back.original_probs, run.original_probs)
    again = review.out_of_sample(items, CLS3, folds=3, epochs=2, work_dir=tmp_path / "w",
                                 fit_predict=viewed, snapshots=(1, 2))
    assert len(calls) == 3 and again.reused == (0, 1, 2)  # the fold files keep them too
    pd.testing.assert_frame_equal(again.original_probs, run.original_probs)
    plain = review.out_of_sample(items, CLS3, folds=3, epochs=2, work_dir=tmp_path / "p",
                                 fit_predict=base, snapshots=(1, 2))
    assert plain.original_probs is None


def test_folds_vote_with_their_training_images_and_several_seeds_are_read_back_together(tmp_path):
    items, work = _stroke_items(tmp_path), tmp_path / "w"
    calls: list[dict] = []
    events: list[FoldEvent] = []
    runs = review.out_of_sample_runs(items, CLS3, seeds=review.fold_seeds(123, 2), folds=3, epochs=2,
                                     work_dir=work, fit_predict=_stand_in(calls), progress=events.append)
    messages = [fold_text(e) for e in events]
    assert review.fold_seeds(123, 2) == [123, 321] and len(calls) == 6
    assert [r.settings["seed"] for r in runs] == [123, 321]
    assert not runs[0].fold.equals(runs[1].fold)  # other seeds, other splits
    # Fold messages count across the runs, so one progress bar covers the whole predict.
    assert any(m.startswith("fold 6/6: done") for m in messages) and not any("/3:" in m for m in messages)
    for r in runs:
        assert r.train_vote is not None and r.train_vote.sum(axis=1).to_numpy() == pytest.approx(1.0)
        assert r.train_vote.loc["i0"].idxmax() == "i"  # its training neighbours are i's
    back = review.latest_runs(work)
    assert [r.settings["seed"] for r in back] == [123, 321]
    pd.testing.assert_frame_equal(back[1].train_vote, runs[1].train_vote)
    signals = review.review_signals(items, back, CLS3)
    assert signals.at["i0", "knn_class"] == "i" and signals["knn_agreement"].idxmin() == "i0"
    # A later run on other images makes the listed seed runs stale: only the latest is read.
    review.out_of_sample(items[items["id"] != "ii5"], CLS3, folds=3, epochs=2, work_dir=work,
                         fit_predict=_stand_in(calls))
    assert len(review.latest_runs(work)) == 1


@pytest.mark.dcai
@pytest.mark.slow
def test_augmented_folds_with_the_fixed_model_on_a_slice_of_the_competition_data(tmp_path):
    from conftest import dcai_root

    root = dcai_root()
    rows = []
    for c in ROMAN:
        for k, p in enumerate(sorted((root / "train" / c).glob("*.png"))[:6]):
            rows.append({"id": f"{c}{k}", "file": str(p), "hash": f"{c}-{k}-{p.stat().st_size}", "label": c})
    items = pd.DataFrame(rows)
    oos = review.out_of_sample(items, ROMAN, folds=2, epochs=2, work_dir=tmp_path / "w", augment=True,
                               snapshots=(1, 2), jit_compile=True)
    assert oos.probs.shape == (60, 10) and np.allclose(oos.probs.sum(axis=1), 1.0, atol=1e-4)
    assert oos.snapshot_probs is not None and oos.train_margin is not None
    assert oos.train_margin.notna().all() and oos.settings["augment_settings"]["augment"]


@pytest.mark.slow
def test_augmented_folds_trained_twice_in_fresh_workers_give_the_same_probabilities(tmp_path):
    """A fold trained in a worker (one TensorFlow thread, the input pipeline in the training
    thread, XLA) is repeatable: two runs in fresh processes, nothing cached, give the same
    probabilities, margins and neighbours, so a rerun of ``predict`` reproduces its order."""
    items = _stroke_items(tmp_path)
    runs = [review.out_of_sample(items, CLS3, folds=2, epochs=3, work_dir=tmp_path / f"w{k}",
                                 augment=True, snapshots=(2, 3), jit_compile=True, workers=2)
            for k in range(2)]
    a, b = runs
    pd.testing.assert_frame_equal(a.probs, b.probs, check_exact=True)
    pd.testing.assert_frame_equal(a.snapshot_probs, b.snapshot_probs, check_exact=True)
    pd.testing.assert_series_equal(a.train_margin, b.train_margin, check_exact=True)
    pd.testing.assert_frame_equal(a.train_vote, b.train_vote, check_exact=True)


def test_push_inputs_use_the_last_out_of_sample_run_only_when_it_scored_these_images(tmp_path):
    from sheetsync.inputs import review_inputs
    from sheetsync.store import StoredPredictions

    rng = np.random.default_rng(5)
    ids = [f"{c}{j}" for c in CLS3 for j in range(6)]
    files = []
    for n, i in enumerate(ids):
        im = Image.new("L", (32, 32), 255)
        ImageDraw.Draw(im).line([(2 + n, 4), (2 + n, 28)], fill=0, width=2)
        im.save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    items = pd.DataFrame({"id": ids, "file": files, "hash": ids, "label": [i[:-1] for i in ids],
                          "split": "train", "action": "keep"})
    probs = pd.DataFrame(np.full((len(ids), 3), 0.1), index=ids, columns=CLS3)
    for c in CLS3:
        probs.loc[[i for i in ids if i[:-1] == c], c] = 0.8
    emb = np.repeat(np.eye(3), 6, axis=0) + rng.normal(scale=0.05, size=(len(ids), 3))
    stored = StoredPredictions("oos", 1, probs, None)
    oos_dir = tmp_path / "oos"
    oos_dir.mkdir()

    # No run saved: the stored probabilities alone (no neighbours).
    plain, _ = review_inputs(items, CLS3, stored, 1, oos_dir=oos_dir)
    assert plain["knn_agreement"].isna().all()
    # The run saved there scored exactly these images: its embeddings give the neighbours.
    _run(probs, emb).save(oos_dir / review.LATEST)
    rich, source = review_inputs(items, CLS3, stored, 1, oos_dir=oos_dir)
    assert rich["knn_agreement"].notna().all() and source.kind == "oos"
    # Not asked, or a run of other images, or in-sample predictions: not used.
    assert review_inputs(items, CLS3, stored, 1)[0]["knn_agreement"].isna().all()
    fewer = items[items["id"] != ids[0]]
    assert review_inputs(fewer, CLS3, stored, 1, oos_dir=oos_dir)[0]["knn_agreement"].isna().all()
    insample = StoredPredictions("insample", 1, probs, None)
    assert review_inputs(items, CLS3, insample, 1, oos_dir=oos_dir)[0]["knn_agreement"].isna().all()


def test_predict_trains_three_fold_seeds_and_push_orders_by_all(data_root, tmp_path, monkeypatch):
    """`predict` on a real project (the model swapped for the pixel stand-in: the edge), then
    `push` reads every seed's run: their disagreement and their neighbours feed the order."""
    import sheetsync.train
    from sheetsync.inputs import review_inputs
    from sheetsync.project import Project

    calls: list[dict] = []
    monkeypatch.setattr(sheetsync.train, "fit_predict", _stand_in(calls))
    project, _ = Project.init(data_root, tmp_path / "proj")
    toml = project.config.path
    # The stand-in is patched into this process only: no worker processes.
    toml.write_text(toml.read_text(encoding="utf-8").replace("fold_workers = 0", "fold_workers = 1"),
                    encoding="utf-8")
    project = Project.open(tmp_path / "proj")
    result = project.predict(folds=2, epochs=2)
    assert result.seeds == 3 and len(calls) == 6 and result.images == 19
    runs = review.latest_runs(project.store.oos_dir)
    assert [r.settings["seed"] for r in runs] == [123, 321, 519] and all(r.train_vote is not None for r in runs)
    stored = project.store.latest_predictions(result.version.version)
    pd.testing.assert_frame_equal(stored.probs.loc[runs[0].probs.index], review.ensemble_probs(runs),
                                  check_names=False, check_freq=False, atol=1e-6)
    items = project.usable_items(*project.refresh()[::2])
    signals, source = review_inputs(items, project.config.classes, stored, result.version.version,
                                    oos_dir=project.store.oos_dir)
    assert source.kind == "oos" and signals["seed_disagreement"].notna().all()
    assert project.push().rows == 19
    text = toml.read_text(encoding="utf-8")
    for old, bad, words in (("fold_seeds = 3", 'fold_seeds = "two"', "fold_seeds must be a whole number >= 1, not 'two'"),
                            ("fold_workers = 1", "fold_workers = -1", "fold_workers must be a whole number >= 0"),
                            ("warm_epochs = 4", "warm_epochs = -2", "warm_epochs must be a whole number >= 0"),
                            ("warm_epochs = 4", "warm_epochs = 1.5", "warm_epochs must be a whole number >= 0")):
        assert old in text
        toml.write_text(text.replace(old, bad), encoding="utf-8")
        with pytest.raises(ConfigError, match=words):
            Project.open(tmp_path / "proj").predict(folds=2, epochs=2)
    assert len(calls) == 6  # refused before any training
