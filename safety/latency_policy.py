"""What the console does about round-trip time: warn and slow down, then stop; resume only when settled.

Pure; fed the engine's RTT estimate (ms, None before the first ack) and `now_ns`.

    RTT <= warn            factor 1, OK
    warn < RTT < hard      WARN: factor = 1 - (1 - min_factor) * smoothstep((RTT - warn) / (hard - warn))
    RTT >= hard            HARD: following stops and the arms hold (a trip)

smoothstep(x) = 3x² - 2x³ has zero slope at both ends, so the scale starts to fall gently as the link
degrades and lands gently on `min_factor`; it is continuous in RTT and the controller re-anchors the
mapping whenever the factor changes, so a changing factor never makes the tool jump.

After a trip, `may_engage` stays False until the RTT has stayed below `warn` for `settle_ns` without a
break: a link that flaps between good and bad never lets the surgeon re-engage into the next spike.
docs/teleoperation.md argues the defaults (100 ms / 250 ms / 0.5 / 2 s) from published figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LatencyLevel(StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    WARN = "warn"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class LatencyStatus:
    level: LatencyLevel
    factor: float
    """Multiplier on the motion scale."""
    rtt_ms: float | None
    tripped: bool
    """A hard trip that has not settled yet."""
    may_engage: bool
    text: str


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


class LatencyPolicy:
    def __init__(self, warn_ms: float, hard_ms: float, min_factor: float, settle_ns: int) -> None:
        if not 0.0 < warn_ms < hard_ms:
            raise ValueError(f"need 0 < warn_ms < hard_ms, got {warn_ms}, {hard_ms}")
        if not 0.0 < min_factor <= 1.0:
            raise ValueError(f"min_factor must be in (0, 1], got {min_factor}")
        self.warn_ms = warn_ms
        self.hard_ms = hard_ms
        self.min_factor = min_factor
        self.settle_ns = settle_ns
        self.tripped = False
        self._good_since_ns: int | None = None

    def factor(self, rtt_ms: float | None) -> float:
        """The documented curve: motion-scale multiplier as a function of RTT alone."""
        if rtt_ms is None or rtt_ms <= self.warn_ms:
            return 1.0
        x = (rtt_ms - self.warn_ms) / (self.hard_ms - self.warn_ms)
        return 1.0 - (1.0 - self.min_factor) * smoothstep(x)

    def update(self, now_ns: int, rtt_ms: float | None) -> LatencyStatus:
        if rtt_ms is None:
            level = LatencyLevel.UNKNOWN
        elif rtt_ms >= self.hard_ms:
            level = LatencyLevel.HARD
        elif rtt_ms > self.warn_ms:
            level = LatencyLevel.WARN
        else:
            level = LatencyLevel.OK
        if level is LatencyLevel.HARD:
            self.tripped = True
        if level is LatencyLevel.OK:
            if self._good_since_ns is None:
                self._good_since_ns = now_ns
            if self.tripped and now_ns - self._good_since_ns >= self.settle_ns:
                self.tripped = False
        elif level is not LatencyLevel.UNKNOWN:
            self._good_since_ns = None
        return LatencyStatus(level, self.factor(rtt_ms), rtt_ms, self.tripped, not self.tripped,
                             self._text(now_ns, level, rtt_ms))

    def _text(self, now_ns: int, level: LatencyLevel, rtt_ms: float | None) -> str:
        if level is LatencyLevel.HARD:
            return f"link RTT {rtt_ms:.0f} ms above {self.hard_ms:.0f} ms: following stopped"
        if self.tripped:
            good = 0.0 if self._good_since_ns is None else (now_ns - self._good_since_ns) / 1e9
            return (f"link RTT {rtt_ms if rtt_ms is not None else float('nan'):.0f} ms: wait until it stays "
                    f"below {self.warn_ms:.0f} ms for {self.settle_ns / 1e9:.1f} s ({good:.1f} s so far)")
        if level is LatencyLevel.WARN:
            return (f"link RTT {rtt_ms:.0f} ms above {self.warn_ms:.0f} ms: motion scaled by "
                    f"{self.factor(rtt_ms):.2f}")
        return ""
