from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _model_data import CLASSES, DCAI_CLASSES, dcai_or_skip, items_of, make_split

from sheetsync import decode as D
from sheetsync import train as T
from sheetsync.errors import DatasetError, TrainingError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return {
        "root": root,
        "train": make_split(root, "train", 8, seed=1),
        "val": make_split(root, "val", 4, seed=2),
        "test": make_split(root, "test", 2, seed=3),
    }


def _keras_images(split_dir: Path, classes) -> tuple[list[str], np.ndarray]:
    import tensorflow as tf

    ds = tf.keras.utils.image_dataset_from_directory(
        str(split_dir),
        labels="inferred",
        label_mode="categorical",
        class_names=list(classes),
        shuffle=False,
        batch_size=64,
        image_size=(32, 32),
    )
    images = np.concatenate([x.numpy() for x, _ in ds])
    return list(ds.file_paths), images


# --- images ------------------------------------------------------------------------------------


def test_load_images_is_pixel_identical_to_image_dataset_from_directory(data):
    paths, expected = _keras_images(data["root"] / "train", CLASSES)
    items = data["train"].set_index("file").loc[paths]
    got = D.load_images(list(items.index), list(items["hash"]), cache_dir=None)
    assert got.dtype == np.float32 and got.shape == (len(paths), 32, 32, 3)
    assert np.array_equal(got, expected)  # exact, not approximately


def test_cache_hit_decodes_nothing_and_survives_missing_files(tmp_path):
    items = make_split(tmp_path / "ds", "train", 3, seed=5)
    cache = tmp_path / "cache"
    before = D.decoded_count()
    seen = []
    first = D.load_images(
        items["file"], items["hash"], cache, progress=lambda d, n: seen.append((d, n))
    )
    assert D.decoded_count() - before == len(items)
    assert seen[-1] == (len(items), len(items))

    again = D.load_images(items["file"], items["hash"], cache)
    assert D.decoded_count() - before == len(items)  # nothing decoded the second time
    assert np.array_equal(first, again)

    # Proof the files are not even read: delete them, the cache still serves every image.
    for f in items["file"]:
        Path(f).unlink()
    assert np.array_equal(D.load_images(items["file"], items["hash"], cache), first)


def test_identical_files_are_decoded_once_and_torn_entries_redone(tmp_path):
    items = make_split(tmp_path / "ds", "train", 2, seed=6)
    dup = items.iloc[[0, 0, 1]].reset_index(drop=True)
    cache = tmp_path / "cache"
    before = D.decoded_count()
    out = D.load_images(dup["file"], dup["hash"], cache)
    assert D.decoded_count() - before == 2
    assert np.array_equal(out[0], out[1])
    entry = next((cache / D.CACHE_FORMAT).rglob(f"{dup['hash'][0]}.npy"))
    entry.write_bytes(b"torn")
    again = D.load_images(dup["file"], dup["hash"], cache)
    assert D.decoded_count() - before == 3
    assert np.array_equal(out, again)


def test_bad_image_files_are_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="broken.png"):
        D.load_images([bad], ["0" * 64], cache_dir=None)
    with pytest.raises(DatasetError, match="not found"):
        D.load_images([tmp_path / "gone.png"], ["1" * 64], cache_dir=None)


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cache = out / "cache"
    runs = [
        T.train_model(
            data["train"],
            data["val"],
            CLASSES,
            test=data["test"],
            weights_path=out / f"run{i}" / "best.weights.h5",
            epochs=2,
            cache_dir=cache,
        )
        for i in range(2)
    ]
    return runs, cache


def test_train_model_result(trained, data):
    (r, _), _ = trained
    assert r.weights_path.is_file()
    assert (r.n_train, r.n_val, r.n_test, r.epochs, r.seed) == (24, 12, 6, 2, 123)
    assert len(r.history["val_accuracy"]) == len(r.history["seconds"]) == 2
    assert r.best_val_accuracy == max(r.history["val_accuracy"])
    assert r.history["val_accuracy"][r.best_epoch - 1] == r.best_val_accuracy
    assert r.test_accuracy is not None and 0 <= r.test_accuracy <= 1
    assert r.seconds > 0


def test_training_is_deterministic(trained):
    (a, b), _ = trained
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert a.history[key] == b.history[key], key
    assert (a.best_val_accuracy, a.best_epoch, a.test_accuracy) == (
        b.best_val_accuracy,
        b.best_epoch,
        b.test_accuracy,
    )


def test_predict_uses_the_saved_best_weights(trained, data):
    (r, _), cache = trained
    pred = T.predict(r.weights_path, data["test"], CLASSES, cache_dir=cache)
    assert pred.ids == list(data["test"]["id"])
    assert pred.probs.shape == (6, 3) and pred.embeddings.shape == (6, 256)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1, rtol=1e-5)
    # The test accuracy train_model reported is the saved weights' accuracy on the test set.
    truth = data["test"]["label"].map(CLASSES.index).to_numpy()
    assert np.isclose((pred.probs.argmax(axis=1) == truth).mean(), r.test_accuracy)
    renamed = r.weights_path.parent / "model.bin"  # any file name, not only *.weights.h5
    renamed.write_bytes(r.weights_path.read_bytes())
    val = T.predict(renamed, data["val"], CLASSES, cache_dir=cache, batch_size=5)
    truth = data["val"]["label"].map(CLASSES.index).to_numpy()
    assert np.isclose((val.probs.argmax(axis=1) == truth).mean(), r.best_val_accuracy)


def test_fit_predict_is_deterministic(data, tmp_path):
    calls = []
    kw = dict(epochs=1, cache_dir=tmp_path / "cache")
    T._last_trainer.clear()  # a: a freshly built model; b: the same one, restarted
    a = T.fit_predict(
        data["train"], data["val"], CLASSES, progress=lambda *a: calls.append(a), **kw
    )
    b = T.fit_predict(data["train"], data["val"], CLASSES, **kw)
    assert a.probs.shape == (12, 3) and a.embeddings.shape == (12, 256)
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.embeddings, b.embeddings)
    assert [c[:2] for c in calls] == [(1, 1)] and "loss" in calls[0][2]


def test_a_trainer_reseeded_gives_the_numbers_of_one_built_for_that_seed(data, tmp_path):
    """predict trains three fold seeds' folds in each worker: the model compiled for one seed
    is reused for the next (new initial weights, fresh optimizer), with the same results as a
    model built for that seed."""
    kw = dict(epochs=2, cache_dir=tmp_path / "cache", jit_compile=True)
    T._last_trainer.clear()
    fresh = T.fit_predict(data["train"], data["val"], CLASSES, seed=5, **kw)
    T._last_trainer.clear()
    T.fit_predict(data["train"], data["val"], CLASSES, seed=7, **kw)
    trainer = T._last_trainer[0]
    reseeded = T.fit_predict(data["train"], data["val"], CLASSES, seed=5, **kw)
    assert T._last_trainer[0] is trainer  # not built again: the compiled step is reused
    assert np.array_equal(fresh.probs, reseeded.probs)
    assert np.array_equal(fresh.embeddings, reseeded.embeddings)
    other = T.fit_predict(data["train"], data["val"], CLASSES, seed=7, **kw)
    assert not np.array_equal(fresh.probs, other.probs)  # the seed does change the model


def test_fit_predict_scores_unseen_images_in_their_test_views_too(data, tmp_path):
    """views: the mean over the original and its views, for the images the model did not
    train on; the training images keep their original probabilities; the originals are kept."""
    kw = dict(epochs=2, snapshots=(1, 2), cache_dir=tmp_path / "cache")
    items = pd.concat([data["train"].iloc[:3], data["val"]], ignore_index=True)
    seen: list[int] = []

    def inverted(x):
        seen.append(len(x))
        return [255.0 - x]

    T._last_trainer.clear()
    plain = T.fit_predict(data["train"], items, CLASSES, **kw)
    T._last_trainer.clear()
    viewed = T.fit_predict(data["train"], items, CLASSES, views=inverted, **kw)
    assert seen == [len(data["val"])]  # only the unseen rows, once
    assert plain.original_probs is None and plain.original_snapshots is None
    assert np.allclose(viewed.original_probs, plain.probs, atol=1e-6)
    assert np.allclose(viewed.original_snapshots, plain.snapshots, atol=1e-6)
    assert np.allclose(viewed.probs[:3], plain.probs[:3], atol=1e-6)  # training rows
    changed = ~np.isclose(viewed.probs[3:], plain.probs[3:], atol=1e-6).all(axis=1)
    assert changed.all()
    assert np.allclose(viewed.probs.sum(axis=1), 1.0) and np.allclose(viewed.snapshots[-1], viewed.probs)
    assert np.allclose(viewed.embeddings, plain.embeddings, atol=1e-5)  # embeddings: the original


# --- errors ------------------------------------------------------------------------------------


def test_empty_validation_split_is_refused(data, tmp_path):
    with pytest.raises(TrainingError, match="validation split is empty"):
        T.train_model(
            data["train"], data["val"].iloc[:0], CLASSES, weights_path=tmp_path / "w.weights.h5"
        )


def test_unknown_labels_are_named(data, tmp_path):
    train = data["train"].copy()
    train.loc[3, "label"] = "zz"
    with pytest.raises(TrainingError, match=rf"id {train.loc[3, 'id']}: 'zz'"):
        T.train_model(train, data["val"], CLASSES, weights_path=tmp_path / "w.weights.h5")
    with pytest.raises(TrainingError, match="not a class"):
        T.fit_predict(data["train"], data["val"], ["a", "b"], epochs=1)


def test_bad_arguments(data, tmp_path):
    w = tmp_path / "w.weights.h5"
    with pytest.raises(TrainingError, match="two classes"):
        T.train_model(data["train"], data["val"], ["a"], weights_path=w)
    with pytest.raises(TrainingError, match="precision"):
        T.train_model(data["train"], data["val"], CLASSES, weights_path=w, precision="float16")
    with pytest.raises(TrainingError, match="lack column"):
        T.train_model(data["train"].drop(columns="hash"), data["val"], CLASSES, weights_path=w)
    with pytest.raises(TrainingError, match="no trained weights"):
        T.predict(tmp_path / "missing.weights.h5", data["val"], CLASSES)


# --- slow: XLA, bfloat16, the real data --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("precision,jit", [("float32", True), ("mixed_bfloat16", False)])
def test_options_train_and_are_deterministic(data, tmp_path, precision, jit):
    runs = [
        T.train_model(
            data["train"],
            data["val"],
            CLASSES,
            weights_path=tmp_path / f"{i}.weights.h5",
            epochs=2,
            precision=precision,
            jit_compile=jit,
            cache_dir=tmp_path / "c",
        )
        for i in range(2)
    ]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[0].history["val_accuracy"] == runs[1].history["val_accuracy"]
    pred = T.predict(runs[0].weights_path, data["val"], CLASSES, cache_dir=tmp_path / "c")
    assert pred.probs.dtype == np.float32


@pytest.mark.dcai
def test_real_pngs_match_image_dataset_from_directory():
    root = dcai_or_skip()
    paths, expected = _keras_images(root / "label_book", DCAI_CLASSES)
    items = items_of(root / "label_book", DCAI_CLASSES).set_index("file").loc[paths]
    got = D.load_images(list(items.index), list(items["hash"]), cache_dir=None)
    assert np.array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.dcai
@pytest.mark.parametrize("jit", [False, True], ids=["float32", "xla"])
def test_real_data_slice_trains_deterministically(tmp_path, jit):
    root = dcai_or_skip()
    train = items_of(root / "train", DCAI_CLASSES, limit=20)
    val = items_of(root / "val", DCAI_CLASSES, limit=8)
    test = items_of(root / "label_book", DCAI_CLASSES)
    runs = [
        T.train_model(
            train,
            val,
            DCAI_CLASSES,
            test=test,
            weights_path=tmp_path / f"{i}.weights.h5",
            epochs=3,
            jit_compile=jit,
            cache_dir=tmp_path / "cache",
        )
        for i in range(2)
    ]
    assert runs[0].history == {**runs[1].history, "seconds": runs[0].history["seconds"]}
    assert runs[0].test_accuracy == runs[1].test_accuracy
    T._last_trainer.clear()  # and a freshly built model gives the same numbers as a restarted one
    fresh = T.fit_predict(
        train, test, DCAI_CLASSES, epochs=2, jit_compile=jit, cache_dir=tmp_path / "cache"
    )
    again = T.fit_predict(
        train, test, DCAI_CLASSES, epochs=2, jit_compile=jit, cache_dir=tmp_path / "cache"
    )
    assert np.array_equal(fresh.probs, again.probs)


def test_a_single_threaded_worker_runs_the_input_pipeline_in_its_training_thread(monkeypatch):
    """sheetsync._workers gives each fold worker one TensorFlow thread: its input pipeline then
    runs without tf.data's own threads and prefetch (which left cores idle beside a second
    worker); with more threads it keeps them. The elements are the same either way."""
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    y = np.arange(12) % 3

    def batches(ds):
        return [b[0].numpy().tolist() for b in ds]

    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    shared = T._train_ds(x, y, seed=5, batch_size=4)
    assert not T.single_threaded() and shared.options().threading.private_threadpool_size is None
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    own = T._train_ds(x, y, seed=5, batch_size=4)
    assert own.options().threading.private_threadpool_size == 1
    assert own.options().autotune.enabled is False
    assert batches(own) == batches(shared)


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).sum()
                     for x, y in zip(a, b, strict=True)))


def test_fit_predict_warm_start_fine_tunes_the_weights_given(data, tmp_path):
    """predict's warm start (issue 25): a fold model starts from the previous version's weights;
    the next model trained from scratch is not affected by it."""
    kw = dict(cache_dir=tmp_path / "cache", seed=5)
    T._last_trainer.clear()
    first = T.fit_predict(data["train"], data["val"], CLASSES, epochs=3, **kw)
    assert first.weights is not None and len(first.weights) == len(T._last_trainer[0].model.weights)
    cold = T.fit_predict(data["train"], data["val"], CLASSES, epochs=1, **kw)
    warm = T.fit_predict(data["train"], data["val"], CLASSES, epochs=1,
                         warm_weights=first.weights, **kw)
    # One epoch from the given weights stays near them; one epoch from the seed's does not.
    assert _distance(warm.weights, first.weights) < 0.5 * _distance(cold.weights, first.weights)
    again = T.fit_predict(data["train"], data["val"], CLASSES, epochs=1, **kw)
    assert np.array_equal(again.probs, cold.probs)  # the warm start was undone
    with pytest.raises(TrainingError, match="previous fold model's weights"):
        T.fit_predict(data["train"], data["val"], CLASSES, epochs=1,
                      warm_weights=first.weights[:-1], **kw)


def test_whole_batches_fill_the_last_batch_with_the_epochs_first_images():
    """predict's folds train on whole batches only (one compiled step for folds of every size):
    each epoch is the plain shuffled order, every image in it, its first images again at the
    end to fill the last batch; a training size that fills its batches is left as it is."""
    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    y = np.arange(11) % 3

    def epochs(ds, n=3):
        return [[b[0].numpy()[:, 0].tolist() for b in ds] for _ in range(n)]

    plain = epochs(T._train_ds(x, y, seed=5, batch_size=4))
    whole_ds = T._train_ds(x, y, seed=5, batch_size=4, whole_batches=True)
    whole = epochs(whole_ds)
    assert whole_ds.element_spec[0].shape == (4, 2)  # a static batch: one shape to compile
    assert int(whole_ds.cardinality()) == 3
    for p, w in zip(plain, whole, strict=True):
        order = [v for b in w for v in b]
        assert [len(b) for b in w] == [4, 4, 4]
        assert order[:11] == [v for b in p for v in b]  # the plain epoch, in its order
        assert order[11:] == order[:1]  # then its first image again
    assert plain[0] != plain[1]  # reshuffled every epoch
    for images, labels in whole_ds:  # each image keeps its own label
        assert labels.numpy().tolist() == [int(v) // 2 % 3 for v in images.numpy()[:, 0]]
    even = T._train_ds(x[:8], y[:8], seed=5, batch_size=4, whole_batches=True)
    assert epochs(even, 1) == epochs(T._train_ds(x[:8], y[:8], seed=5, batch_size=4), 1)
