"""Stale-video guard: a frozen or late picture must stop following, exactly like a dead link.

Pure (fed frames and `now_ns`, never reads a clock). Theory of operation:

- Every decoded frame is reported with its capture time on the bedside clock and the clock offset
  (bedside − console, as transport.clock.OffsetEstimator gives it). Its age at any instant is
  now − (capture_ns − offset_ns): capture -> now, in console time.
- `check(now)` is STALE when the newest frame is older than `threshold_ms` (late video: encoder, link or
  decoder backlog) or when no new frame has arrived for `gap_ms` (dead sender, cut link, hung decoder;
  this test needs no clock offset, so a wrong offset cannot hide a dead stream). NO_VIDEO before the
  first frame: following must not start without a picture.
- STUCK when frames keep arriving but the camera's content signature (CRC of the raw picture, sent by the
  bedside) or its own frame counter has not changed for `stuck_ms`: a camera or driver that repeats a
  buffer produces fresh-looking frames of a frozen scene.
- Any state but OK maps to Reason.VIDEO_STALE. The guard is a condition, not a latch: it reports OK again
  when fresh, changing frames flow; the console's hold logic latches and requires the surgeon to
  re-engage, as it does after link loss. `changed` marks the first check of each new state so the caller
  logs one transition. Defaults and their argument: docs/video.md and docs/safety.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from transport.messages import Reason

_MS = 1_000_000


class VideoState(Enum):
    OK = "ok"
    NO_VIDEO = "no video"
    STALE = "stale"
    STUCK = "stuck"


@dataclass(frozen=True, slots=True)
class VideoStatus:
    state: VideoState
    reason: str  # operator-facing text; "" when OK
    age_ms: float | None  # newest frame's age at the check: capture -> now
    silence_ms: float | None  # since the newest frame arrived
    frame_id: int | None
    changed: bool  # first check in this state

    @property
    def ok(self) -> bool:
        return self.state is VideoState.OK

    @property
    def stale(self) -> bool:
        """True whenever the picture must be shown as not live (the pane's marking)."""
        return self.state is not VideoState.OK

    @property
    def hold_reason(self) -> Reason | None:
        """Reason.VIDEO_STALE when following must stop, else None."""
        return None if self.ok else Reason.VIDEO_STALE


class VideoGuard:
    def __init__(self, threshold_ms: float = 200.0, stuck_ms: float = 500.0,
                 gap_ms: float | None = None) -> None:
        if threshold_ms <= 0 or stuck_ms <= 0 or (gap_ms is not None and gap_ms <= 0):
            raise ValueError("video guard thresholds must be positive")
        self.threshold_ns = int(threshold_ms * _MS)
        self.gap_ns = int((gap_ms if gap_ms is not None else threshold_ms) * _MS)
        self.stuck_ns = int(stuck_ms * _MS)
        self.reset()

    def reset(self) -> None:
        """Forget every frame (a new session): back to NO_VIDEO."""
        self.frame_id: int | None = None
        self.capture_local_ns = 0
        self.arrived_ns = 0
        self.sig: int | None = None
        self.sig_since_ns = 0
        self.seq: int | None = None
        self.seq_since_ns = 0
        self.state = VideoState.NO_VIDEO
        self.frames = 0

    def on_frame(self, now_ns: int, frame_id: int, capture_ns: int, offset_ns: int = 0,
                 content_signature: int | None = None, source_seq: int | None = None) -> None:
        """A new decoded frame, ready to paint at `now_ns`. A repeat of the newest frame is not new."""
        local = capture_ns - offset_ns
        if frame_id == self.frame_id and local == self.capture_local_ns:
            return
        self.frames += 1
        self.frame_id = frame_id
        self.capture_local_ns = local
        self.arrived_ns = now_ns
        if content_signature is None or content_signature != self.sig:
            self.sig, self.sig_since_ns = content_signature, now_ns
        if source_seq is None or source_seq != self.seq:
            self.seq, self.seq_since_ns = source_seq, now_ns

    def _evaluate(self, now_ns: int) -> tuple[VideoState, str, float | None, float | None]:
        if self.frame_id is None:
            return VideoState.NO_VIDEO, "video stale: no video received", None, None
        age = now_ns - self.capture_local_ns
        silence = now_ns - self.arrived_ns
        age_ms, silence_ms = age / _MS, silence / _MS
        if silence >= self.gap_ns:
            return (VideoState.STALE, f"video stale: no new frame for {silence_ms:.0f} ms "
                    f"(limit {self.gap_ns / _MS:.0f} ms)", age_ms, silence_ms)
        if age >= self.threshold_ns:
            return (VideoState.STALE, f"video stale: newest frame is {age_ms:.0f} ms old "
                    f"(limit {self.threshold_ns / _MS:.0f} ms)", age_ms, silence_ms)
        frozen = max(
            now_ns - self.sig_since_ns if self.sig is not None else 0,
            now_ns - self.seq_since_ns if self.seq is not None else 0,
        )
        if frozen >= self.stuck_ns:
            by_sig = self.sig is not None and now_ns - self.sig_since_ns == frozen
            what = "content" if by_sig else "frame counter"
            return (VideoState.STUCK, f"video stuck: camera {what} unchanged for {frozen / _MS:.0f} ms "
                    f"(limit {self.stuck_ns / _MS:.0f} ms)", age_ms, silence_ms)
        return VideoState.OK, "", age_ms, silence_ms

    def peek(self, now_ns: int) -> VideoStatus:
        """The verdict at `now_ns` without recording it (`changed` is False): for painters and stats, so
        they never swallow the transition the hold logic should log."""
        state, reason, age_ms, silence_ms = self._evaluate(now_ns)
        return VideoStatus(state, reason, age_ms, silence_ms, self.frame_id, False)

    def check(self, now_ns: int) -> VideoStatus:
        """The verdict at `now_ns`; call it every control tick (one caller: it records transitions)."""
        state, reason, age_ms, silence_ms = self._evaluate(now_ns)
        changed = state is not self.state
        self.state = state
        return VideoStatus(state, reason, age_ms, silence_ms, self.frame_id, changed)
