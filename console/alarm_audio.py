"""Alarm tones out of a speaker: the thin shell around the sounder (console/alarm_sound.py).

`AlarmPlayer.update(now, conditions)` asks the sounder which burst starts now and hands its samples
(console/alarm_tones.py, made once at start) to a pull source that the audio output reads: a new burst
replaces the one playing (a higher priority interrupts at once), silence stops it. The output is the
project's one audio module (voice/audio_io.py: a PortAudio device, a WAV file or "null"). A device that
cannot open is one warning and the "null" output: the visual alarms never depend on a sound card.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from console.alarm_sound import AlarmSounder, Burst, Condition
from console.alarm_tones import PATTERNS, Priority, burst_samples

log = logging.getLogger("console.alarms")


class BurstSource:
    """The burst playing now, as a pull source (`source(n) -> n samples`) for an audio output."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf: np.ndarray | None = None
        self._pos = 0
        self.started: list[Priority] = []  # every burst started (tests look here, not at a sound card)

    def start(self, priority: Priority, samples: np.ndarray) -> None:
        with self._lock:
            self._buf, self._pos = samples, 0
            self.started.append(priority)

    def stop(self) -> None:
        with self._lock:
            self._buf = None

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._buf is not None and self._pos < len(self._buf)

    def __call__(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            if self._buf is not None:
                k = min(n, len(self._buf) - self._pos)
                out[:k] = self._buf[self._pos:self._pos + k]
                self._pos += k
        return out


class NoOutput:
    """Alarms without a speaker ("null", or a device that cannot open): the bursts are scheduled and recorded
    in the source (`BurstSource.started`), nothing is played, and no thread runs for it."""

    def close(self) -> None:
        pass


def open_alarm_output(spec: str, source: BurstSource):
    """(output, None) or, when `spec` cannot be opened, (NoOutput, why). "null" needs no sound card."""
    if spec == "null":
        return NoOutput(), None
    from voice.audio_io import open_output

    try:
        return open_output(spec, source), None
    except (OSError, ValueError) as exc:  # AudioDeviceError is an OSError; PortAudio's own errors too
        why = f"alarm sound off: the audio output {spec!r} cannot open ({exc}); alarms stay visual"
        log.warning("%s", why)
        return NoOutput(), why


class AlarmPlayer:
    """The sounder plus an output. `update` at the window's refresh; `silence` from its button."""

    def __init__(self, pause_s: float = 120.0, volume: float = 0.5, output: str = "default") -> None:
        self.sounder = AlarmSounder(pause_s)
        self.samples = {p: burst_samples(PATTERNS[p], volume) for p in Priority}
        self.source = BurstSource()
        self.output, self.problem = open_alarm_output(output if volume > 0 else "null", self.source)

    @classmethod
    def from_config(cls, console_cfg, output: str | None = None) -> AlarmPlayer:
        return cls(console_cfg.alarm_pause_s, console_cfg.alarm_volume,
                   output if output is not None else console_cfg.alarm_output)

    def update(self, now_ns: int, conditions: set[Condition]) -> list[Burst]:
        bursts = self.sounder.update(now_ns, conditions)
        for b in bursts:
            self.source.start(b.priority, self.samples[b.priority])
        if self.sounder.sounding is None:
            self.source.stop()
        return bursts

    def silence(self, now_ns: int, who: str) -> str:
        text = self.sounder.silence(now_ns, who)
        self.source.stop()
        return text

    def close(self) -> None:
        self.source.stop()
        self.output.close()
