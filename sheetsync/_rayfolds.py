"""Fold training on a Ray cluster: ``[review] executor = "ray"`` (and ``address``).

Each fold to train is one Ray task that carries its inputs: the items table and the bytes of
every image file (put in Ray's object store once, shared by all the folds), so a worker machine
needs neither the dataset nor the project folder, only sheetsync and TensorFlow installed. The
task writes the images to a scratch folder on its machine, trains the fold with the same
``fit_predict`` and arguments as the local pool, and returns the fold's result; this process
saves it at the same path as a fold trained here, so results are cached (and an interrupted
``predict`` resumes per fold) exactly as with the local pool.

Folds are independent, so fold time divides by the number of workers until there are more
workers than folds (``fold_seeds`` x ``folds``, 12 by default). ``address`` is the head's
``host:port`` (``ray start --head`` prints it); empty joins the Ray instance this process
already started, or starts a local one.

Usage::

    results = train_folds_ray(fit_predict, items, jobs, classes, address="10.0.0.5:6379",
                              say=print)  # say: the typed fold events of sheetsync._workers
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._crossval import FoldResult, run_fold
from ._workers import FoldDone, FoldStarted, Say
from .errors import TrainingError


def train_folds_ray(
    fit_predict: Callable[..., Any], items: pd.DataFrame, jobs: Sequence[Any],
    classes: Sequence[str], *, address: str, say: Say,
) -> list[FoldResult]:
    """Train each job's fold as a Ray task; save each result at its job's path (in jobs' order)."""
    try:
        import ray
    except ImportError:
        raise TrainingError('[review] executor = "ray" needs Ray installed here and on the '
                            "cluster: pip install 'sheetsync[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise TrainingError(f"cannot reach the Ray cluster at {address or 'this machine'}: "
                                f"{e}") from None
    files = sorted(set(items["file"].astype(str)))
    images = ray.put({f: Path(f).read_bytes() for f in files})
    table = ray.put(items)
    task = ray.remote(_train_remote)
    started = time.perf_counter()
    refs = {}
    for i, job in enumerate(jobs):
        held = job.fold_of.to_numpy() == job.fold
        say(FoldStarted(job.number, job.total, int((~held).sum()), int(held.sum()), "ray",
                        job.warm_epochs))
        refs[task.remote(fit_predict, table, images, job.fold_of, job.fold, list(classes),
                         dict(job.fit_kwargs))] = i
    results: dict[int, FoldResult] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as e:
                raise TrainingError(f"fold {jobs[i].number}/{jobs[i].total} failed on the Ray "
                                    f"cluster: {e}; run predict again to resume") from None
            result.save(jobs[i].path)
            results[i] = result
            say(FoldDone(jobs[i].number, jobs[i].total, time.perf_counter() - started))
    finally:
        for ref in pending:  # an error or Ctrl-C: the other folds stop too
            ray.cancel(ref, force=True)
    return [results[i] for i in range(len(jobs))]


def _train_remote(
    fit_predict: Callable[..., Any], items: pd.DataFrame, images: dict[str, bytes],
    fold_of: pd.Series, fold: int, classes: list[str], fit_kwargs: dict[str, Any],
) -> FoldResult:
    """On a Ray worker: the images written to a scratch folder, then one fold trained."""
    with tempfile.TemporaryDirectory(prefix="sheetsync-fold-") as tmp:
        local = {}
        for k, (name, data) in enumerate(images.items()):
            path = Path(tmp) / f"{k}{Path(name).suffix}"
            path.write_bytes(data)
            local[name] = str(path)
        items = items.assign(file=items["file"].astype(str).map(local))
        # The decode cache is a folder of the machine that runs predict, not of this one.
        kwargs = {**fit_kwargs, "cache_dir": None} if "cache_dir" in fit_kwargs else fit_kwargs
        return run_fold(fit_predict, items, fold_of, fold, classes, kwargs)
