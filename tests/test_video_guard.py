"""Stale-video guard (pure): no video, late video, silent video, stuck camera, recovery, hold reason."""

from __future__ import annotations

import pytest

from safety.video_guard import VideoGuard, VideoState, VideoStatus
from transport.messages import Reason

MS = 1_000_000


def feed(g: VideoGuard, t_ms: float, fid: int, latency_ms: float = 20.0, sig: int | None = None,
         seq: int | None = None, offset_ns: int = 0) -> None:
    now = int(t_ms * MS)
    g.on_frame(now, fid, now - int(latency_ms * MS) + offset_ns, offset_ns,
               sig if sig is not None else fid, seq if seq is not None else fid)


class HoldAdapter:
    """What the console engine does with the guard each tick: stop following and latch the reason."""

    def __init__(self) -> None:
        self.following = False
        self.hold_reason: Reason | None = None
        self.hold_text = ""

    def engage(self, status: VideoStatus) -> bool:
        if status.ok:
            self.following, self.hold_reason = True, None
        return self.following

    def tick(self, status: VideoStatus) -> None:
        if self.following and status.hold_reason is not None:
            self.following, self.hold_reason, self.hold_text = False, status.hold_reason, status.reason


def test_no_video_until_the_first_frame():
    g = VideoGuard(200, 500)
    s = g.check(0)
    assert s.state is VideoState.NO_VIDEO and s.stale and s.hold_reason is Reason.VIDEO_STALE
    assert not HoldAdapter().engage(s)


def test_fresh_frames_are_ok():
    g = VideoGuard(200, 500)
    for i in range(10):
        feed(g, i * 16.7, i + 1)
    s = g.check(int(160 * MS))
    assert s.ok and not s.stale and s.hold_reason is None
    assert s.frame_id == 10
    assert s.age_ms == pytest.approx(160 - (9 * 16.7 - 20), abs=0.01)


def test_silence_makes_it_stale_exactly_at_the_gap():
    g = VideoGuard(200, 500, gap_ms=100)
    feed(g, 0, 1, latency_ms=10)
    assert g.check(int(99.9 * MS)).ok
    s = g.check(int(100 * MS))
    assert s.state is VideoState.STALE and "no new frame" in s.reason and s.changed
    assert not g.check(int(101 * MS)).changed  # one transition, not one per tick


def test_late_frames_are_stale_even_when_they_keep_coming():
    g = VideoGuard(150, 500)
    for i in range(20):
        feed(g, i * 16.7, i + 1, latency_ms=180)
    s = g.check(int(19 * 16.7 * MS))
    assert s.state is VideoState.STALE and "old" in s.reason


def test_clock_offset_is_applied():
    # bedside clock 5 s ahead of the console: capture times are 5 s "in the future" without the offset
    g = VideoGuard(200, 500)
    feed(g, 1000, 1, latency_ms=30, offset_ns=5_000 * MS)
    s = g.check(1000 * MS)
    assert s.ok and s.age_ms == pytest.approx(30)


def test_repeated_frame_is_not_new():
    g = VideoGuard(200, 500)
    g.on_frame(0, 1, 0, 0, 1, 1)
    g.on_frame(150 * MS, 1, 0, 0, 1, 1)  # the same frame delivered again
    assert g.check(210 * MS).state is VideoState.STALE


def test_stuck_content_while_frames_arrive():
    g = VideoGuard(200, 300)
    for i in range(40):  # fresh frames, new ids, but the camera repeats its buffer
        feed(g, i * 16.7, i + 1, sig=0xABC, seq=i)
    s = g.check(int(39 * 16.7 * MS))
    assert s.state is VideoState.STUCK and "content" in s.reason
    assert s.hold_reason is Reason.VIDEO_STALE


def test_stuck_frame_counter():
    g = VideoGuard(200, 300)
    for i in range(40):
        feed(g, i * 16.7, i + 1, sig=i, seq=7)
    s = g.check(int(39 * 16.7 * MS))
    assert s.state is VideoState.STUCK and "frame counter" in s.reason


def test_recovers_when_fresh_changing_frames_return_but_hold_stays_latched():
    g = VideoGuard(200, 500)
    hold = HoldAdapter()
    feed(g, 0, 1)
    assert hold.engage(g.check(0))
    hold.tick(g.check(250 * MS))
    assert not hold.following and hold.hold_reason is Reason.VIDEO_STALE and "video stale" in hold.hold_text
    feed(g, 300, 2)
    s = g.check(300 * MS)
    assert s.ok and s.changed
    hold.tick(s)
    assert not hold.following  # nothing resumes by itself: the surgeon re-engages
    assert hold.engage(s)


def test_reset_and_bad_arguments():
    g = VideoGuard(200, 500)
    feed(g, 0, 1)
    g.reset()
    assert g.check(0).state is VideoState.NO_VIDEO
    with pytest.raises(ValueError):
        VideoGuard(0, 500)


def test_peek_does_not_swallow_the_transition():
    g = VideoGuard(200, 500)
    feed(g, 0, 1)
    assert g.check(0).ok
    assert g.peek(300 * MS).stale and not g.peek(300 * MS).changed
    assert g.check(300 * MS).changed
