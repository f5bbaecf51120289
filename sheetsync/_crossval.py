"""k-fold plumbing for out-of-sample scores: stable folds, per-fold results cached by content.

* Folds are stratified and *stable*: the assignment is kept in ``work_dir`` and an image keeps
  its fold from one version to the next (new images go, in a seeded order, to the fold with the
  fewest images of their class). So an edit of one label leaves the training set of that image's
  own fold unchanged, and that fold is reused rather than retrained.
* Each fold's result is a file named after a digest of everything that determines it (the
  training images' id, hash and label, the images scored, the classes and training settings):
  an interrupted run resumes at the first missing fold, and an unchanged fold is never retrained.
* Embeddings of different folds come from different models, so they are not compared across
  folds: each fold measures, in its own embedding space, how far each held-out image lies from
  each class centroid of that fold's training images, in units of the class's typical spread,
  and which labels its nearest training images carry (:func:`sheetsync._neighbours.vote_among`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._neighbours import vote_among
from .errors import ConfigError, TrainingError

# 2: folds keep the labels of each held-out image's nearest training images (train_vote).
FOLD_FORMAT = 2


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _order_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def assign_folds(items: pd.DataFrame, folds: int, seed: int, previous: Mapping[str, int]) -> pd.Series:
    """Fold number per id: ids in ``previous`` keep theirs; new ids are dealt, in a seeded order,
    to the fold holding the fewest images of their class (then the fewest images)."""
    if folds < 2:
        raise ConfigError(f"review folds must be at least 2 (got {folds})")
    if len(items) < folds:
        raise TrainingError(f"{len(items)} images cannot be split into {folds} folds")
    ids = items["id"].astype(str).tolist()
    labels = items["label"].astype(str).tolist()
    out: dict[str, int] = {}
    per_class: dict[str, list[int]] = {}
    total = [0] * folds
    for i, lab in zip(ids, labels, strict=True):
        f = previous.get(i)
        if f is not None and 0 <= int(f) < folds:
            out[i] = int(f)
            per_class.setdefault(lab, [0] * folds)[int(f)] += 1
            total[int(f)] += 1
    new = sorted(
        ((i, lab) for i, lab in zip(ids, labels, strict=True) if i not in out),
        key=lambda t: _order_key(seed, t[0]),
    )
    for i, lab in new:
        counts = per_class.setdefault(lab, [0] * folds)
        f = min(range(folds), key=lambda k: (counts[k], total[k], k))
        out[i] = f
        counts[f] += 1
        total[f] += 1
    return pd.Series([out[i] for i in ids], index=pd.Index(ids, name="id"), name="fold")


def fold_map_path(work_dir: Path, folds: int, seed: int) -> Path:
    return work_dir / f"folds-k{folds}-seed{seed}.json"


def read_fold_map(path: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}  # absent or damaged: the folds are dealt afresh


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    # Write next to the target and rename: an interrupted run never leaves half a file behind.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class FoldResult:
    """What one fold's model says about its held-out images."""

    ids: np.ndarray  # (m,) str
    probs: np.ndarray  # (m, C)
    embeddings: np.ndarray  # (m, D)
    class_distance: np.ndarray  # (m, C), in units of each class's typical spread
    # With snapshots (training dynamics): the held-out rows' probabilities averaged over the
    # snapshot epochs, and the training rows' mean margin (given-label probability minus the
    # largest other) over those epochs: a label the model learns late or never is in doubt.
    snapshot_probs: np.ndarray | None = None  # (m, C)
    train_ids: np.ndarray | None = None  # (t,) str
    train_margin: np.ndarray | None = None  # (t,)
    # Per held-out row, the share of each class among its nearest training images in this
    # fold's space (rows sum to 1): 3x more references than the held-out rows of one fold.
    train_vote: np.ndarray | None = None  # (m, C)
    # With test-time views (sheetsync._foldaugment.test_views): the held-out rows' probabilities
    # from the original pictures alone (snapshot mean where there are snapshots), so that a
    # benchmark can measure what the views buy on the same trained fold.
    original_probs: np.ndarray | None = None  # (m, C)
    # The labels the training rows had (with train_ids), and the fold model's weights: the next
    # version's model of this fold may start from them (sheetsync.review, warm start), and keeps
    # the margins of the training rows whose label did not change.
    train_labels: np.ndarray | None = None  # (t,) str
    weights: list[np.ndarray] | None = None

    def save(self, path: Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    format=np.array(FOLD_FORMAT),
                    ids=self.ids.astype(str),
                    probs=self.probs,
                    embeddings=self.embeddings,
                    class_distance=self.class_distance,
                    **self._extras(),  # type: ignore[arg-type]
                )

        write_atomic(path, write)

    def _extras(self) -> dict[str, np.ndarray]:
        out = {} if self.train_vote is None else {"train_vote": self.train_vote}
        if self.original_probs is not None:
            out["original_probs"] = self.original_probs
        if self.train_labels is not None:
            out["train_labels"] = self.train_labels.astype(str)
        if self.weights is not None:
            out["weights"] = np.array(len(self.weights))
            out.update({f"weight{i}": w for i, w in enumerate(self.weights)})
        if self.train_ids is not None:
            out["train_ids"] = self.train_ids.astype(str)
        if self.snapshot_probs is not None and self.train_margin is not None:
            out.update(snapshot_probs=self.snapshot_probs, train_margin=self.train_margin)
        return out

    @classmethod
    def load(cls, path: Path) -> FoldResult | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != FOLD_FORMAT:
                    return None
                extra = {k: z[k] if k in z.files else None
                         for k in ("snapshot_probs", "train_ids", "train_margin", "train_vote",
                                   "original_probs", "train_labels")}
                weights = ([z[f"weight{i}"] for i in range(int(z["weights"]))]
                           if "weights" in z.files else None)
                return cls(z["ids"], z["probs"], z["embeddings"], z["class_distance"],
                           weights=weights, **extra)
        except (OSError, ValueError, KeyError):
            return None  # missing or damaged (e.g. killed mid-write elsewhere): recompute


def fold_key(
    train: pd.DataFrame, scored: pd.DataFrame, held_out: Sequence[str], classes: Sequence[str],
    settings: Mapping[str, Any],
) -> str:
    """A digest of everything that determines a fold's result."""
    triples = sorted(zip(train["id"].astype(str), train["hash"].astype(str), train["label"].astype(str), strict=True))
    pairs = sorted(zip(scored["id"].astype(str), scored["hash"].astype(str), strict=True))
    return _digest(
        {"format": FOLD_FORMAT, "classes": list(classes), "settings": dict(settings),
         "train": triples, "scored": pairs, "held_out": sorted(held_out)}
    )


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def class_distances(
    embeddings: np.ndarray, probs: np.ndarray, labels: np.ndarray, is_train: np.ndarray, n_classes: int
) -> np.ndarray:
    """Distance of every row to each class centroid of the training rows, in one model's space.

    Centroids use the training rows the model agrees with (so mislabeled training images do not
    drag them), falling back to all rows of the class; the unit is the median distance of those
    rows to their centroid, which makes scores of different folds comparable.
    """
    e = _unit(embeddings.astype(np.float64))
    pred = probs.argmax(axis=1)
    out = np.full((len(e), n_classes), np.nan)
    for c in range(n_classes):
        members = is_train & (labels == c)
        agreed = members & (pred == c)
        use = agreed if agreed.sum() >= 2 else members
        if not use.any():
            continue
        centre = e[use].mean(axis=0)
        scale = float(np.median(np.linalg.norm(e[use] - centre, axis=1)))
        out[:, c] = np.linalg.norm(e - centre, axis=1) / max(scale, 1e-6)
    return out


def run_fold(
    fit_predict: Callable[..., Any],
    items: pd.DataFrame,
    fold_of: pd.Series,
    fold: int,
    classes: Sequence[str],
    fit_kwargs: Mapping[str, Any],
) -> FoldResult:
    """Train on every image outside ``fold``, score all images, keep the held-out ones.

    ``fit_kwargs`` may carry ``margin_prior``, a fold result this fold model was fine-tuned
    from (a warm start): its training rows whose label is unchanged keep the margins they had
    when that model learned them from scratch (a model that starts out knowing a wrong label
    learns nothing late, so fine-tuning margins would hide it)."""
    fit_kwargs = dict(fit_kwargs)
    prior: FoldResult | None = fit_kwargs.pop("margin_prior", None)
    held = (fold_of.to_numpy() == fold)
    train = items.loc[~held].reset_index(drop=True)
    # All images are scored (the training ones too, cheaply) so that the class centroids can be
    # taken from the training images in this fold's own embedding space.
    pred = fit_predict(train, items.reset_index(drop=True), list(classes), **fit_kwargs)
    probs = np.asarray(pred.probs, dtype=np.float64)
    emb = np.asarray(pred.embeddings, dtype=np.float32)
    if probs.shape != (len(items), len(classes)) or len(emb) != len(items):
        raise TrainingError(
            f"fit_predict returned probabilities of shape {probs.shape} and {len(emb)} embeddings "
            f"for {len(items)} images and {len(classes)} classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = items["label"].astype(str).map(index).to_numpy(dtype=int)
    dist = class_distances(emb, probs, labels, ~held, len(classes))
    ids = items["id"].astype(str).to_numpy()
    vote = vote_among(emb[held], emb[~held], labels[~held], len(classes))
    snaps = getattr(pred, "snapshots", None)
    original = _original_held(pred, held)
    weights = getattr(pred, "weights", None)
    weights = None if weights is None else [np.asarray(w) for w in weights]
    train_labels = items["label"].astype(str).to_numpy()[~held]
    if snaps is None:
        return FoldResult(ids[held], probs[held], emb[held], dist[held], train_vote=vote,
                          original_probs=original, train_ids=ids[~held],
                          train_labels=train_labels, weights=weights)
    snaps = np.asarray(snaps, dtype=np.float64)
    mine = snaps[:, np.arange(len(items)), labels]  # (S, n) given-label probability
    other = snaps.copy()
    other[:, np.arange(len(items)), labels] = -np.inf
    margin = (mine - other.max(axis=2)).mean(axis=0)[~held]
    if prior is not None:
        margin = kept_margins(prior, ids[~held], train_labels, margin)
    return FoldResult(ids[held], probs[held], emb[held], dist[held],
                      snaps[:, held].mean(axis=0), ids[~held], margin, vote, original,
                      train_labels, weights)


def kept_margins(prior: FoldResult, ids: np.ndarray, labels: np.ndarray,
                 margin: np.ndarray) -> np.ndarray:
    """``margin`` with the ``prior`` fold's margin wherever a training row had the same label
    there (rows new or relabelled since keep the fine-tuning margin)."""
    if prior.train_ids is None or prior.train_labels is None or prior.train_margin is None:
        return margin
    before = {(str(i), str(lab)): float(m) for i, lab, m in
              zip(prior.train_ids, prior.train_labels, prior.train_margin, strict=True)}
    return np.array([before.get((str(i), str(lab)), float(m))
                     for i, lab, m in zip(ids, labels, margin, strict=True)])


def _original_held(pred: Any, held: np.ndarray) -> np.ndarray | None:
    """The held-out rows' probabilities without the test-time views, as the fold keeps them."""
    snaps = getattr(pred, "original_snapshots", None)
    if snaps is not None:
        return np.asarray(snaps, dtype=np.float64)[:, held].mean(axis=0)
    probs = getattr(pred, "original_probs", None)
    return None if probs is None else np.asarray(probs, dtype=np.float64)[held]
