"""safety.latency_policy: the scale curve, the hard stop, and the settle time before re-engaging."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.latency_policy import LatencyLevel, LatencyPolicy, smoothstep

MS = 1_000_000


def policy(settle_ms: float = 2000.0) -> LatencyPolicy:
    return LatencyPolicy(100.0, 250.0, 0.5, int(settle_ms * MS))


def test_curve_endpoints_and_shape() -> None:
    p = policy()
    assert p.factor(None) == 1.0 and p.factor(0.0) == 1.0 and p.factor(100.0) == 1.0
    assert p.factor(175.0) == pytest.approx(0.75)
    assert p.factor(250.0) == pytest.approx(0.5) and p.factor(1e6) == pytest.approx(0.5)
    assert smoothstep(-1) == 0.0 and smoothstep(2) == 1.0


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1000), st.floats(0, 1000))
def test_curve_is_monotone_and_gentle(a: float, b: float) -> None:
    p = policy()
    lo, hi = sorted((a, b))
    assert p.factor(hi) <= p.factor(lo)
    # max slope of the smoothstep curve: 1.5 · (1 - min) / (hard - warn) per ms
    assert abs(p.factor(hi) - p.factor(lo)) <= 1.5 * 0.5 / 150.0 * (hi - lo) + 1e-12


def test_levels() -> None:
    p = policy()
    assert p.update(0, None).level is LatencyLevel.UNKNOWN
    assert p.update(1, 40.0).level is LatencyLevel.OK
    s = p.update(2, 150.0)
    assert s.level is LatencyLevel.WARN and s.may_engage and "scaled" in s.text
    s = p.update(3, 260.0)
    assert s.level is LatencyLevel.HARD and s.tripped and not s.may_engage


def test_after_a_trip_engage_waits_for_an_unbroken_settle_below_warn() -> None:
    p = policy(settle_ms=2000)
    p.update(0, 300.0)
    t = 1 * MS
    assert not p.update(t, 50.0).may_engage
    assert not p.update(t + 1999 * MS, 50.0).may_engage
    assert not p.update(t + 2000 * MS, 120.0).may_engage  # a warn-level sample restarts the settle clock
    t2 = t + 2001 * MS
    assert not p.update(t2, 50.0).may_engage
    s = p.update(t2 + 1000 * MS, 50.0)
    assert not s.may_engage and "wait until it stays below" in s.text
    assert p.update(t2 + 2000 * MS, 50.0).may_engage


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        LatencyPolicy(200.0, 100.0, 0.5, 0)
    with pytest.raises(ValueError):
        LatencyPolicy(100.0, 200.0, 0.0, 0)
