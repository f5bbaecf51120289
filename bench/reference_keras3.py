"""The competition's fixed training script (``reference/train.py``), ported to Keras 3.

Only the smallest changes the port needs were made, so that it is a faithful baseline:

* ``Adam(lr=...)`` -> ``Adam(learning_rate=...)``;
* the checkpoint file name ends in ``.weights.h5`` (Keras 3 requires it);
* ``tf.keras.preprocessing.image_dataset_from_directory`` ->
  ``tf.keras.utils.image_dataset_from_directory``;
* ``outputs=base.get_layer("conv2_block3_out").output`` (a one-element list there makes the cut
  model return a list, which breaks the layers after it).

It is split into functions so the benchmark can run it for N epochs on given folders; run as a
script it does what the original does (100 epochs)::

    python -m bench.reference_keras3 ../shared/data/dcai train val label_book
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import tensorflow as tf

CLASS_NAMES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
batch_size = 8


def load_dataset(directory: str | Path, class_names=CLASS_NAMES) -> tf.data.Dataset:
    """One split, exactly as the reference loads it."""
    return tf.keras.utils.image_dataset_from_directory(
        str(directory),
        labels="inferred",
        label_mode="categorical",
        class_names=class_names,
        shuffle=True,
        seed=123,
        batch_size=batch_size,
        image_size=(32, 32),
    )


def build_model(num_classes: int = 10) -> tf.keras.Model:
    """The fixed model, compiled as the reference compiles it."""
    base_model = tf.keras.applications.ResNet50(
        input_shape=(32, 32, 3),
        include_top=False,
        weights=None,
    )
    base_model = tf.keras.Model(
        base_model.inputs, outputs=base_model.get_layer("conv2_block3_out").output
    )

    inputs = tf.keras.Input(shape=(32, 32, 3))
    x = tf.keras.applications.resnet.preprocess_input(inputs)
    x = base_model(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(num_classes)(x)
    model = tf.keras.Model(inputs, x)

    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=0.0001),
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall-clock seconds of each epoch (training + validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def run(
    train_dir: str | Path,
    valid_dir: str | Path,
    test_dir: str | Path | None = None,
    *,
    epochs: int = 100,
    checkpoint: str | Path = "best_model.weights.h5",
    verbose: int = 1,
) -> dict:
    """The reference flow for ``epochs`` epochs; returns its history, accuracies and timings."""
    tf.random.set_seed(123)
    train = load_dataset(train_dir)
    valid = load_dataset(valid_dir)
    total_length = ((train.cardinality() + valid.cardinality()) * batch_size).numpy()
    if total_length > 10_000:
        raise SystemExit(f"Dataset size larger than 10,000. Got {total_length} examples")
    test = load_dataset(test_dir) if test_dir is not None else None

    model = build_model()
    if verbose:
        model.summary()
    loss_0, acc_0 = model.evaluate(valid, verbose=verbose)

    ckpt = tf.keras.callbacks.ModelCheckpoint(
        str(checkpoint),
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
    )
    timer = EpochTimer()
    history = model.fit(
        train, validation_data=valid, epochs=epochs, callbacks=[ckpt, timer], verbose=verbose
    )
    model.load_weights(str(checkpoint))
    loss, acc = model.evaluate(valid, verbose=verbose)
    test_acc = None
    if test is not None:
        _, test_acc = model.evaluate(test, verbose=verbose)
    return {
        "history": history.history,
        "epoch_seconds": timer.seconds,
        "initial_val_accuracy": acc_0,
        "best_val_accuracy": acc,
        "test_accuracy": test_acc,
        "model": model,
    }


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    names = sys.argv[2:5] if len(sys.argv) >= 5 else ["train", "val", "test"]
    out = run(root / names[0], root / names[1], root / names[2], epochs=100)
    print(f"final acc {out['best_val_accuracy']}, test acc {out['test_accuracy']}")
