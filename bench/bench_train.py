"""Training and prediction speed of sheetsync versus the competition's reference script.

Runs, in one process and on the same data: the reference pipeline (``bench/reference_keras3.py``:
``image_dataset_from_directory`` + ``model.fit`` + ModelCheckpoint) and what sheetsync's
:func:`~sheetsync.train.train_model` runs each epoch (cached tensors, one training epoch, then
validation) in float32, float32 + XLA, mixed bfloat16 and mixed bfloat16 + XLA. The pipelines
take turns, one epoch each, so that they all see the same drift in the shared machine's load.
Prints wall and CPU seconds per epoch (steady state: the median of the epochs after the first,
which traces and compiles), the speed-up over the reference, and the validation accuracy of each
after every epoch. Then prediction throughput (images/s), end to end on both sides, of
:func:`~sheetsync.train.predict` versus ``model.predict`` over ``image_dataset_from_directory``.

    python -m bench.bench_train --epochs 3
    python -m bench.bench_train --epochs 3 --data ../shared/data/dcai --only float32,xla
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"
CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
VARIANTS = {
    "float32": dict(precision="float32", jit_compile=False),
    "xla": dict(precision="float32", jit_compile=True),
    "bf16": dict(precision="mixed_bfloat16", jit_compile=False),
    "bf16+xla": dict(precision="mixed_bfloat16", jit_compile=True),
}


def items(root: Path, split: str):
    import pandas as pd

    rows = []
    for c in CLASSES:
        for f in sorted((root / split / c).glob("*")):
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            rows.append({"id": h[:10], "file": str(f), "hash": h, "label": c})
    return pd.DataFrame(rows)


def steady(seconds: list[float]) -> float:
    """Median of the epochs after the first (the first includes tracing and XLA compiling)."""
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]


class Reference:
    """The reference script's pipeline (bench/reference_keras3.py), one epoch per call."""

    name = "reference"

    def __init__(self, data: Path, work: Path):
        import tensorflow as tf

        from bench import reference_keras3 as ref

        tf.random.set_seed(123)
        self.train = ref.load_dataset(data / "train")
        self.valid = ref.load_dataset(data / "val")
        self.model = ref.build_model()
        self.ckpt = tf.keras.callbacks.ModelCheckpoint(
            str(work / "ref.weights.h5"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        )
        self.epoch = 0

    def run_epoch(self) -> float:
        h = self.model.fit(
            self.train,
            validation_data=self.valid,
            epochs=self.epoch + 1,
            initial_epoch=self.epoch,
            callbacks=[self.ckpt],
            verbose=0,
        )
        self.epoch += 1
        return h.history["val_accuracy"][-1]


class Sheetsync:
    """What train_model runs each epoch: one training epoch, then validation."""

    def __init__(self, name: str, xt, yt, xv, yv, **options):
        from sheetsync import train as T

        self.name = name
        self.trainer = T._Trainer(len(CLASSES), seed=123, **options).restart(xt, yt, 123, 8)
        self.evaluator = self.trainer.evaluator
        self.xv, self.yv = xv, yv
        self.steps = -(-len(xt) // 8)
        self.train_s: list[float] = []  # the training steps (fit) of each epoch
        self.val_s: list[float] = []  # the validation of each epoch

    def run_epoch(self) -> float:
        t = time.perf_counter()
        self.trainer.run_epoch()
        self.train_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        accuracy = self.evaluator.metrics(self.xv, self.yv)["accuracy"]
        self.val_s.append(time.perf_counter() - t)
        return accuracy


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--only", default=",".join(VARIANTS), help="variants to run, comma-separated")
    ap.add_argument("--no-predict", action="store_true")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"no data at {args.data}")

    import numpy as np
    import tensorflow as tf

    from sheetsync import decode

    train, val = items(args.data, "train"), items(args.data, "val")
    print(
        f"data: {args.data}  train {len(train)}  val {len(val)}  epochs {args.epochs}  "
        f"tf {tf.__version__}  cpus {os.cpu_count()}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cache = work / "cache"

    files = pd_col(train, "file") + pd_col(val, "file")
    hashes = pd_col(train, "hash") + pd_col(val, "hash")
    t = time.perf_counter()
    decode.load_images(files, hashes, cache)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    decode.load_images(files, hashes, cache)
    warm = time.perf_counter() - t
    print(
        f"image cache: cold (decode + write) {cold:.2f} s, warm (read) {warm:.2f} s "
        f"for {len(files)} images"
    )

    xt = decode.load_images(pd_col(train, "file"), pd_col(train, "hash"), cache)
    xv = decode.load_images(pd_col(val, "file"), pd_col(val, "hash"), cache)
    eye = np.eye(len(CLASSES), dtype=np.float32)
    yt = eye[[CLASSES.index(c) for c in train["label"]]]
    yv = eye[[CLASSES.index(c) for c in val["label"]]]

    pipelines = [Reference(args.data, work)]
    pipelines += [Sheetsync(n, xt, yt, xv, yv, **VARIANTS[n]) for n in args.only.split(",")]
    # Round-robin, one epoch each: the machine is shared, so its load drifts; interleaving
    # exposes every pipeline to the same drift.
    wall = {p.name: [] for p in pipelines}
    cpu = {p.name: [] for p in pipelines}
    acc = {p.name: [] for p in pipelines}
    for _ in range(args.epochs):
        for p in pipelines:
            t, c = time.perf_counter(), time.process_time()
            acc[p.name].append(p.run_epoch())
            wall[p.name].append(time.perf_counter() - t)
            cpu[p.name].append(time.process_time() - c)

    base_w, base_c = steady(wall["reference"]), steady(cpu["reference"])
    print(
        f"\nseconds per epoch, steady = median of epochs 2..{args.epochs} (epoch 1 traces/compiles)"
    )
    print(
        f"{'pipeline':<10} {'wall s':>7} {'cpu s':>7} {'1st ep':>7} {'speed-up':>8} "
        f"{'(cpu)':>6}  val_accuracy per epoch; wall s per epoch"
    )
    for p in pipelines:
        w, c = steady(wall[p.name]), steady(cpu[p.name])
        print(
            f"{p.name:<10} {w:7.2f} {c:7.2f} {wall[p.name][0]:7.2f} {base_w / w:7.2f}x "
            f"{base_c / c:5.2f}x  {' '.join(f'{a:.3f}' for a in acc[p.name])}; "
            f"{' '.join(f'{x:.2f}' for x in wall[p.name])}"
        )

    fastest = max(
        (p for p in pipelines[1:] if VARIANTS[p.name]["precision"] == "float32"),
        key=lambda p: base_w / steady(wall[p.name]),
        default=None,
    )
    if fastest is not None:
        ratio = base_w / steady(wall[fastest.name])
        verdict = "meets" if ratio >= 1.25 else "MISSES"
        print(f"float32 floor >= 1.25x per epoch: {fastest.name} {ratio:.2f}x wall ({verdict})")
        print_what_bounds(fastest, base_w, ratio)

    if not args.no_predict:
        bench_predict(
            args.data,
            train,
            val,
            work,
            cache,
            pipelines[1].trainer.model if len(pipelines) > 1 else None,
        )


def print_what_bounds(p: Sheetsync, base_w: float, ratio: float) -> None:
    """Issue 25's 3x floor, and where the fastest pipeline's epoch goes: its training steps
    (one ``fit`` over the epoch) and its validation. The steps alone cap the speed-up at
    reference / steps even if validation cost nothing."""
    steps_s, val_s = steady(p.train_s), steady(p.val_s)
    print(
        f"3x floor per epoch: {p.name} {ratio:.2f}x wall ({'meets' if ratio >= 3 else 'MISSES'})\n"
        f"  where its epoch goes: training steps {steps_s:.2f} s ({p.steps} steps of batch 8, "
        f"{1000 * steps_s / p.steps:.1f} ms a step), validation {val_s:.2f} s\n"
        f"  the steps alone cap the speed-up at {base_w / steps_s:.2f}x; 3x needs a step of "
        f"{1000 * (base_w / 3 - val_s) / p.steps:.1f} ms"
    )
    if ratio < 3:
        # Issue 25 accepts a measured explanation in place of 3x: say where it is.
        print("  what stops 3x, measured per kernel: python -m bench.bench_train_limits --profile "
              "(docs/review.md, 'Training speed')")


def pd_col(df, col) -> list[str]:
    return [str(v) for v in df[col]]


def bench_predict(data: Path, train, val, work: Path, cache: Path, model=None) -> None:
    """End to end, both sides: build/load the model, read the images, predict."""
    import pandas as pd
    import tensorflow as tf

    from bench import reference_keras3 as ref
    from sheetsync import train as T

    both = pd.concat([train, val], ignore_index=True)
    n = len(both)
    weights = work / "predict.weights.h5"
    T._save_weights(model if model is not None else T.build_model(len(CLASSES)), weights)

    def baseline() -> float:
        t = time.perf_counter()
        m = ref.build_model()
        m.load_weights(str(weights))
        for split in ("train", "val"):
            ds = tf.keras.utils.image_dataset_from_directory(
                str(data / split),
                labels="inferred",
                label_mode="categorical",
                class_names=CLASSES,
                shuffle=False,
                batch_size=256,
                image_size=(32, 32),
            )
            m.predict(ds, verbose=0)
        return time.perf_counter() - t

    def ours(cache_dir) -> float:
        t = time.perf_counter()
        T.predict(weights, both, CLASSES, cache_dir=cache_dir)
        return time.perf_counter() - t

    baseline()  # warm-up: file system cache, TensorFlow start-up
    base = min(baseline(), baseline())
    first = ours(cache)  # the first call in a process builds and traces the model
    warm = min(ours(cache), ours(cache))
    nocache = ours(None)
    print(f"\npredict {n} images, batch 256, end to end        images/s   speed-up")
    print(f"{'model.predict(image_dataset_from_directory)':<48} {n / base:8.0f}   1.00x")
    print(f"{'sheetsync predict, cached tensors':<48} {n / warm:8.0f} {base / warm:6.2f}x")
    print(
        f"{'sheetsync predict, first call in the process':<48} {n / first:8.0f} {base / first:6.2f}x"
    )
    print(
        f"{'sheetsync predict, no cache (decodes every file)':<48} {n / nocache:8.0f} "
        f"{base / nocache:6.2f}x"
    )


if __name__ == "__main__":
    main()
