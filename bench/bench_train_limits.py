"""What bounds the fixed model's training speed on this CPU (issue 25: 3x the reference per
epoch, or a measured explanation of what stops it).

Times sheetsync's own training step (the fixed model, float32 + XLA, the steps per call that
``sheetsync.train`` uses) on in-memory random 32x32 images at several batch sizes, and fits
``seconds per step = overhead + per_image * batch``, to see whether the part of a step that does
not grow with the batch is what keeps the batch-8 epoch slow. It also
counts the model's multiply-adds per image and measures the machine's float32 matrix-multiply
throughput, for the arithmetic limit.

    python -m bench.bench_train_limits                    # batches 8 16 32 64 128
    python -m bench.bench_train_limits --images 1024 --repeats 3
    python -m bench.bench_train_limits --profile          # where a batch-8 epoch's time goes

``--profile`` traces one epoch of sheetsync's own trainer (``sheetsync.train._Trainer``, its
input pipeline and steps per call) with TensorFlow's profiler and XLA's per-kernel trace events,
and splits the epoch: time outside the compiled step (the loop, the iterator), time inside it
with no kernel running (XLA's scheduling), time with a kernel running, and the kernels by kind.

Run it on a quiet machine: it measures seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TRAIN_IMAGES = 2067  # the competition's training split
REFERENCE_EPOCH_S = (8.5, 9.3)  # the reference script per epoch on this kind of machine (review.md)


def multiply_adds(model) -> int:
    """Multiply-adds of one forward pass of one image through the conv and dense layers."""
    import tensorflow as tf

    def walk(layer):
        for inner in getattr(layer, "layers", None) or []:
            yield from walk(inner)
        if not getattr(layer, "layers", None):
            yield layer

    total = 0
    for layer in walk(model):
        if isinstance(layer, tf.keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += int(h * w * c_out * kh * kw * c_in)
        elif isinstance(layer, tf.keras.layers.Dense):
            total += int(layer.input.shape[-1] * layer.units)
    return total


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = min(_timed(lambda: tf.linalg.matmul(a, b).numpy()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_seconds(batch: int, images: int, repeats: int) -> float:
    """Seconds per training step at ``batch``: one epoch over ``images`` random images, after
    one untimed epoch that traces and compiles; the median of ``repeats`` epochs."""
    import tensorflow as tf

    from sheetsync.train import _new_model

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    model = _new_model(10, "float32", True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(tf.data.AUTOTUNE)
    model.fit(ds, epochs=1, verbose=0)
    steps = -(-images // batch)
    times = [_timed(lambda: model.fit(ds, epochs=1, verbose=0)) for _ in range(repeats)]
    return statistics.median(times) / steps


# Framework events around the kernels in the trace (everything else is one XLA kernel/thunk).
_FRAMEWORK = re.compile(
    r"^(ExecutorState|multi_step|Eager|TFE_|KernelAndDevice|CpuExecutable|BlockUntil|"
    r"ThunkExecutor|SlinkyThreadPool|IteratorGetNext|Iterator::|.*::)"
)


def _union_seconds(intervals: list[tuple[int, int]]) -> float:
    """Seconds covered by at least one of ``intervals`` (picoseconds)."""
    total, start, end = 0, None, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += 0 if end is None else end - start
            start, end = s, e
        else:
            end = max(end, e)
    return (total + (0 if end is None else end - start)) / 1e12


def profile_epoch(images: int) -> None:
    """Trace one epoch of sheetsync's trainer at batch 8 and print where its time goes."""
    if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
        # XLA reads its flags once, at its first compile: set before anything is compiled.
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
        ).strip()
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from sheetsync import train as T

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    trainer = T._Trainer(10, seed=123, precision="float32", jit_compile=True)
    trainer.restart(x, y, 123, 8)
    trainer.run_epoch()  # traces and compiles
    untraced = min(_timed(trainer.run_epoch) for _ in range(2))
    logdir = tempfile.mkdtemp(prefix="bench-train-profile-")
    tf.profiler.experimental.start(logdir)
    trainer.run_epoch()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    names = {k: v.name for k, v in plane.event_metadata.items()}
    calls, runs, kernels = [], [], []
    by_kind: dict[str, float] = {}
    for line in plane.lines:
        for ev in line.events:
            name = names.get(ev.metadata_id, "?")
            start = line.timestamp_ns * 1000 + ev.offset_ps
            span = (start, start + ev.duration_ps)
            if name == "multi_step_on_iterator":
                calls.append(span)
            elif name == "CpuExecutable::ExecuteAsyncOnStream":
                runs.append(span)
            elif not _FRAMEWORK.match(name):
                kernels.append(span)
                kind = re.sub(r"[.\d]+$", "", name)
                by_kind[kind] = by_kind.get(kind, 0.0) + ev.duration_ps / 1e12
    steps = len(runs)
    fit_s = sum(e - s for s, e in calls) / 1e12
    run_s = sum(e - s for s, e in runs) / 1e12
    busy_s = _union_seconds(kernels)
    print(f"one epoch of sheetsync's trainer, {images} images, batch 8, float32 + XLA, "
          f"load {os.getloadavg()[0]:.1f}: {untraced:.2f} s untraced, {fit_s:.2f} s traced")
    per = 1000 / steps
    print(f"  outside the compiled step (loop, iterator): {fit_s - run_s:.2f} s "
          f"({(fit_s - run_s) * per:.2f} ms a step)")
    print(f"  inside it, no kernel running (XLA's scheduling): {run_s - busy_s:.2f} s "
          f"({(run_s - busy_s) * per:.2f} ms a step)")
    print(f"  a kernel running: {busy_s:.2f} s ({busy_s * per:.2f} ms a step; kernel time summed "
          f"over threads {sum(by_kind.values()):.2f} s)")
    print("  kernels by kind, summed over threads (s an epoch):")
    for kind, secs in sorted(by_kind.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {secs:6.3f}  {kind}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="where a batch-8 epoch's time goes")
    args = ap.parse_args(argv)
    if args.profile:
        profile_epoch(TRAIN_IMAGES)
        return 0
    from sheetsync.model import build_model

    load0 = os.getloadavg()[0]
    macs = multiply_adds(build_model(10))
    gflops = matmul_gflops()
    print(f"{os.cpu_count()} CPUs, load {load0:.1f}; the fixed model: {macs / 1e6:.1f} M "
          f"multiply-adds per image forward (training: about 3x); float32 matmul "
          f"{gflops:.1f} GFLOP/s", flush=True)
    rows = []
    for batch in args.batches:
        s = step_seconds(batch, args.images, args.repeats)
        rows.append((batch, s))
        print(f"batch {batch:4d}: {s * 1e3:7.2f} ms a step, {s / batch * 1e3:6.3f} ms an image",
              flush=True)
    b = np.array([r[0] for r in rows], float)
    t = np.array([r[1] for r in rows])
    per_image, overhead = np.polyfit(b, t, 1)
    # The measured batch-8 step where there is one (the line is a fit: per-image time need not
    # be linear in the batch on a CPU, and was not on the machine of docs/review.md).
    at8 = dict(rows).get(8, overhead + 8 * per_image)
    epoch8 = at8 * -(-TRAIN_IMAGES // 8)
    arithmetic = 3 * 2 * macs / (gflops * 1e9)
    print(f"fit: a step = {overhead * 1e3:.2f} ms + {per_image * 1e3:.3f} ms per image (a least-squares "
          f"line; batch 8 measured: {at8 * 1e3:.2f} ms)")
    print(f"an epoch of {TRAIN_IMAGES} images at batch 8: {epoch8:.2f} s of training steps "
          f"(no validation); with no fixed part {TRAIN_IMAGES * per_image:.2f} s; the arithmetic "
          f"at the matmul rate {TRAIN_IMAGES * arithmetic:.2f} s")
    lo, hi = REFERENCE_EPOCH_S
    print(f"3x the reference ({lo}-{hi} s an epoch) needs {lo / 3:.2f}-{hi / 3:.2f} s an epoch, "
          f"validation included; the steps alone at batch 8 give at most "
          f"{lo / epoch8:.2f}-{hi / epoch8:.2f}x, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
