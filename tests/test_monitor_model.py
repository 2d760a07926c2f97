"""The on-site monitor's headless model (console/monitor_model.py), without Qt: real encoded telemetry,
event and counter frames in, with a fake clock; fields, alarms, events and the clock offset out."""

from __future__ import annotations

import pytest
from conftest import ms

from bedside.agent import BedsideAgent
from console.indicators import Alarm, Severity, alarm_changes
from console.monitor_model import (
    REASON_WORDS,
    TELEMETRY_TIMEOUT_S,
    MonitorModel,
    VideoStatus,
    monitor_alarms,
)
from transport import codec
from transport.messages import (
    ARM_NAMES,
    N_JOINTS,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    CartesianSetpoint,
    Counters,
    Enable,
    Event,
    EventKind,
    OperatingState,
    Reason,
    Telemetry,
)

LIVE = VideoStatus(stale=False, age_ms=42.0, fps=30.0)
NO_VIDEO = VideoStatus(stale=True, reason="NO VIDEO")
BEDSIDE_AHEAD_NS = 5_000_000_000
"""The bedside's monotonic clock reads 5 s more than the monitor's: the two share no epoch."""
PERIOD_NS = ms(5)  # the bedside publishes at 200 Hz


def arm(mode: ArmMode = ArmMode.FOLLOWING, flags: ArmFlags = ArmFlags.HOMED, x: float = 0.0) -> ArmTelemetry:
    sp = CartesianSetpoint(position=(x, 0.01, -0.1))
    return ArmTelemetry(mode, flags, sp, sp, (0.0,) * N_JOINTS)


def telemetry(send_ns: int, state: OperatingState = OperatingState.ENABLED, reason: Reason = Reason.NONE,
              estop: bool = False, arms: tuple[ArmTelemetry, ...] | None = None, seq: int = 1) -> bytes:
    """Bytes as bedside/agent.py's telemetry() makes them."""
    arms = arms if arms is not None else (arm(), arm(), arm(ArmMode.HOLDING), arm(ArmMode.HOLDING))
    return codec.encode(Telemetry(7, seq, send_ns, state, reason, estop, 0, arms))


def event(send_ns: int, reason: Reason, to: OperatingState = OperatingState.PAUSED, text: str = "") -> bytes:
    return codec.encode(Event(7, 1, send_ns, EventKind.STATE_CHANGE, reason, OperatingState.ENABLED, to, text))


def stream(model: MonitorModel, start_ns: int, n: int, delay_ns: int = ms(1), **kw) -> int:
    """`n` telemetry frames at 200 Hz, each `delay_ns` in transit; returns the local time of the last."""
    now = start_ns
    for i in range(n):
        now = start_ns + i * PERIOD_NS
        assert model.receive(telemetry(now - delay_ns + BEDSIDE_AHEAD_NS, seq=i + 1, **kw), now) == []
    return now


def keys(alarms) -> list[str]:
    return [a.key for a in alarms]


def test_before_any_telemetry_it_says_so_and_raises_no_telemetry():
    m = MonitorModel()
    v = m.refresh(ms(10), NO_VIDEO)
    assert keys(v.alarms) == ["telemetry", "video"] and keys(v.raised) == ["telemetry", "video"]
    assert v.alarms[0].text == "nothing from the bedside: this monitor does not show the current state"
    assert v.fields["link"] == "TELEMETRY: none yet" and v.fields["session"] == ""
    assert v.fields["video"] == "video age — · 0 fps"
    assert v.arms == () and m.telemetry is None and m.telemetry_hz(ms(10)) == 0.0
    assert [line.text for line in v.log] == [
        "ALARM NO TELEMETRY: nothing from the bedside: this monitor does not show the current state",
        "ALARM VIDEO STALE: NO VIDEO"]
    assert m.refresh(ms(20), NO_VIDEO).raised == ()  # raised once, not at every refresh


def test_following_telemetry_fills_every_field_and_clears_the_startup_alarms():
    m = MonitorModel()
    m.refresh(0, NO_VIDEO)
    now = stream(m, ms(100), 50)
    v = m.refresh(now, LIVE)
    assert v.alarms == () and keys(v.cleared) == ["telemetry", "video"]
    assert [line.text for line in v.log] == ["cleared: NO TELEMETRY", "cleared: VIDEO STALE"]
    assert v.fields == {
        "link": "TELEMETRY OK · 200 Hz", "rtt": "telemetry delay +0.00 ms", "offset": "offset ≈ +4999.000 ms",
        "session": "bedside ENABLED (NONE) · epoch 7", "limits": "limits: none active",
        "video": "video age 42 ms · 30 fps", "scale": "", "presence": "", "loop": ""}
    assert set(v.warn.values()) == {Severity.INFO}
    assert [(a.name, a.state, a.text, a.severity) for a in v.arms] == [
        ("PSM1", "FOLLOWING", "following", Severity.INFO), ("PSM2", "FOLLOWING", "following", Severity.INFO),
        ("PSM3", "HOLDING", "holding", Severity.INFO), ("ECM", "HOLDING", "holding", Severity.INFO)]


def test_clock_offset_is_the_clock_difference_less_the_best_one_way_delay():
    m = MonitorModel()
    now = stream(m, ms(100), 20, delay_ns=ms(2))
    assert m.offset_ns == BEDSIDE_AHEAD_NS - ms(2)
    # one frame that sat 3 ms longer in a queue: the offset holds, the delay shows
    now += PERIOD_NS
    m.receive(telemetry(now - ms(5) + BEDSIDE_AHEAD_NS), now)
    assert m.offset_ns == BEDSIDE_AHEAD_NS - ms(2) and m.excess_ms == pytest.approx(3.0)
    assert m.refresh(now, LIVE).fields["rtt"] == "telemetry delay +3.00 ms"
    # a faster path appears: the estimate follows the new best
    now += PERIOD_NS
    m.receive(telemetry(now - ms(1) + BEDSIDE_AHEAD_NS), now)
    assert m.offset_ns == BEDSIDE_AHEAD_NS - ms(1) and m.excess_ms == 0.0


def test_stale_telemetry_raises_no_telemetry_and_fresh_telemetry_clears_it():
    m = MonitorModel()
    last = stream(m, 0, 10)
    assert m.refresh(last, LIVE).alarms == ()
    quiet = last + int(TELEMETRY_TIMEOUT_S * 1e9)
    assert m.refresh(quiet, LIVE).alarms == ()  # at the timeout: not yet
    v = m.refresh(quiet + ms(50), LIVE)
    assert keys(v.raised) == ["telemetry"] and v.alarms[0].severity is Severity.CRITICAL
    assert v.alarms[0].text == "nothing from the bedside for 0.3 s: this monitor does not show the current state"
    assert v.fields["link"] == "TELEMETRY LOST · 200 Hz" and v.warn["link"] is Severity.CRITICAL
    assert "bedside ENABLED" in v.fields["session"]  # the last state known, under the alarm
    assert m.telemetry_hz(last + ms(1001)) == 0.0  # a second of silence reads 0 Hz
    back = stream(m, last + ms(2000), 3)
    v = m.refresh(back, LIVE)
    assert keys(v.cleared) == ["telemetry"] and v.alarms == () and v.warn["link"] is Severity.INFO


@pytest.mark.parametrize("state, reason, estop, expected, session_warn", [
    (OperatingState.PAUSED, Reason.LINK_LOST, False, [("link", Severity.CRITICAL, "LINK LOST")], Severity.CRITICAL),
    (OperatingState.PAUSED, Reason.OPERATOR_ABSENT, False, [("paused", Severity.WARNING, "ARMS HELD")],
     Severity.INFO),
    (OperatingState.FAULT, Reason.FAULT, False, [("fault", Severity.CRITICAL, "BEDSIDE FAULT")], Severity.CRITICAL),
    (OperatingState.PAUSED, Reason.ESTOP, True, [("estop", Severity.CRITICAL, "E-STOP"),
                                                 ("paused", Severity.WARNING, "ARMS HELD")], Severity.CRITICAL),
])
def test_each_bedside_state_is_graded_as_before(state, reason, estop, expected, session_warn):
    m = MonitorModel()
    holding = (arm(ArmMode.HOLDING),) * 4
    m.receive(telemetry(BEDSIDE_AHEAD_NS, state, reason, estop, holding), ms(1))
    v = m.refresh(ms(2), LIVE)
    assert [(a.key, a.severity, a.title) for a in v.alarms] == expected
    assert v.warn["session"] is session_warn
    assert v.fields["session"] == f"bedside {state.name} ({reason.name}) · epoch 7" + (" · E-STOP" if estop else "")
    if state is OperatingState.PAUSED:
        assert [(a.text, a.severity) for a in v.arms] == [(f"held: {REASON_WORDS[reason]}", Severity.CRITICAL)] * 4


def test_a_link_loss_that_recovers_raises_and_clears_the_alarm_once():
    m = MonitorModel()
    m.receive(telemetry(BEDSIDE_AHEAD_NS), ms(1))
    assert m.refresh(ms(2), LIVE).alarms == ()
    m.receive(telemetry(BEDSIDE_AHEAD_NS + ms(5), OperatingState.PAUSED, Reason.LINK_LOST), ms(6))
    v = m.refresh(ms(7), LIVE)
    assert keys(v.raised) == ["link"] and v.log[0].severity is Severity.CRITICAL
    assert v.log[0].text == "ALARM LINK LOST: the surgeon's console went silent: the bedside holds every arm"
    assert m.refresh(ms(8), LIVE).raised == ()
    m.receive(telemetry(BEDSIDE_AHEAD_NS + ms(10)), ms(11))
    v = m.refresh(ms(12), LIVE)
    assert keys(v.cleared) == ["link"] and [line.text for line in v.log] == ["cleared: LINK LOST"]


def test_arms_at_a_limit_are_named_from_the_wire_order():
    m = MonitorModel()
    at_limit = ArmFlags.HOMED | ArmFlags.LIMIT
    m.receive(telemetry(BEDSIDE_AHEAD_NS, arms=(arm(), arm(flags=at_limit), arm(ArmMode.HOLDING),
                                                arm(ArmMode.HOLDING, at_limit))), ms(1))
    v = m.refresh(ms(2), LIVE)
    assert v.fields["limits"] == "limits: PSM2, ECM"
    assert [(a.name, a.text, a.severity) for a in v.arms] == [
        ("PSM1", "following", Severity.INFO), ("PSM2", "following · at a limit", Severity.WARNING),
        ("PSM3", "holding", Severity.INFO), ("ECM", "holding · at a limit", Severity.WARNING)]


def test_each_arm_is_found_by_name_with_its_pose():
    m = MonitorModel()
    assert m.arm("PSM1") is None
    m.receive(telemetry(BEDSIDE_AHEAD_NS, arms=tuple(arm(x=0.01 * i) for i in range(len(ARM_NAMES)))), ms(1))
    assert [m.arm(n).measured_cp.position[0] for n in ARM_NAMES] == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert m.arm("PSM9") is None


@pytest.mark.parametrize("reason, severity", [
    (Reason.LINK_LOST, Severity.CRITICAL), (Reason.ESTOP, Severity.CRITICAL), (Reason.FAULT, Severity.CRITICAL),
    (Reason.NONE, Severity.INFO), (Reason.CONSOLE_REQUEST, Severity.INFO), (Reason.STARTUP, Severity.INFO),
    (Reason.OPERATOR_ABSENT, Severity.WARNING), (Reason.HANDOVER, Severity.WARNING),
])
def test_bedside_events_become_log_lines_graded_by_reason(reason, severity):
    m = MonitorModel()
    lines = m.receive(event(BEDSIDE_AHEAD_NS, reason, text="no valid command for 50.8 ms"), ms(1))
    assert [(line.text, line.severity) for line in lines] == [
        (f"bedside STATE_CHANGE: ENABLED → PAUSED ({reason.name}) no valid command for 50.8 ms", severity)]
    assert [e.reason for e in m.events] == [reason]
    assert m.telemetry is None  # an event is not telemetry: NO TELEMETRY stays
    assert keys(m.refresh(ms(2), LIVE).alarms) == ["telemetry"]


def test_counters_are_kept():
    m = MonitorModel()
    assert m.receive(codec.encode(Counters(7, 3, BEDSIDE_AHEAD_NS, {"applied": 12, "decode_errors": 1})), 0) == []
    assert m.counters == {"applied": 12, "decode_errors": 1}


@pytest.mark.parametrize("junk", [
    b"", b"\x00" * 31, b"SRGT" + b"\xff" * 300, "truncated", "unknown-type", "reserved-flags",
])
def test_malformed_frames_are_counted_with_their_cause_and_change_nothing(junk):
    m = MonitorModel()
    good = telemetry(BEDSIDE_AHEAD_NS)
    m.receive(good, ms(1))
    before = (m.telemetry, m.offset_ns, m.telemetry_rx_ns, list(m.events), dict(m.counters))
    data = {"truncated": good[:-1], "unknown-type": good[:5] + b"\x63" + good[6:],
            "reserved-flags": good[:6] + b"\x01" + good[7:]}.get(junk, junk)
    assert m.receive(data, ms(2)) == []
    assert m.decode_errors == 1 and m.last_error.startswith(f"malformed telemetry frame ({len(data)} bytes): ")
    assert len(m.last_error) > len(f"malformed telemetry frame ({len(data)} bytes): ")
    assert (m.telemetry, m.offset_ns, m.telemetry_rx_ns, list(m.events), dict(m.counters)) == before
    m.receive(telemetry(BEDSIDE_AHEAD_NS + ms(5)), ms(6))  # good frames after it are taken as usual
    assert m.telemetry_rx_ns == ms(6) and m.decode_errors == 1


def test_the_real_bedside_agents_frames_tell_the_link_loss_story(cfg):
    """Frames made by bedside/agent.py itself: enabled, then its watchdog pauses it (nobody commands)."""
    agent = BedsideAgent(cfg.bedside, 0, first_epoch=100)
    m = MonitorModel()
    t = 0

    def publish(t: int) -> list[str]:
        lines = [line.text for ev in agent.drain_events() for line in m.receive(codec.encode(ev), t)]
        m.receive(agent.telemetry(t), t)
        return lines

    publish(t)
    v = m.refresh(t, LIVE)
    assert v.alarms == () and v.fields["session"] == "bedside DISABLED (STARTUP) · epoch 0"
    assert [a.state for a in v.arms] == ["DISABLED"] * len(ARM_NAMES)
    agent.on_message(t, b"console-1", codec.encode(Enable(0, 1, t)))
    publish(t)
    assert m.refresh(t, LIVE).fields["session"] == "bedside ENABLED (NONE) · epoch 100"
    lines: list[str] = []
    while agent.state is OperatingState.ENABLED:
        t += PERIOD_NS
        agent.tick(t)
        lines += publish(t)
    assert any("ENABLED → PAUSED (LINK_LOST)" in line for line in lines)
    v = m.refresh(t, LIVE)
    assert keys(v.raised) == ["link"] and "held: the link to the surgeon was lost" in v.arms[0].text
    m.receive(agent.counters_message(t), t)
    assert m.counters == dict(agent.counters)


def test_the_bedside_loop_health_is_a_field_that_warns_for_a_while_after_an_overrun():
    m = MonitorModel()
    now = stream(m, ms(100), 50)
    quiet = {"loop_ticks": 5000, "loop_over_bound": 0, "loop_bound_us": 10_000, "loop_tick_max_us": 1400,
             "loop_tick_p999_us": 1100}
    m.receive(codec.encode(Counters(7, 900, now, quiet)), now)
    v = m.refresh(now, LIVE)
    assert (v.fields["loop"], v.warn["loop"]) == ("tick p99.9 bedside 1.1 ms", Severity.INFO)
    m.receive(codec.encode(Counters(7, 901, now, {**quiet, "loop_over_bound": 1, "loop_tick_max_us": 312_000})),
              now)
    v = m.refresh(now, LIVE)
    assert v.fields["loop"] == "tick p99.9 bedside 1.1 ms · ticks over bound: bedside 1 (over 10 ms, max 312 ms)"
    assert v.warn["loop"] is Severity.WARNING
    assert m.refresh(now + 10_000_000_001, LIVE).warn["loop"] is Severity.INFO  # the counts stay, the warning not


def test_monitor_alarms_come_from_telemetry_silence_and_state():
    assert keys(monitor_alarms(None, float("inf"), 0.25, True)) == ["telemetry", "video"]


def test_an_alarm_is_raised_again_when_its_severity_rises_and_not_when_its_text_changes():
    warn, crit = Alarm("x", Severity.WARNING, "X", "a"), Alarm("x", Severity.CRITICAL, "X", "b")
    assert alarm_changes([warn], [crit]) == ([crit], [])
    assert alarm_changes([crit], [Alarm("x", Severity.CRITICAL, "X", "c")]) == ([], [])
    assert alarm_changes([crit], [warn]) == ([], [])
    assert alarm_changes([crit], []) == ([], [crit])
