"""Force playout: the bedside's force samples released at the spacing it measured them, not in the bunches a
jittery link delivers them in. Pure (now passed in).

Why: telemetry leaves the bedside every millisecond, but over a link with jitter a TCP stream keeps order, so a
late segment holds back the ones behind it and several samples arrive at once. A 1 kHz control tick that takes
the newest sample turns such a bunch into one force: over a 200 ms RTT link the master got 399–424 new forces a
second (issue #17 asks ≥ 500), and even on a LAN the two 1 kHz clocks beating against each other cost a third.

What it does: every sample waits until `measured + target`, where `target` is the earliest transit
(arrival − measurement, console clock) seen over the last `window` samples plus their arrival spread (95th
percentile of the excess over that earliest: `base.stats.arrival_spread`, as the voice jitter buffer sizes
itself), the spread capped at `max_delay_ns`. Each tick then releases the oldest sample that is due: one new
force per tick, in measurement order. The price is that small extra delay, which the force age reports.

Rules:
- a sample not newer than the last one pushed (a duplicate, or out of order) is dropped (`dropped_old`);
- a due sample more than `late_ns` past its time is skipped when a newer one is due too (`skipped_late`): the
  buffer never builds a backlog, so the delay stays bounded by target + late_ns;
- a sample without a measurement time (the console does not know the bedside's clock yet) or with
  `max_delay_ns` = 0 is released at once, the newest replacing any older waiting one (no playout);
- at most `capacity` samples wait; a longer queue loses its oldest.
The stale guard stays with the receive time: a released sample carries its arrival time (`rx_ns`), so a stream
that stops still fades out on time (console/force.py; `force_playout_ms` < `force_stale_ms` by configuration).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from base.geometry import Vec3
from base.stats import arrival_spread


class ForceSample(NamedTuple):
    measured_ns: int
    """When the bedside measured it, on the console's clock (its arrival time if that clock is not known)."""
    rx_ns: int
    forces: tuple[Vec3, Vec3]


class ForcePlayout:
    def __init__(self, max_delay_ns: int, window: int = 1000, retarget_every: int = 100,
                 late_ns: int = 2_000_000, capacity: int = 256) -> None:
        self.max_delay_ns = max_delay_ns
        self.late_ns = late_ns
        self.retarget_every = retarget_every
        self._transit: deque[int] = deque(maxlen=window)
        self._q: deque[ForceSample] = deque(maxlen=capacity)
        self._last_measured: int | None = None
        self._now: ForceSample | None = None
        """An untimed sample (or no playout): released at the next tick."""
        self._pushed = 0
        self.target_ns = 0
        """Transit a sample is held to (earliest transit + spread); the spread is `delay_ns`."""
        self.delay_ns = 0
        """The spread this playout adds to the earliest transit, ≤ max_delay_ns."""
        self.released = 0
        self.skipped_late = 0
        self.dropped_old = 0

    def push(self, sample: ForceSample, timed: bool = True) -> None:
        """One sample as it arrives; `timed` = its measurement time is on the console's clock."""
        if self.max_delay_ns <= 0 or not timed:
            self._q.clear()
            self._now = sample
            return
        if self._last_measured is not None and sample.measured_ns <= self._last_measured:
            self.dropped_old += 1
            return
        self._last_measured = sample.measured_ns
        self._transit.append(sample.rx_ns - sample.measured_ns)
        self._pushed += 1
        if self._pushed % self.retarget_every == 1:
            self._retarget()
        self._q.append(sample)

    def _retarget(self) -> None:
        self.delay_ns = min(arrival_spread(self._transit), self.max_delay_ns)
        self.target_ns = min(self._transit) + self.delay_ns

    def pop(self, now_ns: int) -> ForceSample | None:
        """This tick's new sample, or None (the previous one stands)."""
        if self._now is not None:
            sample, self._now = self._now, None
            self.released += 1
            return sample
        q, due_at = self._q, now_ns - self.target_ns  # a sample is due once measured_ns <= due_at
        if not q or q[0].measured_ns > due_at:
            return None
        while len(q) > 1 and q[1].measured_ns <= due_at and due_at - q[0].measured_ns > self.late_ns:
            q.popleft()
            self.skipped_late += 1
        self.released += 1
        return q.popleft()

    def stats(self) -> dict:
        return {"delay_ms": round(self.delay_ns / 1e6, 3), "released": self.released,
                "skipped_late": self.skipped_late, "dropped_old": self.dropped_old, "waiting": len(self._q)}
