"""Video over one path at a time (video/failover.py): the viewer moves on when its path goes silent while another
answers (frames and probe echoes), never on a sender's stall, and the sender answers a viewer new on a path with a
keyframe at once. Injected time only; the cable cuts are in
tests/test_netns_paths.py and `teleop bench failover`."""

from __future__ import annotations

import pytest
from conftest import ms

from base.config import ConfigError, load_config
from transport.video_wire import (
    Codec,
    FrameHeader,
    InvalidField,
    Layout,
    Report,
    ReportFlags,
    decode,
    encode_report,
)
from video.failover import PathFailover
from video.session import ReceiverSession, SenderSession


def _header(stream: int, frame_id: int) -> FrameHeader:
    return FrameHeader(Codec.JPEG, True, Layout.SIDE_BY_SIDE, stream, frame_id, 0, 0, 0, 0, 64, 32, 0)


def _stream(fo: PathFailover, t0: int, t1: int, every: int = 33, frames_on: int | None = 0,
            echoes_on: tuple[int, ...] = (0, 1)) -> int | None:
    """The sender's pace: every `every` ms a frame on `frames_on` and an echo on each path in `echoes_on`; the viewer
    looks every 5 ms. Returns the first move, if any."""
    for t in range(t0, t1, 5):
        if (t - t0) % every == 0:
            if frames_on is not None:
                fo.on_frame(ms(t), frames_on)
            for k in echoes_on:
                fo.on_echo(ms(t), k)
        k = fo.due(ms(t))
        if k is not None:
            return k
    return None


def test_the_viewer_moves_when_its_path_is_silent_for_failover_ms_while_another_answers():
    fo = PathFailover(2, 60)
    assert fo.due(ms(1000)) is None  # nothing heard anywhere: the sender may not run yet
    assert _stream(fo, 1000, 2000) is None and fo.switches == 0
    # path 0 cut at 2000: its last frame and echo were at 1990; path 1 keeps echoing at the sender's pace
    moved = _stream(fo, 2000, 2300, frames_on=None, echoes_on=(1,))
    assert moved == 1 and fo.active == 1 and fo.awaiting_first()
    assert fo.switches == 1
    assert fo.on_frame(ms(2100), 1) and not fo.awaiting_first()
    assert PathFailover(1, 60).due(ms(5000)) is None


def test_the_move_comes_within_failover_ms_and_one_sender_interval_of_the_last_sign_of_life():
    fo = PathFailover(2, 60)
    _stream(fo, 0, 1000)
    last = 990  # the last frame and echo on path 0
    for t in range(1000, 1300, 1):
        if t % 33 == 0:
            fo.on_echo(ms(t), 1)
        if fo.due(ms(t)) is not None:
            break
    assert fo.active == 1
    assert t - last <= 60 + 33, t


def test_a_stalled_sender_silences_every_path_and_moves_nothing():
    fo = PathFailover(2, 60)
    _stream(fo, 0, 1000)
    for t in range(1000, 1400, 5):  # 400 ms: neither frames nor echoes (the bedside's machine stalled)
        assert fo.due(ms(t)) is None
    assert _stream(fo, 1400, 1600) is None  # and it resumes on the same path
    assert fo.switches == 0


def test_frames_slowed_by_the_sender_do_not_move_the_stream_while_echoes_come_on_its_path():
    fo = PathFailover(2, 60)
    # 8 fps: 125 ms between frames, longer than the bound; echoes come at the same pace on both paths
    assert _stream(fo, 0, 3000, every=125) is None and fo.switches == 0
    # frames skipped by the sender (a congested viewer) while the path still echoes: no move either
    assert _stream(fo, 3000, 4000, frames_on=None) is None


def test_the_stream_never_moves_to_a_path_that_is_cut_too():
    fo = PathFailover(2, 60)
    _stream(fo, 0, 1000)
    for t in range(1000, 3000, 5):  # both cut: nothing on either
        assert fo.due(ms(t)) is None
    # path 1 comes back first: the stream moves there, and not back to path 0, which stays silent
    assert _stream(fo, 3000, 3200, frames_on=None, echoes_on=(1,)) == 1
    assert _stream(fo, 3200, 4000, frames_on=1, echoes_on=(1,)) is None


def test_a_path_just_moved_to_gets_the_full_bound_before_it_can_be_left():
    fo = PathFailover(2, 60)
    _stream(fo, 0, 1000)
    assert _stream(fo, 1000, 1200, frames_on=None, echoes_on=(1,)) == 1
    # path 0 answers again at once (the cut was short); path 1 has shown no frame yet but echoes: stay
    assert _stream(fo, 1200, 1400, frames_on=None, echoes_on=(0, 1)) is None and fo.active == 1
    assert _stream(fo, 1400, 2000, frames_on=1, echoes_on=(0, 1)) is None and fo.switches == 1


def test_a_probe_is_only_a_probe_on_the_wire():
    probe = Report(ReportFlags.PROBE, 0, 0, 0, 123, 0, 0, 0)
    assert decode(encode_report(probe)) == probe
    for flags in (ReportFlags.PROBE | ReportFlags.HELLO, ReportFlags.PROBE | ReportFlags.KEYFRAME_REQUEST):
        with pytest.raises(InvalidField):
            encode_report(Report(flags, 0, 0, 0, 0, 0, 0, 0))
        raw = bytearray(encode_report(probe))
        raw[6] = int(flags)
        with pytest.raises(InvalidField):
            decode(bytes(raw))


def test_a_copy_of_a_frame_already_taken_on_another_path_is_not_new():
    rs = ReceiverSession()
    h = _header(stream=5, frame_id=10)
    assert rs.is_new(h)
    rs.on_frame(ms(0), h)
    assert not rs.is_new(h) and not rs.is_new(_header(stream=5, frame_id=9))
    assert rs.is_new(_header(stream=5, frame_id=11)) and rs.is_new(_header(stream=6, frame_id=1))


def test_the_next_path_is_the_one_heard_most_recently():
    fo = PathFailover(3, 60)
    fo.on_frame(ms(0), 0)
    assert fo.due(ms(0)) is None
    fo.on_echo(ms(40), 1)
    fo.on_echo(ms(50), 2)
    assert fo.due(ms(55)) is None
    assert fo.due(ms(61)) == 2


def test_probes_go_on_every_path_at_their_interval():
    fo = PathFailover(2, 60)
    assert fo.probe_ns == ms(15)
    assert fo.probes_due(ms(0)) == [0, 1]
    assert fo.probes_due(ms(10)) == []
    assert fo.probes_due(ms(15)) == [0, 1]
    assert PathFailover(1, 60).probes_due(ms(0)) == []


def test_failover_must_come_before_the_picture_goes_stale():
    try:
        load_config(None, ["video.failover_ms=250"])
    except ConfigError as exc:
        assert "video.failover_ms" in str(exc)
    else:
        raise AssertionError("video.failover_ms above video.stale_ms was accepted")


def _hello(now: int) -> Report:
    return Report(ReportFlags.HELLO | ReportFlags.KEYFRAME_REQUEST, 0, 0, 0, now, 0, 0, 0)


def test_a_viewer_new_on_a_path_gets_a_keyframe_without_waiting_for_the_key_interval():
    s = SenderSession(7, key_min_interval_ms=100)
    s.on_report(ms(0), b"old", _hello(ms(0)))
    plan = s.plan(ms(1))
    assert plan is not None and plan.force_key
    s.sent(ms(1), plan, keyframe=True)
    # 20 ms later the viewer moved to another path: a new connection, a new peer
    s.on_report(ms(21), b"new", _hello(ms(21)))
    plan = s.plan(ms(22))
    assert plan is not None and plan.force_key and b"new" in plan.targets
    s.sent(ms(22), plan, keyframe=True)
    # an old viewer asking again is still held to the interval
    s.on_report(ms(30), b"new", _hello(ms(30)))
    plan = s.plan(ms(31))
    assert plan is None or not plan.force_key
