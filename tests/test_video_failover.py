"""Video over one path at a time (video/failover.py): the viewer moves on when its path goes quiet, and the
sender answers a viewer new on a path with a keyframe at once. Injected time only; the cable cuts are in
tests/test_netns_paths.py and `teleop bench failover`."""

from __future__ import annotations

from conftest import ms

from base.config import ConfigError, load_config
from transport.video_wire import Report, ReportFlags
from video.failover import PathFailover
from video.session import SenderSession


def test_the_viewer_moves_after_failover_ms_without_a_frame_and_not_before_the_first():
    fo = PathFailover(2, 60)
    assert fo.due(ms(1000)) is None  # no frame yet: the sender may not run
    assert fo.on_frame(ms(1000), 0)
    assert fo.due(ms(1059)) is None
    assert fo.due(ms(1061)) == 1 and fo.active == 1
    assert not fo.on_frame(ms(1062), 0)  # a straggler on the old path
    assert fo.due(ms(1180)) is None  # the new path gets two bounds to show its first frame
    assert fo.due(ms(1182)) == 0 and fo.switches == 2  # both quiet: keep trying, one path after the other
    assert PathFailover(1, 60).due(ms(5000)) is None


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


def test_a_stream_slowed_down_by_the_sender_is_not_taken_for_a_cut_path():
    fo = PathFailover(2, 60)
    for i in range(10):
        fo.on_frame(ms(100 * i), 0)  # 10 fps
    assert fo.bound_ns() == ms(150)
    assert fo.due(ms(900 + 140)) is None
    assert fo.due(ms(900 + 151)) == 1


def test_the_next_path_is_the_one_that_last_showed_life():
    fo = PathFailover(3, 60)
    fo.on_frame(ms(0), 0)
    fo.on_frame(ms(5), 2)  # a straggler on path 2: alive; path 1 never carried anything
    assert fo.due(ms(61)) == 2
