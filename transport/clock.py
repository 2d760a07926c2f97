"""Clock estimators for two hosts whose monotonic clocks share no epoch.

OffsetEstimator (console): NTP-style, from the four timestamps of every command→ack round trip;
offset = ((t2 − t1) + (t3 − t4)) / 2, delay = (t4 − t1) − (t3 − t2); the sample with the least delay in a
sliding window wins, which rejects queueing noise and follows drift.

DelayBaseline (bedside): the smallest (receive − send) seen recently is offset + best one-way delay; how
far a command exceeds it is how long it sat in a queue. That finds a delivered backlog without
synchronised clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    offset_ns: int  # remote clock − local clock
    delay_ns: int  # round-trip network delay, excluding the remote's processing
    at_ns: int  # local time the sample was taken


class _WindowMin:
    """Minimum of values over a sliding time window, in buckets so updates are O(1)."""

    def __init__(self, window_ns: int, buckets: int) -> None:
        self.bucket_ns = max(1, window_ns // buckets)
        self.buckets: deque[tuple[int, object, int]] = deque(maxlen=buckets)  # (bucket id, item, key)
        self._cached: tuple[int, tuple[object, int] | None] | None = None

    def add(self, now_ns: int, key: int, item: object) -> None:
        bid = now_ns // self.bucket_ns
        if self.buckets and self.buckets[-1][0] == bid:
            if key < self.buckets[-1][2]:
                self.buckets[-1] = (bid, item, key)
        else:
            self.buckets.append((bid, item, key))
            self._cached = None  # a bucket may have fallen out of the window
            return
        cached = self._cached
        if cached is not None and cached[1] is not None and key < cached[1][1]:
            self._cached = (cached[0], (item, key))  # a new minimum: O(1) instead of a rescan

    def best(self, now_ns: int) -> tuple[object, int] | None:
        oldest = now_ns // self.bucket_ns - (self.buckets.maxlen or 1) + 1
        if self._cached is not None and self._cached[0] == oldest:
            return self._cached[1]
        result = self._best(oldest)
        self._cached = (oldest, result)
        return result

    def _best(self, oldest: int) -> tuple[object, int] | None:
        live = [(k, it) for b, it, k in self.buckets if b >= oldest]
        if not live:
            return None
        k, it = min(live, key=lambda x: x[0])
        return it, k


class OffsetEstimator:
    def __init__(self, window_ns: int = 10_000_000_000, buckets: int = 10) -> None:
        self._win = _WindowMin(window_ns, buckets)
        self.last: ClockSample | None = None

    def add(self, t1: int, t2: int, t3: int, t4: int) -> ClockSample | None:
        """t1 local send, t2 remote receive, t3 remote send, t4 local receive. Rejects impossible samples."""
        delay = (t4 - t1) - (t3 - t2)
        if t4 < t1 or t3 < t2 or delay < 0:
            return None
        s = ClockSample(((t2 - t1) + (t3 - t4)) // 2, delay, t4)
        self.last = s
        self._win.add(t4, delay, s)
        return s

    def best(self, now_ns: int) -> ClockSample | None:
        """The least-delay sample of the window: the most trustworthy offset."""
        r = self._win.best(now_ns)
        return None if r is None else r[0]  # type: ignore[return-value]


class DelayBaseline:
    def __init__(self, window_ns: int = 10_000_000_000, buckets: int = 10) -> None:
        self._win = _WindowMin(window_ns, buckets)

    def queued_ns(self, rx_ns: int, send_ns: int) -> int:
        """Queueing delay of this message beyond the best recent transit (0 for a fresh message, or when none was
        added recently). Adds nothing: a receiver that must not learn from every message judges first, then `add`s."""
        best = self._win.best(rx_ns)
        if best is None:
            return 0
        queued = rx_ns - send_ns - best[1]  # transit beyond the best; `max(0, ·)` without a builtin call (1 kHz)
        return queued if queued > 0 else 0

    def add(self, rx_ns: int, send_ns: int) -> None:
        """A message whose transit may set the baseline."""
        self._win.add(rx_ns, rx_ns - send_ns, None)

    def excess_ns(self, rx_ns: int, send_ns: int) -> int:
        """`add` this message, then its `queued_ns`: for a receiver that learns from every message it measures."""
        self.add(rx_ns, send_ns)
        return self.queued_ns(rx_ns, send_ns)
