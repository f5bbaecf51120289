"""bench_predict_scale's floor arithmetic: the mean of the small size's runs (before and after
the full one) against the full one's."""

from __future__ import annotations

import pytest

from bench.bench_predict_scale import time_share


def test_a_steady_drift_cancels_in_the_mean_of_the_sandwich() -> None:
    # The machine slows by 10% over the three runs: 180 s before, 198 s after the 720 s run.
    share, singles = time_share({600: [180.0, 198.0], 2880: [720.0]})
    assert share == pytest.approx(189 / 720)
    assert singles == pytest.approx([0.25, 0.275])


def test_one_run_of_each_size_is_a_plain_ratio() -> None:
    share, singles = time_share({2880: [700.0], 600: [175.0]})
    assert share == pytest.approx(0.25)
    assert singles == pytest.approx([0.25])
