"""Operator-presence debounce: the head sensor, pedal or key that says a surgeon is at the console.

Pure. Asymmetric on purpose: absence must persist only `off_ns` (tens of ms, enough to ride over a
contact bounce or a flicker of an infrared head sensor) before the arms hold, because motion without a
surgeon is the hazard; presence must persist `on_ns` (a deliberate ~0.2 s) before it counts, so a brush of
the sensor cannot make the console ready. Regaining presence never resumes motion by itself: the
controller still needs an explicit engage.
"""

from __future__ import annotations


class PresenceDebouncer:
    def __init__(self, on_ns: int, off_ns: int) -> None:
        if on_ns < 0 or off_ns < 0:
            raise ValueError("debounce times must not be negative")
        self.on_ns = on_ns
        self.off_ns = off_ns
        self.present = False
        self._raw = False
        self._raw_since_ns: int | None = None

    def update(self, now_ns: int, raw: bool) -> bool:
        """Feed the raw input level at `now_ns`; returns the debounced presence."""
        if raw != self._raw or self._raw_since_ns is None:
            self._raw = raw
            self._raw_since_ns = now_ns
        if raw != self.present:
            need = self.on_ns if raw else self.off_ns
            if now_ns - self._raw_since_ns >= need:
                self.present = raw
        return self.present
