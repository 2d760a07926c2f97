"""The on-site station's headless model (console/station_model.py) against the real bedside agent's frames.

The station's own requests (e-stop, reset) go into bedside/agent.py's on_message with a station's or a
monitor's `role:name`; the agent's telemetry, events and acks come back into the model. Fake clock, no
sockets (the cross-process version: tests/test_station_e2e.py)."""

from __future__ import annotations

import pytest
from conftest import ms

from bedside.agent import BedsideAgent
from console.alarm_sound import Condition
from console.indicators import Severity
from console.monitor_model import VideoStatus
from console.station_model import (
    ESTOP_HOLD_S,
    HoldToActivate,
    LogFollow,
    StationModel,
    reset_reason_problem,
    station_event_line,
)
from transport import codec
from transport.messages import Enable, Event, EventKind, OperatingState, Reason

LIVE = VideoStatus(stale=False, age_ms=40.0, fps=30.0)
WALL = 1_800_000_000.0
STATION, MONITOR = "station:nurse", "monitor:wall"


class Rig:
    """A real bedside agent and a station model exchanging real frames."""

    def __init__(self, cfg) -> None:
        self.agent = BedsideAgent(cfg.bedside, 0, first_epoch=40)
        self.m = StationModel()
        self.t = ms(1)
        self.lines: list[tuple[str, Severity]] = []

    def publish(self) -> None:
        for ev in self.agent.drain_events():
            self.lines += [(line.text, line.severity) for line in self.m.receive(codec.encode(ev), self.t)]
        self.m.receive(self.agent.telemetry(self.t), self.t)

    def station_sends(self, data: bytes, user: str = STATION) -> None:
        for out in self.agent.on_message(self.t, b"station", data, user):
            self.lines += self.m.on_answer(out.data, self.t)
        self.publish()

    def enable(self, user: str, peer: bytes) -> None:
        self.agent.on_message(self.t, peer, codec.encode(Enable(0, 1, self.t)), user)
        self.publish()

    def lose_link(self) -> None:
        while self.agent.state is OperatingState.ENABLED:
            self.t += ms(5)
            self.agent.tick(self.t)
            self.publish()

    def view(self, **kw):
        return self.m.refresh_station(self.t, LIVE, WALL, **kw)


def test_a_brush_of_the_estop_button_does_nothing_a_hold_fires_once():
    b = HoldToActivate(ESTOP_HOLD_S)
    b.press(0)
    assert not b.poll(ms(300))
    assert b.release(ms(300))  # released early: cancelled, and the shell says so
    assert not b.poll(ms(2000))
    b.press(ms(3000))
    assert b.progress(ms(3500)) == pytest.approx(0.5)
    assert not b.poll(ms(3999))
    assert b.poll(ms(4000)) and not b.poll(ms(4100))  # once per press
    assert not b.release(ms(4200))
    with pytest.raises(ValueError):
        HoldToActivate(0.05)


@pytest.mark.parametrize("text", ["", "   ", "ok", "x" * 300])
def test_a_reset_needs_a_real_reason(text):
    assert reset_reason_problem(text) is not None
    with pytest.raises(ValueError):
        StationModel().reset(0, text)


def test_the_event_log_follows_unless_scrolled_back():
    f = LogFollow()
    assert f.added(3)
    f.scrolled(10, 40)  # the user scrolls back
    assert not f.added() and not f.added(2) and f.unseen == 3
    f.scrolled(40, 40)  # back at the bottom
    assert f.following and f.unseen == 0 and f.added()


def test_who_is_in_control_and_since_when_then_link_lost_then_takeover(cfg):
    r = Rig(cfg)
    r.publish()
    v = r.view()
    assert v.control == "nobody: no surgeon has control" and v.guidance.title == "NO SURGEON IN CONTROL"
    r.enable("surgeon:remote", b"remote")
    r.t += ms(125_000)
    r.publish()
    v = r.view()
    assert v.control.startswith("remote since ") and v.control.endswith("(2 min)")
    assert v.guidance.title == "SURGEON IN CONTROL" and v.guidance.severity is Severity.INFO
    r.lose_link()
    v = r.view()
    assert v.guidance.title == "LINK TO THE SURGEON LOST — ARMS HELD"
    assert "bedside surgeon takes over" in v.guidance.text and "Engage" in v.guidance.text
    assert v.control.startswith("nobody is driving: arms held since ") and v.control.endswith("last in control: remote")
    assert v.monitor.fields["session"] == "bedside: arms held (the link to the surgeon was lost)"
    assert Condition.LINK_LOST in v.conditions
    assert any(text.startswith("ARMS HELD (the link to the surgeon was lost)") for text, _ in r.lines)
    r.enable("surgeon:bedside", b"local")  # the audited handover: allowed after a link loss
    v = r.view()
    assert v.control.startswith("bedside since ")
    assert v.guidance.title == "TAKEN OVER — SURGEON IN CONTROL"
    assert v.guidance.text.startswith("bedside took over from remote (recorded in the audit)")
    assert ("control granted to surgeon:bedside (was surgeon:remote, PAUSED LINK_LOST)",
            Severity.WARNING) in r.lines
    assert Condition.LINK_LOST not in v.conditions


def test_station_estop_latches_and_only_a_reason_resets_it_in_the_audit(cfg):
    r = Rig(cfg)
    r.enable("surgeon:remote", b"remote")
    r.station_sends(r.m.estop(r.t))
    assert ("E-STOP latched at the bedside: every arm held", Severity.CRITICAL) in r.lines
    assert r.agent.estop_local and r.agent.state is OperatingState.PAUSED
    v = r.view()
    assert v.estop_latched and v.may_reset and v.guidance.title == "E-STOP — ARMS HELD"
    assert "Reset e-stop" in v.guidance.text and Condition.ESTOP in v.conditions
    assert [a.key for a in v.monitor.alarms] == ["estop"]  # not also ARMS HELD: the e-stop is why
    assert any("e-stop raised by the bedside station (station:nurse)" in text for text, _ in r.lines)
    r.station_sends(codec.encode(codec.decode(r.m.reset(r.t, "instruments checked, field clear"))))
    assert not r.agent.estop_local
    assert ("e-stop reset at the bedside: the surgeon may engage again", Severity.WARNING) in r.lines
    assert any("e-stop reset by the bedside station (station:nurse), reason: instruments checked, field clear"
               in text for text, _ in r.lines)
    assert not r.view().estop_latched


def test_a_reset_without_reason_is_refused_by_the_bedside_too(cfg):
    """The model never sends one; a hand-made frame is refused at the bedside (REJECTED_NO_REASON)."""
    from transport.messages import EStop

    r = Rig(cfg)
    r.station_sends(r.m.estop(r.t))
    r.m._pending[99] = "reset"
    r.station_sends(codec.encode(EStop(0, 99, r.t, False, "")))
    assert ("e-stop reset refused by the bedside (a reason is required)", Severity.WARNING) in r.lines
    assert r.agent.estop_local


def test_a_monitor_key_is_refused_for_estop_and_reset(cfg):
    r = Rig(cfg)
    r.enable("surgeon:remote", b"remote")
    r.station_sends(r.m.estop(r.t), MONITOR)
    assert not r.agent.estop and r.agent.state is OperatingState.ENABLED
    assert any(text.startswith("E-STOP NOT ACCEPTED by the bedside (this station's key may not do that: it needs "
                               "the role 'station'") for text, _ in r.lines)
    r.agent.raise_estop(r.t, "local")
    r.station_sends(r.m.reset(r.t, "instruments checked"), MONITOR)
    assert r.agent.estop_local


def test_the_surgeons_estop_is_theirs_to_reset(cfg):
    from transport.messages import EStop

    r = Rig(cfg)
    r.enable("surgeon:remote", b"remote")
    r.agent.on_message(r.t, b"remote", codec.encode(EStop(0, 2, r.t, True)), "surgeon:remote")
    r.publish()
    v = r.view()
    assert v.estop_latched and not v.may_reset and "Only the surgeon resets it" in v.guidance.text


def test_the_estop_path_is_known_from_the_answers(cfg):
    r = Rig(cfg)
    assert not r.m.path_ok(r.t)
    ping = r.m.ping_due(r.t)
    assert ping is not None and r.m.ping_due(r.t + ms(100)) is None
    r.station_sends(ping)
    assert r.m.path_ok(r.t) and not r.m.path_ok(r.t + ms(2001))


@pytest.mark.parametrize(("setup", "condition"), [
    ("estop", Condition.ESTOP), ("link", Condition.LINK_LOST), ("fault", Condition.DEVICE_FAULT),
    ("video", Condition.VIDEO_STALE), ("latency", Condition.LATENCY_HOLD), ("voice", Condition.VOICE_LOST),
    ("silent", Condition.NO_TELEMETRY)])
def test_each_alarm_condition_sounds_on_the_station(cfg, setup, condition):
    from console.alarm_audio import AlarmPlayer
    from console.alarm_sound import CONDITIONS
    from transport.messages import Telemetry

    r = Rig(cfg)
    r.enable("surgeon:remote", b"remote")
    video, voice_lost = LIVE, False
    if setup == "estop":
        r.station_sends(r.m.estop(r.t))
    elif setup == "link":
        r.lose_link()
    elif setup == "fault":
        t = codec.decode(r.agent.telemetry(r.t))
        r.m.receive(codec.encode(Telemetry(t.epoch, t.seq + 1, t.send_ns, OperatingState.FAULT, Reason.FAULT,
                                           False, 0, t.arms)), r.t)
    elif setup == "latency":
        t = codec.decode(r.agent.telemetry(r.t))
        r.m.receive(codec.encode(Telemetry(t.epoch, t.seq + 1, t.send_ns, OperatingState.PAUSED, Reason.LATENCY,
                                           False, 0, t.arms)), r.t)
    elif setup == "video":
        video = VideoStatus(stale=True, reason="NO VIDEO")
    elif setup == "voice":
        voice_lost = True
    elif setup == "silent":
        r.t += ms(1000)
    v = r.m.refresh_station(r.t, video, WALL, voice_lost=voice_lost)
    assert condition in v.conditions
    player = AlarmPlayer(pause_s=60, output="null")
    try:
        (burst,) = player.update(r.t, set(v.conditions))
        assert burst.priority is max(CONDITIONS[c] for c in v.conditions)
        assert player.source.started == [burst.priority]
    finally:
        player.close()


def test_event_lines_use_the_teams_words():
    ev = Event(1, 1, 0, EventKind.STATE_CHANGE, Reason.LINK_LOST, OperatingState.ENABLED, OperatingState.PAUSED,
               "no valid command for 51.0 ms (watchdog 50 ms); arms held")
    text, sev = station_event_line(ev)
    assert text == ("ARMS HELD (the link to the surgeon was lost): no valid command for 51.0 ms (watchdog 50 ms); "
                    "arms held") and sev is Severity.CRITICAL
    assert "LINK_LOST" not in text and "local" not in text
    refused = Event(1, 2, 0, EventKind.REJECTION, Reason.ESTOP, OperatingState.PAUSED, OperatingState.PAUSED,
                    "ServoCp seq 6603 from surgeon:remote refused: REJECTED_ESTOP")
    assert station_event_line(refused)[0] == "bedside refused a command from surgeon:remote (the e-stop is latched)"


def test_a_station_started_mid_operation_learns_who_is_in_control_from_its_first_ping(cfg):
    r = Rig(cfg)
    r.agent.on_message(r.t, b"remote", codec.encode(Enable(0, 1, r.t)), "surgeon:remote")
    r.agent.drain_events()  # the grant happened before this station listened
    r.t += ms(90_000)
    r.publish()
    assert r.view().control.startswith("a surgeon (who: not known here")
    r.station_sends(r.m.ping_due(r.t))
    assert r.view().control.startswith("remote since ") and r.view().control.endswith("(1 min)")
    assert any(text == "station:nurse asked who is in control: surgeon:remote, for 90.0 s"
               for text, _ in r.lines)
    r.t += ms(600)
    r.station_sends(r.m.ping_due(r.t))  # it knows the session now: not asked again
    assert sum("asked who is in control" in text for text, _ in r.lines) == 1


def test_a_station_that_missed_the_grant_asks_again_and_shows_the_takeover(cfg):
    """Telemetry events can be dropped for a slow subscriber: the ping's epoch tells the bedside what it knows."""
    r = Rig(cfg)
    r.enable("surgeon:remote", b"remote")
    r.station_sends(r.m.ping_due(r.t))
    r.lose_link()
    r.agent.on_message(r.t, b"local", codec.encode(Enable(0, 1, r.t)), "surgeon:bedside")
    r.agent.drain_events()  # the grant and the state change never reached the station
    r.publish()
    r.t += ms(1000)
    r.station_sends(r.m.ping_due(r.t))
    v = r.view()
    assert v.control.startswith("bedside since ") and v.guidance.title == "TAKEN OVER — SURGEON IN CONTROL"
