"""Each published link (rehearsal/linkemu.SCENARIOS) through a real `teleop linkemu` between a real bedside
(with stereo video) and a real console engine: the latency policy must do what docs/teleoperation.md says.

* lan, london-gibraltar, edge-5g: RTT below the warn threshold; following at full scale, no hold, no
  freeze, no command lost or refused, a live picture;
* strasbourg-hangzhou (RTT ≈ 200 ms): following continues with the scale lowered by the documented curve,
  and the console says so (a `latency warn` event) — slowed, never silently allowed;
* satellite (RTT ≈ 630 ms): following is refused (engage refused / held with LATENCY), nothing moves.

One bedside for the module; each test starts its own link emulator and console.
"""

from __future__ import annotations

import time

import pytest
from faults import Rig, report

from base.config import load_config
from rehearsal.linkemu import SCENARIOS

pytestmark = pytest.mark.fault

# Expected RTT windows (ms): twice the one-way delay, plus jitter, processing and a loaded machine.
RTT_RANGE = {"lan": (0.0, 20.0), "london-gibraltar": (50.0, 95.0), "edge-5g": (35.0, 85.0),
             "strasbourg-hangzhou": (195.0, 245.0), "satellite": (620.0, 2000.0)}
FOLLOW_S = 2.5
HOST_STARVATION = {"VIDEO_STALE", "FAULT", "OPERATOR_ABSENT"}
"""Hold reasons a starved test host can cause on a healthy link (picture, master sample, presence)."""
MAX_JITTER_SIGMAS = 10.0
"""On a scenario whose jitter cannot open a watchdog-long gap (delay in order, half-normal jitter: a gap of
watchdog_ms is more than this many sigmas away), a LINK_LOST hold is the host starving the emulator or a role,
not the link: it earns the one extra window too (a second one still fails)."""


def host_starvation(scenario: str) -> set[str]:
    """The hold reasons the test host can cause on `scenario`."""
    profile, watchdog_ms = SCENARIOS[scenario], load_config(None, []).bedside.watchdog_ms
    if watchdog_ms > MAX_JITTER_SIGMAS * max(profile.jitter_ms, 0.1):
        return HOST_STARVATION | {"LINK_LOST"}
    return HOST_STARVATION


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("scenarios"), video=True).start(console=False)
    yield r
    r.close()


def _why(rig: Rig) -> tuple:
    w = rig.window
    return w.arm_states(True), w.state["video"], [(e["name"], e["text"]) for e in rig.console_events()[-12:]]


def _rtt(rig: Rig) -> float | None:
    return (rig.window.state or {}).get("rtt_ms")


@pytest.mark.parametrize("scenario", ["lan", "london-gibraltar", "edge-5g"])
def test_healthy_links_follow_at_full_scale_without_a_hold(rig, scenario):
    rig.attach(["--scenario", scenario])
    harness_holds = 0
    try:
        for attempt in range(2):
            t0 = rig.engage()
            time.sleep(FOLLOW_S)
            held = [e for e in rig.console_events("teleop", t0) if e["name"].endswith("->HELD")]
            if not held:
                break
            # A hold caused by the link (LINK_LOST, LATENCY, …) fails at once. A picture or master sample
            # starved on the test host (the test process decodes the video and streams the master) is the
            # guard working, not the link: note it and measure one more window, which must be clean.
            assert attempt == 0 and {e["reason"] for e in held} <= host_starvation(scenario), _why(rig)
            harness_holds += 1
        w = rig.window
        assert w.following(), _why(rig)
        rtt = _rtt(rig)
        lo, hi = RTT_RANGE[scenario]
        assert rtt is not None and lo <= rtt <= hi, rtt
        lat = w.state["teleop"]["latency"]
        assert lat["level"] == "ok" and lat["factor"] == 1.0, lat
        assert w.state["video"]["ok"], w.state["video"]
        holds = [e for e in rig.console_events("teleop", t0) if e["name"].endswith("->HELD")]
        assert holds == []
        assert [e for e in rig.console_events(since_ns=t0) if e["name"].startswith("latency")] == []
        freezes = [r for r in rig.s.seen + rig.s.events.new() if r.get("type") == "freeze" and r["t_ns"] >= t0]
        assert freezes == []
        video_age = w.state["video"]["age_ms"]
    finally:
        con, link = rig.detach()
    assert con["commands_rejected"] == 0 and con["lost"] == 0, con
    one_way = link["links"]["control"]["one_way_delay_ms"]
    assert one_way["p50"] >= SCENARIOS[scenario].delay_ms
    report(f"scenario {scenario}", rtt_ms=round(rtt, 1), one_way_p50_ms=one_way["p50"],
           one_way_p99_ms=one_way["p99"], video_age_ms=video_age, holds=0, freezes=0,
           commands=con["commands_sent"], lost=con["lost"], rejected=con["commands_rejected"],
           holds_from_the_test_host=harness_holds)


def test_strasbourg_hangzhou_follows_slowed_down_and_says_so(rig):
    rig.attach(["--scenario", "strasbourg-hangzhou"])
    try:
        for attempt in range(2):  # as for the healthy links: a hold the starved test host causes earns one more window
            t0 = rig.engage()
            time.sleep(FOLLOW_S)
            held = [e for e in rig.console_events("teleop", t0) if e["name"].endswith("->HELD")]
            if not held:
                break
            assert attempt == 0 and {e["reason"] for e in held} <= host_starvation("strasbourg-hangzhou"), _why(rig)
        w = rig.window
        assert w.following(), _why(rig)
        rtt = _rtt(rig)
        lo, hi = RTT_RANGE["strasbourg-hangzhou"]
        assert rtt is not None and lo <= rtt <= hi, rtt
        t = w.state["teleop"]
        lat = t["latency"]
        policy_factor = _policy_factor(rig, rtt)
        assert lat["level"] == "warn" and 0.5 < lat["factor"] < 1.0, lat
        assert abs(lat["factor"] - policy_factor) < 0.05  # the documented curve, at the measured RTT
        assert t["effective_scale"] == pytest.approx(t["scale"] * lat["factor"], rel=0.02)
        warned = [e for e in rig.console_events() if e["name"].startswith("latency warn")]
        assert warned, rig.console_events()  # the surgeon is told (not silently slowed)
        assert [e for e in rig.console_events("teleop", t0) if e["name"].endswith("->HELD")] == []
        video_age = w.state["video"]["age_ms"]
    finally:
        con, _ = rig.detach()
    assert con["commands_rejected"] == 0, con
    report("scenario strasbourg-hangzhou", rtt_ms=round(rtt, 1), latency=lat["level"],
           factor=round(lat["factor"], 3), effective_scale=round(t["effective_scale"], 3),
           video_age_ms=video_age, holds=0, alarm=warned[0]["name"])


def _policy_factor(rig: Rig, rtt: float) -> float:
    from safety.latency_policy import LatencyPolicy

    c = load_config(None, rig.s.con_sets).teleop
    return LatencyPolicy(c.latency_warn_ms, c.latency_hard_ms, c.latency_min_factor, 1).factor(rtt)


def test_satellite_refuses_to_follow_and_nothing_moves(rig):
    rig.attach(["--scenario", "satellite"])
    try:
        w = rig.window
        assert w.wait(lambda w: (_rtt(rig) or 0) >= 250, 20), w.state
        t0 = time.monotonic_ns()
        for _ in range(3):  # the surgeon insists
            w.engage()
            time.sleep(0.7)
        assert "FOLLOWING" not in w.arm_states().values(), w.arm_states(True)
        events = rig.console_events(since_ns=0)
        refused = [e for e in events if e["name"] == "engage refused" or e["name"].endswith("->HELD")]
        assert refused and all(e["reason"] in ("LATENCY", "VIDEO_STALE") for e in refused), refused
        assert any(e["reason"] == "LATENCY" for e in refused)
        assert any(e["name"].startswith("latency hard") for e in events), events
        assert rig.telemetry.max_setpoint_step_mm(t0) == 0.0  # nothing commanded, nothing moved
        rtt, video = _rtt(rig), w.state["video"]
    finally:
        con, link = rig.detach()
    assert con["commands_applied"] == 0 or all(e["name"] != "granted" for e in con["events"]), con
    report("scenario satellite", rtt_ms=round(rtt, 1), following=False, alarm=refused[0]["name"],
           reason=refused[0]["reason"], video=video.get("state"), video_age_ms=video.get("age_ms"),
           rate_mbps=link["links"]["video"]["profile"]["down"]["rate_mbps"])
