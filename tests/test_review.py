"""Review signals, the review order, duplicates on real PNGs, and per-fold resume with a real
(small, scikit-learn) model injected through ``fit_predict``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from sheetsync import _signals as sig
from sheetsync import review
from sheetsync._trainbars import fold_text
from sheetsync._workers import FoldEvent
from sheetsync.errors import ConfigError, SheetsyncError, TrainingError

CLASSES = ["i", "ii", "iii"]


# ----------------------------------------------------------------------------- helpers


def frame(rows: dict[str, list[float]], classes=CLASSES) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=classes)


def draw(kind: int, jitter: int, size: int = 48) -> Image.Image:
    """A tiny 'numeral': 1, 2 or 3 vertical strokes, a little shifted and shortened by ``jitter``."""
    im = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(im)
    for k in range(kind + 1):
        x = 10 + 10 * k + jitter % 3
        d.line([(x, 6 + jitter), (x, 42 - jitter % 4)], fill=0, width=3)
    return im


def save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def item(path: Path, label: str, item_id: str | None = None, split: str = "train") -> dict:
    return {
        "id": item_id or hashlib.sha256(str(path).encode()).hexdigest()[:8],
        "file": str(path),
        "hash": hashlib.sha256(path.read_bytes()).hexdigest(),
        "label": label,
        "split": split,
    }


def dataset(tmp_path: Path, per_class: int = 8) -> pd.DataFrame:
    rows = []
    for k, c in enumerate(CLASSES):
        for j in range(per_class):
            p = save(draw(k, j), tmp_path / "data" / c / f"{j}.png")
            rows.append(item(p, c, f"{c}{j:02d}"))
    return pd.DataFrame(rows)


class Pred:
    def __init__(self, probs, embeddings):
        self.probs, self.embeddings = probs, embeddings


def pixels(files) -> np.ndarray:
    return np.stack([
        np.asarray(Image.open(f).convert("L").resize((16, 16)), np.float32).reshape(-1) / 255
        for f in files
    ])


class LogisticFitPredict:
    """A real, cheap model with fit_predict's signature: logistic regression on 16x16 pixels.
    Counts its trainings, and can be told to stop (as Ctrl-C would) after some of them."""

    def __init__(self, stop_after: int | None = None):
        self.calls: list[frozenset[str]] = []
        self.stop_after = stop_after

    def __call__(self, train, predict_items, classes, *, epochs, seed=123, cache_dir=None,
                 progress=None, **_):
        from sklearn.linear_model import LogisticRegression

        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(frozenset(train["id"]))
        y = train["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        clf = LogisticRegression(max_iter=200, random_state=seed).fit(pixels(train["file"]), y)
        x = pixels(predict_items["file"])
        probs = np.zeros((len(x), len(classes)))
        probs[:, clf.classes_] = clf.predict_proba(x)
        for e in range(epochs):
            if progress is not None:
                progress(e + 1, epochs, {"loss": 0.0})
        return Pred(probs, 1.0 - x)  # ink, not paper, as the embedding


# ----------------------------------------------------------------------------- signals


def test_signals_on_known_probabilities():
    probs = frame({"a": [0.9, 0.05, 0.05], "b": [0.1, 0.7, 0.2], "c": [0.3, 0.3, 0.4]})
    labels = pd.Series(["i", "i", "iii"], index=["a", "b", "c"])
    assert sig.predicted(probs).tolist() == ["i", "ii", "iii"]
    assert sig.confidence(probs, labels).tolist() == pytest.approx([0.9, 0.1, 0.4])
    assert sig.margin(probs, labels).tolist() == pytest.approx([0.85, -0.6, 0.1])
    assert sig.loss(probs, labels).tolist() == pytest.approx(-np.log([0.9, 0.1, 0.4]))


def test_loss_is_finite_for_zero_probability():
    probs = frame({"a": [1.0, 0.0, 0.0]})
    assert np.isfinite(sig.loss(probs, pd.Series(["ii"], index=["a"])).iloc[0])


def _noisy_probs(n_per_class=20, seed=0):
    """Confident, correct probabilities for every row, except 3 rows whose label was flipped."""
    rng = np.random.default_rng(seed)
    rows, labels = {}, {}
    for k, c in enumerate(CLASSES):
        for j in range(n_per_class):
            p = rng.dirichlet([1, 1, 1]) * 0.2
            p[k] += 0.8
            rows[f"{c}{j}"], labels[f"{c}{j}"] = p / p.sum(), c
    wrong = {"i0": "iii", "ii0": "i", "iii0": "ii"}
    labels.update(wrong)
    return frame(rows), pd.Series(labels), wrong


def test_issue_score_points_at_flipped_labels():
    probs, labels, wrong = _noisy_probs()
    score = sig.issue_score(probs, labels)
    assert score.between(0, 1).all()
    assert set(score.nlargest(3).index) == set(wrong)
    assert score[list(wrong)].min() > 0.5 > score.drop(list(wrong)).max()


def test_suspected_names_the_true_class_for_issues_only():
    probs, labels, wrong = _noisy_probs()
    issues = sig.label_issues(probs, labels)
    assert set(issues[issues].index) == set(wrong)
    s = sig.suspected(probs, labels, issues)
    assert s[list(wrong)].tolist() == ["i", "ii", "iii"]  # what the images really are
    assert (s.drop(list(wrong)) == "").all()


def test_centroid_probs_favour_the_nearest_class_and_skip_missing_ones():
    d = frame({"a": [0.5, 1.5, np.nan], "b": [2.0, 2.0, 2.0]})
    q = sig.centroid_probs(d, temperature=2.0)
    assert q.loc["a"].tolist() == pytest.approx([1 / (1 + np.exp(-2)), np.exp(-2) / (1 + np.exp(-2)), 0])
    assert q.loc["b"].tolist() == pytest.approx([1 / 3] * 3)
    both = sig.ensemble(frame({"a": [0, 1, 0], "b": [1, 0, 0]}), frame({"a": [1, 0, 0], "b": [1, 0, 0]}))
    assert both.loc["a"].tolist() == [0.5, 0.5, 0] and both.loc["b"].tolist() == [1, 0, 0]


def test_issue_score_also_hears_the_embedding_space(tmp_path):
    items = dataset(tmp_path, per_class=2)
    probs = pd.DataFrame(np.full((6, 3), 0.05), index=items["id"], columns=CLASSES)
    for i, lab in zip(items["id"], items["label"], strict=True):
        probs.loc[i, lab] = 0.9
    near = pd.DataFrame(np.full((6, 3), 3.0), index=items["id"], columns=CLASSES)
    for i, lab in zip(items["id"], items["label"], strict=True):
        near.loc[i, lab] = 1.0
    far = near.copy()
    far.loc["ii01"] = [1.0, 3.0, 3.0]  # softmax says ii, but it sits among the i's
    plain = review.review_signals(items, probs, CLASSES, class_distance=near, find_duplicates=False)
    odd = review.review_signals(items, probs, CLASSES, class_distance=far, find_duplicates=False)
    assert plain["issue_score"].max() < 0.1
    assert odd.at["ii01", "issue_score"] > 0.4 and review.review_order(odd)[0] == "ii01"
    assert odd.at["ii01", "confidence"] == pytest.approx(0.9)  # the sheet's confidence is the model's
    assert odd.at["ii01", "why"] == "far from class ii (3.0x usual)"


def test_review_signals_columns_and_why_text(tmp_path):
    items = dataset(tmp_path, per_class=2)
    probs = pd.DataFrame(
        [[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.03, 0.9, 0.07], [0.91, 0.06, 0.03],
         [0.05, 0.05, 0.9], [0.1, 0.1, 0.8]],
        index=items["id"], columns=CLASSES,
    )
    out = review.review_signals(items, probs, CLASSES)
    assert list(out.columns[: len(review.SIGNAL_COLUMNS)]) == list(review.SIGNAL_COLUMNS)
    assert out.index.tolist() == items["id"].tolist()
    wrong = items["id"][3]  # labelled ii, the model says i
    assert out.at[wrong, "predicted"] == "i"
    assert out.at[wrong, "why"] == "model says i (0.91); label ii has 0.06"
    assert out.at[items["id"][0], "why"] == ""
    assert review.review_order(out)[0] == wrong


def test_review_signals_without_a_model_still_finds_blank_images(tmp_path):
    items = dataset(tmp_path, per_class=2)
    blank = item(save(Image.new("L", (40, 30), 255), tmp_path / "blank.png"), "i", "blank")
    items = pd.concat([items, pd.DataFrame([blank])], ignore_index=True)
    out = review.review_signals(items, None, CLASSES)
    assert out["confidence"].isna().all() and (out["predicted"] == "").all()
    assert out.at["blank", "blank"] and out.at["blank", "why"] == "blank image"
    assert review.review_order(out)[0] == "blank"
    assert out["priority"].drop("blank").isna().all()


def test_images_added_since_the_model_ran_get_empty_model_columns(tmp_path):
    items = dataset(tmp_path, per_class=2)
    probs = pd.DataFrame(np.full((5, 3), 0.1), index=items["id"][:5], columns=CLASSES)
    probs.loc[items["id"][:5], "i"] = 0.8
    out = review.review_signals(items, probs, CLASSES)
    new = items["id"][5]
    assert np.isnan(out.at[new, "confidence"]) and out.at[new, "predicted"] == ""
    assert np.isnan(out.at[new, "priority"]) and review.review_order(out)[-1] == new
    assert out["confidence"].drop(new).tolist() == pytest.approx([0.8] * 2 + [0.1] * 3)


# ----------------------------------------------------------------------------- duplicates


def test_duplicates_on_real_pngs(tmp_path):
    items = dataset(tmp_path, per_class=3)
    original = tmp_path / "data" / "ii" / "1.png"
    im = Image.open(original)
    same_bytes = tmp_path / "copy" / "same.png"
    same_bytes.parent.mkdir()
    same_bytes.write_bytes(original.read_bytes())
    resaved = save(im, tmp_path / "copy" / "resaved.png", compress_level=0)  # other bytes
    assert resaved.read_bytes() != original.read_bytes()
    bigger = save(im.resize((52, 52), Image.Resampling.BILINEAR), tmp_path / "copy" / "big.png")
    blank = save(Image.new("L", (64, 48), 255), tmp_path / "copy" / "blank.png")
    extra = pd.DataFrame([
        item(same_bytes, "ii", "same", "val"),
        item(resaved, "iii", "resaved", "val"),  # the same picture under another label
        item(bigger, "ii", "bigger", "val"),
        item(blank, "i", "blank", "val"),
    ])
    items = pd.concat([items, extra], ignore_index=True)
    dup, is_blank = review.duplicates(items)
    group = {"ii01", "same", "resaved", "bigger"}
    for i in group:
        assert set(dup[i].split()) == group - {i}, i
    assert (dup.drop(list(group)) == "").all()  # distinct drawings, the blank one included
    assert is_blank[is_blank].index.tolist() == ["blank"]

    probs = pd.DataFrame(np.full((len(items), 3), 0.02), index=items["id"], columns=CLASSES)
    for i, lab in zip(items["id"], items["label"], strict=True):
        probs.loc[i, lab] = 0.96
    out = review.review_signals(items, probs, CLASSES)
    assert out.at["resaved", "duplicate_conflict"] and not out.at["ii00", "duplicate_conflict"]
    assert "same picture as" in out.at["resaved", "why"] and "labelled ii" in out.at["resaved", "why"]
    assert " in val" in out.at["ii01", "why"]
    top = set(review.review_order(out)[:5])
    assert top == group | {"blank"}  # one label of the group must be wrong; blank is junk


def test_a_copy_under_the_same_label_is_not_lifted_over_a_doubted_row(tmp_path):
    # Two copies with one label say nothing about the label: the combined order leaves them
    # where the model puts them (classic still nudges them, for train/val leakage).
    items = dataset(tmp_path, per_class=10)
    copy = tmp_path / "copy" / "same.png"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "data" / "ii" / "1.png").read_bytes())
    items = pd.concat([items, pd.DataFrame([item(copy, "ii", "same", "val")])], ignore_index=True)
    probs = pd.DataFrame(np.full((len(items), 3), 0.02), index=items["id"], columns=CLASSES)
    for i, lab in zip(items["id"], items["label"], strict=True):
        probs.loc[i, lab] = 0.96
    probs.loc[["ii01", "same"]] = [0.06, 0.88, 0.06]
    probs.loc["i07"] = [0.87, 0.07, 0.06]  # no copy; doubted a little more than the copies
    out = review.review_signals(items, probs, CLASSES)
    assert "ii01" in out.at["same", "duplicate_of"].split() and not out.at["same", "duplicate_conflict"]
    assert review.review_order(out)[:3].tolist() == ["i07", "ii01", "same"]
    assert review.review_order(out, "classic")[:3].tolist() == ["ii01", "same", "i07"]


# ----------------------------------------------------------------------------- orders


def _signals_for_order():
    return pd.DataFrame(
        {"priority": [0.2, 0.9, np.nan, 0.5], "issue_score": [0.1, 0.3, 0.9, 0.2],
         "confidence": [0.8, 0.1, 0.5, np.nan], "loss": [0.2, 2.3, 0.7, np.nan],
         "margin": [0.6, -0.8, 0.0, np.nan]},
        index=pd.Index(["0042", "1e3", "b", "a"], name="id"),
    )


@pytest.mark.parametrize(
    ("order", "expected"),
    [("combined", ["1e3", "a", "0042", "b"]), ("issue", ["b", "1e3", "a", "0042"]),
     ("confidence", ["1e3", "b", "0042", "a"]), ("loss", ["1e3", "b", "0042", "a"]),
     ("margin", ["1e3", "b", "0042", "a"])],
)
def test_review_orders(order, expected):
    assert review.review_order(_signals_for_order(), order).tolist() == expected


def test_random_order_is_seeded_and_path_order_sorts_paths():
    s = _signals_for_order()
    a, b = review.review_order(s, "random", seed=1), review.review_order(s, "random", seed=1)
    assert a.tolist() == b.tolist() and sorted(a) == sorted(s.index)
    assert {tuple(review.review_order(s, "random", seed=k)) for k in range(10)} != {tuple(a)}
    paths = pd.Series(["val/x/1.png", "train/ii/2.png", "train/i/3.png", "val/i/0.png"], index=s.index)
    assert review.review_order(s, "path", paths=paths).tolist() == ["b", "1e3", "a", "0042"]


def test_unknown_order_is_a_clear_config_error():
    with pytest.raises(review.UnknownOrderError, match="choose one of: combined, issue") as e:
        review.review_order(_signals_for_order(), "biggest")
    assert isinstance(e.value, ConfigError) and isinstance(e.value, SheetsyncError)


# ----------------------------------------------------------------------------- out-of-sample


def test_out_of_sample_scores_each_image_with_a_model_that_did_not_see_it(tmp_path):
    items = dataset(tmp_path)
    fit = LogisticFitPredict()
    events: list[FoldEvent] = []
    oos = review.out_of_sample(items, CLASSES, folds=3, epochs=2, work_dir=tmp_path / "w",
                               fit_predict=fit, progress=events.append)
    messages = [fold_text(e) for e in events]  # typed events; the command line words them
    assert len(fit.calls) == 3
    assert oos.probs.index.tolist() == items["id"].tolist()
    assert oos.probs.columns.tolist() == CLASSES
    assert np.allclose(oos.probs.sum(axis=1), 1)
    for f, trained_on in enumerate(fit.calls):
        held = set(oos.fold[oos.fold == f].index)
        assert held and not held & trained_on and held | trained_on == set(items["id"])
    # stratified: every fold holds 2 or 3 of each class's 8 images
    counts = pd.crosstab(oos.fold, items.set_index("id")["label"])
    assert counts.to_numpy().min() >= 2 and counts.to_numpy().max() <= 3
    accuracy = (oos.probs.idxmax(axis=1) == items.set_index("id")["label"]).mean()
    assert accuracy > 0.8  # the strokes are easy: held-out scores come from a working model
    assert oos.embeddings.shape == (len(items), 256)
    assert oos.class_distance.shape == (len(items), 3) and np.isfinite(oos.class_distance).all().all()
    assert "fold 1/3: epoch 2/2, loss 0.000" in messages


def test_out_of_sample_resumes_per_fold_and_reuses_unchanged_folds(tmp_path):
    items, work = dataset(tmp_path), tmp_path / "w"
    first = LogisticFitPredict(stop_after=1)
    with pytest.raises(KeyboardInterrupt):  # interrupted after the first fold was saved
        review.out_of_sample(items, CLASSES, folds=3, epochs=1, work_dir=work, fit_predict=first)
    second = LogisticFitPredict()
    a = review.out_of_sample(items, CLASSES, folds=3, epochs=1, work_dir=work, fit_predict=second)
    assert len(second.calls) == 2 and a.reused == (0,)
    third = LogisticFitPredict()
    b = review.out_of_sample(items, CLASSES, folds=3, epochs=1, work_dir=work, fit_predict=third)
    assert third.calls == [] and b.reused == (0, 1, 2)
    pd.testing.assert_frame_equal(a.probs, b.probs)
    latest = review.latest_out_of_sample(work)
    pd.testing.assert_frame_equal(latest.probs, b.probs)
    pd.testing.assert_frame_equal(latest.class_distance, b.class_distance)
    assert latest.fold.equals(b.fold) and latest.items_digest == review.items_digest(items)

    # Relabel one image: only the fold that held it out has unchanged training images.
    edited = items.copy()
    edited.loc[edited["id"] == "ii03", "label"] = "iii"
    fourth = LogisticFitPredict()
    c = review.out_of_sample(edited, CLASSES, folds=3, epochs=1, work_dir=work, fit_predict=fourth)
    assert c.fold.equals(b.fold)  # the image kept its fold
    assert c.reused == (int(b.fold["ii03"]),) and len(fourth.calls) == 2
    assert review.latest_out_of_sample(work).items_digest != review.items_digest(items)  # stale
    # Other settings are other results.
    fifth = LogisticFitPredict()
    review.out_of_sample(items, CLASSES, folds=3, epochs=2, work_dir=work, fit_predict=fifth)
    assert len(fifth.calls) == 3


def test_out_of_sample_rejects_unknown_labels_naming_the_image(tmp_path):
    items = dataset(tmp_path, per_class=2)
    items.loc[1, "label"] = "vii"
    with pytest.raises(TrainingError, match=r"i01 .*'vii'"):
        review.out_of_sample(items, CLASSES, folds=2, epochs=1, work_dir=tmp_path / "w",
                             fit_predict=LogisticFitPredict())


def test_outlier_is_large_for_an_image_unlike_its_class(tmp_path):
    items = dataset(tmp_path)
    odd = Image.new("L", (48, 48), 255)
    ImageDraw.Draw(odd).ellipse([8, 8, 40, 40], outline=0, width=3)
    items = pd.concat([items, pd.DataFrame([item(save(odd, tmp_path / "o.png"), "ii", "odd")])],
                      ignore_index=True)
    oos = review.out_of_sample(items, CLASSES, folds=3, epochs=1, work_dir=tmp_path / "w",
                               fit_predict=LogisticFitPredict())
    out = review.review_signals(items, oos, CLASSES)
    assert out["outlier"].idxmax() == "odd"
    assert out.at["odd", "outlier"] > review.FAR and "far from class ii" in out.at["odd", "why"]


# ----------------------------------------------------------------------------- real data

DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"


def _dcai_items(splits=("train", "val"), per_class: int | None = None) -> pd.DataFrame:
    import os

    if not DCAI.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DCAI} is missing")
        pytest.skip(f"{DCAI} is missing")
    rows = []
    for split in splits:
        for c in sorted(p.name for p in (DCAI / split).iterdir()):
            files = sorted((DCAI / split / c).glob("*.png"))[:per_class]
            rows += [item(p, c, f"{split[0]}{c}{k}", split) for k, p in enumerate(files)]
    return pd.DataFrame(rows)


@pytest.mark.dcai
def test_competition_data_duplicates_and_blank_image():
    items = _dcai_items()
    dup, blank = review.duplicates(items)
    # The README of the data: 49 byte-identical train/val pairs and one blank image.
    assert (dup != "").sum() == 98 and dup.str.split().str.len().max() == 1
    paths = items.set_index("id")["file"]
    assert [Path(paths[i]).name for i in blank[blank].index] == [
        "aac26b40-ce5d-11eb-b317-38f9d35ea60f.png"
    ]


@pytest.mark.dcai
@pytest.mark.slow
def test_out_of_sample_with_the_fixed_model(tmp_path):
    items = _dcai_items(("train",), per_class=6)
    classes = sorted(items["label"].unique(), key=lambda c: items["label"].tolist().index(c))
    oos = review.out_of_sample(items, classes, folds=2, epochs=1, work_dir=tmp_path / "w",
                               cache_dir=tmp_path / "cache")
    assert oos.probs.shape == (len(items), len(classes)) and oos.embeddings.shape[1] == 256
    assert np.allclose(oos.probs.sum(axis=1), 1, atol=1e-4)
    again = review.out_of_sample(items, classes, folds=2, epochs=1, work_dir=tmp_path / "w",
                                 cache_dir=tmp_path / "cache")
    assert again.reused == (0, 1)
    signals = review.review_signals(items, oos, classes)
    assert signals["issue_score"].between(0, 1).all() and signals["outlier"].notna().all()


_NO_TF_UNTIL_THE_WORKERS = r"""
import sys
import pandas as pd
from sheetsync import _workers, review

def train_folds(fit_predict, items, jobs, classes, **kwargs):
    # The moment the folds would go to the workers: what this process has loaded.
    print("tensorflow" in sys.modules, len(jobs), fit_predict.__module__,
          jobs[0].fit_kwargs.get("whole_batches"))
    raise SystemExit(0)

_workers.train_folds = train_folds
items = pd.read_pickle(sys.argv[1])
review.out_of_sample_runs(items, ["i", "ii", "iii"], folds=2, epochs=1, seeds=[1, 2],
                          work_dir=sys.argv[2], augment=sys.argv[3] == "augment")
"""


@pytest.mark.parametrize("augment", ["augment", "plain"])
def test_the_folds_go_to_the_workers_before_this_process_loads_tensorflow(tmp_path, augment):
    """Loading TensorFlow takes 5-6 s of a core: the process that sends the folds to the
    workers does not need it, and the workers (which import it themselves) start that much
    sooner. The fixed model's folds train on whole batches (one compile for folds of every
    size)."""
    import subprocess
    import sys

    dataset(tmp_path).to_pickle(tmp_path / "items.pkl")
    out = subprocess.run(
        [sys.executable, "-c", _NO_TF_UNTIL_THE_WORKERS, str(tmp_path / "items.pkl"),
         str(tmp_path / "w"), augment], capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    loaded, jobs, module, whole = out.stdout.split()
    assert (loaded, jobs, whole) == ("False", "4", "True")
    assert module == ("sheetsync._foldaugment" if augment == "augment" else "sheetsync.review")
