"""Pure link logic: adaptive bitrate, the sender's viewer bookkeeping, the receiver's sequence checks."""

from __future__ import annotations

from itertools import pairwise

from transport.video_wire import Codec, FrameHeader, Layout, Report, ReportFlags
from video.abr import AdaptiveBitrate, ladder
from video.session import ReceiverSession, SenderSession

MS = 1_000_000


def hdr(fid: int, key: bool = False, stream: int = 5) -> FrameHeader:
    return FrameHeader(Codec.H264, key, Layout.SIDE_BY_SIDE, stream, fid, 0, fid * 16 * MS, fid, fid, 64, 32,
                       0)


def test_ladder_lowers_bitrate_then_resolution():
    lv = ladder(12000, 3000)
    assert lv[0].bitrate_kbps == 12000 and lv[0].scale == 1.0
    assert [x.bitrate_kbps for x in lv if x.scale == 1.0][-1] == 3000
    assert [x.scale for x in lv][-2:] == [0.75, 0.5]
    assert all(a.bitrate_kbps >= b.bitrate_kbps for a, b in pairwise(lv))


def test_abr_steps_down_on_growing_delay_with_cooldown_then_back_up():
    abr = AdaptiveBitrate(12000, 3000, high_ms=20, low_ms=5, cooldown_ms=300, up_hold_ms=2000, warmup_ms=0)
    t = 0
    changes = []
    for i in range(60):  # 1 s of frames whose queueing delay grows 2 ms per frame
        t = i * 16 * MS
        lvl = abr.on_queue_delay(t, i * 2 * MS)
        if lvl:
            changes.append((t, lvl.index))
    assert changes and changes[0][1] == 1
    assert all(b[0] - a[0] >= 300 * MS for a, b in pairwise(changes))
    down = abr.level.index
    for i in range(1, 400):  # clean link for ~6 s
        abr.on_queue_delay(t + i * 16 * MS, 0)
    assert abr.level.index < down


def test_abr_ignores_warmup_and_single_spikes():
    abr = AdaptiveBitrate(12000, 3000, warmup_ms=1000)
    assert abr.on_queue_delay(0, 500 * MS) is None
    assert abr.on_queue_delay(500 * MS, 500 * MS) is None  # still warming up
    abr2 = AdaptiveBitrate(12000, 3000, warmup_ms=0)
    assert abr2.on_queue_delay(0, 100 * MS) is None  # one IDR-sized spike: smoothed below the limit
    assert abr2.level.index == 0


def hello(stream: int = 0) -> Report:
    return Report(ReportFlags.HELLO | ReportFlags.KEYFRAME_REQUEST, stream, 0, 0, 0, 0, 0, 0)


NOFLAGS = ReportFlags(0)


def ack(stream: int, fid: int, send_ns: int, hold_ns: int = 0, flags: ReportFlags = NOFLAGS) -> Report:
    return Report(flags, stream, fid, send_ns, 0, hold_ns, 0, fid)


def test_sender_skips_encoding_without_viewers_and_starts_a_viewer_with_an_idr():
    s = SenderSession(5)
    assert s.plan(0) is None and s.skipped_no_viewer == 1
    s.on_report(0, b"a", hello())
    p = s.plan(1 * MS)
    assert p is not None and p.force_key and p.targets == (b"a",) and p.frame_id == 1
    s.sent(1 * MS, p, keyframe=True)
    p2 = s.plan(17 * MS)
    assert p2 is not None and not p2.force_key and p2.frame_id == 2


def test_a_new_viewers_wait_for_its_first_keyframe_is_recorded_once():
    """Each viewer that arrives (a start, or a move to another path) gets its wait counted: the failover bench's
    sender-side figure per move."""
    s = SenderSession(5)
    s.on_report(10 * MS, b"a", hello())
    p = s.plan(17 * MS)
    assert p is not None
    s.sent(17 * MS, p, keyframe=True)
    s.sent(50 * MS, s.plan(50 * MS) or p, keyframe=True)  # a later keyframe is not a first one
    assert list(s.first_key_ms) == [7.0]


def test_sender_stops_encoding_when_the_viewer_falls_behind_and_resumes_without_a_gap():
    s = SenderSession(5, max_queue_ms=50)
    s.on_report(0, b"a", hello())
    t = 0
    fid_acked = 0
    for i in range(5):  # a healthy viewer: acks arrive 10 ms after send
        t = i * 16 * MS
        p = s.plan(t)
        assert p is not None
        s.sent(t, p, keyframe=p.force_key)
        s.on_report(t + 10 * MS, b"a", ack(5, p.frame_id, t))
        fid_acked = p.frame_id
    for i in range(5, 20):  # the viewer stops acking (stalled decoder, frozen process)
        t = i * 16 * MS
        p = s.plan(t)
        if p is None:
            break
        s.sent(t, p, keyframe=False)
    assert p is None and s.skipped_congested == 1  # stopped within best RTT + 50 ms
    last_sent = s.next_frame_id - 1
    assert (last_sent - fid_acked) * 16 <= 10 + 50 + 16
    s.on_report(t + MS, b"a", ack(5, last_sent, t - 16 * MS))  # it catches up
    p = s.plan(t + 2 * MS)
    assert p is not None and not p.force_key and p.frame_id == last_sent + 1  # no gap, no IDR needed


def test_keyframe_request_and_a_missed_frame_both_lead_to_an_idr():
    s = SenderSession(5, key_min_interval_ms=100)
    s.on_report(0, b"a", hello())
    p = s.plan(0)
    s.sent(0, p, keyframe=True)
    s.on_report(200 * MS, b"a", ack(5, 1, 0, flags=ReportFlags.KEYFRAME_REQUEST))
    p = s.plan(200 * MS)
    assert p.force_key and s.key_requests == 1
    s.sent(200 * MS, p, keyframe=True, failed=(b"a",))  # HWM full: the viewer missed this frame
    assert s.peers[b"a"].needs_key
    assert s.plan(250 * MS) is None  # rate limit: no IDR yet, and no broken frame either
    p = s.plan(300 * MS)
    assert p is not None and p.force_key


def test_second_viewer_gets_frames_only_from_its_idr_and_silent_viewers_expire():
    s = SenderSession(5, viewer_timeout_ms=1000)
    s.on_report(0, b"a", hello())
    s.sent(0, s.plan(0), keyframe=True)
    s.on_report(16 * MS, b"b", hello())
    p = s.plan(120 * MS)
    assert p.force_key and set(p.targets) == {b"a", b"b"}
    s.sent(120 * MS, p, keyframe=True)
    s.on_report(1500 * MS, b"b", ack(5, p.frame_id, 120 * MS))
    s.plan(1600 * MS)
    assert set(s.peers) == {b"b"}


def test_receiver_detects_gaps_requests_keys_and_resets_on_a_new_stream():
    r = ReceiverSession(key_request_interval_ms=200)
    a = r.on_frame(0, hdr(1, key=True))
    assert a.reset_decoder and not a.degraded and not a.request_key
    assert r.on_frame(16 * MS, hdr(2)).gap == 0
    a = r.on_frame(48 * MS, hdr(4))
    assert a.gap == 1 and a.degraded and a.request_key and r.lost == 1
    a = r.on_frame(64 * MS, hdr(5))
    assert a.degraded and not a.request_key  # rate-limited
    assert not r.on_frame(80 * MS, hdr(6, key=True)).degraded
    a = r.on_frame(96 * MS, hdr(1, key=True, stream=9))
    assert a.reset_decoder and a.gap == 0


def test_receiver_says_hello_while_no_video_arrives():
    r = ReceiverSession(hello_interval_ms=250)
    h = r.idle(0)
    assert h is not None and h.flags & ReportFlags.HELLO and h.flags & ReportFlags.KEYFRAME_REQUEST
    assert r.idle(100 * MS) is None
    assert r.idle(260 * MS) is not None
    r.on_frame(300 * MS, hdr(1, key=True))
    assert r.idle(400 * MS) is None
    rep = r.report(410 * MS, hdr(1, key=True), 300 * MS, decoded=True, key_request=False)
    assert rep.hold_ns == 110 * MS and rep.echo_send_ns == 16 * MS and rep.decoded == 1
