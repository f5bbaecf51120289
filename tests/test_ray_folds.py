"""[review] executor = "ray": each fold a Ray task carrying its inputs, on a local Ray instance
started here (no network), with the results of the local pool and cached the same way."""

from __future__ import annotations

import os
from pathlib import Path

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
