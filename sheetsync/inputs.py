"""What training, prediction and review read, built from a manifest (pure but for file reads).

* :func:`items_of`: the manifest as the items training and prediction take (id, file, hash, ...);
* :func:`usable`: those items without the files the model cannot read (sheetsync._imagecheck);
* :func:`test_items`: the test folder (``label_book``), hashed through a cache;
* :func:`review_inputs`: push's review signals from the freshest stored predictions;
* :func:`model_behind`: the model behind those predictions, for the sheet's info line;
* :func:`score_row`: the row ``train`` appends to the score history, with
  :func:`score_intervals` (bootstrap intervals, the val set's digest) and :func:`repeat_fields`
  (``train --repeats``);
* :func:`with_map`: the report's map columns (map_x, map_y, cluster) joined to review signals;
* :func:`counts_table`: images per class and split (``status``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._bootstrap import repeat_spread, score_fields, set_digest
from ._crossval import class_distances as fold_class_distances
from ._pngcharts import embedding_map as draw_embedding_map
from ._reviewsheet import ModelInfo, model_info
from .dataset import HashCache, _files_in, safe_joiner
from .errors import DatasetError, TrainingError
from .results import PredictionSource
from .review import latest_out_of_sample, latest_runs, review_signals
from .store import StoredPredictions
from .versions import VersionInfo, now_iso


def items_of(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    join = safe_joiner(root)
    return pd.DataFrame({
        "id": manifest["id"].astype(str),
        "file": [str(join(p)) for p in manifest["path"]],
        "hash": manifest["hash"].astype(str),
        "label": manifest["label"].astype(str),
        "split": manifest["split"].astype(str),
        "action": manifest["action"].astype(str),
    }).reset_index(drop=True)


def usable(items: pd.DataFrame, manifest: pd.DataFrame, unusable: Collection[str]) -> pd.DataFrame:
    """``items`` without the files (``unusable``: paths) the model cannot read."""
    if not unusable:
        return items
    bad = set(unusable)
    ids = set(manifest.loc[manifest["path"].astype(str).isin(bad), "id"].astype(str))
    return items[~items["id"].isin(ids)]


def train_val(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The kept images of the train and val splits; both must hold some."""
    keep = items[items["action"] == "keep"]
    tr, va = keep[keep["split"] == "train"], keep[keep["split"] == "val"]
    if not len(tr) or not len(va):
        raise TrainingError("training needs images in both the 'train' and 'val' splits")
    return tr, va


def test_items(test_dir: Path | None, classes: Sequence[str], cache: HashCache) -> pd.DataFrame | None:
    if test_dir is None or not test_dir.is_dir():
        return None
    rows = []
    for class_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        if class_dir.name not in classes:
            raise DatasetError(f"test folder {class_dir}: {class_dir.name!r} is not a class")
        for f in _files_in(test_dir, class_dir, "test", class_dir.name, "keep"):
            rel = f"{class_dir.name}/{Path(f.path).name}"
            rows.append({"id": "", "file": str(test_dir / rel),
                         "hash": cache.get(test_dir, replace(f, path=rel)), "label": class_dir.name})
    cache.save()
    return pd.DataFrame(rows) if rows else None


def review_inputs(items: pd.DataFrame, classes: Sequence[str], stored: StoredPredictions | None,
                  current: int, *, oos_dir: Path | None = None,
                  pixel_cache: Path | None = None) -> tuple[pd.DataFrame, PredictionSource]:
    """Review signals from the freshest predictions, and where they come from. With ``oos_dir``,
    the last out-of-sample run there stands in for its probabilities when it scored exactly the
    same images (its embeddings, folds and training dynamics feed the neighbour and dynamics
    signals)."""
    if stored is None:
        # No model yet: duplicates and blank images are still worth showing first.
        return (review_signals(items, None, classes, pixel_cache=pixel_cache),
                PredictionSource(None, None, current))
    probs = stored.probs
    # Images added since those predictions have none: score the rest, keep all rows.
    scored = items[items["id"].isin(probs.index)]
    run = _rich_oos(oos_dir, stored.kind, scored) if oos_dir is not None else None
    signals = review_signals(scored, run if run is not None else probs, classes,
                             class_distance=stored.distance, pixel_cache=pixel_cache)
    unscored = items[~items["id"].isin(probs.index)]
    if len(unscored):
        signals = pd.concat([signals, review_signals(unscored, None, classes,
                                                     find_duplicates=False)])
    return signals, PredictionSource(stored.kind, stored.version, current)


def fold_runs(oos_dir: Path, stored: StoredPredictions, items: pd.DataFrame) -> Any:
    """The out-of-sample runs behind ``stored`` (their embeddings and folds: the re-rank's
    neighbours), when they scored exactly the scored rows of ``items``; else None."""
    return _rich_oos(oos_dir, stored.kind, items[items["id"].isin(stored.probs.index)])


def _rich_oos(oos_dir: Path, kind: str, scored: pd.DataFrame) -> Any:
    """The last out-of-sample runs (one per fold seed) when they scored exactly these images,
    else None."""
    runs = latest_runs(oos_dir) if kind == "oos" else []
    ids = set(scored["id"].astype(str))
    if not runs or any(set(r.probs.index) != ids for r in runs):
        return None
    return runs


def judged_current(stored: StoredPredictions | None, judged: pd.DataFrame | None,
                   manifest: pd.DataFrame, current: int) -> int:
    """The version the predictions count as current for (staleness is ``version != current``):
    their own version while every row they scored has the same label, action and split now
    (rows were only added, say by ``augment`` or new images, or notes edited): nothing the model
    judged is different, so its evidence on those rows stands. Else ``current``: a pull changed
    what the model judged, and its advice is stale until ``predict`` runs again."""
    if stored is None or judged is None or stored.version == current:
        return current
    cols = ["label", "action", "split"]
    then = judged.set_index(judged["id"].astype(str))[cols].astype(str)
    now = manifest.set_index(manifest["id"].astype(str))[cols].astype(str)
    scored = pd.Index(stored.probs.index.astype(str))
    if not scored.isin(now.index).all() or not scored.isin(then.index).all():
        return current  # a row it scored is gone (or was never recorded): stale
    same = (then.loc[scored] == now.loc[scored]).all(axis=None)
    return stored.version if bool(same) else current


def model_behind(stored: StoredPredictions | None, manifest: pd.DataFrame, current: int,
                 scores: pd.DataFrame, oos_dir: Path) -> ModelInfo:
    """The model behind push's predictions: kind, version, epochs, accuracy, how weak."""
    labels = manifest.set_index("id")["label"]
    if stored is None:
        return model_info("none", None, None, labels, current=current)
    epochs, val = _model_figures(stored.kind, stored.version, scores, oos_dir)
    kind = "out-of-sample" if stored.kind == "oos" else "in-sample"
    return model_info(kind, stored.version, stored.probs, labels, current=current, epochs=epochs,
                      val_accuracy=val)


def _model_figures(kind: str, version: int, scores: pd.DataFrame,
                   oos_dir: Path) -> tuple[int | None, float | None]:
    """(epochs, best validation accuracy) of the model behind the predictions, if known."""
    if kind == "oos":
        oos = latest_out_of_sample(oos_dir)
        settings = getattr(oos, "settings", None) or {}
        return settings.get("epochs"), None  # OOS accuracy is computed from the probabilities
    if not len(scores) or "version" not in scores.columns:
        return None, None
    rows = scores[scores["version"].astype(str) == str(version)]
    if not len(rows):
        return None, None
    last = rows.iloc[-1]
    try:
        return int(float(last.get("epochs", ""))), float(last.get("best_val_accuracy", ""))
    except ValueError:
        return None, None


def class_distances(items: pd.DataFrame, pred: Any, classes: Sequence[str]) -> np.ndarray:
    """Distance of every image to each class centre, in the trained model's embedding space."""
    labels = items["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_train = ((items["split"] == "train") & (items["action"] == "keep")).to_numpy()
    return fold_class_distances(pred.embeddings, pred.probs, labels, is_train, len(classes))


def embedding_map(items: pd.DataFrame, pred: Any, classes: Sequence[str], info: VersionInfo,
                  path: Path) -> Path | None:
    ids = pd.Index(items["id"])
    labels = pd.Series(items["label"].to_numpy(), index=ids)
    predicted = pd.Series(np.asarray(classes)[pred.probs.argmax(axis=1)], index=ids)
    return draw_embedding_map(
        pd.DataFrame(pred.embeddings, index=ids), labels, predicted != labels, path,
        f"{info.name}: embedding map; red rings: the model disagrees with the label")


def derived_count(manifest: pd.DataFrame, trained: pd.DataFrame) -> int:
    """How many of the training images are derived (sheetsync augment)."""
    if "source_id" not in manifest.columns:
        return 0
    derived = manifest.loc[manifest["source_id"].astype(str) != "", "id"]
    return int(trained["id"].isin(derived).sum())


def score_row(info: VersionInfo, items: pd.DataFrame, tr: pd.DataFrame, va: pd.DataFrame,
              test: pd.DataFrame | None, result: Any, derived: int = 0) -> dict[str, Any]:
    """The score row of a train; ``derived``: training images made by augment."""
    return {
        "version": info.version, "time": now_iso(),
        "train": len(tr), "val": len(va), "dropped": int((items["action"] == "drop").sum()),
        "test": 0 if test is None else len(test), "derived": derived,
        "best_val_accuracy": round(float(result.best_val_accuracy), 4),
        "test_accuracy": "" if result.test_accuracy is None else round(float(result.test_accuracy), 4),
        "epochs": result.epochs, "best_epoch": result.best_epoch,
        "seed": result.seed, "seconds": round(float(result.seconds), 1),
    }


def test_predictions(test: pd.DataFrame, probs: np.ndarray, classes: Sequence[str],
                     root: Path) -> pd.DataFrame:
    """The test images' labels and predictions (file relative to the dataset root)."""
    import os

    return pd.DataFrame({"file": [os.path.relpath(f, root) for f in test["file"]],
                         "label": test["label"].to_numpy(),
                         "predicted": np.asarray(classes)[probs.argmax(axis=1)]})


def score_intervals(items: pd.DataFrame, probs: np.ndarray, classes: Sequence[str],
                    test: pd.DataFrame | None) -> dict[str, object]:
    """Score-row fields: 95% bootstrap intervals of val accuracy (from ``probs``, rows in
    ``items`` order) and of test accuracy (``test``: label, predicted), and the val set's digest."""
    predicted = np.asarray(classes)[probs.argmax(axis=1)]
    val = ((items["split"] == "val") & (items["action"] == "keep")).to_numpy()
    fields = score_fields("val", predicted[val] == items["label"].to_numpy()[val])
    fields["val_set"] = set_digest(items["id"][val], items["label"][val])
    if test is None:
        return {**fields, **score_fields("test", [])}
    return {**fields, **score_fields("test", test["predicted"].to_numpy() == test["label"].to_numpy())}


def repeat_fields(runs: Sequence[Any], has_test: bool) -> dict[str, object]:
    """Score-row fields of ``train --repeats N``: the spread of the runs' scores."""
    out: dict[str, object] = {"repeats": len(runs), "val_repeat_sd": round(
        repeat_spread([r.best_val_accuracy for r in runs]), 4)}
    if has_test:
        out["test_repeat_sd"] = round(repeat_spread([float(r.test_accuracy) for r in runs]), 4)
    return out


def with_map(signals: pd.DataFrame, found: pd.DataFrame | None) -> pd.DataFrame:
    """The report's map columns (map_x, map_y, cluster; ``found`` indexed by id) joined to the
    review signals."""
    if found is None:
        return signals
    return signals.join(found[["map_x", "map_y", "cluster"]], how="left")


def counts_table(manifest: pd.DataFrame, classes: Any, splits: Any) -> pd.DataFrame:
    keep = manifest[manifest["action"] == "keep"]
    table = pd.crosstab(keep["label"], keep["split"]).reindex(index=list(classes),
                                                               columns=list(splits), fill_value=0)
    dropped = manifest[manifest["action"] == "drop"]["label"].value_counts()
    table["dropped"] = dropped.reindex(table.index, fill_value=0)
    table.loc["total"] = table.sum()
    return table.astype(int)
