"""Conformance: every request a push, a pull, a publish, a watch cycle (pull, score row,
republish with a new and a gone image) and a column write of the report's kind sends goes
through the stand-in's checks of Google's documented rules (tests/_sheets_standin.py,
docs/google.md ("Google's rules and the stand-in")), quota included (60 reads and 60 writes a minute per user, on the real
clock), and none is refused."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from sheetsync.watch import Watcher, WatchSettings

try:
    from tests._google_project import BOT, init_google_project
    from tests._sheets_standin import SheetsStandin
    from tests.test_google_backend import table
    from tests.test_google_rules import REVIEWED, clock, key, make_backend, rule_refusals  # noqa: F401
    from tests.test_publish import BUCKET, gcs, open_project  # noqa: F401
    from tests.test_watch import alice, fake_trainer, type_cells
except ImportError:  # tests/ is not a package
    from _google_project import BOT, init_google_project
    from _sheets_standin import SheetsStandin
    from test_google_backend import table
    from test_google_rules import REVIEWED, clock, key, make_backend, rule_refusals  # noqa: F401
    from test_publish import BUCKET, gcs, open_project  # noqa: F401
    from test_watch import alice, fake_trainer, type_cells


@pytest.fixture
def api():
    with SheetsStandin() as server:  # Google's quota on the real clock
        yield server


def conforms(api: SheetsStandin) -> None:
    assert rule_refusals(api) == [], "the stand-in refused requests Google would refuse"
    assert not [r for r in api.refused if r[1] == 429], "past Google's per-minute quota"


@pytest.mark.parametrize("publish", [False, True], ids=["plain", "publish"])
def test_push_pull_watch_and_column_writes_pass_googles_rules(
        request: pytest.FixtureRequest, api: SheetsStandin, data_root: Path, tmp_path: Path,
        publish: bool) -> None:
    from PIL import Image

    settings = {}
    if publish:
        server = request.getfixturevalue("gcs")
        settings = {"bucket": BUCKET, "endpoint": server.url}
    proj = init_google_project(api, data_root, tmp_path / "proj", publish=settings or None,
                               max_retries=2)
    project = open_project(api, proj)
    project.push()
    sheet = project.backend.read_table().set_index("id")
    ids = list(sheet.index)
    type_cells(alice(api, project), {ids[2]: {"note": "mine", "label": "iii"}})
    root = project.config.root
    (root / sheet.at[ids[0], "path"]).unlink()  # a gone image
    Image.open(root / sheet.at[ids[1], "path"]).rotate(90).save(root / "val/ii/new.png")
    project = open_project(api, proj)
    watcher = Watcher(project, WatchSettings(quiet=0), lambda e: None, fake_trainer(project))
    actions = [watcher.cycle() for _ in range(5)]
    assert "pull" in actions and "train" in actions and "republish" in actions
    after = project.backend.read_table().set_index("id")
    assert len(after) == len(sheet) + 1 and after.index.is_unique  # the new image on one row
    assert len(project.backend.read_scores()) == 1  # one training, one score row
    # The report's columns (map_x, map_y, cluster) written as sheetsync's own columns,
    # matched by id, as a republish writes them (`sheetsync report` itself sends nothing).
    _, layout, _, _ = project.review_table()
    n = len(after)
    cols = pd.DataFrame({"map_x": [0.5 * i for i in range(n)], "map_y": [-1.25] * n,
                         "cluster": [i % 3 for i in range(n)]}, index=after.index)
    result = project.backend.update_own_columns(cols, layout)
    assert result.updated == n and result.missing_columns == ()
    project.push(force=True)  # and a push over the watched sheet
    conforms(api)


# 10,000 rows: about 70 s on the shared 2-core machine (the stand-in's per-cell checks).
@pytest.mark.parametrize("rows", [200, pytest.param(10_000, marks=pytest.mark.slow)])
def test_a_big_sheet_pushed_pulled_republished_and_scored_passes_googles_rules(
        api: SheetsStandin, make_backend, rows: int) -> None:  # noqa: F811
    sid = api.create_spreadsheet("big", shared_with=[BOT])
    backend = make_backend(sid)
    api.clock = time.monotonic
    started = time.monotonic()
    data = table(rows)
    backend.write_table(data, REVIEWED)
    assert len(backend.read_table()) == rows
    updates = pd.DataFrame({"predicted": ["ii"] * rows}, index=data["id"])
    extra = table(rows + 5).iloc[rows:]
    assert backend.update_own_columns(updates, REVIEWED, append=extra).appended == 5
    backend.append_score({"version": 1, "test_accuracy": 0.5})
    backend.write_table(table(rows + 5), REVIEWED)
    conforms(api)
    print(f"{rows} rows: {time.monotonic() - started:.1f}s, {backend.usage()}")
