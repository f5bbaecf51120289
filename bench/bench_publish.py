"""First publish and re-publish of the competition images to Cloud Storage, against a naive loop.

Everything runs in this process against one local Cloud Storage emulator
(``tests/_gcs_emulator.py``, ``gcp-storage-emulator`` on a loopback port) with the real
``google-cloud-storage`` client:

* ``sheetsync``: :func:`sheetsync.publish.publish_images` (content-addressed names, identical
  files stored once, the local record checked first, one listing when it is incomplete,
  ``workers`` parallel uploads, one anonymous HEAD to check the objects are public);
* ``naive loop``: ``blob.upload_from_filename`` for every file under its path, one after the
  other, every time (what ``push`` would do without a record, or a plain ``cp -r``).

Rows: the first publish (empty bucket), a re-publish with nothing new (e.g. after a pull that
moved files: content-addressed names do not change), and a re-publish from a fresh checkout
without the local record (one listing instead). "requests" and "bytes" are what the client
sent (counted on its HTTP session). The emulator answers one request at a time, so parallel
uploads gain less here than against Google, where each upload waits on network latency.

Measured figures: docs/google.md, "Thumbnails: a bucket sheetsync fills itself".

Usage::

    python -m bench.bench_publish                  # the 2,880 train/val images
    python -m bench.bench_publish --latency-ms 30  # every answer delayed like a network
    python -m bench.bench_publish --thumbnails 256 # also: 256 px thumbnails instead
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sheetsync._gcs import Bucket
from sheetsync.config import PublishConfig
from sheetsync.publish import UploadRecord, publish_images
from tests._gcs_emulator import GCSEmulator

DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"


def manifest_of(root: Path) -> pd.DataFrame:
    files = sorted(p for split in ("train", "val") for p in (root / split).rglob("*.png"))
    return pd.DataFrame({
        "id": [f"{i:05d}" for i in range(len(files))],
        "path": [p.relative_to(root).as_posix() for p in files],
        "hash": [hashlib.sha256(p.read_bytes()).hexdigest() for p in files],
    })


def bucket(emulator: GCSEmulator, name: str, workers: int) -> Bucket:
    from google.auth.credentials import AnonymousCredentials

    emulator.create_bucket(name)
    return Bucket(name, AnonymousCredentials(), endpoint=emulator.url, workers=workers)


def sheetsync_run(store: Bucket, manifest: pd.DataFrame, root: Path, cfg: PublishConfig,
                  record: UploadRecord) -> dict[str, float]:
    result = publish_images(manifest, root, cfg, store, record)
    return {"objects": result.objects, "uploaded": result.uploaded, "bytes": result.bytes_sent,
            "requests": result.requests, "seconds": result.seconds}


def naive_run(store: Bucket, manifest: pd.DataFrame, root: Path) -> dict[str, float]:
    before = (store.traffic.requests, store.traffic.bytes_sent)
    start = time.perf_counter()
    for path in manifest["path"]:
        blob = store.bucket.blob(f"naive/{path}")
        blob.upload_from_filename(str(root / path), content_type="image/png", timeout=60)
    return {"objects": len(manifest), "uploaded": len(manifest),
            "bytes": store.traffic.bytes_sent - before[1],
            "requests": store.traffic.requests - before[0],
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DCAI)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--thumbnails", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every emulator answer, like a network round trip")
    args = parser.parse_args(argv)
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    manifest = manifest_of(args.root)
    print(f"{len(manifest)} images, {manifest['hash'].nunique()} distinct, "
          f"{sum((args.root / p).stat().st_size for p in manifest['path']) / 1e6:.1f} MB; "
          f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    cfg = PublishConfig(bucket="bench", workers=args.workers)
    rows: list[tuple[str, dict[str, float]]] = []
    print(f"emulator latency {args.latency_ms:.0f} ms per request, {args.workers} workers")
    with GCSEmulator(args.latency_ms / 1000) as emulator, tempfile.TemporaryDirectory() as tmp:
        store = bucket(emulator, "bench", args.workers)
        naive = bucket(emulator, "naive", 1)
        for warm in (store, naive):  # first connection, token, lazy imports: not in the figures
            warm.upload("warm-up", b"x", "text/plain")
        record = UploadRecord(Path(tmp) / "uploaded.txt")
        rows.append(("sheetsync first publish", sheetsync_run(store, manifest, args.root, cfg, record)))
        rows.append(("sheetsync re-publish", sheetsync_run(store, manifest, args.root, cfg, record)))
        fresh = UploadRecord(Path(tmp) / "fresh.txt")
        rows.append(("sheetsync re-publish, no record",
                     sheetsync_run(store, manifest, args.root, cfg, fresh)))
        if args.thumbnails:
            thumbs = replace(cfg, thumbnails=args.thumbnails)
            rows.append((f"sheetsync first publish, {args.thumbnails} px thumbnails",
                         sheetsync_run(store, manifest, args.root, thumbs, record)))
        rows.append(("naive loop first publish", naive_run(naive, manifest, args.root)))
        rows.append(("naive loop re-publish", naive_run(naive, manifest, args.root)))
    report(rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def report(rows: list[tuple[str, dict[str, float]]]) -> None:
    base = dict(rows)["naive loop first publish"]
    again = dict(rows)["naive loop re-publish"]
    print(f"{'run':44} {'objects':>7} {'sent':>6} {'MB':>7} {'requests':>8} {'seconds':>8}"
          f" {'time vs naive':>13}")
    for name, r in rows:
        ref = again if "re-publish" in name else base
        ratio = ref["seconds"] / r["seconds"] if r["seconds"] else float("inf")
        print(f"{name:44} {r['objects']:7.0f} {r['uploaded']:6.0f} {r['bytes'] / 1e6:7.2f} "
              f"{r['requests']:8.0f} {r['seconds']:8.2f} {ratio:12.1f}x")


if __name__ == "__main__":
    main()
