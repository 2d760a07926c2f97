"""Level meters and tone detection on PCM frames. Pure numpy, no clock of its own."""

from __future__ import annotations

import math

import numpy as np

from voice.audio_io import RATE

FLOOR_DB = -90.0


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); FLOOR_DB for silence."""
    if samples.size == 0:
        return FLOOR_DB
    r = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(FLOOR_DB, 20 * math.log10(r)) if r > 0 else FLOOR_DB


def peak_dbfs(samples: np.ndarray) -> float:
    p = float(np.max(np.abs(samples))) if samples.size else 0.0
    return max(FLOOR_DB, 20 * math.log10(p)) if p > 0 else FLOOR_DB


class Meter:
    """A level meter as people read them: instant rise, 20 dB/s fall, and a peak that holds 1 s."""

    def __init__(self, fall_db_s: float = 20.0, hold_ns: int = 1_000_000_000) -> None:
        self.fall_db_s = fall_db_s
        self.hold_ns = hold_ns
        self.level_db = FLOOR_DB
        self.peak_db = FLOOR_DB
        self._peak_ns = 0
        self._last_ns: int | None = None

    def feed(self, samples: np.ndarray, now_ns: int) -> float:
        level = rms_dbfs(samples)
        dt = 0.0 if self._last_ns is None else max(0, now_ns - self._last_ns) / 1e9
        self._last_ns = now_ns
        self.level_db = max(level, self.level_db - self.fall_db_s * dt, FLOOR_DB)
        pk = peak_dbfs(samples)
        if pk >= self.peak_db or now_ns - self._peak_ns > self.hold_ns:
            self.peak_db, self._peak_ns = pk, now_ns
        return self.level_db


def tone_power(samples: np.ndarray, freq_hz: float, rate: int = RATE) -> float:
    """Fraction of the frame's energy at `freq_hz` (Goertzel): ~1 for that pure tone, ~0 for others/noise."""
    n = samples.size
    energy = float(np.sum(np.square(samples, dtype=np.float64)))
    if n == 0 or energy <= 1e-12:
        return 0.0
    t = np.arange(n) / rate
    c = float(np.dot(samples, np.cos(2 * np.pi * freq_hz * t)))
    s = float(np.dot(samples, np.sin(2 * np.pi * freq_hz * t)))
    return min(1.0, 2 * (c * c + s * s) / n / energy)


class OnsetDetector:
    """The ear of a mouth-to-ear measurement: reports the time a tone burst starts in a stream of frames.

    `feed(frame, t_ns)` (t_ns: when the frame's first sample is heard) returns the onset time or None. An
    onset is the first sample above `threshold` after at least `quiet_ms` of quiet, in a frame whose energy
    is mostly at `freq_hz` (concealment noise and clicks do not count)."""

    def __init__(self, freq_hz: float = 1000.0, threshold: float = 0.05, quiet_ms: float = 100.0) -> None:
        self.freq_hz = freq_hz
        self.threshold = threshold
        self.quiet_samples = int(quiet_ms * RATE / 1000)
        self._quiet = self.quiet_samples
        self._pending: tuple[int, np.ndarray] | None = None

    WINDOW = 240
    """Samples after a candidate onset that must be mostly the tone (5 ms; may reach into the next frame)."""

    def feed(self, frame: np.ndarray, t_ns: int) -> int | None:
        found = None
        if self._pending is not None:
            onset, head = self._pending
            self._pending = None
            seg = np.concatenate([head, frame[: self.WINDOW - head.size]])
            if tone_power(seg, self.freq_hz) > 0.5:
                found = onset
        above = np.flatnonzero(np.abs(frame) > self.threshold)
        if above.size == 0:
            self._quiet += frame.size
            return found
        first = int(above[0])
        if self._quiet + first >= self.quiet_samples:
            onset = t_ns + first * 1_000_000_000 // RATE
            seg = frame[first:first + self.WINDOW]
            if seg.size == self.WINDOW:
                if tone_power(seg, self.freq_hz) > 0.5:
                    found = onset
            else:
                self._pending = (onset, seg.copy())
        self._quiet = frame.size - 1 - int(above[-1])
        return found
