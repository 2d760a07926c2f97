"""safety.presence: asymmetric debounce of the operator-presence input."""

from __future__ import annotations

import pytest

from safety.presence import PresenceDebouncer

MS = 1_000_000


def test_presence_needs_on_time_and_absence_needs_off_time() -> None:
    d = PresenceDebouncer(on_ns=200 * MS, off_ns=30 * MS)
    assert d.update(0, True) is False
    assert d.update(199 * MS, True) is False
    assert d.update(200 * MS, True) is True
    assert d.update(300 * MS, False) is True
    assert d.update(329 * MS, False) is True
    assert d.update(330 * MS, False) is False


def test_bounces_shorter_than_the_debounce_are_ignored() -> None:
    d = PresenceDebouncer(on_ns=0, off_ns=30 * MS)
    d.update(0, True)
    for t in range(1, 200, 20):  # 10 ms dropouts every 20 ms
        assert d.update(t * MS, False) is True
        assert d.update((t + 10) * MS, True) is True


def test_a_brush_of_the_sensor_does_not_count_as_presence() -> None:
    d = PresenceDebouncer(on_ns=200 * MS, off_ns=30 * MS)
    d.update(0, True)
    d.update(100 * MS, False)
    assert d.update(250 * MS, True) is False
    assert d.update(449 * MS, True) is False
    assert d.update(450 * MS, True) is True


def test_negative_times_are_refused() -> None:
    with pytest.raises(ValueError):
        PresenceDebouncer(-1, 0)
