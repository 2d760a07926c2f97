"""The alarm sounds of IEC 60601-1-8, as data and as samples: which pulses, when, at what pitch.

Pure: no device, no clock. `PATTERNS` says for each priority when each pulse of a burst starts, how long it
lasts and how often the burst repeats; `burst_samples` turns one burst into numpy samples (a fundamental
and harmonics under a rise/fall envelope). The sounder (console/alarm_sound.py) decides which priority
sounds; a player (console/alarm_audio.py) plays these samples.

The standard's pattern, as commonly cited (GUIDE §13), and the figures chosen here inside its ranges:

    high    10 pulses: x-x-x--x-x, pause, x-x-x--x-x   pulse 150 ms, spacing 100 ms, repeat every 5 s, 880 Hz
    medium   3 pulses: x-x-x                           pulse 200 ms, spacing 200 ms, repeat every 8 s, 660 Hz
    low      2 pulses: x-x                             pulse 200 ms, spacing 200 ms, repeat every 20 s, 440 Hz

(pulse: 75–200 ms high, 125–250 ms medium and low; spacing between pulses: 50–125 ms high, 125–250 ms
medium and low; high's gap between its 3rd and 4th pulse is 2 spacings + 1 pulse, between its 5th and 6th
0.35–1.3 s; fundamental 150–1000 Hz with at least four components between 300 and 4000 Hz). Each priority
has its own pitch as well as its own rhythm, so a listener tells them apart either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

SAMPLE_RATE = 48_000
HARMONICS = (1.0, 0.5, 0.35, 0.25)
"""Relative amplitudes of the fundamental and its 2nd–4th harmonics (four components within 300–4000 Hz for
every pitch below)."""


class Priority(IntEnum):
    """IEC 60601-1-8 alarm priority: high needs immediate response, medium prompt, low awareness."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True, slots=True)
class Pattern:
    priority: Priority
    f0_hz: float
    pulse_ms: float
    onsets_ms: tuple[float, ...]  # when each pulse starts, from the burst's start
    repeat_s: float  # from one burst's start to the next
    rise_ms: float = 15.0  # rise and fall of each pulse (no clicks)

    @property
    def burst_ms(self) -> float:
        """From the first pulse's start to the last pulse's end."""
        return self.onsets_ms[-1] + self.pulse_ms


def _onsets(pulse_ms: float, spacing_ms: float, groups: tuple[int, ...], group_gap_ms: tuple[float, ...]) -> tuple[
        float, ...]:
    """Pulse start times for groups of pulses: inside a group one spacing apart; `group_gap_ms[i]` of silence
    after group i."""
    out: list[float] = []
    t = 0.0
    for i, n in enumerate(groups):
        for k in range(n):
            out.append(t)
            t += pulse_ms + (spacing_ms if k < n - 1 else 0.0)
        if i < len(group_gap_ms):
            t += group_gap_ms[i]
    return tuple(out)


_HIGH_PULSE, _HIGH_SPACING = 150.0, 100.0
PATTERNS: dict[Priority, Pattern] = {
    Priority.HIGH: Pattern(Priority.HIGH, 880.0, _HIGH_PULSE, _onsets(
        _HIGH_PULSE, _HIGH_SPACING, (3, 2, 3, 2),
        (2 * _HIGH_SPACING + _HIGH_PULSE, 700.0, 2 * _HIGH_SPACING + _HIGH_PULSE)), 5.0),
    Priority.MEDIUM: Pattern(Priority.MEDIUM, 660.0, 200.0, _onsets(200.0, 200.0, (3,), ()), 8.0),
    Priority.LOW: Pattern(Priority.LOW, 440.0, 200.0, _onsets(200.0, 200.0, (2,), ()), 20.0),
}


def burst_samples(pattern: Pattern, volume: float = 0.5, rate: int = SAMPLE_RATE) -> np.ndarray:
    """One burst as float32 mono samples in [-volume, volume]: every pulse of `pattern`, silence between."""
    if not 0.0 <= volume <= 1.0:
        raise ValueError(f"volume {volume} outside 0..1")
    n = round(pattern.burst_ms * rate / 1000)
    out = np.zeros(n, dtype=np.float32)
    pulse = _pulse(pattern, rate) * volume
    for onset in pattern.onsets_ms:
        i = round(onset * rate / 1000)
        out[i:i + len(pulse)] += pulse[: n - i]
    return out


def _pulse(pattern: Pattern, rate: int) -> np.ndarray:
    n = round(pattern.pulse_ms * rate / 1000)
    t = np.arange(n) / rate
    wave = sum(a * np.sin(2 * np.pi * pattern.f0_hz * (k + 1) * t) for k, a in enumerate(HARMONICS))
    wave = wave / sum(HARMONICS)
    ramp = max(1, round(pattern.rise_ms * rate / 1000))
    env = np.ones(n)
    env[:ramp] = np.linspace(0.0, 1.0, ramp)
    env[-ramp:] = np.linspace(1.0, 0.0, ramp)
    return (wave * env).astype(np.float32)


def pulse_onsets_in(samples: np.ndarray, rate: int = SAMPLE_RATE, threshold: float = 0.02) -> list[float]:
    """Where pulses start in `samples`, in ms (the envelope crossing `threshold` upwards after silence): what
    a listener would count, for tests that check the samples and not only the table."""
    loud = np.abs(samples) > threshold
    # a pulse's own zero crossings are not silence: close gaps shorter than 5 ms
    gap = int(rate * 0.005)
    starts: list[float] = []
    quiet = gap
    for i, on in enumerate(loud):
        if on:
            if quiet >= gap:
                starts.append(i * 1000 / rate)
            quiet = 0
        else:
            quiet += 1
    return starts
