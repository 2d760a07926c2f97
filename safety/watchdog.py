"""A deadline watchdog, the same on both ends of the link.

Pure: it is fed `now_ns` and never reads a clock. It trips once per arming (an edge, so the caller
logs one transition), and stays tripped until it is explicitly re-armed: nothing resumes by itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WatchdogTrip:
    """The watchdog fired: `silence_ns` since the last feed, at `now_ns`."""

    now_ns: int
    last_feed_ns: int
    silence_ns: int


class Watchdog:
    def __init__(self, timeout_ns: int) -> None:
        if timeout_ns <= 0:
            raise ValueError(f"watchdog timeout must be positive, got {timeout_ns} ns")
        self.timeout_ns = timeout_ns
        self.armed = False
        self.tripped = False
        self.last_feed_ns = 0
        self._first_timeout_ns = timeout_ns
        self._fed = True

    def arm(self, now_ns: int, first_timeout_ns: int | None = None) -> None:
        """Start guarding from `now_ns` (a fresh session); clears a previous trip.

        `first_timeout_ns` (≥ timeout) applies until the first feed: the first message of a session can only
        arrive a round trip after the session was granted, and nothing moves before it does.
        """
        self.armed = True
        self.tripped = False
        self.last_feed_ns = now_ns
        self._first_timeout_ns = max(self.timeout_ns, first_timeout_ns or 0)
        self._fed = False

    def disarm(self) -> None:
        """Stop guarding (nothing to protect: arms disabled or already held)."""
        self.armed = False

    def feed(self, now_ns: int) -> None:
        """A valid message arrived. Ignored once tripped: only `arm` starts a new session."""
        if self.armed and not self.tripped and now_ns >= self.last_feed_ns:
            self.last_feed_ns = now_ns
            self._fed = True

    def _timeout(self) -> int:
        return self.timeout_ns if self._fed else self._first_timeout_ns

    def deadline_ns(self) -> int | None:
        """When the watchdog will trip if not fed; None when it cannot trip."""
        if not self.armed or self.tripped:
            return None
        return self.last_feed_ns + self._timeout()

    def check(self, now_ns: int) -> WatchdogTrip | None:
        """Returns the trip exactly once, at the first check at or past the deadline."""
        if not self.armed or self.tripped:
            return None
        silence = now_ns - self.last_feed_ns
        if silence < self._timeout():
            return None
        self.tripped = True
        return WatchdogTrip(now_ns, self.last_feed_ns, silence)
