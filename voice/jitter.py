"""Adaptive jitter buffer: packets in as they arrive, one frame out per playout period. Pure (now passed in).

Why adaptive: a fixed buffer is either too short for a jittery intercontinental link (every late packet is
concealed) or too long for a quiet LAN (every word is late). The target depth follows the link: the 95th
percentile, over the last `window` packets, of how much later than the earliest each packet arrived
relative to its media time, plus `margin_frames`, bounded to [min_frames, max_frames]. A talk spurt starts
playing once the target is buffered. While playing, the smallest depth seen over each `trim_ns` (0.5 s) is
what the link never needed: if it exceeds the target, that many frames are dropped at once (catch-up after a
burst of arrivals or a stalled speaker); an empty buffer conceals (`CONCEAL`) until the stream returns or
ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from base.stats import arrival_spread


class Out(Enum):
    PACKET = "packet"      # play this Opus packet
    CONCEAL = "conceal"    # a frame is missing: run the decoder's loss concealment
    SILENCE = "silence"    # nothing to play (idle, or buffering the start of a spurt)


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0           # arrived after their playout time (counted, dropped)
    duplicate: int = 0
    dropped_catchup: int = 0
    spurts: int = 0
    resyncs: int = 0
    target_frames: int = 0
    depth_frames: int = 0
    transit_ms: deque = field(default_factory=lambda: deque(maxlen=200))


def _newer(a: int, b: int) -> bool:
    """Whether u32 sequence a is after b (wrapping)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


class JitterBuffer:
    def __init__(self, frame_ns: int = 10_000_000, min_frames: int = 1, max_frames: int = 20,
                 margin_frames: float = 0.5, window: int = 200, end_conceal_frames: int = 5,
                 trim_ns: int = 500_000_000) -> None:
        self.frame_ns = frame_ns
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.margin_frames = margin_frames
        self.end_conceal_frames = end_conceal_frames
        self._transit: deque[int] = deque(maxlen=window)
        self._packets: dict[int, bytes] = {}
        self._next: int | None = None      # seq to play next; None = idle
        self._playing = False
        self._missing_run = 0
        self.trim_ns = trim_ns
        self._trim_since: int | None = None
        self._min_depth: int | None = None
        self._last_flag: int | None = None  # seq of a LAST frame: no concealment after it
        self.stats = JitterStats()
        self.target_frames = min_frames

    def push(self, seq: int, media_ts: int, payload: bytes, now_ns: int, last: bool = False) -> None:
        """One AUDIO packet as it arrives (`media_ts` in samples at 48 kHz)."""
        st = self.stats
        st.received += 1
        self._transit.append(now_ns - media_ts * 1_000_000_000 // 48_000)
        self._retarget()
        if self._next is not None and not _newer(seq, self._next) and seq != self._next:
            st.late += 1
            return
        if seq in self._packets:
            st.duplicate += 1
            return
        if self._next is not None and (seq - self._next) & 0xFFFFFFFF > 4 * self.max_frames:
            self._idle()  # a jump far ahead (a restarted sender, a gap of seconds): start a new spurt there; this
            st.resyncs += 1  # also bounds what a peer can make this buffer hold to 4 × max_frames packets
        if self._next is None:
            self._next = seq
            self._playing = False
            self._last_flag = None
            st.spurts += 1
        elif _newer(self._next, seq):
            st.late += 1
            return
        self._packets[seq] = payload
        if last:
            self._last_flag = seq

    def _retarget(self) -> None:
        p95 = arrival_spread(self._transit) / self.frame_ns
        self.target_frames = int(min(self.max_frames, max(self.min_frames, np.ceil(p95 + self.margin_frames))))
        self.stats.target_frames = self.target_frames
        self.stats.transit_ms.append((self._transit[-1] - min(self._transit)) / 1e6)

    def depth(self) -> int:
        """Frames buffered from the next one to play to the newest received."""
        if self._next is None or not self._packets:
            return 0
        newest = max(self._packets, key=lambda s: (s - self._next) & 0xFFFFFFFF)
        return ((newest - self._next) & 0xFFFFFFFF) + 1

    def pop(self, now_ns: int) -> tuple[Out, bytes | None]:
        """What to play for the next frame period."""
        st = self.stats
        st.depth_frames = d = self.depth()
        if self._next is None:
            return Out.SILENCE, None
        if not self._playing:
            if d < self.target_frames and self._last_flag is None:
                return Out.SILENCE, None
            self._playing = True
        self._min_depth = d if self._min_depth is None else min(self._min_depth, d)
        if self._trim_since is None:
            self._trim_since = now_ns
        elif now_ns - self._trim_since >= self.trim_ns:
            for _ in range(max(0, self._min_depth - self.target_frames)):
                self._packets.pop(self._next, None)
                self._next = (self._next + 1) & 0xFFFFFFFF
                st.dropped_catchup += 1
            self._trim_since, self._min_depth = now_ns, None
        seq = self._next
        payload = self._packets.pop(seq, None)
        if payload is not None:
            self._next = (seq + 1) & 0xFFFFFFFF
            self._missing_run = 0
            st.played += 1
            if self._last_flag == seq:
                self._idle()
            return Out.PACKET, payload
        if not self._packets and (self._last_flag is not None or self._missing_run >= self.end_conceal_frames):
            self._idle()
            return Out.SILENCE, None
        self._next = (seq + 1) & 0xFFFFFFFF
        self._missing_run += 1
        st.concealed += 1
        return Out.CONCEAL, None

    def _idle(self) -> None:
        self._next = None
        self._playing = False
        self._trim_since = self._min_depth = None
        self._missing_run = 0
        self._packets.clear()
        self._last_flag = None
