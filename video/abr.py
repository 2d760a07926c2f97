"""Adaptive bitrate: step the encoder down before frames pile up, and back up once the link is clean.

Pure: fed the queueing delay of each acknowledged frame (its round trip minus the best round trip seen
recently, so no clock sync is needed) and the current time; returns a new Level when one is due.

Policy (docs/video.md): a smoothed queueing delay above `high_ms` steps down one level at once and then at
most every `cooldown_ms` (long enough to see the effect of the last step); below `low_ms` for `up_hold_ms`
steps up one level. Samples in the first second are ignored. Levels lower the bitrate first (x0.75 each,
down to `min_kbps`), then the resolution (0.75, then 0.5 of each side) with a proportionally lower
bitrate. JPEG maps the level to quality.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Level:
    index: int  # 0 = full quality
    bitrate_kbps: int
    scale: float  # of the picture's width and height
    quality_factor: float  # multiplies the JPEG quality


def ladder(target_kbps: int, min_kbps: int) -> tuple[Level, ...]:
    levels: list[Level] = []
    kbps = float(target_kbps)
    q = 1.0
    while True:
        levels.append(Level(len(levels), int(kbps), 1.0, q))
        if kbps <= min_kbps:
            break
        kbps = max(float(min_kbps), kbps * 0.75)
        q = max(0.5, q * 0.9)
    for scale in (0.75, 0.5):
        levels.append(Level(len(levels), max(100, int(min_kbps * scale * scale)), scale, q))
    return tuple(levels)


class AdaptiveBitrate:
    def __init__(self, target_kbps: int, min_kbps: int, high_ms: float = 20.0, low_ms: float = 5.0,
                 cooldown_ms: float = 300.0, up_hold_ms: float = 3000.0, alpha: float = 0.1,
                 warmup_ms: float = 1000.0) -> None:
        if not (0 < min_kbps <= target_kbps):
            raise ValueError(f"need 0 < min_kbps ({min_kbps}) <= target_kbps ({target_kbps})")
        self.levels = ladder(target_kbps, min_kbps)
        self.i = 0
        self.high_ns, self.low_ns = int(high_ms * 1e6), int(low_ms * 1e6)
        self.cooldown_ns, self.up_hold_ns = int(cooldown_ms * 1e6), int(up_hold_ms * 1e6)
        self.alpha = alpha
        self.warmup_ns = int(warmup_ms * 1e6)
        self.first_ns: int | None = None
        self.smoothed_ns = 0.0
        self.last_change_ns: int | None = None
        self.clean_since_ns: int | None = None
        self.changes = 0

    @property
    def level(self) -> Level:
        return self.levels[self.i]

    def on_queue_delay(self, now_ns: int, excess_ns: int) -> Level | None:
        """One acknowledged frame's queueing delay; returns the new level when it changes. Samples in
        the first `warmup_ms` (decoder start, first IDR) are ignored."""
        if self.first_ns is None:
            self.first_ns = now_ns
        if now_ns - self.first_ns < self.warmup_ns:
            return None
        self.smoothed_ns += self.alpha * (max(0, excess_ns) - self.smoothed_ns)
        cooled = self.last_change_ns is None or now_ns - self.last_change_ns >= self.cooldown_ns
        if self.smoothed_ns > self.high_ns:
            self.clean_since_ns = None
            if cooled and self.i < len(self.levels) - 1:
                return self._move(now_ns, +1)
            return None
        if self.smoothed_ns < self.low_ns:
            if self.clean_since_ns is None:
                self.clean_since_ns = now_ns
            if self.i > 0 and now_ns - self.clean_since_ns >= self.up_hold_ns and cooled:
                self.clean_since_ns = now_ns
                return self._move(now_ns, -1)
        else:
            self.clean_since_ns = None
        return None

    def _move(self, now_ns: int, step: int) -> Level:
        self.i += step
        self.last_change_ns = now_ns
        self.changes += 1
        return self.level
