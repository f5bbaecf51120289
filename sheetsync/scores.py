"""`sheetsync train` and `sheetsync scores`: each training run of the fixed model makes one
score row (accuracies with bootstrap intervals, the spread of ``--repeats`` seeds), kept in
the score history, appended to the sheet's scores and drawn as a chart; the run's in-sample
predictions are push's fallback when ``predict`` has not run.

TensorFlow (:mod:`sheetsync.train`) is imported only when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._pngcharts import scores_chart
from .errors import BackendError
from .inputs import (
    class_distances,
    derived_count,
    embedding_map,
    repeat_fields,
    score_intervals,
    score_row,
    test_items,
    test_predictions,
    train_val,
)
from .results import ScoresResult, TrainOutcome
from .versions import VersionInfo

if TYPE_CHECKING:
    from .project import Project


def train(project: Project, *, epochs: int | None = None, seed: int | None = None,
          precision: str | None = None, jit_compile: bool | None = None,
          on_epoch: Any = None, on_decode: Any = None,
          on_first_epoch: Any = None, repeats: int = 1) -> TrainOutcome:
    from . import train as training  # TensorFlow

    config, store = project.config, project.store
    with project.locked():
        manifest, info, scanned = project.refresh()
        items = project.usable_items(manifest, scanned)
        tr, va = train_val(items)
        test = test_items(config.test_dir, config.classes, store.test_hash_cache())
        cfg, weights = config.train, store.weights_path(info.version)
        settings: dict[str, Any] = {
            "epochs": epochs or cfg.epochs, "batch_size": cfg.batch_size,
            "precision": precision or cfg.precision,
            "jit_compile": cfg.jit_compile if jit_compile is None else jit_compile}
        result = training.train_model(
            tr, va, config.classes, weights_path=weights, test=test,
            seed=cfg.seed if seed is None else seed, cache_dir=store.decode_cache,
            progress=on_epoch, decode_progress=on_decode, on_first_epoch=on_first_epoch,
            **settings)
        emb_map, probs = _predict_in_sample(project, weights, items, info)
        row = {**score_row(info, items, tr, va, test, result, derived_count(manifest, tr)),
               **_score_intervals(project, info.version, items, probs, test, weights),
               **_repeat_runs(project, repeats, tr, va, test, result, settings)}
        project.scores.append(row)
        outcome = TrainOutcome(info, row, test is not None, None, recovered=project.recovered,
                               skipped=project.skipped, excluded=sorted(scanned.images.unusable))
        _publish_score(project, outcome)
        drawn = chart(project)
        outcome.charts = [drawn, *([emb_map] if emb_map else [])] if drawn else []
        return outcome


def _score_intervals(project: Project, version: int, items: pd.DataFrame, probs: Any,
                     test: pd.DataFrame | None, weights: Path) -> dict[str, object]:
    """Bootstrap intervals of val and test accuracy under the best weights; the test
    predictions are kept for the report."""
    from . import train as training  # TensorFlow

    classes = list(project.config.classes)
    test_pred = None
    if test is not None:
        tp = training.predict(weights, test.assign(id=test["file"]), classes,
                              cache_dir=project.store.decode_cache)
        test_pred = test_predictions(test, tp.probs, classes, project.config.root)
        project.store.save_test_predictions(version, test_pred)
    return score_intervals(items, probs, classes, test_pred)


def _repeat_runs(project: Project, repeats: int, tr: pd.DataFrame, va: pd.DataFrame,
                 test: pd.DataFrame | None, first: Any, settings: dict[str, Any]) -> dict[str, object]:
    """``train --repeats N``: N-1 more seeds; the spread of their scores (score row)."""
    if repeats <= 1:
        return {}
    from . import train as training  # TensorFlow

    runs = [first]
    with project.store.scratch() as tmp:
        for k in range(1, repeats):
            runs.append(training.train_model(
                tr, va, project.config.classes, weights_path=tmp / f"repeat{k}.weights.h5",
                test=test, seed=first.seed + k, cache_dir=project.store.decode_cache, **settings))
    return repeat_fields(runs, test is not None)


def _predict_in_sample(project: Project, weights: Path, items: pd.DataFrame,
                       info: VersionInfo) -> tuple[Path | None, Any]:
    """Predictions of the model just trained (push's fallback), its embedding map and the
    probabilities."""
    from . import train as training  # TensorFlow

    classes, store = list(project.config.classes), project.store
    pred = training.predict(weights, items, classes, cache_dir=store.decode_cache)
    store.save_predictions(info.version, "insample", list(items["id"]), classes,
                           pred.probs, pred.embeddings, class_distances(items, pred, classes))
    return (embedding_map(items, pred, classes, info, store.embedding_chart(info.version)),
            pred.probs)


def _publish_score(project: Project, outcome: TrainOutcome) -> None:
    try:
        project.backend.append_score(outcome.score)
    except BackendError as e:
        outcome.sheet_error = str(e)
        return
    outcome.sheet = project.backend.describe()
    outcome.usage = project.usage()


def chart(project: Project) -> Path | None:
    """Redraw the score chart; its path (None when there is nothing to draw)."""
    return scores_chart(project.scores.read(), project.store.scores_chart)


def score_table(project: Project) -> ScoresResult:
    table = project.scores.read()
    return ScoresResult(table, chart(project) if len(table) else None)
