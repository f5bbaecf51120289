"""Training and prediction with the fixed model, as fast as this hardware allows.

The model and its recipe are the competition's (see :mod:`sheetsync.model`): batch 8, Adam 1e-4,
seed 123, a reshuffle every epoch, best weights by validation accuracy. Everything around it is
made fast:

* each image is decoded once and cached (:mod:`sheetsync.decode`), so after a ``pull`` only
  new or changed images are decoded again;
* training reads in-memory arrays through ``tf.data`` (shuffle, batch, prefetch), runs several
  steps per call (``steps_per_execution``), validates in its own traced inference pass at batch
  256 (inference only, so the batch size does not change the result), and keeps the best
  weights in memory;
* the built model and its traced (or XLA-compiled) train step are kept for the process and
  restarted to the seed's initial state for the next run (cross-validation folds), and
  :func:`predict` keeps one inference model per class count;
* optional bfloat16 mixed precision and XLA compilation (``jit_compile``).

Determinism: ``tf.keras.utils.set_random_seed(seed)`` plus op determinism make a run repeatable
on the same machine. TensorFlow silently turns XLA off while op determinism is on, so with
``jit_compile=True`` op determinism is *not* enabled; XLA on CPU still gives identical numbers
run after run here (tests/test_train.py checks it on tiny data and on a slice of the real data),
but TensorFlow does not promise it, and XLA's numbers differ slightly from the non-XLA ones.

Measured (``python -m bench.bench_train``, 2 cores, 2,067 + 813 images): float32 + XLA
2.1-2.3x the reference per epoch (3.1 s against 6.9-7.1 s, AMD EPYC) after a ~10 s compile in
the first epoch; float32 without XLA and mixed bfloat16 are slower. Hence ``jit_compile=True``
is the default. The batch-8 step (about 11 ms, most of it XLA's kernels and its scheduling
between them) is what bounds an epoch now: docs/review.md, "Training speed".

Usage::

    result = train_model(train, val, classes, weights_path=Path("best.weights.h5"), epochs=100)
    pred = predict(result.weights_path, items, classes)   # pred.probs, pred.embeddings
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._quiet import quiet_tensorflow
from .decode import load_images
from .errors import TrainingError
from .model import build_model, compile_model, embedding_model

# TensorFlow's start-up lines (absl, oneDNN, CUDA probing) are dropped before it is imported.
quiet_tensorflow()

if TYPE_CHECKING:  # pragma: no cover
    import keras

PRECISIONS = ("float32", "mixed_bfloat16")
# Several training steps per call into TensorFlow: the model is tiny, so per-step Python and
# dispatch overhead is a large share of an epoch. Only callback granularity changes.
STEPS_PER_EXECUTION = 32
EVAL_BATCH = 256

ProgressFn = Callable[[int, int, dict[str, float]], None]
# Test-time views: images (n, 32, 32, 3) -> other versions of them, each (n, 32, 32, 3).
ViewsFn = Callable[[np.ndarray], Sequence[np.ndarray]]
DecodeFn = Callable[[str, int, int], None]  # (which split, images decoded, images to decode)


@dataclass
class TrainResult:
    best_val_accuracy: float
    best_epoch: int  # 1-based
    test_accuracy: float | None
    epochs: int
    seconds: float
    seed: int
    n_train: int
    n_val: int
    n_test: int
    history: dict[str, list[float]] = field(default_factory=dict)
    weights_path: Path | None = None


@dataclass
class Prediction:
    """Softmax probabilities (n, C) and 256-d embeddings (n, 256), rows in ``ids`` order."""

    ids: list[str]
    probs: np.ndarray
    embeddings: np.ndarray
    # (S, n, C) softmax after the epochs asked for in fit_predict(snapshots=...), in epoch order.
    snapshots: np.ndarray | None = None
    # With test-time views (fit_predict(views=...)): what ``probs`` and ``snapshots`` were for
    # the original pictures alone (benchmarks measure what the views buy).
    original_probs: np.ndarray | None = None
    original_snapshots: np.ndarray | None = None
    # The trained model's weights (Keras get_weights order, batch-norm statistics included):
    # the next version's fold model of the same fold starts from them (fit_predict(warm_weights=)).
    weights: list[np.ndarray] | None = None


# ---------------------------------------------------------------------------------------------
# Training


def _check_frame(df: pd.DataFrame, what: str, classes: Sequence[str]) -> np.ndarray:
    """Class indices of ``df``'s labels; raises TrainingError naming bad rows."""
    missing = {"id", "file", "hash", "label"} - set(df.columns)
    if missing:
        raise TrainingError(f"{what} items lack column(s): {', '.join(sorted(missing))}")
    index = {c: i for i, c in enumerate(classes)}
    bad = [(i, lab) for i, lab in zip(df["id"], df["label"], strict=True) if lab not in index]
    if bad:
        shown = ", ".join(f"id {i!s}: {lab!r}" for i, lab in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise TrainingError(
            f"{what}: {len(bad)} image(s) have a label that is not a class "
            f"({', '.join(classes)}): {shown}{more}"
        )
    return np.fromiter((index[lab] for lab in df["label"]), np.int64, len(df))


def _check_classes(classes: Sequence[str]) -> list[str]:
    classes = [str(c) for c in classes]
    if len(classes) < 2:
        raise TrainingError(f"need at least two classes to train, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise TrainingError(f"duplicate class names in {classes!r}")
    return classes


def _check_run(classes: Sequence[str], train: pd.DataFrame, epochs: int, empty: str) -> list[str]:
    """The set-up checks every training run shares (train_model and fit_predict)."""
    checked = _check_classes(classes)
    if len(train) == 0:
        raise TrainingError(empty)
    if epochs < 1:
        raise TrainingError(f"epochs must be at least 1, got {epochs}")
    return checked


def _images(items: pd.DataFrame, what: str, cache_dir: Path | None) -> np.ndarray:
    """Decoded images of ``items`` (columns id, file, hash) for prediction."""
    for col in ("id", "file", "hash"):
        if col not in items.columns:
            raise TrainingError(f"{what} lack column {col!r}")
    return load_images(list(items["file"]), list(items["hash"]), cache_dir)


def _arrays(df: pd.DataFrame, what: str, classes: Sequence[str], cache_dir: Path | None,
            progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    y = _check_frame(df, what, classes)
    x = load_images(list(df["file"]), list(df["hash"]), cache_dir, progress)
    return x, np.eye(len(classes), dtype=np.float32)[y]


class _Precision:
    """Set the Keras dtype policy while the model is built, then restore the old one."""

    def __init__(self, precision: str):
        if precision not in PRECISIONS:
            raise TrainingError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
            )
        self.precision = precision

    def __enter__(self):
        import keras

        self.old = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.precision)

    def __exit__(self, *exc):
        import keras

        keras.mixed_precision.set_global_policy(self.old)


def _set_op_determinism(on: bool) -> None:
    import tensorflow as tf

    if on:
        tf.config.experimental.enable_op_determinism()
    else:
        # Not exported under tf.config.experimental, but it is the public switch's inverse.
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


def _new_model(num_classes: int, precision: str, jit_compile: bool) -> keras.Model:
    with _Precision(precision):
        model = build_model(num_classes)
    return compile_model(model, jit_compile=jit_compile, steps_per_execution=STEPS_PER_EXECUTION)


def _train_ds(x: np.ndarray, y: np.ndarray, seed: int, batch_size: int,
              augment: Callable[[Any], Any] | None = None, whole_batches: bool = False):
    """The training batches: shuffled, batched, augmented if asked, then threaded for this
    process (:func:`pipeline_threads`). ``whole_batches``: see :func:`_whole_batches`."""
    import tensorflow as tf

    if whole_batches and len(x) % batch_size:
        ds = _whole_batches(x, y, seed, batch_size)
    else:
        # A full reshuffle every epoch, seeded: the same order sequence for the same seed.
        ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
        )
    return pipeline_threads(ds if augment is None else augment(ds))


def _whole_batches(x: np.ndarray, y: np.ndarray, seed: int, batch_size: int):
    """Every batch of ``batch_size``: each epoch's shuffled order (the same order as without
    this), with its first images again at the end to fill the last batch.

    Why: XLA compiles the train step once per batch shape, so the short last batch of an epoch
    costs a compile of its own for every new remainder of the training size (3.7 s in a
    single-threaded fold worker: a first epoch of 5.4 s against 1.7 s steady, 800 to 803
    images). The fold models of ``predict`` train on as many different sizes as there are
    folds; with whole batches each worker compiles once. Fewer than ``batch_size`` images an
    epoch are seen twice, where the reference recipe gives them a short batch instead."""
    import tensorflow as tf

    n = len(x)
    pad = -n % batch_size
    steps = (n + pad) // batch_size
    xs, ys = tf.constant(x), tf.constant(y)

    def fill(order: Any) -> Any:
        return tf.reshape(tf.concat([order, order[:pad]], 0), (steps, batch_size))

    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(n)  # one element: this epoch's order
        .map(fill)
        .unbatch()
        .apply(tf.data.experimental.assert_cardinality(steps))  # Keras counts the steps
        .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)))
    )


def single_threaded() -> bool:
    """True in a process given one TensorFlow thread (a fold-training worker, see
    sheetsync._workers)."""
    return os.environ.get("TF_NUM_INTRAOP_THREADS") == "1"


def pipeline_threads(ds: Any) -> Any:
    """The last stage of the input pipeline: in a single-threaded process the pipeline (shuffle,
    batch, augmentation) runs in the thread that trains, not in tf.data's own threads, and
    nothing is prefetched; elsewhere it keeps its threads and prefetches.

    Why: two workers side by side, each handing small batches from tf.data's threads to its
    training thread, left about a fifth of a 2-core machine idle (each ran at 75-78% of a core,
    one alone at 104%); run in the training thread they kept both cores busy (97% each) and
    ten epochs took 59 s instead of 81-85 s. Elsewhere the pipeline's own threads and a fixed
    prefetch of two batches overlap with training when there are cores to spare.

    Why no autotune: with tf.data's autotuner on, every second or third epoch stalled about 2 s
    at its very end (in the last step call, the one that meets the end of the iterator): XLA
    epochs of 2.9-3.2 s became 5.1 s. With it off and a fixed prefetch, eight epochs in a row
    took 2.8-3.2 s (2 cores, AMD EPYC, one ``fit`` per epoch timed, 2026-12-05)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    if not single_threaded():
        return ds.prefetch(2).with_options(options)
    options.threading.private_threadpool_size = 1
    return ds.with_options(options)


class _Trainer:
    """The fixed model and its training data, trained one epoch at a time.

    One ``fit`` call per epoch is equivalent to one call for all epochs (Keras makes a new
    iterator, hence a new shuffle, per epoch either way) and lets the benchmark interleave
    pipelines so that they share the machine's load fairly.

    ``restart`` puts the model back exactly as ``__init__`` left it (the initial weights the
    seed gave, fresh optimizer state) with new data: the traced, possibly XLA-compiled train
    step is reused, which saves its tracing/compiling for every cross-validation fold.
    """

    def __init__(self, num_classes, *, seed, precision, jit_compile):
        import tensorflow as tf

        self.key = (num_classes, seed, precision, jit_compile)
        self.jit_compile = jit_compile
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        # Op determinism silently disables XLA, so it is switched on only without jit_compile.
        _set_op_determinism(not jit_compile)
        self.model = _new_model(num_classes, precision, jit_compile)
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial = (
            self.model.get_weights(),
            [v.numpy() for v in self.model.optimizer.variables],
        )
        self.epoch = 0
        self.moved = False  # weights set by start_from: restart() must put the initial ones back
        self.ds = None
        self.evaluator = _Evaluator(self.model)

    def restart(self, x: np.ndarray, y: np.ndarray, seed: int, batch_size: int,
                augment: Callable[[Any], Any] | None = None,
                whole_batches: bool = False) -> _Trainer:
        import tensorflow as tf

        if self.epoch or self.moved:
            weights, opt_state = self.initial
            self.model.set_weights(weights)
            for v, value in zip(self.model.optimizer.variables, opt_state, strict=True):
                v.assign(value)
        tf.keras.utils.set_random_seed(seed)
        self.ds = _train_ds(x, y, seed, batch_size, augment, whole_batches)
        self.epoch = 0
        self.moved = False
        return self

    def reseed(self, seed: int, precision: str) -> None:
        """Become the trainer that ``seed`` would build, keeping the traced and compiled
        training step: the initial weights of a model built after
        ``set_random_seed(seed)`` (the same numbers in a fresh session or in this one), the
        same fresh optimizer state. Compiling costs about 25 s of CPU per model, and
        ``predict`` trains the folds of three fold seeds in each worker."""
        import tensorflow as tf

        tf.keras.utils.set_random_seed(seed)
        with _Precision(precision):
            weights = build_model(self.key[0]).get_weights()
        self.initial = (weights, self.initial[1])
        self.key = (self.key[0], seed, *self.key[2:])
        self.epoch = max(self.epoch, 1)  # restart() puts the new initial weights in

    def start_from(self, weights: Sequence[np.ndarray]) -> None:
        """Train on from ``weights`` (another run's model of the same architecture) rather than
        the seed's initial weights; the optimizer state stays fresh. ``restart`` undoes it."""
        try:
            self.model.set_weights(list(weights))
        except ValueError as e:
            raise TrainingError(f"cannot start from the previous fold model's weights: {e}") from e
        self.moved = True

    def run_epoch(self) -> dict[str, float]:
        _set_op_determinism(not self.jit_compile)  # it is process-wide: set it for this model
        h = self.model.fit(
            self.ds,
            epochs=self.epoch + 1,
            initial_epoch=self.epoch,
            shuffle=False,  # the dataset reshuffles itself, seeded
            verbose=0,
        )
        self.epoch += 1
        return {k: float(v[-1]) for k, v in h.history.items()}


_last_trainer: list[_Trainer] = []  # at most one kept: the last configuration used


def _trainer(x, y, num_classes, *, seed, batch_size, precision, jit_compile, augment=None,
             whole_batches=False) -> _Trainer:
    key = (num_classes, seed, precision, jit_compile)
    last = _last_trainer[0] if _last_trainer else None
    if last is not None and last.key != key and last.key[0] == num_classes \
            and last.key[2:] == key[2:]:
        last.reseed(seed, precision)  # another fold seed: new weights, the same compiled step
    elif last is None or last.key != key:
        _last_trainer[:] = [
            _Trainer(num_classes, seed=seed, precision=precision, jit_compile=jit_compile)
        ]
    return _last_trainer[0].restart(x, y, seed, batch_size, augment, whole_batches)


def train_model(
    train: pd.DataFrame,
    val: pd.DataFrame,
    classes: Sequence[str],
    *,
    weights_path: Path,
    test: pd.DataFrame | None = None,
    epochs: int = 100,
    seed: int = 123,
    batch_size: int = 8,
    precision: str = "float32",
    jit_compile: bool = False,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    decode_progress: DecodeFn | None = None,
    on_first_epoch: Callable[[bool, int], None] | None = None,
) -> TrainResult:
    """Train the fixed model; save the best weights by validation accuracy to ``weights_path``
    and evaluate them on ``test``. ``progress(epoch, epochs, logs)`` is called after each epoch,
    ``decode_progress(split, done, todo)`` while images not in the cache are decoded, and
    ``on_first_epoch(jit_compile, epochs)`` before the first epoch (which compiles the model).
    """
    classes = _check_run(classes, train, epochs, "the training split is empty: nothing to train on")
    if len(val) == 0:
        raise TrainingError("the validation split is empty: best weights are chosen on it")
    start = time.perf_counter()

    def arrays(df: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
        tell = None if decode_progress is None else (
            lambda done, todo: decode_progress(what, done, todo))
        return _arrays(df, what, classes, cache_dir, tell)

    xt, yt = arrays(train, "train")
    xv, yv = arrays(val, "val")
    test_arrays = arrays(test, "test") if test is not None and len(test) else None

    trainer = _trainer(
        xt,
        yt,
        len(classes),
        seed=seed,
        batch_size=batch_size,
        precision=precision,
        jit_compile=jit_compile,
    )
    model, evaluator = trainer.model, trainer.evaluator
    best: dict[str, Any] = {"acc": -1.0, "epoch": 0, "weights": None}
    history: dict[str, list[float]] = {}
    if on_first_epoch is not None:
        on_first_epoch(jit_compile, epochs)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        logs = trainer.run_epoch()
        logs.update(evaluator.metrics(xv, yv, prefix="val_"))
        # Wall-clock seconds per epoch (training + validation); the first includes tracing.
        logs["seconds"] = time.perf_counter() - t0
        for k, v in logs.items():
            history.setdefault(k, []).append(float(v))
        if logs["val_accuracy"] > best["acc"]:  # strictly, as ModelCheckpoint(save_best_only)
            best.update(acc=logs["val_accuracy"], epoch=epoch, weights=model.get_weights())
        if progress is not None:
            progress(epoch, epochs, logs)

    model.set_weights(best["weights"])
    weights_path = Path(weights_path)
    _save_weights(model, weights_path)
    test_acc = None
    if test_arrays is not None:
        test_acc = evaluator.metrics(*test_arrays)["accuracy"]
    return TrainResult(
        best_val_accuracy=float(best["acc"]),
        best_epoch=int(best["epoch"]),
        test_accuracy=test_acc,
        epochs=epochs,
        seconds=time.perf_counter() - start,
        seed=seed,
        n_train=len(train),
        n_val=len(val),
        n_test=0 if test is None else len(test),
        history=history,
        weights_path=weights_path,
    )


def _save_weights(model: keras.Model, path: Path) -> None:
    # Keras insists on a ".weights.h5" name: save under one, then move into place atomically.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp.weights.h5"
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def _load_weights(model: keras.Model, path: Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no trained weights at {path}: run `sheetsync train` first")
    if path.name.endswith(".weights.h5"):
        model.load_weights(str(path))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "model.weights.h5"
        os.symlink(path.resolve(), tmp)
        model.load_weights(str(tmp))


# ---------------------------------------------------------------------------------------------
# Prediction


class _Evaluator:
    """Inference (BatchNorm in inference mode) at a large, fixed batch size.

    Validation, test and prediction run here rather than through Keras ``evaluate``/``predict``:
    one traced graph, never XLA-compiled (compiling it would cost more than it saves), and the
    last batch is zero-padded to the full size so the graph is traced once, not twice. Rows are
    independent in inference mode, so padding and batch size do not change any result.
    """

    def __init__(self, model: keras.Model, batch_size: int = EVAL_BATCH):
        import tensorflow as tf

        self.batch_size = batch_size
        self.embed = embedding_model(model)

        @tf.function(reduce_retracing=True, jit_compile=False)
        def step(batch):
            emb, logits = self.embed(batch, training=False)
            return tf.cast(emb, tf.float32), tf.cast(logits, tf.float32)

        self.step = step

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings [n, 256], logits [n, C]) of ``x``."""
        bs, n = self.batch_size, len(x)
        embs, logits = [], []
        for i in range(0, n, bs):
            batch = x[i : i + bs]
            if len(batch) < bs and n > bs:  # pad: keep the one traced shape
                batch = np.concatenate([batch, np.zeros((bs - len(batch), *x.shape[1:]), x.dtype)])
            e, lo = self.step(batch)
            k = min(bs, n - i)
            embs.append(e.numpy()[:k])
            logits.append(lo.numpy()[:k])
        if not embs:
            c = self.embed.output_shape[1][-1]
            return np.zeros((0, self.embed.output_shape[0][-1]), np.float32), np.zeros(
                (0, c), np.float32
            )
        return np.concatenate(embs), np.concatenate(logits)

    def metrics(self, x: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
        """Categorical cross-entropy from logits and accuracy, as Keras computes them."""
        _, logits = self.run(x)
        logp = logits - _logsumexp(logits)
        loss = float(-(y * logp).sum(axis=1).mean())
        acc = float((logits.argmax(axis=1) == y.argmax(axis=1)).mean())
        return {f"{prefix}loss": loss, f"{prefix}accuracy": acc}


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(z - _logsumexp(z)).astype(np.float32)


_inference_models: dict[int, tuple[keras.Model, _Evaluator]] = {}


def _inference_model(num_classes: int) -> tuple[keras.Model, _Evaluator]:
    """One float32 model per class count, kept for the process: building ResNet50 (and
    initialising its 23.5M weights, most of them cut away) and tracing its graph cost more than
    predicting a few thousand images, and every prediction loads its own weights anyway."""
    if num_classes not in _inference_models:
        with _Precision("float32"):
            model = build_model(num_classes)
        _inference_models[num_classes] = (model, _Evaluator(model))
    return _inference_models[num_classes]


def predict(
    weights_path: Path,
    items: pd.DataFrame,
    classes: Sequence[str],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 256,
) -> Prediction:
    """Softmax probabilities and 256-d embeddings of ``items`` under the saved weights."""
    classes = _check_classes(classes)
    x = _images(items, "items", cache_dir)
    model, evaluator = _inference_model(len(classes))
    try:
        _load_weights(model, weights_path)
    except ValueError as e:
        raise TrainingError(
            f"{weights_path} does not hold weights of the fixed model for "
            f"{len(classes)} classes: {e}"
        ) from None
    evaluator.batch_size = batch_size
    embs, logits = evaluator.run(x)
    return Prediction(ids=[str(i) for i in items["id"]], probs=_softmax(logits), embeddings=embs)


def fit_predict(
    train: pd.DataFrame,
    predict_items: pd.DataFrame,
    classes: Sequence[str],
    *,
    epochs: int,
    seed: int = 123,
    batch_size: int = 8,
    precision: str = "float32",
    jit_compile: bool = False,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    augment: Callable[[Any], Any] | None = None,
    snapshots: Sequence[int] = (),
    views: ViewsFn | None = None,
    warm_weights: Sequence[np.ndarray] | None = None,
    whole_batches: bool = False,
) -> Prediction:
    """Train on ``train`` for exactly ``epochs`` epochs (no validation: the last weights are
    used) and predict ``predict_items``. Cross-validation builds on this. ``augment`` maps the
    batched training ``tf.data.Dataset`` (see :mod:`sheetsync._foldaugment`). ``snapshots``: epochs
    after which ``predict_items`` are also scored (training dynamics; one inference pass each).
    ``views`` (test-time augmentation): the images the model did not train on (rows of
    ``predict_items`` whose id is not in ``train``) are also scored in these other versions,
    and their probabilities are the mean over the original and the views, at every snapshot.
    ``warm_weights`` (a :attr:`Prediction.weights`): start from these weights instead of the
    seed's initial ones (fresh optimizer state) and fine-tune for ``epochs``.
    ``whole_batches``: every training batch full (:func:`_whole_batches`; ``predict`` asks for
    it, so that its folds of different sizes share one compiled step)."""
    classes = _check_run(classes, train, epochs, "nothing to train on: the training items are empty")
    xt, yt = _arrays(train, "train", classes, cache_dir)
    xp = _images(predict_items, "items to predict", cache_dir)
    # Only the unseen rows: a training image's probability is close to its label in any view,
    # and the held-out ones are all the review reads.
    unseen = ~predict_items["id"].astype(str).isin(set(train["id"].astype(str))).to_numpy()
    extra = list(views(xp[unseen])) if views is not None and unseen.any() else []

    trainer = _trainer(
        xt,
        yt,
        len(classes),
        seed=seed,
        batch_size=batch_size,
        precision=precision,
        jit_compile=jit_compile,
        augment=augment,
        whole_batches=whole_batches,
    )
    if warm_weights is not None:
        trainer.start_from(warm_weights)

    def score() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, probabilities with the views, probabilities of the originals)."""
        embs, logits = trainer.evaluator.run(xp)
        probs = _softmax(logits)
        mean = probs.copy()
        if extra:
            seen_as = [probs[unseen]] + [_softmax(trainer.evaluator.run(v)[1]) for v in extra]
            mean[unseen] = np.mean(seen_as, axis=0)
        return embs, mean, probs

    snaps: list[np.ndarray] = []
    originals: list[np.ndarray] = []
    for epoch in range(1, epochs + 1):
        logs = trainer.run_epoch()
        if progress is not None:
            progress(epoch, epochs, logs)
        if epoch in snapshots and epoch != epochs:
            _, mean, original = score()
            snaps.append(mean)
            originals.append(original)
    embs, probs, original = score()
    if epochs in snapshots:
        snaps.append(probs)
        originals.append(original)
    return Prediction(
        ids=[str(i) for i in predict_items["id"]], probs=probs, embeddings=embs,
        snapshots=np.stack(snaps) if snaps else None,
        original_probs=original if extra else None,
        original_snapshots=np.stack(originals) if extra and originals else None,
        weights=[np.asarray(w) for w in trainer.model.get_weights()],
    )
