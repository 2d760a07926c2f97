"""The fixed-memory histogram behind run summaries agrees with exact nearest-rank percentiles."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from base.stats import Histogram, percentiles


def _both(values_ns: list[int]) -> tuple[dict, dict]:
    h = Histogram()
    for v in values_ns:
        h.add_ns(v)
    return percentiles([v / 1e3 for v in values_ns], with_max=True), h.percentiles(with_max=True)


@given(st.lists(st.integers(min_value=0, max_value=3_600_000_000_000), min_size=1, max_size=300))
def test_histogram_percentiles_are_within_one_bin_of_the_exact_ones(values_ns):
    exact, approx = _both(values_ns)
    assert approx["n"] == exact["n"] and approx["max"] == exact["max"]
    for k in ("p50", "p99", "p999"):
        tolerance = max(1.0, exact[k] / 256)  # 1 µs below 4.096 ms, 1/256 above
        assert abs(approx[k] - exact[k]) <= tolerance, (k, exact, approx)


def test_histogram_memory_does_not_grow_with_the_sample():
    h = Histogram()
    size = len(h.counts)
    rng = random.Random(1)
    for _ in range(100_000):
        h.add_ns(int(rng.expovariate(1 / 400_000)))
    h.add_ns(10**15)  # longer than the last bin: counted there, max still exact
    assert len(h.counts) == size and h.n == 100_001 and h.percentiles(with_max=True)["max"] == 10**12


def test_empty_histogram_reports_none_like_percentiles():
    assert Histogram().percentiles(with_max=True) == percentiles([], with_max=True)
