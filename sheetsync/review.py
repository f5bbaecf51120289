"""Which labels to review first: out-of-sample scores, doubt signals, and the review order.

A model scores the images it was trained on with high confidence, wrong labels included, so
every image is scored by a k-fold model that never saw it (:func:`out_of_sample`). From those
probabilities, the 256-d embeddings and the image files, :func:`review_signals` computes the
sheet's review columns, and :func:`review_order` sorts ids most-likely-wrong first.

Usage::

    oos = out_of_sample(items, classes, folds=4, epochs=20, work_dir=state / "review")
    signals = review_signals(items, oos, classes)
    ids = review_order(signals, "combined")      # or "issue", "confidence", "loss", ...

TensorFlow is imported only when ``out_of_sample`` trains (through ``sheetsync.train``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _crossval, _duplicates, _evidence, _picture, _warmstart, _workers
from . import _neighbours as nbr
from . import _signals as sig
from ._pixelcache import cached_near_pairs, pixel_features
from .errors import TrainingError, UnknownOrderError

ORDERS = ("combined", "issue", "confidence", "loss", "margin", "random", "path", "classic")
SIGNAL_COLUMNS = (
    "predicted", "confidence", "margin", "loss", "issue_score", "suspected", "suggestion",
    "duplicate_of", "outlier", "blank", "why", "priority",
)
# The evidence behind ``priority`` and ``suggestion`` (see :mod:`sheetsync._evidence`); NaN where
# it cannot be had (no embeddings: no neighbours; no snapshots: no training margin; one run: no
# seed disagreement). ``classic_priority`` is the order before issue 9 (``order = "classic"``).
EVIDENCE_COLUMNS = (
    "knn_agreement", "knn_class", "isolation", "max_prob", "far_all", "seed_disagreement",
    "train_margin", *_picture.COLUMNS, "classic_priority",
)
ITEM_COLUMNS = ("id", "file", "hash", "label")

# How the combined priority weighs its parts (see :func:`priority`).
WEIGHTS: Mapping[str, float] = {"duplicate": 0.05}
# Outlier distances (in units of a class's typical spread) from which an image is "far".
FAR = 2.5
# Runs whose probabilities differ by this much (total variation) disagree about an image.
DISAGREE = 0.3
# A picture whose frame is this much covered by ink is probably cut off.
BORDER = 0.05


# ----------------------------------------------------------------------------- out-of-sample


@dataclass(frozen=True)
class OutOfSample:
    """Each image scored by the fold model that did not train on it.

    ``probs``: index = id, columns = classes. ``embeddings``: index = id, 256 columns, each row
    in its own fold's space (compare rows only within a fold). ``class_distance``: index = id,
    columns = classes, distance to each class centroid in the row's fold space, in units of that
    class's typical spread (comparable across folds). ``fold``: fold number per id.
    """

    probs: pd.DataFrame
    embeddings: pd.DataFrame
    class_distance: pd.DataFrame
    fold: pd.Series
    reused: tuple[int, ...] = ()
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    items_digest: str = ""  # what it was computed on: compare with items_digest(items) for staleness
    # With snapshots: held-out probabilities averaged over the snapshot epochs (index = id,
    # columns = classes), and each image's mean training margin over the folds that trained on it.
    snapshot_probs: pd.DataFrame | None = None
    train_margin: pd.Series | None = None
    # Per id, the share of each class among its nearest training images in its fold model's
    # space (index = id, columns = classes); None for runs cached before FOLD_FORMAT 2.
    train_vote: pd.DataFrame | None = None
    # With test-time views: the held-out probabilities from the original pictures alone (what
    # ``snapshot_probs``, or ``probs``, would be without the views; for benchmarks).
    original_probs: pd.DataFrame | None = None

    def save(self, path: Path) -> None:
        """Write to one .npz file (atomically)."""
        meta = json.dumps({"reused": list(self.reused), "seconds": self.seconds,
                           "settings": dict(self.settings), "items_digest": self.items_digest,
                           "classes": [str(c) for c in self.probs.columns]}, default=str)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=self.probs.index.to_numpy(dtype=str), probs=self.probs.to_numpy(),
                         embeddings=self.embeddings.to_numpy(),
                         class_distance=self.class_distance.to_numpy(),
                         fold=self.fold.reindex(self.probs.index).to_numpy(dtype=int),
                         meta=np.array(meta), **self._extras())  # type: ignore[arg-type]

        _crossval.write_atomic(Path(path), write)

    def _extras(self) -> dict[str, np.ndarray]:
        out = ({} if self.train_vote is None
               else {"train_vote": self.train_vote.loc[self.probs.index].to_numpy()})
        if self.original_probs is not None:
            out["original_probs"] = self.original_probs.loc[self.probs.index].to_numpy()
        if self.snapshot_probs is None or self.train_margin is None:
            return out
        return {**out, "snapshot_probs": self.snapshot_probs.loc[self.probs.index].to_numpy(),
                "train_margin": self.train_margin.reindex(self.probs.index).to_numpy(dtype=float)}

    @classmethod
    def load(cls, path: Path) -> OutOfSample | None:
        """Read what :meth:`save` wrote; None when the file is missing or unreadable."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                ids = pd.Index(z["ids"].astype(str), name="id")
                classes = meta["classes"]
                snap = (pd.DataFrame(z["snapshot_probs"], index=ids, columns=classes)
                        if "snapshot_probs" in z.files else None)
                margin = (pd.Series(z["train_margin"], index=ids, name="train_margin")
                          if "train_margin" in z.files else None)
                vote = (pd.DataFrame(z["train_vote"], index=ids, columns=classes)
                        if "train_vote" in z.files else None)
                original = (pd.DataFrame(z["original_probs"], index=ids, columns=classes)
                            if "original_probs" in z.files else None)
                return cls(
                    snapshot_probs=snap, train_margin=margin, train_vote=vote,
                    original_probs=original,
                    probs=pd.DataFrame(z["probs"], index=ids, columns=classes),
                    embeddings=pd.DataFrame(z["embeddings"], index=ids),
                    class_distance=pd.DataFrame(z["class_distance"], index=ids, columns=classes),
                    fold=pd.Series(z["fold"], index=ids, name="fold"),
                    reused=tuple(meta["reused"]), seconds=float(meta["seconds"]),
                    settings=meta["settings"], items_digest=meta["items_digest"],
                )
        except (OSError, ValueError, KeyError):
            return None


LATEST = "latest.npz"
# Which latest-*.npz files the last out_of_sample_runs wrote (LATEST first).
LATEST_RUNS = "latest-runs.json"


def items_digest(items: pd.DataFrame) -> str:
    """A digest of the images and labels (id, hash, label): differs when anything changed."""
    triples = sorted(zip(items["id"].astype(str), items["hash"].astype(str),
                         items["label"].astype(str), strict=True))
    return hashlib.sha256(json.dumps(triples).encode()).hexdigest()


def latest_out_of_sample(work_dir: Path) -> OutOfSample | None:
    """The result of the last :func:`out_of_sample` run in ``work_dir`` (None if there is none).
    It may be stale: compare its ``items_digest`` with :func:`items_digest` of the current items."""
    return OutOfSample.load(Path(work_dir) / LATEST)


def latest_runs(work_dir: Path) -> list[OutOfSample]:
    """The runs of the last :func:`out_of_sample_runs` (or the last single run) in ``work_dir``:
    the latest run first, then the other seeds' runs listed with it that scored the same images
    (a later single run on other images leaves them out). Empty when there is none."""
    first = latest_out_of_sample(work_dir)
    if first is None:
        return []
    runs = [first]
    try:
        names = json.loads((Path(work_dir) / LATEST_RUNS).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return runs
    for name in names[1:]:
        run = OutOfSample.load(Path(work_dir) / str(name))
        if run is not None and run.items_digest == first.items_digest \
                and run.settings.get("seed") != first.settings.get("seed"):
            runs.append(run)
    return runs


def fold_seeds(first: int, count: int) -> list[int]:
    """The seeds of ``count`` k-fold runs: ``first``, then steps of 198 (123 -> 321, the
    benchmark's pair). Any distinct seeds would do; fixed ones let unchanged folds be reused."""
    return [first + 198 * i for i in range(max(1, count))]


def out_of_sample_runs(
    items: pd.DataFrame, classes: Sequence[str], *, seeds: Sequence[int], folds: int,
    work_dir: Path, progress: _workers.Say | None = None, **options: Any,
) -> list[OutOfSample]:
    """:func:`out_of_sample` once per fold seed (other splits of the data, other models): the
    review averages their probabilities and neighbours, and their disagreement is a signal.
    All the seeds' folds are trained together (one pool of workers, see :mod:`sheetsync._workers`)
    and numbered across the runs ("fold 5/12"), so one progress bar covers all.
    :func:`latest_runs` reads them back."""
    work_dir = Path(work_dir)
    names = [LATEST if i == 0 else f"latest-seed{seed}.npz" for i, seed in enumerate(seeds)]
    runs = _runs(items, classes, seeds=list(seeds), latest=names, folds=folds, work_dir=work_dir,
                 progress=progress, **options)
    _crossval.write_atomic(work_dir / LATEST_RUNS, lambda p: p.write_text(
        json.dumps({"files": names}), encoding="utf-8"))
    return runs


def _check_items(items: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise TrainingError(f"items lack column(s) {', '.join(missing)}")
    items = items.reset_index(drop=True).copy()
    items["id"] = items["id"].astype(str)
    dup = items["id"][items["id"].duplicated()]
    if len(dup):
        raise TrainingError(f"id {dup.iloc[0]!r} appears more than once among the images")
    known = set(classes)
    bad = items[~items["label"].astype(str).isin(known)]
    if len(bad):
        row = bad.iloc[0]
        raise TrainingError(
            f"image {row['id']} ({row['file']}) has label {row['label']!r}, "
            f"not one of the classes {', '.join(classes)}"
        )
    return items


def out_of_sample(
    items: pd.DataFrame,
    classes: Sequence[str],
    *,
    folds: int,
    epochs: int,
    seed: int = 123,
    work_dir: Path,
    cache_dir: Path | None = None,
    fit_predict: Callable[..., Any] | None = None,
    progress: _workers.Say | None = None,
    augment: bool = False,
    snapshots: Sequence[int] = (),
    latest: str = LATEST,
    workers: int | None = None,
    executor: str = "local",
    address: str = "",
    warm_epochs: int = 0,
    **fit_options: Any,
) -> OutOfSample:
    """Score every image with the fold model that did not train on it (stratified k-fold).

    Each fold's result is saved in ``work_dir`` as soon as it is done, keyed by its content, so
    an interrupted run resumes per fold and a fold whose training images (id, hash, label) are
    unchanged is reused. ``fit_predict`` defaults to :func:`sheetsync.train.fit_predict`;
    ``fit_options`` (batch_size, precision, jit_compile) are passed on to it.
    ``progress(event)`` hears about each fold (started, reused, done) and each epoch, as typed
    events (:data:`sheetsync._workers.FoldEvent`).
    ``augment`` trains the folds on class-preserving variants (:mod:`sheetsync._foldaugment`).
    ``snapshots`` (epochs) also keep training dynamics: :attr:`OutOfSample.snapshot_probs` and
    :attr:`OutOfSample.train_margin`. The result is also saved as ``work_dir / latest``.
    ``workers``: folds trained at once in worker processes (None: one per core for the fixed
    model, see :mod:`sheetsync._workers`, and in this process for a ``fit_predict`` passed in;
    1: one after the other in this process). ``executor="ray"`` sends each fold to the Ray
    cluster at ``address`` instead (:mod:`sheetsync._rayfolds`). ``warm_epochs`` > 0: a fold
    whose training rows changed a little since its last model fine-tunes that model for so many
    epochs instead of training from scratch (:mod:`sheetsync._warmstart`).
    """
    return _runs(items, classes, seeds=[seed], latest=[latest], folds=folds, epochs=epochs,
                 work_dir=work_dir, cache_dir=cache_dir, fit_predict=fit_predict,
                 progress=progress, augment=augment, snapshots=snapshots, workers=workers,
                 executor=executor, address=address, warm_epochs=warm_epochs,
                 **fit_options)[0]


@dataclass
class _Plan:
    """One k-fold run before training: its split, its settings, the folds found in the cache
    and the jobs still to train."""

    seed: int
    fold_of: pd.Series
    settings: dict[str, Any]
    found: dict[int, _crossval.FoldResult]
    jobs: list[_workers.FoldJob]
    # Per fold: the result file it ends with, and how many warm starts in a row that model is.
    files: dict[int, str] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    data: dict[int, str] = field(default_factory=dict)  # digest of what the fold trains and scores


def _runs(
    items: pd.DataFrame, classes: Sequence[str], *, seeds: list[int], latest: list[str],
    folds: int, epochs: int, work_dir: Path, cache_dir: Path | None = None,
    fit_predict: Callable[..., Any] | None = None, progress: _workers.Say | None = None,
    augment: bool = False, snapshots: Sequence[int] = (), workers: int | None = None,
    executor: str = "local", address: str = "", warm_epochs: int = 0, **fit_options: Any,
) -> list[OutOfSample]:
    """The k-fold runs of ``seeds``: plan each, train every missing fold in one go, assemble.
    ``warm_epochs`` > 0: a fold whose earlier model may be a start (:mod:`sheetsync._warmstart`)
    fine-tunes it for that many epochs instead of training ``epochs`` from scratch."""
    start = time.perf_counter()
    items = _check_items(items, classes)
    # A model passed in (a stand-in, a callable that keeps state) trains here unless asked.
    if workers is None and fit_predict is not None:
        workers = 1
    if fit_predict is None:
        from . import _foldaugment

        fit_predict = _foldaugment.fit_predict if augment else _plain_fit_predict
        # Folds of different sizes share one compiled step (train._whole_batches); in the
        # options, so in the fold results' key too.
        fit_options = {**fit_options, "whole_batches": True}
    if augment:
        from ._foldaugment import SETTINGS as augment_settings

        fit_options = {**fit_options, "augment_settings": augment_settings}
    if snapshots:
        fit_options = {**fit_options, "snapshots": sorted(int(e) for e in snapshots)}
    say = progress or (lambda event: None)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    plans = [_plan(items, classes, seed=seed, folds=folds, epochs=epochs, work_dir=work_dir,
                   cache_dir=cache_dir, fit_options=fit_options, first=i * folds,
                   total=len(seeds) * folds, say=say, warm_epochs=warm_epochs)
             for i, seed in enumerate(seeds)]
    jobs = [job for plan in plans for job in plan.jobs]
    if executor == "ray" and jobs:
        from ._rayfolds import train_folds_ray

        trained = iter(train_folds_ray(fit_predict, items, jobs, classes, address=address,
                                       say=say))
    else:
        trained = iter(_workers.train_folds(
            fit_predict, items, jobs, classes, say=say, report_epochs=progress is not None,
            workers=_workers.auto_workers(len(jobs)) if workers is None else workers))
    runs = []
    for plan, name in zip(plans, latest, strict=True):
        for job in plan.jobs:
            plan.found[job.fold] = next(trained)
        _record_latest(plan, work_dir, folds)
        oos = _assembled(plan, items, classes, seconds=time.perf_counter() - start)
        oos.save(work_dir / name)
        runs.append(oos)
    _warmstart.prune(work_dir)  # old fold results, no longer any fold's latest
    return runs


def _plain_fit_predict(*args: Any, **kwargs: Any) -> Any:
    """:func:`sheetsync.train.fit_predict`, imported where a fold trains. Why: importing it
    loads TensorFlow (5-6 s of one core), which this process does not need to send folds to
    workers; the workers import it themselves, and start that much sooner."""
    from .train import fit_predict

    return fit_predict(*args, **kwargs)


def _plan(
    items: pd.DataFrame, classes: Sequence[str], *, seed: int, folds: int, epochs: int,
    work_dir: Path, cache_dir: Path | None, fit_options: Mapping[str, Any], first: int,
    total: int, say: _workers.Say, warm_epochs: int = 0,
) -> _Plan:
    """Split ``items`` for ``seed`` (keeping earlier assignments), and look up each fold's
    result by its content key; ``first``: how many folds of other runs come before this one's."""
    map_path = _crossval.fold_map_path(work_dir, folds, seed)
    fold_of = _crossval.assign_folds(items, folds, seed, _crossval.read_fold_map(map_path))
    merged = {**_crossval.read_fold_map(map_path), **{str(k): int(v) for k, v in fold_of.items()}}
    _crossval.write_atomic(
        map_path, lambda p: p.write_text(pd.Series(merged).to_json(), encoding="utf-8")
    )
    settings = {"epochs": epochs, "seed": seed, **fit_options}
    # The augmentation settings name the fold results (their key), they are not an argument.
    passed = {k: v for k, v in fit_options.items() if k != "augment_settings"}
    fit_kwargs: dict[str, Any] = {"epochs": epochs, "seed": seed, "cache_dir": cache_dir, **passed}
    plan = _Plan(seed=seed, fold_of=fold_of, settings=settings, found={}, jobs=[])
    base = _crossval._digest(settings)
    warm_epochs = min(warm_epochs, epochs)  # fine-tuning never takes longer than a fresh start
    for f in range(folds):
        held = fold_of.to_numpy() == f
        train, held_ids = items.loc[~held], items["id"][held].tolist()
        data = _crossval.fold_key(train, items, held_ids, classes, settings)
        path, kwargs, generation = work_dir / f"fold-{data[:24]}.npz", fit_kwargs, 0
        cached = _crossval.FoldResult.load(path)
        plan.data[f] = data
        recorded = None if cached is not None else _warmstart.same(
            work_dir, folds, seed, f, base=base, data=data)
        if recorded is not None and (warm_epochs > 0 or recorded[1] == 0):
            # a model of this very data (fine-tuned, unless warm starts are off): used as it is
            name, generation, cached = recorded
            path = work_dir / name
        warm = None if cached is not None or warm_epochs <= 0 else _warmstart.find(
            work_dir, folds, seed, f, base=base, train=train, held_ids=set(held_ids))
        if warm is not None:
            # Fine-tune the previous version's model of this fold: other settings, another key.
            warm_settings = {**settings, "epochs": warm_epochs, "warm_from": warm.source}
            kwargs = {**fit_kwargs, "epochs": warm_epochs, "warm_weights": warm.prior.weights,
                      "margin_prior": warm.prior}
            if "snapshots" in settings:
                # Halfway and at the end: the training rows whose label is unchanged keep their
                # from-scratch margins (run_fold), so fewer snapshots suffice, and each one
                # scores every image.
                warm_settings["snapshots"] = kwargs["snapshots"] = sorted(
                    {max(1, warm_epochs // 2), warm_epochs})
            key = _crossval.fold_key(train, items, held_ids, classes, warm_settings)
            path, generation = work_dir / f"fold-{key[:24]}.npz", warm.generation
            cached = _crossval.FoldResult.load(path)
        plan.files[f], plan.generations[f] = path.name, generation
        if cached is not None:
            plan.found[f] = cached
            say(_workers.FoldReused(first + f + 1, total))
        else:
            plan.jobs.append(_workers.FoldJob(
                fold=f, fold_of=fold_of, fit_kwargs=kwargs, path=path, number=first + f + 1,
                total=total, warm_epochs=warm_epochs if warm is not None else 0))
    return plan


def _record_latest(plan: _Plan, work_dir: Path, folds: int) -> None:
    """Note each fold's model of this run as the start for the next version's (after its
    result file is saved)."""
    base = _crossval._digest(plan.settings)
    for f, name in plan.files.items():
        _warmstart.record(work_dir, folds, plan.seed, f, base=base, data=plan.data[f],
                          source=name, generation=plan.generations[f])


def _assembled(
    plan: _Plan, items: pd.DataFrame, classes: Sequence[str], *, seconds: float
) -> OutOfSample:
    """One :class:`OutOfSample` from a plan whose every fold is found (cached or trained)."""
    results = [plan.found[f] for f in sorted(plan.found)]
    ids = np.concatenate([r.ids for r in results])
    order = pd.Index(items["id"])
    index = pd.Index(ids, name="id")

    def frame(values: np.ndarray, columns: Sequence[Any]) -> pd.DataFrame:
        return pd.DataFrame(values, index=index, columns=list(columns)).loc[order].rename_axis("id")

    def every_fold(parts: list[np.ndarray | None]) -> pd.DataFrame | None:
        """One frame of a per-fold extra, when every fold kept it (older caches may not)."""
        kept = [p for p in parts if p is not None]
        return frame(np.concatenate(kept), classes) if len(kept) == len(parts) else None

    probs = frame(np.concatenate([r.probs for r in results]), classes)
    emb_parts = [r.embeddings for r in results]
    width = max(e.shape[1] for e in emb_parts)
    embeddings = frame(np.concatenate(emb_parts), range(width))
    dist = frame(np.concatenate([r.class_distance for r in results]), classes)
    snap, margin = _dynamics(results, frame, order, classes)
    trained = {job.fold for job in plan.jobs}
    return OutOfSample(
        probs=probs, embeddings=embeddings, class_distance=dist, fold=plan.fold_of,
        reused=tuple(f for f in sorted(plan.found) if f not in trained), seconds=seconds,
        settings=plan.settings, items_digest=items_digest(items), snapshot_probs=snap,
        train_margin=margin, train_vote=every_fold([r.train_vote for r in results]),
        original_probs=every_fold([r.original_probs for r in results]),
    )


def snapshot_epochs(epochs: int) -> tuple[int, ...]:
    """Snapshot epochs for training dynamics: each quarter of the run (the last epoch included)."""
    return tuple(sorted({max(1, round(epochs * q / 4)) for q in range(1, 5)}))


def _dynamics(
    results: Sequence[_crossval.FoldResult], frame: Callable[..., pd.DataFrame], order: pd.Index,
    classes: Sequence[str],
) -> tuple[pd.DataFrame | None, pd.Series | None]:
    """Snapshot probabilities of the held-out rows and mean training margins, when every fold
    kept them (a fold cached without snapshots has none)."""
    if any(r.snapshot_probs is None or r.train_ids is None or r.train_margin is None for r in results):
        return None, None
    snap = frame(np.concatenate([r.snapshot_probs for r in results]), classes)
    series: list[pd.Series] = [pd.Series(r.train_margin, index=np.asarray(r.train_ids).astype(str))
                               for r in results]
    parts = pd.concat(series)
    margin = parts.groupby(level=0).mean().reindex(order).rename("train_margin")
    return snap, margin


# ----------------------------------------------------------------------------- signals


def duplicates(items: pd.DataFrame, thumbs: _duplicates.Thumbnails | None = None,
               pixel_cache: Path | None = None) -> tuple[pd.Series, pd.Series]:
    """(duplicate_of, blank): space-separated ids showing the same picture, and blank images.
    ``thumbs``: the items' thumbnails when already at hand, ``pixel_cache``: where the near
    pairs of the last push are kept (:mod:`sheetsync._pixelcache`)."""
    ids = items["id"].astype(str).tolist()
    if thumbs is None:
        thumbs = _duplicates.thumbnails(items["file"].astype(str))
    blank = _duplicates.blank_images(ids, thumbs)
    near = None if pixel_cache is None else cached_near_pairs(pixel_cache)
    groups = _duplicates.duplicate_groups(ids, items["hash"].astype(str).tolist(), thumbs,
                                          blank=blank, near=near)
    dup = pd.Series([" ".join(groups.get(i, [])) for i in ids], index=blank.index, name="duplicate_of", dtype=str)
    return dup, blank


def priority(signals: pd.DataFrame, weights: Mapping[str, float] = WEIGHTS) -> pd.Series:
    """The combined review score: higher = review sooner.

    The strongest single reason counts: cleanlab's issue score (which already weighs the
    model's softmax and the image's place in embedding space), 1 for a blank image, 1 for a
    picture that also appears under another label (one of the two labels must be wrong). A
    copy under the same label gets a small nudge (``weights["duplicate"]``): worth a look for
    train/val leakage, but never ahead of a label the model doubts.
    """
    issue = signals["issue_score"].astype(float).fillna(0.0)
    blank = signals["blank"].astype(bool).astype(float)
    conflict = signals.get("duplicate_conflict", pd.Series(False, index=signals.index)).astype(float)
    base = pd.Series(np.maximum(issue, np.maximum(blank, conflict)), index=signals.index)
    copy = (signals["duplicate_of"].astype(str) != "").astype(float)
    return (base + weights.get("duplicate", 0.0) * copy).rename("priority")


def _fmt(p: float) -> str:
    return "<0.01" if p < 0.005 else f"{p:.2f}"


def why(signals: pd.DataFrame, labels: pd.Series, probs: pd.DataFrame | None,
        splits: pd.Series | None = None) -> pd.Series:
    """A short reason per row, strongest first, e.g. 'model says vii (0.91); label ii has 0.03'."""
    out: list[str] = []
    label_of = labels.astype(str)
    for key, row in signals.iterrows():
        i = str(key)
        parts: list[str] = []
        if row["blank"]:
            parts.append("blank image")
        piece = row.get("largest_piece", np.nan)
        if pd.notna(piece) and piece < _picture.DOTTED and not row["blank"]:
            # First: it is the reason the row is near the top (sheetsync._evidence.PICTURE).
            parts.append(f"drawn in dots or dashes (the largest piece holds {piece:.0%} of the ink)")
        if probs is not None and pd.notna(row["confidence"]):
            pred = row["predicted"]
            if pred != label_of[i]:
                parts.append(f"model says {pred} ({_fmt(float(probs[pred][i]))}); "
                             f"label {label_of[i]} has {_fmt(row['confidence'])}")
            elif row["confidence"] < 0.5:
                parts.append(f"model unsure: label {label_of[i]} has {_fmt(row['confidence'])}")
            if row["suspected"] and row["suspected"] != pred:
                parts.append(f"cleanlab suspects {row['suspected']}")
        if row["duplicate_of"]:
            for other in str(row["duplicate_of"]).split()[:2]:
                where = f" in {splits[other]}" if splits is not None else ""
                if label_of[other] != label_of[i]:
                    parts.append(f"same picture as {other}{where}, labelled {label_of[other]}")
                else:
                    parts.append(f"same picture as {other}{where}")
        if pd.notna(row["outlier"]) and row["outlier"] >= FAR:
            parts.append(f"far from class {label_of[i]} ({row['outlier']:.1f}x usual)")
        parts.extend(_evidence_why(row, label_of[i]))
        if not parts and pd.notna(row["issue_score"]) and row["issue_score"] >= 0.3:
            # The softmax agrees with the label but the embedding space does not.
            parts.append(f"issue score {row['issue_score']:.2f}: the image sits with another class")
        out.append("; ".join(parts))
    return pd.Series(out, index=signals.index, name="why", dtype=str)


def _evidence_why(row: pd.Series, label: str) -> list[str]:
    """The evidence signals that fired for one row, in words."""
    parts: list[str] = []
    agree = row.get("knn_agreement", np.nan)
    if pd.notna(agree) and agree < 0.5 and row.get("knn_class", "") not in ("", label):
        parts.append(f"neighbours are {row['knn_class']} ({agree:.0%} share label {label})")
    margin = row.get("train_margin", np.nan)
    if pd.notna(margin) and margin < 0:
        parts.append(f"never learned in training (margin {margin:.2f})")
    best = row.get("max_prob", np.nan)
    if pd.notna(best) and best < 0.5:
        parts.append(f"no class above 0.5 (best {best:.2f})")
    far = row.get("far_all", np.nan)
    if pd.notna(far) and far >= FAR:
        parts.append(f"far from every class ({far:.1f}x usual)")
    tv = row.get("seed_disagreement", np.nan)
    if pd.notna(tv) and tv >= DISAGREE:
        parts.append(f"fold seeds disagree ({tv:.2f})")
    border = row.get("border_ink", np.nan)
    if pd.notna(border) and border >= BORDER:
        parts.append(f"ink runs off the edge ({border:.0%} of the frame)")
    return parts


def _doubt_probs(
    probs: pd.DataFrame, class_distance: pd.DataFrame | None, classes: Sequence[str]
) -> pd.DataFrame:
    """The probabilities cleanlab judges labels by: the model's softmax averaged with the
    nearest-centroid view of the same fold model's embedding space, where both exist.

    Why: on the competition data with 5% flipped labels, the embedding view alone put 85% of the
    flips in the first 15% of rows, the softmax alone 77%, the mean 83%; the mean is kept because
    each view covers the other's blind spots (a confidently wrong last layer; a class whose
    images spread widely in embedding space)."""
    if class_distance is None:
        return probs
    cd = class_distance.copy()
    cd.index = cd.index.astype(str)
    have = probs.index[probs.index.isin(cd.index)]
    cd = cd.loc[have, list(classes)]
    have = have[np.isfinite(cd.to_numpy(dtype=float)).any(axis=1)]
    if not len(have):
        return probs
    doubt = probs.copy()
    doubt.loc[have] = sig.ensemble(probs.loc[have], sig.centroid_probs(cd.loc[have])).to_numpy()
    return doubt


def ensemble_probs(runs: Sequence[OutOfSample]) -> pd.DataFrame:
    """The mean over runs (fold seeds) of each run's held-out probabilities, the mean over the
    snapshot epochs where a run kept them (a temporal ensemble: steadier than the last epoch)."""
    frames = [r.snapshot_probs if r.snapshot_probs is not None else r.probs for r in runs]
    index = frames[0].index
    return sig.ensemble(*[f.loc[index] for f in frames])


def stored_view(runs: Sequence[OutOfSample]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """What the store keeps of the runs (ids, probabilities, embeddings, class distances): the
    probabilities the order uses (:func:`ensemble_probs`), the mean class distances, and the
    first run's embeddings (spaces of different runs are not comparable, so they are not mixed)."""
    ids = list(runs[0].probs.index)
    distance = np.mean([r.class_distance.loc[ids].to_numpy() for r in runs], axis=0)
    return (ids, ensemble_probs(runs).loc[ids].to_numpy(), runs[0].embeddings.loc[ids].to_numpy(),
            distance)


def _run_evidence(
    runs: Sequence[OutOfSample], labels: pd.Series, classes: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(evidence columns, neighbours' vote per class) from the runs' embeddings, distances and
    dynamics, each averaged over the runs (every run has its own fold models and spaces)."""
    ev = pd.DataFrame(index=labels.index)
    votes, iso = [], []
    for r in runs:
        nb = nbr.neighbours(r.embeddings.loc[labels.index], r.fold)
        # The nearest training images when the run kept them (see sheetsync._neighbours).
        votes.append(r.train_vote.loc[labels.index, list(classes)] if r.train_vote is not None
                     else nbr.knn_vote(nb, labels, classes))
        iso.append(nbr.isolation(nb))
    vote = sig.ensemble(*votes)
    ev["knn_agreement"] = _evidence._at(vote, labels)
    ev["knn_class"] = vote.idxmax(axis=1)
    ev["isolation"] = pd.concat(iso, axis=1).mean(axis=1)
    ev["far_all"] = pd.concat([r.class_distance.loc[labels.index].min(axis=1) for r in runs], axis=1).mean(axis=1)
    if len(runs) > 1:
        # Total variation between each run's probabilities and their mean: runs that disagree.
        mean = ensemble_probs(runs).loc[labels.index].to_numpy()
        tv = [0.5 * np.abs(f.loc[labels.index].to_numpy() - mean).sum(axis=1)
              for f in (r.snapshot_probs if r.snapshot_probs is not None else r.probs for r in runs)]
        ev["seed_disagreement"] = np.mean(tv, axis=0)
    margins = [r.train_margin for r in runs if r.train_margin is not None]
    if margins:
        ev["train_margin"] = pd.concat([m.reindex(labels.index) for m in margins], axis=1).mean(axis=1)
    return ev, vote


def review_signals(
    items: pd.DataFrame,
    probs: pd.DataFrame | OutOfSample | Sequence[OutOfSample] | None,
    classes: Sequence[str],
    *,
    class_distance: pd.DataFrame | None = None,
    find_duplicates: bool = True,
    weights: Mapping[str, float] = WEIGHTS,
    pixel_cache: Path | None = None,
) -> pd.DataFrame:
    """The review columns, one row per item (index = id), in :data:`SIGNAL_COLUMNS` order.

    ``probs`` is an :class:`OutOfSample` (its class distances are used for ``outlier``, its
    embeddings for the neighbours), several (fold seeds: averaged, and their disagreement is a
    signal), a probability frame (index = id, columns = classes), or None when no model exists
    yet. Rows without probabilities (no model yet, or images added since it ran) keep empty
    model columns and an empty priority unless they are blank or a copy under another label.
    """
    items = items.reset_index(drop=True).copy()
    items["id"] = items["id"].astype(str)
    runs: list[OutOfSample] = []
    if isinstance(probs, OutOfSample):
        runs = [probs]
    elif isinstance(probs, list | tuple):
        runs = list(probs)
    if runs:
        if class_distance is None:
            class_distance = sig.ensemble(*[r.class_distance.loc[runs[0].probs.index] for r in runs])
    pf: pd.DataFrame | None = (
        ensemble_probs(runs) if runs else probs if isinstance(probs, pd.DataFrame) else None
    )
    index = pd.Index(items["id"], name="id")
    labels = pd.Series(items["label"].astype(str).to_numpy(), index=index)
    bad = labels[~labels.isin(list(classes))]
    if len(bad):
        raise TrainingError(f"image {bad.index[0]} has label {bad.iloc[0]!r}, not one of the classes")
    out = pd.DataFrame(index=index)
    out["predicted"], out["suspected"] = "", ""
    for c in ("confidence", "margin", "loss", "issue_score"):
        out[c] = np.nan
    if pf is not None:
        pf = pf.copy()
        pf.index = pf.index.astype(str)
        # Images the model has not scored yet (new since it ran) keep empty model columns.
        scored = index[index.isin(pf.index)]
        pf = pf.loc[scored, list(classes)].astype(float)
        given = labels.loc[scored]
        if len(scored):
            doubt = _doubt_probs(pf, class_distance, classes)
            issues = sig.label_issues(doubt, given)
            out.loc[scored, "predicted"] = sig.predicted(pf)
            out.loc[scored, "confidence"] = sig.confidence(pf, given)
            out.loc[scored, "margin"] = sig.margin(pf, given)
            out.loc[scored, "loss"] = sig.loss(pf, given)
            out.loc[scored, "issue_score"] = sig.issue_score(doubt, given)
            out.loc[scored, "suspected"] = sig.suspected(doubt, given, issues)
    # Every image's pixels, decoded once per file content (kept by hash in ``pixel_cache``).
    pixels = (pixel_features(items["file"], items["hash"], items["id"], pixel_cache)
              if find_duplicates and len(items) and "hash" in items.columns else None)
    if find_duplicates and len(items):
        dup, blank = duplicates(items, None if pixels is None else pixels.thumbnails,
                                None if pixels is None else pixel_cache)
        out["duplicate_of"], out["blank"] = dup.to_numpy(), blank.to_numpy()
    else:
        out["duplicate_of"], out["blank"] = "", False
    out["duplicate_conflict"] = [
        any(labels[o] != labels[str(i)] for o in str(d).split()) for i, d in out["duplicate_of"].items()
    ]
    out["outlier"] = np.nan
    if class_distance is not None:
        cd = class_distance.copy()
        cd.index = cd.index.astype(str)
        known = index[index.isin(cd.index)]
        out.loc[known, "outlier"] = sig.outlier(cd.loc[known, list(classes)], labels.loc[known])
    classic = priority(out, weights)
    # Without a model score only blank images and conflicting copies say anything.
    out["classic_priority"] = classic.where(out["confidence"].notna() | (classic >= 1))
    vote = _add_evidence(out, items, runs, pf, labels, classes, find_duplicates,
                         None if pixels is None else pixels.stats)
    dotted = out["largest_piece"].astype(float) < _picture.DOTTED
    views = _evidence.combine(out)
    out["suggestion"] = _evidence.suggestion(pf, vote, labels, out["blank"].astype(bool) | dotted, views)
    out["priority"] = _evidence.priority(
        views, sure=out["blank"].astype(bool) | out["duplicate_conflict"].astype(bool),
        dotted=dotted, scored=out["confidence"].notna())
    splits = items.set_index("id")["split"].astype(str) if "split" in items.columns else None
    out["why"] = why(out, labels, pf, splits)
    return out[list(SIGNAL_COLUMNS) + ["duplicate_conflict", *EVIDENCE_COLUMNS]]


def _add_evidence(
    out: pd.DataFrame, items: pd.DataFrame, runs: Sequence[OutOfSample], probs: pd.DataFrame | None,
    labels: pd.Series, classes: Sequence[str], pictures: bool,
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame | None:
    """Fill the :data:`EVIDENCE_COLUMNS` of ``out`` in place; returns the neighbours' vote."""
    for c in EVIDENCE_COLUMNS:
        if c not in out.columns:
            out[c] = "" if c == "knn_class" else np.nan
    out["max_prob"] = probs.max(axis=1).reindex(out.index) if probs is not None else np.nan
    vote = None
    scored = [r for r in runs if labels.index.isin(r.probs.index).all()]
    if scored and len(scored) == len(runs):
        ev, vote = _run_evidence(runs, labels, classes)
        for c in ev.columns:
            out[c] = ev[c]
    if pictures and len(items):
        pic = measured if measured is not None else _picture.picture_stats(
            items["file"].astype(str), items["id"].astype(str))
        for c in _picture.COLUMNS:
            out[c] = pic[c]
    return vote


# ----------------------------------------------------------------------------- order


def review_order(
    signals: pd.DataFrame, order: str = "combined", *, seed: int = 123,
    paths: pd.Series | None = None,
) -> pd.Index:
    """Ids sorted most-likely-wrong first by the named order (see :data:`ORDERS`).

    Rows without a score (no model yet) come last, in id order; ties keep id order.
    """
    if order not in ORDERS:
        raise UnknownOrderError(f"unknown review order {order!r}; choose one of: {', '.join(ORDERS)}")
    ids = pd.Index(signals.index.astype(str), name="id")
    if order == "random":
        rng = np.random.default_rng(seed)
        return ids[rng.permutation(len(ids))]
    if order == "path":
        by_path = (paths.astype(str).reindex(ids) if paths is not None else pd.Series(ids, index=ids))
        return pd.Index(by_path.sort_values(kind="stable").index, name="id")
    column, descending = {
        "combined": ("priority", True),
        "classic": ("classic_priority", True),
        "issue": ("issue_score", True),
        "confidence": ("confidence", False),
        "loss": ("loss", True),
        "margin": ("margin", False),
    }[order]
    values = signals[column].astype(float).to_numpy()
    key = np.where(np.isnan(values), np.inf, -values if descending else values)
    # lexsort: the last key is the primary one; ties and unscored rows fall back to id order.
    return ids[np.lexsort((ids.to_numpy(dtype=str), key))]
