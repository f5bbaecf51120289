"""Training the folds that are not cached: in this process, or several at once in workers.

The fixed model is small (232k parameters on 32x32 images), so a training step is many tiny
operations that two threads share badly: on a 2-core machine one process used about 1.4 cores.
Two folds trained side by side in two single-threaded processes took 139 s where one after the
other took about 200 s (1.44x), which pays for a third fold seed in ``predict``'s time.

* Workers are fresh processes (``spawn``: safe whether or not TensorFlow is already loaded
  here), each with ``cpu_count // workers`` TensorFlow threads (``TF_NUM_INTRAOP_THREADS``); a
  worker trains one fold at a time and keeps its model between folds, as this process does.
* The folds of every fold seed go to one pool (``predict`` trains three seeds' folds): no worker
  waits for another seed's last fold, and each worker starts and compiles its model once.
* Every fold is saved by the process that trained it as soon as it is done (the same file and
  atomic write as in-process training), so an interrupted ``predict`` resumes per fold.
* Progress lines ("fold 2/4: epoch 3/20, loss 1.234", "fold 2/4: done in 40 s") come back
  through a queue and are said here, in the words of in-process training.
* A ``fit_predict`` that cannot be sent to another process (a closure, as tests use, or a
  function of the ``__main__`` script) and a single fold to train run here. The workers do not
  re-run the caller's ``__main__`` (multiprocessing's default): a script that calls
  ``Project.predict()`` needs no ``if __name__ == "__main__"`` guard. A worker that dies (killed, out of memory) is a
  :class:`~sheetsync.errors.TrainingError`; Ctrl-C stops the workers with this process, and a
  worker whose parent is killed outright stops within a second.

Usage::

    jobs = [FoldJob(fold=f, fold_of=fold_of, fit_kwargs=kw, path=p, number=f + 1, total=4)
            for f, p in todo]
    results = train_folds(fit_predict, items, jobs, classes,
                          workers=auto_workers(len(jobs)), say=print)  # in jobs' order
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ._crossval import FoldResult, run_fold
from .errors import TrainingError


# What fold training tells its caller, as typed events (the command line words them and draws
# the bars: sheetsync._trainbars). Plain frozen dataclasses: they cross the workers' queue pickled.
@dataclass(frozen=True)
class FoldStarted:
    number: int  # 1-based, across every run of the k-fold
    total: int
    training: int  # images it trains on
    scoring: int  # images it scores (held out)
    where: str = "here"  # "here" (this machine's pool) or "ray" (a task on a Ray cluster)
    warm_epochs: int = 0  # > 0: fine-tunes the previous version's model of this fold


@dataclass(frozen=True)
class FoldEpoch:
    number: int
    total: int
    epoch: int
    epochs: int
    loss: float | None = None


@dataclass(frozen=True)
class FoldDone:
    number: int
    total: int
    seconds: float


@dataclass(frozen=True)
class FoldReused:
    """A fold whose training images are unchanged: its saved result is used again."""

    number: int
    total: int


FoldEvent = FoldStarted | FoldEpoch | FoldDone | FoldReused
Say = Callable[[FoldEvent], None]
# Set in each worker process by _start_worker: where its progress lines go.
_WORKER_QUEUE: Any = None


def auto_workers(todo: int, cpus: int | None = None) -> int:
    """How many folds to train at once: one per core, at most one per fold to train."""
    return max(1, min(todo, cpus if cpus is not None else (os.cpu_count() or 1)))


@dataclass(frozen=True)
class FoldJob:
    """One fold to train: which fold of which split, with what, where its result goes, and its
    name in progress lines ("fold 5/12": numbered across all the runs trained together)."""

    fold: int
    fold_of: pd.Series
    fit_kwargs: Mapping[str, Any]
    path: Path
    number: int
    total: int
    warm_epochs: int = 0  # > 0: fit_kwargs start from the previous version's fold model


def train_folds(
    fit_predict: Callable[..., Any],
    items: pd.DataFrame,
    jobs: Sequence[FoldJob],
    classes: Sequence[str],
    *,
    workers: int,
    say: Say,
    report_epochs: bool = True,
) -> list[FoldResult]:
    """Train each job's fold and save its result at the job's path; the results in jobs' order."""
    if workers <= 1 or len(jobs) <= 1 or not _can_send(fit_predict):
        return [train_one(fit_predict, items, job, classes, say=say, report_epochs=report_epochs)
                for job in jobs]
    return _in_workers(fit_predict, items, jobs, classes, workers=min(workers, len(jobs)),
                       say=say, report_epochs=report_epochs)


def train_one(
    fit_predict: Callable[..., Any], items: pd.DataFrame, job: FoldJob, classes: Sequence[str],
    *, say: Say, report_epochs: bool = True,
) -> FoldResult:
    """Train one fold, save it, and say so (started, each epoch, done)."""
    held = job.fold_of.to_numpy() == job.fold
    say(FoldStarted(job.number, job.total, int((~held).sum()), int(held.sum()),
                    warm_epochs=job.warm_epochs))
    t0 = time.perf_counter()
    kwargs = dict(job.fit_kwargs)
    if report_epochs:
        kwargs["progress"] = _epoch_reporter(say, job)
    result = run_fold(fit_predict, items, job.fold_of, job.fold, classes, kwargs)
    result.save(job.path)
    say(FoldDone(job.number, job.total, time.perf_counter() - t0))
    return result


def _epoch_reporter(say: Say, job: FoldJob) -> Callable[..., None]:
    # sheetsync.train calls progress(epoch, epochs, logs) after each epoch.
    def report(epoch: int, epochs: int, logs: Mapping[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss")
        say(FoldEpoch(job.number, job.total, epoch, epochs,
                      None if loss is None else float(loss)))

    return report


def _can_send(fn: Callable[..., Any]) -> bool:
    if getattr(fn, "__module__", None) == "__main__":
        return False  # the workers do not import the caller's script (see _main_hidden)
    try:
        pickle.dumps(fn)
    except Exception:  # noqa: BLE001 - closures, lambdas, local classes: train here instead
        return False
    return True


def _in_workers(
    fit_predict: Callable[..., Any], items: pd.DataFrame, jobs: Sequence[FoldJob],
    classes: Sequence[str], *, workers: int, say: Say, report_epochs: bool,
) -> list[FoldResult]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    lines = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(lines, threads))
    pending: dict[Future[FoldResult], int] = {}
    results: dict[int, FoldResult] = {}
    try:
        with _main_hidden():  # the workers start at the first submit
            pending = {pool.submit(_worker_train, fit_predict, items, job, list(classes),
                                   report_epochs): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            _relay(lines, say)
            for future in done:
                results[pending.pop(future)] = future.result()  # a worker's error is raised here
        _relay(lines, say, linger=0.5)  # the last lines may still be on their way
    except BrokenProcessPool as e:
        raise TrainingError(f"a fold-training process died ({e}); run predict again to resume "
                            "(finished folds are kept), or set [review] fold_workers = 1") from e
    finally:
        if len(results) < len(jobs):  # an error or Ctrl-C: the other folds stop too
            for future in pending:
                future.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in range(len(jobs))]


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """While workers start, hide where ``__main__`` came from, so that they do not import it
    again: a script without a ``__name__`` guard would otherwise run once more in each worker.
    Nothing a worker runs comes from ``__main__`` (see _can_send)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: getattr(main, k) for k in ("__spec__", "__file__") if hasattr(main, k)}
    try:
        for k in saved:
            if k == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, k)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _relay(lines: Any, say: Say, linger: float = 0.0) -> None:
    """Pass on every event waiting in the queue (waiting up to ``linger`` s for each next one)."""
    while True:
        try:
            say(lines.get(timeout=linger) if linger else lines.get_nowait())
        except queue.Empty:
            return


def _start_worker(lines: Any, threads: int) -> None:
    """In a new worker: where progress goes, and ``threads`` TensorFlow threads (read by
    TensorFlow when it starts, so nothing heavy is loaded before a fold needs it)."""
    global _WORKER_QUEUE
    _WORKER_QUEUE = lines
    # Ctrl-C reaches the whole process group: the parent stops the folds and reports it once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Stop this worker when the process that started it is gone (killed with SIGTERM or
    SIGKILL, it cannot stop its workers): an orphan would train its fold on to the end."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _worker_train(
    fit_predict: Callable[..., Any], items: pd.DataFrame, job: FoldJob, classes: list[str],
    report_epochs: bool,
) -> FoldResult:
    return train_one(fit_predict, items, job, classes, say=_WORKER_QUEUE.put,
                     report_epochs=report_epochs)
