"""The demo's honest parts: the scripted reviewer reads only the first rows; the interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from openpyxl import load_workbook

from sheetsync.demo import _verdict, make_dataset, paired_bootstrap, review_first_rows
from sheetsync.project import Project
from sheetsync.sheets.local import header_row


def test_reviewer_fixes_only_what_is_in_the_rows_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    truth = make_dataset(data, per_class={"train": 6, "val": 2}, classes=["i", "ii", "iii"],
                         wrong=5, label_book=1)
    project, _ = Project.init(data, tmp_path)
    project.push()
    workbook = tmp_path / "sheetsync.xlsx"
    review = review_first_rows(workbook, truth, fraction=0.5)
    assert review.rows == 25 and review.read == 12  # 18 train + the blank one + 6 val
    ws = load_workbook(workbook)["data"]
    top = header_row(ws)  # below the info line
    header = [c.value for c in ws[top]]
    path_col, label_col = header.index("path") + 1, header.index("label") + 1
    paths = [ws.cell(r, path_col).value for r in range(top + 1, ws.max_row + 1)]
    labels = [ws.cell(r, label_col).value for r in range(top + 1, ws.max_row + 1)]
    read, rest = range(review.read), range(review.read, review.rows)
    assert review.wrong_in_read == sum(paths[k] in truth.wrong for k in read)
    assert len(review.relabelled) == review.wrong_in_read
    for k in read:
        if paths[k] in truth.wrong:
            assert labels[k] == truth.wrong[paths[k]]
    for k in rest:  # rows below the ones read are untouched
        assert labels[k] == paths[k].split("/")[1]
    result = project.pull()
    assert result.version is not None and result.edited == len(review.relabelled) + len(review.dropped)


def test_paired_bootstrap_interval() -> None:
    rng = np.random.default_rng(1)
    before = (rng.random(200) < 0.6).astype(float)
    assert paired_bootstrap(before, before) == (0.0, 0.0)
    better = before.copy()
    better[np.flatnonzero(before == 0)[:40]] = 1  # 40 of 200 more right: +0.20
    lo, hi = paired_bootstrap(before, better)
    assert 0.1 < lo < 0.2 < hi < 0.3
    one_more = before.copy()
    one_more[np.flatnonzero(before == 0)[0]] = 1  # one image: +0.005
    lo, hi = paired_bootstrap(before, one_more)
    # The image is left out of over a third of the resamples: the interval starts at 0.
    assert lo == 0.0 and hi > 0


def test_verdict_says_when_a_difference_is_within_noise() -> None:
    before = np.array([1, 0] * 50, dtype=float)
    after = before.copy()
    after[1] = 1
    lines = _verdict(before, after)
    assert "+0.010" in lines[0] and "within noise" in lines[2]
    after = np.ones(100)
    assert "larger than its noise" in _verdict(before, after)[2]


def test_bootstrap_holds_the_seed_noise() -> None:
    rng = np.random.default_rng(2)
    base = (rng.random(200) < 0.7).astype(float)
    flip = np.flatnonzero(base == 0)
    better = base.copy()
    better[flip[:10]] = 1  # +0.05 on one seed
    worse = base.copy()
    worse[np.flatnonzero(base == 1)[:30]] = 0  # another seed of the same version: -0.15
    one_seed = paired_bootstrap(base, better)
    two_seeds = paired_bootstrap([base, base], [better, worse])
    assert one_seed[0] > 0  # one seed each: looks like a gain
    assert two_seeds[0] < 0 < two_seeds[1]  # the seeds disagree: within noise
