"""[review] executor = "ray": each fold a Ray task carrying its inputs, on a local Ray instance
started here (no network), with the results of the local pool and cached the same way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_review_evidence import CLS3, _stroke_items, mean_pixels_fit_predict

from sheetsync import review
from sheetsync._workers import FoldDone, FoldStarted

ray = pytest.importorskip("ray")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local_ray():
    # The workers import this worktree's sheetsync and the stand-in model from tests/.
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_folds_sent_to_ray_match_the_local_pool_and_are_cached(tmp_path, local_ray):
    items = _stroke_items(tmp_path)
    kw = dict(folds=3, epochs=2, snapshots=(1, 2), fit_predict=mean_pixels_fit_predict)
    here = review.out_of_sample_runs(items, CLS3, seeds=[123, 321], work_dir=tmp_path / "a",
                                     workers=2, **kw)
    said: list = []
    there = review.out_of_sample_runs(items, CLS3, seeds=[123, 321], work_dir=tmp_path / "b",
                                      executor="ray", progress=said.append, **kw)
    for a, b in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(a.probs, b.probs)
        pd.testing.assert_series_equal(a.train_margin, b.train_margin)
    assert sorted(p.name for p in (tmp_path / "a").glob("fold-*.npz")) == sorted(
        p.name for p in (tmp_path / "b").glob("fold-*.npz"))
    assert sum(isinstance(m, FoldStarted) and m.where == "ray" for m in said) == 6
    assert sum(isinstance(m, FoldDone) for m in said) == 6
    # Cached as with the local pool: nothing goes to Ray again.
    said.clear()
    again = review.out_of_sample_runs(items, CLS3, seeds=[123, 321], work_dir=tmp_path / "b",
                                      executor="ray", progress=said.append, **kw)
    assert [r.reused for r in again] == [(0, 1, 2), (0, 1, 2)]
    assert not any(isinstance(m, FoldStarted) for m in said)


def warm_mean_pixels(train, predict_items, classes, *, warm_weights=None, **kw):
    """:func:`mean_pixels_fit_predict` whose weights count the models in its warm-start chain,
    and whose probabilities lean by that count: what a fold returns shows what it started
    from, wherever it ran. Module-level, so Ray sends it by reference."""
    pred = mean_pixels_fit_predict(train, predict_items, classes, **kw)
    chain = 0 if warm_weights is None else int(warm_weights[0][0]) + 1
    probs = pred.probs.copy()
    probs[:, 0] += 0.01 * chain
    probs /= probs.sum(axis=1, keepdims=True)
    pred.probs = probs
    if pred.snapshots is not None:
        pred.snapshots = np.stack([probs] * len(pred.snapshots))
    pred.weights = [np.array([chain], dtype=np.int64)]
    return pred


def test_warm_starts_sent_to_ray_start_from_the_previous_models_as_the_local_pool(
        tmp_path, local_ray):
    items = _stroke_items(tmp_path)
    kw = dict(folds=3, epochs=4, snapshots=(2, 4), fit_predict=warm_mean_pixels, warm_epochs=2)
    edited = items.copy()
    edited.loc[edited.index[0], "label"] = CLS3[1]  # one relabel: a few edits after a pull
    results = {}
    for executor, work in (("local", tmp_path / "a"), ("ray", tmp_path / "b")):
        review.out_of_sample_runs(items, CLS3, seeds=[123], work_dir=work, executor=executor,
                                  workers=1 if executor == "local" else None, **kw)
        said: list = []
        results[executor] = review.out_of_sample_runs(
            edited, CLS3, seeds=[123], work_dir=work, executor=executor, progress=said.append,
            workers=1 if executor == "local" else None, **kw)[0]
        started = [m for m in said if isinstance(m, FoldStarted)]
        assert started and all(m.warm_epochs == 2 for m in started)  # fine-tuned, not cold
    here, there = results["local"], results["ray"]
    pd.testing.assert_frame_equal(here.probs, there.probs)
    pd.testing.assert_series_equal(here.train_margin, there.train_margin)
    assert sorted(p.name for p in (tmp_path / "a").glob("fold-*.npz")) == sorted(
        p.name for p in (tmp_path / "b").glob("fold-*.npz"))
    # What Ray returned was fine-tuned from the previous model (its weights reached the task):
    # it is not what the same folds give from scratch.
    cold = review.out_of_sample_runs(edited, CLS3, seeds=[123], work_dir=tmp_path / "c",
                                     workers=1, **{**kw, "warm_epochs": 0})[0]
    tuned = there.fold[~there.fold.isin(there.reused)].index
    assert len(tuned) and not np.allclose(there.probs.loc[tuned], cold.probs.loc[tuned])


def test_predict_with_executor_ray_stores_the_probabilities_of_the_local_pool(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_ray
) -> None:
    from test_review_evidence import _stand_in

    import sheetsync._foldaugment
    import sheetsync.train
    from sheetsync.errors import ConfigError
    from sheetsync.project import Project

    # The stand-in model (a closure: Ray sends it by value; the local pool trains it here).
    for module in (sheetsync.train, sheetsync._foldaugment):
        monkeypatch.setattr(module, "fit_predict", _stand_in([]))
    stored, said = {}, []
    for executor in ("local", "ray"):
        project, _ = Project.init(data_root, tmp_path / executor)
        toml = project.config.path
        text = toml.read_text(encoding="utf-8")
        assert 'executor = "local"' in text
        toml.write_text(text.replace('executor = "local"', f'executor = "{executor}"'),
                        encoding="utf-8")
        result = Project.open(tmp_path / executor).predict(folds=2, epochs=2, on_fold=said.append)
        stored[executor] = project.store.latest_predictions(result.version.version).probs
    pd.testing.assert_frame_equal(stored["local"], stored["ray"])
    # 3 fold seeds x 2 folds, from the second (the local pool's say where="here")
    assert sum(isinstance(m, FoldStarted) and m.where == "ray" for m in said) == 6

    toml.write_text(text.replace('executor = "local"', 'executor = "spark"'), encoding="utf-8")
    with pytest.raises(ConfigError, match='executor must be "local" or "ray", not \'spark\''):
        Project.open(tmp_path / "ray").predict(folds=2, epochs=2)
