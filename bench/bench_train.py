"""Training and prediction speed of sheetsync versus the competition's reference script.

Runs, in one process and on the same data: the reference pipeline (``bench/reference_keras3.py``:
``image_dataset_from_directory`` + ``model.fit``), then sheetsync's :func:`train_model` in float32,
float32 + XLA, mixed bfloat16 and mixed bfloat16 + XLA, each for the same number of epochs, and
prints seconds per epoch (steady state: epochs after the first, which includes tracing), the
ratios against the reference, and the validation accuracy of each after the last epoch. Then
prediction throughput (images/s) of :func:`predict` against ``model.predict`` over
``image_dataset_from_directory``.

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
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--only", default=",".join(VARIANTS), help="variants to run, comma-separated")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-predict", action="store_true")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"no data at {args.data}")

    import tensorflow as tf

    from bench import reference_keras3 as ref
    from sheetsync import train as T

    train, val = items(args.data, "train"), items(args.data, "val")
    print(
        f"data: {args.data}  train {len(train)}  val {len(val)}  epochs {args.epochs}  "
        f"tf {tf.__version__}  cpus {os.cpu_count()}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cache = work / "cache"
    rows = []

    if not args.no_reference:
        t = time.perf_counter()
        out = ref.run(
            args.data / "train",
            args.data / "val",
            epochs=args.epochs,
            checkpoint=work / "ref.weights.h5",
            verbose=0,
        )
        rows.append(
            (
                "reference",
                out["epoch_seconds"],
                out["history"]["val_accuracy"],
                time.perf_counter() - t,
            )
        )

    t = time.perf_counter()
    T.load_images(
        pd_col(train, "file") + pd_col(val, "file"),
        pd_col(train, "hash") + pd_col(val, "hash"),
        cache,
    )
    cold = time.perf_counter() - t
    t = time.perf_counter()
    T.load_images(
        pd_col(train, "file") + pd_col(val, "file"),
        pd_col(train, "hash") + pd_col(val, "hash"),
        cache,
    )
    warm = time.perf_counter() - t
    print(
        f"image cache: cold (decode + write) {cold:.2f} s, warm (read) {warm:.2f} s "
        f"for {len(train) + len(val)} images"
    )

    for name in args.only.split(","):
        t = time.perf_counter()
        r = T.train_model(
            train,
            val,
            CLASSES,
            weights_path=work / f"{name}.weights.h5",
            epochs=args.epochs,
            cache_dir=cache,
            **VARIANTS[name],
        )
        rows.append(
            (name, r.history["seconds"], r.history["val_accuracy"], time.perf_counter() - t)
        )

    base = steady(rows[0][1])
    print(
        f"\n{'pipeline':<12} {'s/epoch':>8} {'1st ep':>7} {'total s':>8} {'speed-up':>8}  "
        f"val_accuracy per epoch"
    )
    for name, secs, accs, total in rows:
        print(
            f"{name:<12} {steady(secs):8.2f} {secs[0]:7.2f} {total:8.1f} "
            f"{base / steady(secs):7.2f}x  {' '.join(f'{a:.3f}' for a in accs)}"
        )

    if not args.no_predict:
        bench_predict(ref, T, args.data, train, val, work, cache)


def pd_col(df, col) -> list[str]:
    return [str(v) for v in df[col]]


def bench_predict(ref, T, data: Path, train, val, work: Path, cache: Path) -> None:
    import pandas as pd
    import tensorflow as tf

    both = pd.concat([train, val], ignore_index=True)
    n = len(both)
    weights = work / "float32.weights.h5"
    if not weights.exists():
        weights = work / "p.weights.h5"
        T._save_weights(T.build_model(len(CLASSES)), weights)

    def baseline() -> float:
        model = ref.build_model()
        model.load_weights(str(weights))
        t = time.perf_counter()
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
            model.predict(ds, verbose=0)
        return time.perf_counter() - t

    baseline()  # warm-up: tracing and file system cache
    base = baseline()
    T.predict(weights, both, CLASSES, cache_dir=cache)  # warm-up
    t = time.perf_counter()
    T.predict(weights, both, CLASSES, cache_dir=cache)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    T.predict(weights, both, CLASSES, cache_dir=None)
    nocache = time.perf_counter() - t
    print(f"\npredict {n} images (batch 256)   images/s   speed-up")
    print(f"{'model.predict(image_dataset_from_directory)':<44} {n / base:8.0f}   1.00x")
    print(f"{'sheetsync predict, cached tensors':<44} {n / warm:8.0f} {base / warm:6.2f}x")
    print(
        f"{'sheetsync predict, no cache (decodes)':<44} {n / nocache:8.0f} {base / nocache:6.2f}x"
    )


if __name__ == "__main__":
    main()
