"""Redundant paths, pure parts (transport/paths.py, BedsideAgent.on_path_message): copies of applied frames are
dropped silently, replays are still refused, other peers change nothing; the console keeps the first copy and
measures each path. Injected time only; the cable cuts are in tests/test_netns_paths.py."""

from __future__ import annotations

import pytest
from conftest import ms

from base.config import BedsideConfig, ConfigError, link_paths, load_config
from bedside.agent import BedsideAgent
from transport import codec
from transport.messages import AckStatus, ConsoleFlags, Disable, Enable, EStop, Ping, ServoCp
from transport.paths import ACK_STATUS_OFFSET, ECHO_SEND_OFFSET, CopyFilter, PathMonitor, ack_status, frame_seq

CONSOLE = (b"c-routing-id-1", "surgeon:alice")
OTHER = (b"c-routing-id-2", "surgeon:bob")
SAME_KEY_OTHER_CONNECTION = (b"c-routing-id-9", "surgeon:alice")


class TwoPaths:
    """A bedside agent on two paths, driven as the socket loop drives it; the clock in ms."""

    def __init__(self, n_paths: int = 2) -> None:
        self.t = ms(1)
        self.agent = BedsideAgent(BedsideConfig(), 0, first_epoch=7)
        self.agent.use_paths(n_paths)
        self.seq = 0
        self.epoch = 0

    def deliver(self, path: int, frame: bytes, who=CONSOLE) -> AckStatus | None:
        """None: dropped silently (no answer at all)."""
        out = self.agent.on_path_message(self.t, path, who[0], frame, who[1])
        return AckStatus(ack_status(out[0].data)) if out else None

    def frame(self, msg_type, **kw) -> bytes:
        self.seq += 1
        if msg_type is ServoCp:
            home = tuple(a.setpoint_cp() for a in self.agent.arms)
            return codec.encode(ServoCp(self.epoch, self.seq, self.t, ConsoleFlags.OPERATOR_PRESENT, 0b01, home))
        return codec.encode(msg_type(self.epoch, self.seq, self.t, **kw))

    def enable(self) -> bytes:
        f = self.frame(Enable)
        assert self.deliver(0, f) is AckStatus.ENABLED
        self.epoch = self.agent.epoch
        return f


def test_link_paths_default_is_one_path_and_entries_are_validated():
    cfg = load_config()
    assert [p.name for p in link_paths(cfg.link, "console")] == ["path0"]
    two = load_config(None, ["link.paths=10.9.2.1", "link.bind_host=10.9.1.1"])
    assert [(p.host, p.control_port) for p in link_paths(two.link, "bedside")] == [("10.9.1.1", 5571),
                                                                                   ("10.9.2.1", 5571)]
    for bad in ("host:99", "127.0.0.1:5571", "a,b,c,d", "h:6000:6001:6002:6003:6004", ":6000"):
        with pytest.raises(ConfigError, match=r"link\.paths"):
            load_config(None, [f"link.paths={bad}"])


def test_header_offsets_match_the_codec():
    ack = codec.encode_ack(3, 9, 5, 42, 123456, 7, AckStatus.REJECTED_STALE, 1, 0)
    assert ack_status(ack) == AckStatus.REJECTED_STALE and len(ack) > ACK_STATUS_OFFSET
    assert int.from_bytes(ack[ECHO_SEND_OFFSET:ECHO_SEND_OFFSET + 8], "little") == 123456
    assert frame_seq(ack) == 9 and frame_seq(b"short") == -1


def test_the_copy_of_an_applied_command_is_dropped_silently_and_counted_per_path():
    b = TwoPaths()
    b.enable()
    f = b.frame(ServoCp)
    assert b.deliver(0, f) is AckStatus.APPLIED
    assert b.deliver(1, f) is None
    c = b.agent.counters
    assert c["duplicates_path1"] == 1 and c["applied_path0"] == 1 and c["applied"] == 1
    assert c["rejected"] == 0 and not [e for e in b.agent.drain_events() if e.kind.name == "REJECTION"]
    # the other way round: path 1 first
    g = b.frame(ServoCp)
    assert b.deliver(1, g) is AckStatus.APPLIED
    assert b.deliver(0, g) is None
    assert c["applied_path1"] == 1 and c["duplicates_path0"] == 1 and c["applied"] == 2


def test_a_copy_replayed_later_on_either_path_is_refused():
    b = TwoPaths()
    b.enable()
    f = b.frame(ServoCp)
    assert b.deliver(0, f) is AckStatus.APPLIED
    assert b.deliver(1, f) is None  # the path's own copy
    assert b.deliver(1, f) is AckStatus.REJECTED_SEQUENCE  # replayed on the second path
    assert b.deliver(0, f) is AckStatus.REJECTED_SEQUENCE  # replayed on the first
    assert b.agent.counters["applied"] == 1 and b.agent.counters["rejected_rejected_sequence"] == 2


def test_a_replay_of_an_old_command_on_a_path_that_lost_its_copy_is_refused():
    """Path 1 missed seq s (cut) and then carried s+1: s on path 1 now lies below its mark, so it is judged."""
    b = TwoPaths()
    b.enable()
    s = b.frame(ServoCp)
    assert b.deliver(0, s) is AckStatus.APPLIED
    s1 = b.frame(ServoCp)
    assert b.deliver(0, s1) is AckStatus.APPLIED
    assert b.deliver(1, s1) is None
    assert b.deliver(1, s) is AckStatus.REJECTED_SEQUENCE


def test_frames_a_path_brings_older_than_the_memory_are_dropped_silently_and_their_replays_refused():
    """Path 1, cut, brings its backlog late: frames older than every frame remembered cannot be told from copies,
    but the controller's sequence numbers only grow, so they are its own old frames: dropped silently, counted
    apart, never applied and never a refusal (issue #15: REJECTED_SEQUENCE after a restore). The same frame again,
    on either path, is a replay: refused. Another connection's is judged in full."""
    b = TwoPaths()
    b.agent.copies = CopyFilter(2, window=4)
    b.enable()
    frames = [b.frame(ServoCp) for _ in range(8)]
    for f in frames:
        assert b.deliver(0, f) is AckStatus.APPLIED
    c = b.agent.counters
    old, recent = frames[0], frames[-2]
    assert b.deliver(1, old) is None  # older than the memory (seqs 6..9): too old to tell
    assert c["stale_copies_path1"] == 1 and c["rejected"] == 0 and c["applied"] == 8
    assert b.deliver(1, recent) is None and c["duplicates_path1"] == 1  # still remembered: a copy
    assert b.deliver(1, old) is AckStatus.REJECTED_SEQUENCE  # replayed on the path that brought it late
    assert b.deliver(0, old) is AckStatus.REJECTED_SEQUENCE  # and on the first
    assert b.deliver(1, frames[1], who=SAME_KEY_OTHER_CONNECTION).rejected  # another connection's: judged in full
    assert c["applied"] == 8 and c["stale_copies_path1"] == 1 and not b.agent.freezes
    assert b.deliver(1, frames[-1]) is None and b.deliver(1, b.frame(ServoCp)) is AckStatus.APPLIED


def test_an_estop_a_path_brings_older_than_the_memory_still_latches():
    """Only a servo_cp may be too old to tell: an e-stop the first path lost, brought late by the second, latches."""
    b = TwoPaths()
    b.agent.copies = CopyFilter(2, window=4)
    b.enable()
    stop = b.frame(EStop, engage=True)  # path 0 lost it; path 1 is cut
    for f in [b.frame(ServoCp) for _ in range(8)]:
        assert b.deliver(0, f) is AckStatus.APPLIED
    assert b.deliver(1, stop) is AckStatus.ESTOP_LATCHED
    assert b.agent.estop and len(b.agent.freezes) == 1


def test_the_copy_of_enable_does_not_grant_a_second_epoch():
    b = TwoPaths()
    f = b.enable()
    epoch = b.agent.epoch
    assert b.deliver(1, f) is None
    assert b.agent.epoch == epoch
    assert b.deliver(1, b.frame(ServoCp)) is AckStatus.APPLIED


def test_the_copy_of_an_estop_latches_once():
    b = TwoPaths()
    b.enable()
    f = b.frame(EStop, engage=True)
    assert b.deliver(0, f) is AckStatus.ESTOP_LATCHED
    assert b.deliver(1, f) is None
    assert len(b.agent.freezes) == 1


def test_pings_are_answered_on_every_path():
    b = TwoPaths()
    b.enable()
    p = b.frame(Ping)
    assert b.deliver(0, p) is AckStatus.PONG
    assert b.deliver(1, p) is AckStatus.PONG


def test_a_refused_commands_copy_is_judged_again():
    """A copy of a refused command is not a copy of an applied one: it goes through the whole check order."""
    b = TwoPaths()
    b.enable()
    b.t += ms(1)
    stale = codec.encode(ServoCp(b.epoch, 99, b.t - ms(400), ConsoleFlags.OPERATOR_PRESENT, 0b01,
                                 tuple(a.setpoint_cp() for a in b.agent.arms)))
    assert b.deliver(0, stale) is AckStatus.REJECTED_STALE
    assert b.deliver(1, stale) is AckStatus.REJECTED_STALE
    assert b.agent.counters["rejected"] == 2 and b.agent.counters["duplicates_path1"] == 0


@pytest.mark.parametrize("who", [OTHER, SAME_KEY_OTHER_CONNECTION])
def test_another_peer_sending_the_controllers_bytes_is_refused_and_changes_nothing(who):
    """Peer isolation: the controller is its key and its one routing id on every path; anyone else's
    byte-identical frame is judged in full (refused) and neither marks a path nor counts as a copy."""
    b = TwoPaths()
    b.enable()
    f = b.frame(ServoCp)
    assert b.deliver(0, f) is AckStatus.APPLIED
    assert b.deliver(1, f, who) is AckStatus.REJECTED_EPOCH
    assert b.agent.counters["duplicates_path1"] == 0
    # ... so the controller's own copy on path 1 is still recognised as its copy
    assert b.deliver(1, f) is None
    nxt = b.frame(ServoCp)
    assert b.deliver(1, nxt, who) is AckStatus.REJECTED_EPOCH  # before the controller's copy
    assert b.deliver(1, nxt) is AckStatus.APPLIED
    assert b.agent.counters["applied"] == 2


def test_control_changing_hands_forgets_the_old_controllers_frames():
    b = TwoPaths()
    b.enable()
    f = b.frame(ServoCp)
    assert b.deliver(0, f) is AckStatus.APPLIED
    assert b.deliver(0, b.frame(Disable)) is AckStatus.DISABLED  # released: control may pass
    b.seq += 1
    assert b.deliver(0, codec.encode(Enable(0, b.seq, b.t)), OTHER) is AckStatus.ENABLED
    assert b.agent.copies is not None and b.agent.copies.marks == [b.seq, -1]
    assert b.deliver(1, f, OTHER) is AckStatus.REJECTED_EPOCH


def test_one_path_judges_every_copy_as_before():
    """Without link.paths the agent is not told of paths: a second copy is a replay, refused as ever."""
    a = BedsideAgent(BedsideConfig(), 0, first_epoch=7)
    assert a.copies is None
    en = codec.encode(Enable(0, 1, ms(1)))
    a.on_message(ms(1), *CONSOLE[:1], en, CONSOLE[1])
    f = codec.encode(ServoCp(a.epoch, 2, ms(1), ConsoleFlags.OPERATOR_PRESENT, 0b01,
                             tuple(x.setpoint_cp() for x in a.arms)))
    assert ack_status(a.on_message(ms(1), CONSOLE[0], f, CONSOLE[1])[0].data) == AckStatus.APPLIED
    assert ack_status(a.on_message(ms(1), CONSOLE[0], f, CONSOLE[1])[0].data) == AckStatus.REJECTED_SEQUENCE


def _ack(seq: int, echo_send_ns: int) -> bytes:
    return codec.encode_ack(7, seq, 0, seq, echo_send_ns, 0, AckStatus.APPLIED, 1, 0)


def test_the_engine_gets_one_answer_per_command_however_many_paths_judged_it():
    """A refused command's copy is refused again on the other path, with an ack of its own (another bedside seq):
    the engine counts one refusal per command, and both paths still measure their round trip."""
    pm = PathMonitor(["tcp://a:1", "tcp://b:1"], ms(100))
    t = ms(1000)
    first = codec.encode_ack(7, 500, 0, 42, t, 0, AckStatus.REJECTED_NOT_ENABLED, 1, 0)
    again = codec.encode_ack(7, 501, 0, 42, t, 0, AckStatus.REJECTED_NOT_ENABLED, 1, 0)
    assert pm.on_frame(t + ms(2), 0, first)
    assert not pm.on_frame(t + ms(3), 1, first)  # the same ack on the other path
    assert not pm.on_frame(t + ms(9), 1, again)  # the copy's own refusal
    assert not pm.on_frame(t + ms(10), 0, again)
    assert pm.on_frame(t + ms(11), 0, codec.encode_ack(7, 502, 0, 43, t, 0, AckStatus.APPLIED, 1, 0))
    assert pm.unique_acks == 2 and pm.paths[1].acks == 2 and pm.paths[1].rtt_ms() is not None


def test_the_console_keeps_the_first_copy_and_measures_each_path():
    pm = PathMonitor(["tcp://a:1", "tcp://b:1"], ms(100))
    t = ms(1000)
    assert pm.on_frame(t + ms(2), 0, _ack(101, t))
    assert not pm.on_frame(t + ms(9), 1, _ack(101, t))
    assert pm.paths[0].rtt_ms() == pytest.approx(2) and pm.paths[1].rtt_ms() == pytest.approx(9)
    assert pm.paths[0].first == 1 and pm.paths[1].first == 0 and pm.copies == 1
    tel = BedsideAgent(BedsideConfig(), 0).telemetry(t)
    assert pm.on_frame(t + ms(3), 1, tel) and not pm.on_frame(t + ms(4), 0, tel)
    assert pm.best() == 0
    # path 0 goes silent: LOST, and the other path is best
    for i in range(3, 50):
        pm.on_frame(t + ms(i), 1, _ack(100 + i, t + ms(i) - ms(9)))
        pm.tick(t + ms(i))
    assert pm.tick(t + ms(120)) == [("path0", "LOST")]
    assert pm.paths[0].state == "LOST" and pm.paths[1].state == "UP" and pm.best() == 1
    assert pm.live() == [1]
    pm.tick(t + ms(1010))  # a second of acks: path 0 carried none of them
    assert pm.paths[0].loss_pct == 100.0 and pm.paths[1].loss_pct == 0.0
    assert pm.on_frame(t + ms(1020), 0, _ack(500, t + ms(1019))) and pm.paths[0].state == "UP"


def test_the_hud_shows_each_path_and_nothing_with_one():
    from console.ui.status import paths_text

    assert paths_text(None) == ""
    text = paths_text([{"name": "path0", "state": "UP", "rtt_ms": 12.34, "loss_pct": 0.0},
                       {"name": "path1", "state": "LOST", "rtt_ms": 40.0, "loss_pct": 100.0}])
    assert text == " · path0 UP 12.3 ms · path1 LOST 100% loss"


def test_a_frame_older_than_the_window_is_never_a_first_copy():
    """A path lagging by more than the window (seconds of bedside frames) cannot hand the engine old acks."""
    pm = PathMonitor(["tcp://a:1", "tcp://b:1"], ms(100), window=16)
    for seq in range(100, 140):
        assert pm.on_frame(ms(seq), 0, _ack(seq, ms(seq) - ms(1)))
    assert not pm.on_frame(ms(200), 1, _ack(110, ms(109)))
    assert pm.on_frame(ms(201), 1, _ack(140, ms(200)))


def test_a_frame_only_the_slower_path_carried_is_superseded_not_refused_and_its_replays_are_refused():
    """Issue #15's rare REJECTED_SEQUENCE: path 0 cut, its connection dropped (heartbeat) and came back
    (IMMEDIATE: while it reconnected the console's send on it failed, so seq s went out on path 1 only, and the
    new connection's first frame is s+1). The bedside reads path 0 first: s+1 applied, then path 1's s, never
    delivered anywhere before and above path 1's mark: no replay, but the gate has passed it. Answered SUPERSEDED
    (not a refusal, not applied; the console counts it answered), counted per path; the same frame again, on
    either path, is a replay: refused."""
    b = TwoPaths()
    b.enable()
    for _ in range(3):  # both paths carry the session
        f = b.frame(ServoCp)
        assert b.deliver(0, f) is AckStatus.APPLIED and b.deliver(1, f) is None
    for _ in range(2):  # path 0 cut: path 1 alone
        assert b.deliver(1, b.frame(ServoCp)) is AckStatus.APPLIED
    s, s1 = b.frame(ServoCp), b.frame(ServoCp)  # s: path 1 only (path 0 reconnecting); s1: the new connection's first
    assert b.deliver(0, s1) is AckStatus.APPLIED
    assert b.deliver(1, s) is AckStatus.SUPERSEDED
    assert b.deliver(1, s1) is None  # path 1's own copy of s+1
    c = b.agent.counters
    assert c["superseded_path1"] == 1 and c["rejected"] == 0 and c["applied"] == 6 and c["duplicates_path1"] == 4
    assert b.deliver(1, s) is AckStatus.REJECTED_SEQUENCE  # replayed on the path that carried it
    assert b.deliver(0, s) is AckStatus.REJECTED_SEQUENCE  # and on the other
    assert c["applied"] == 6 and c["superseded_path1"] == 1 and not b.agent.freezes
    assert b.deliver(0, b.frame(ServoCp)) is AckStatus.APPLIED


def test_only_a_frame_never_delivered_before_is_superseded():
    """A refused frame's copy is judged again (here: refused again), a frame of another connection is judged in
    full, and a frame the gate refuses for anything but its sequence (another epoch) keeps that refusal."""
    b = TwoPaths()
    b.enable()
    b.t += ms(1)
    home = tuple(a.setpoint_cp() for a in b.agent.arms)
    b.seq += 1
    stale = codec.encode(ServoCp(b.epoch, b.seq, b.t - ms(400), ConsoleFlags.OPERATOR_PRESENT, 0b01, home))
    assert b.deliver(0, stale) is AckStatus.REJECTED_STALE
    skipped = b.frame(ServoCp)  # never delivered on any path
    b.seq += 1
    wrong_epoch = codec.encode(ServoCp(b.epoch + 1, b.seq, b.t, ConsoleFlags.OPERATOR_PRESENT, 0b01, home))
    assert b.deliver(0, b.frame(ServoCp)) is AckStatus.APPLIED
    assert b.deliver(1, stale) is AckStatus.REJECTED_SEQUENCE  # a refused frame's copy: judged again
    assert b.deliver(1, skipped, who=SAME_KEY_OTHER_CONNECTION) is AckStatus.REJECTED_EPOCH
    assert b.deliver(1, wrong_epoch) is AckStatus.REJECTED_EPOCH
    assert b.agent.counters["superseded_path1"] == 0 and b.agent.counters["applied"] == 1
