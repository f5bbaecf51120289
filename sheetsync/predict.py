"""`sheetsync predict`: out-of-sample probabilities for every kept train/val image, from k-fold
models (once per fold seed), stored for push's review order.

The folds themselves (training, caching, workers, test-time views) are
:func:`sheetsync.review.out_of_sample_runs`; this module reads a
:class:`~sheetsync.project.Project`'s items and settings and stores what the folds predicted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._workers import FoldEvent, FoldReused, FoldStarted, Say
from .errors import ConfigError
from .results import PredictResult
from .review import fold_seeds as seeds_for
from .review import out_of_sample_runs, snapshot_epochs, stored_view

if TYPE_CHECKING:
    from .project import Project


def predict(project: Project, *, folds: int | None = None, epochs: int | None = None,
            fold_seeds: int | None = None, from_scratch: bool = False,
            on_fold: Say | None = None) -> PredictResult:
    """Out-of-sample probabilities for every kept train/val image (k-fold, once per fold
    seed). After a pull, folds whose training rows changed a little fine-tune the previous
    version's fold models (``[review] warm_epochs``) unless ``from_scratch``."""
    config = project.config
    with project.locked():
        manifest, info, scanned = project.refresh()
        items = project.usable_items(manifest, scanned)
        keep = items[(items["action"] == "keep") & items["split"].isin(["train", "val"])]
        cfg, train_cfg = config.review, config.train
        folds, epochs, runs_wanted = folds or cfg.folds, epochs or cfg.epochs, fold_seeds or cfg.fold_seeds
        _check_whole("fold_seeds", runs_wanted, 1)
        workers = _check_whole("fold_workers", cfg.fold_workers, 0, " (0: one per CPU core)")
        warm = 0 if from_scratch else _check_whole("warm_epochs", cfg.warm_epochs, 0,
                                                   " (0: always from scratch)")
        tally = _FoldTally(on_fold)
        runs = out_of_sample_runs(
            keep.reset_index(drop=True), config.classes, folds=folds, epochs=epochs,
            seeds=seeds_for(train_cfg.seed, runs_wanted), work_dir=project.store.oos_dir,
            cache_dir=project.store.decode_cache, progress=tally,
            batch_size=train_cfg.batch_size, precision=train_cfg.precision,
            jit_compile=train_cfg.jit_compile, augment=cfg.augment,
            snapshots=snapshot_epochs(epochs) if cfg.snapshots else (),
            workers=workers or None, executor=_check_executor(cfg.executor),
            address=cfg.address, warm_epochs=warm)
        ids, probs, emb, distance = stored_view(runs)
        project.store.save_predictions(info.version, "oos", ids, list(config.classes),
                                       probs, emb, distance)
        return PredictResult(info, len(ids), folds, epochs, seeds=len(runs),
                             recovered=project.recovered, skipped=project.skipped,
                             excluded=sorted(scanned.images.unusable),
                             fine_tuned=tally.fine_tuned, warm_epochs=warm,
                             reused=tally.reused)


class _FoldTally:
    """Passes fold events on and counts the folds fine-tuned and reused."""

    def __init__(self, say: Say | None) -> None:
        self.say, self.fine_tuned, self.reused = say, 0, 0

    def __call__(self, event: FoldEvent) -> None:
        if isinstance(event, FoldStarted) and event.warm_epochs:
            self.fine_tuned += 1
        elif isinstance(event, FoldReused):
            self.reused += 1
        if self.say is not None:
            self.say(event)


def _check_whole(key: str, value: object, least: int, hint: str = "") -> int:
    """A ``[review]`` count as a whole number >= ``least``, or a ConfigError naming the key."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"[review] {key} must be a whole number >= {least}{hint}, not {value!r}")
    return value


def _check_executor(value: object) -> str:
    """``[review] executor``: "local" or "ray", or a ConfigError naming the key."""
    if value not in ("local", "ray"):
        raise ConfigError(f'[review] executor must be "local" or "ray", not {value!r}')
    return str(value)
