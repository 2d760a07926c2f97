"""TeleopController scenarios, each driven tick by tick with injected time through the ideal World."""

from __future__ import annotations

import logging
import math

import pytest
from test_teleop_world import ECM, ECM_MASK, HANDS0, MS, TOOLS0, World, fast_cfg

from base.geometry import IDENTITY_Q, Pose, q_angle, q_from_axis_angle, v_dist, v_sub
from console.mapping import align_target
from transport.messages import CartesianSetpoint, ConsoleFlags, OperatingState, Reason


def walk(w: World, hand: int, delta, ticks: int) -> None:
    """Move a hand by `delta` (metres) spread evenly over `ticks` ms."""
    step = tuple(c / ticks for c in delta)
    for _ in range(ticks):
        w.move(hand, step)
        w.tick()


def close(a, b, tol=1e-9) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------- engagement


def test_engage_waits_for_the_session_and_the_tool_pose_then_starts_from_the_tool() -> None:
    w = World(tools=(None,) * 4)
    w.press("engage")
    snap = w.ctl.snapshot()["arms"]["PSM1"]
    assert snap["state"] == "ALIGNING" and w.out.arm_mask == 0
    assert w.session  # the controller asked for a session and the world granted it
    assert "waiting for the tool pose" in snap["guidance"]
    w.tools = list(TOOLS0)
    out = w.tick()
    assert w.state("PSM1") == "FOLLOWING" and out.arm_mask == 0b011
    assert out.setpoints[0] == TOOLS0[0] and out.setpoints[1] == TOOLS0[1]


def test_no_session_is_wanted_before_engage_and_aligning_asks_for_one() -> None:
    w = World()
    out = w.tick()
    assert not out.want_session and not out.release_session and out.arm_mask == 0
    w.set(engage=True)
    out = w.tick()
    assert out.want_session


def test_a_misaligned_master_gets_guidance_and_follows_once_within_tolerance() -> None:
    w = World()
    w.turn(0, q_from_axis_angle((0, 1, 0), math.radians(30)))
    w.engage()
    snap = w.ctl.snapshot()["arms"]["PSM1"]
    assert snap["state"] == "ALIGNING" and w.state("PSM2") == "FOLLOWING"
    assert snap["guidance"].startswith("rotate the master to match the tool")
    assert snap["misalignment_deg"] == pytest.approx(30, abs=1e-6)
    assert close(snap["align_target"], IDENTITY_Q)
    assert w.out.arm_mask == 0b010
    w.turn(0, q_from_axis_angle((0, 1, 0), math.radians(4)))
    out = w.tick()
    assert w.state("PSM1") == "FOLLOWING" and out.arm_mask == 0b011
    assert out.setpoints[0] == TOOLS0[0]  # the 4° residual became the alignment offset: no jump


def test_alignment_is_judged_through_the_camera() -> None:
    cam = q_from_axis_angle((0, 0, 1), math.radians(60))
    tools = (*TOOLS0[:ECM], CartesianSetpoint(TOOLS0[ECM].position, cam, 0.0))
    w = World(tools=tools)
    w.engage()
    assert w.state("PSM1") == "ALIGNING"
    w.turn(0, align_target(TOOLS0[0].orientation, cam))
    w.tick()
    assert w.state("PSM1") == "FOLLOWING"


def test_hand_right_moves_the_tool_right_on_screen() -> None:
    cam = q_from_axis_angle((0, 0, 1), math.pi / 2)  # image right = patient +y
    tools = (*TOOLS0[:ECM], CartesianSetpoint(TOOLS0[ECM].position, cam, 0.0))
    w = World(tools=tools)
    for h in (0, 1):
        w.turn(h, align_target(IDENTITY_Q, cam))
    w.engage()
    walk(w, 0, (0.02, 0.0, 0.0), 200)
    w.tick(20)
    d = v_sub(w.tools[0].position, TOOLS0[0].position)
    assert close(d, (0.0, 0.004, 0.0), 1e-9)


# ---------------------------------------------------------------------- clutch, scale, camera


def test_clutch_holds_the_tool_and_release_resumes_from_the_new_hand_pose_without_a_jump() -> None:
    w = World()
    w.engage()
    walk(w, 0, (0.01, 0.0, 0.0), 100)
    w.tick(20)
    before = w.tools[0]
    w.set(clutch=True)
    out = w.tick()
    assert w.state("PSM1") == "CLUTCHED" and out.arm_mask == 0 and out.flags & ConsoleFlags.CLUTCH
    walk(w, 0, (-0.05, 0.03, 0.0), 100)  # re-centre the hand freely
    assert w.tools[0] == before
    w.set(clutch=False)
    out = w.tick()
    assert w.state("PSM1") == "FOLLOWING" and out.setpoints[0] == before
    walk(w, 0, (0.01, 0.0, 0.0), 100)
    w.tick(20)
    assert close(v_sub(w.tools[0].position, before.position), (0.002, 0.0, 0.0))


def test_scale_changes_live_without_a_jump_and_apply_to_further_motion() -> None:
    w = World()
    w.engage()
    walk(w, 0, (0.01, 0.0, 0.0), 100)
    w.tick(20)
    p0 = w.tools[0].position
    w.ctl.set_scale(w.now, 1.0)
    out = w.tick()
    assert out.setpoints[0].position == p0
    walk(w, 0, (0.01, 0.0, 0.0), 200)
    w.tick(50)
    assert close(v_sub(w.tools[0].position, p0), (0.01, 0.0, 0.0))
    w.ctl.set_scale(w.now, 7.0)  # clamped to scale_max
    assert w.ctl.snapshot()["scale"] == w.cfg.scale_max
    assert "scale" in w.names()


def test_camera_mode_drives_the_endoscope_and_instruments_recapture_on_release() -> None:
    w = World()
    w.engage()
    assert w.state("ECM") == "CLUTCHED"
    w.set(camera=True)
    out = w.tick()
    assert w.state("PSM1") == "CAMERA" and w.state("ECM") == "FOLLOWING" and out.arm_mask == ECM_MASK
    psm = (w.tools[0], w.tools[1])
    for _ in range(200):  # both hands 20 mm up: the endoscope rises 4 mm (camera_scale 0.2)
        w.move(0, (0.0, 0.0001, 0.0))
        w.move(1, (0.0, 0.0001, 0.0))
        w.tick()
    w.tick(20)
    assert close(v_sub(w.tools[ECM].position, TOOLS0[ECM].position), (0.0, 0.004, 0.0))
    assert w.tools[ECM].orientation == TOOLS0[ECM].orientation
    assert (w.tools[0], w.tools[1]) == psm
    w.set(camera=False)
    out = w.tick()
    assert w.state("ECM") == "CLUTCHED" and w.state("PSM1") == "FOLLOWING" and out.arm_mask == 0b011
    assert out.setpoints[0] == psm[0] and out.setpoints[1] == psm[1]


def test_clutch_during_camera_mode_holds_everything() -> None:
    w = World()
    w.engage()
    w.set(camera=True, clutch=True)
    out = w.tick()
    assert out.arm_mask == 0 and w.state("PSM1") == "CAMERA" and w.state("ECM") == "CLUTCHED"
    w.set(clutch=False)
    out = w.tick()
    assert out.arm_mask == ECM_MASK and w.state("PSM1") == "CAMERA"


def test_jaw_follows_the_gripper_at_its_rate_limit() -> None:
    w = World()
    w.engage()
    w.grippers[0] = 1.0
    w.tick(100)
    expected = 0.3 + w.cfg.jaw_rate_rad_s * 0.1
    assert w.tools[0].jaw == pytest.approx(expected, abs=w.cfg.jaw_rate_rad_s * 0.0011)
    w.tick(1000)
    assert w.tools[0].jaw == pytest.approx(w.cfg.jaw_open_rad)
    assert not any("jaw" in n for n in w.names())


# ---------------------------------------------------------------------- limits


def test_workspace_is_clamped_with_a_warning_and_backing_off_moves_at_once() -> None:
    w = World()
    w.engage()
    walk(w, 0, (0.3, 0.0, 0.0), 600)  # 60 mm of tool motion toward +x: the box ends at 120 mm
    w.tick(50)
    x_max = w.cfg.workspace_x_max_mm / 1e3
    assert w.tools[0].position[0] == pytest.approx(x_max)
    assert "PSM1 limit workspace" in w.names()
    ev = next(e for e in w.events if e.name == "PSM1 limit workspace")
    assert ev.reason is Reason.LIMIT
    walk(w, 0, (-0.01, 0.0, 0.0), 100)
    w.tick(20)
    assert w.tools[0].position[0] == pytest.approx(x_max - 0.002)


def test_speed_is_limited_and_a_jump_of_the_hand_is_not_replayed_later() -> None:
    w = World()
    w.engage()
    w.move(0, (0.5, 0.0, 0.0))  # a 500 mm glitch in one sample (100 mm at the tool)
    out = w.tick()
    step = v_dist(out.setpoints[0].position, TOOLS0[0].position)
    assert step == pytest.approx(w.cfg.max_speed_mm_s * 1e-6)
    assert "speed" in w.ctl.snapshot()["arms"]["PSM1"]["active_limits"]
    w.tick(200)
    # The tool trails the target by at most one max step; the rest of the glitch is dropped, not replayed.
    trail = w.cfg.max_step_mm / 1e3 + w.cfg.max_speed_mm_s * 1e-6
    assert v_dist(w.tools[0].position, TOOLS0[0].position) == pytest.approx(trail, rel=1e-6)
    assert "PSM1 limit speed" in w.names()


def test_orientation_rate_is_limited() -> None:
    w = World()
    w.engage()
    w.turn(0, q_from_axis_angle((1, 0, 0), math.radians(1.5)))  # 1.5° in 1 ms: 1500°/s
    out = w.tick()
    assert math.degrees(q_angle(out.setpoints[0].orientation, TOOLS0[0].orientation)) == pytest.approx(
        w.cfg.max_rot_speed_deg_s * 1e-3)
    assert "orientation_rate" in w.ctl.snapshot()["arms"]["PSM1"]["active_limits"]
    w.tick(100)  # within one max_rot_step of the target: caught up at the rate limit
    assert math.degrees(q_angle(w.tools[0].orientation, TOOLS0[0].orientation)) == pytest.approx(1.5)


# ---------------------------------------------------------------------- holds


@pytest.mark.parametrize("flap_ms", [10, 25])
def test_a_short_presence_dropout_is_debounced(flap_ms: int) -> None:
    w = World(fast_cfg(presence_off_ms=30.0))
    w.engage()
    w.set(operator_present=False)
    w.tick(flap_ms)
    w.set(operator_present=True)
    w.tick(5)
    assert w.state("PSM1") == "FOLLOWING"


def test_losing_presence_holds_and_regaining_it_needs_an_explicit_engage() -> None:
    w = World(fast_cfg(presence_off_ms=30.0, presence_on_ms=200.0))
    w.tick(250)
    w.engage()
    w.set(operator_present=False)
    w.tick(29)
    assert w.state("PSM1") == "FOLLOWING"
    out = w.tick(2)
    assert w.state("PSM1") == "HELD" and out.arm_mask == 0 and not out.flags & ConsoleFlags.OPERATOR_PRESENT
    assert w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "OPERATOR_ABSENT"
    w.set(operator_present=True)
    walk(w, 0, (0.01, 0.0, 0.0), 300)
    assert w.state("PSM1") == "HELD" and w.tools[0] == TOOLS0[0]
    w.engage()
    assert w.state("PSM1") == "FOLLOWING" and w.out.setpoints[0] == TOOLS0[0]


def test_engage_is_refused_while_absent_and_says_why() -> None:
    w = World()
    w.set(operator_present=False)
    w.press("engage")
    assert w.state("PSM1") == "DISABLED"
    ev = [e for e in w.events if e.name == "engage refused"]
    assert ev and ev[0].reason is Reason.OPERATOR_ABSENT


def test_console_estop_latches_until_reset_and_then_needs_engage() -> None:
    w = World()
    w.engage()
    w.set(estop=True)
    out = w.tick()
    assert out.estop and out.arm_mask == 0 and w.state("PSM1") == "HELD"
    assert not out.want_session
    w.ctl.reset_estop(w.now)  # refused: the button is still down
    w.tick()
    assert w.ctl.estop_latched and "estop reset refused" in w.names()
    w.set(estop=False)
    w.press("engage")
    assert w.state("PSM1") == "HELD" and w.events[-1].name == "engage refused"
    w.ctl.reset_estop(w.now)
    out = w.tick()
    assert not out.estop and w.state("PSM1") == "HELD" and out.arm_mask == 0
    w.engage()
    assert w.state("PSM1") == "FOLLOWING"


def test_bedside_estop_holds_and_blocks_engage_until_cleared() -> None:
    w = World()
    w.engage()
    w.bedside_estop = True
    w.tick()
    assert w.state("PSM1") == "HELD" and w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "ESTOP"
    w.press("engage")
    assert w.state("PSM1") == "HELD"
    w.bedside_estop = False
    w.engage()
    assert w.state("PSM1") == "FOLLOWING"


def test_link_loss_holds_and_a_returning_link_does_not_resume() -> None:
    w = World()
    w.engage()
    w.link_ok = False
    out = w.tick()
    assert w.state("PSM1") == "HELD" and out.arm_mask == 0
    assert w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "LINK_LOST"
    w.link_ok = True
    w.tick(50)
    assert w.state("PSM1") == "HELD" and not w.out.want_session
    w.engage()
    assert w.state("PSM1") == "FOLLOWING"


def test_the_bedside_ending_the_session_holds_with_its_reason() -> None:
    w = World()
    w.engage()
    w.session = False
    w.bedside_state, w.bedside_reason = OperatingState.PAUSED, Reason.STALE_COMMAND
    w.tick()
    snap = w.ctl.snapshot()["arms"]["PSM1"]
    assert snap["state"] == "HELD" and snap["reason"] == "STALE_COMMAND"


def test_bedside_fault_holds() -> None:
    w = World()
    w.engage()
    w.bedside_state = OperatingState.FAULT
    w.tick()
    assert w.state("PSM1") == "HELD" and w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "FAULT"


def test_external_hold_and_inhibit() -> None:
    w = World()
    w.engage()
    w.ctl.hold(w.now, Reason.GUI_LOST, "GUI stopped responding")
    out = w.tick()
    assert w.state("PSM1") == "HELD" and out.arm_mask == 0
    assert any(e.reason is Reason.GUI_LOST and e.to_state == "HELD" for e in out.events)
    w.ctl.inhibit(w.now, Reason.VIDEO_STALE, True, "video stale: 350 ms old")
    w.press("engage")
    assert w.state("PSM1") == "HELD" and w.events[-1].reason is Reason.VIDEO_STALE
    assert w.ctl.snapshot()["arms"]["PSM1"]["guidance"] == "video stale: 350 ms old"
    w.ctl.inhibit(w.now, Reason.VIDEO_STALE, False)
    w.engage()
    assert w.state("PSM1") == "FOLLOWING"


@pytest.mark.parametrize("bad", ["invalid", "stale", "nan"])
def test_a_master_fault_holds(bad: str) -> None:
    w = World()
    w.engage()
    if bad == "invalid":
        w.valid = False
        w.tick()
    elif bad == "stale":
        s = w.sample()
        out = w.ctl.step(w.now + 200 * MS, s, w.view())
        w.apply(out)
    else:
        w.hands[0] = Pose((math.nan, 0.0, 0.0), IDENTITY_Q)
        w.tick()
    assert w.state("PSM1") == "HELD" and w.out.arm_mask == 0
    assert w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "FAULT"


def test_disengage_disables_and_releases_the_session() -> None:
    w = World()
    w.engage()
    out = w.press("disengage")
    assert w.state("PSM1") == "DISABLED" and w.state("ECM") == "DISABLED"
    assert not w.session and out.arm_mask == 0


# ---------------------------------------------------------------------- latency


def test_latency_warning_lowers_the_scale_smoothly_and_without_a_jump() -> None:
    w = World()
    w.engage()
    walk(w, 0, (0.01, 0.0, 0.0), 100)
    w.tick(20)
    p0 = w.tools[0].position
    prev = p0
    for rtt in range(100, 200, 2):  # RTT climbs through the warning band while the hand is still
        w.rtt = float(rtt)
        out = w.tick()
        assert v_dist(out.setpoints[0].position, prev) < 1e-12
        prev = out.setpoints[0].position
    assert "latency warn" in w.names()
    snap = w.ctl.snapshot()
    factor = snap["latency"]["factor"]
    assert 0.5 < factor < 1.0 and snap["effective_scale"] == pytest.approx(0.2 * factor)
    walk(w, 0, (0.01, 0.0, 0.0), 100)
    w.tick(20)
    assert v_dist(w.tools[0].position, p0) == pytest.approx(0.002 * factor, rel=0.02)


def test_latency_above_hard_holds_and_reengage_waits_for_the_settle_time() -> None:
    w = World(fast_cfg(latency_settle_s=0.5))
    w.engage()
    w.rtt = 300.0
    w.tick()
    assert w.state("PSM1") == "HELD" and w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "LATENCY"
    w.rtt = 50.0
    w.tick(100)
    w.press("engage")
    assert w.state("PSM1") == "HELD" and w.events[-1].name == "engage refused"
    assert w.events[-1].reason is Reason.LATENCY
    w.rtt = 150.0  # back above the warning: the settle clock restarts
    w.tick(10)
    w.rtt = 50.0
    w.tick(450)
    w.press("engage")
    assert w.state("PSM1") == "HELD"
    w.tick(60)
    w.engage()
    assert w.state("PSM1") == "FOLLOWING"


# ---------------------------------------------------------------------- reporting


def test_every_transition_is_an_event_with_a_reason_and_a_log_line(caplog) -> None:
    w = World()
    with caplog.at_level(logging.INFO):
        w.engage()
        w.set(operator_present=False)
        w.tick()
    trans = [e for e in w.events if e.to_state is not None]
    assert [(e.arm, e.from_state, e.to_state) for e in trans if e.arm == "PSM1"] == [
        ("PSM1", "DISABLED", "ALIGNING"), ("PSM1", "ALIGNING", "FOLLOWING"), ("PSM1", "FOLLOWING", "HELD")]
    assert trans[-1].reason is Reason.OPERATOR_ABSENT
    assert "PSM1 FOLLOWING -> HELD on hold (OPERATOR_ABSENT)" in caplog.text


def test_snapshot_has_what_the_gui_needs() -> None:
    w = World()
    w.engage()
    snap = w.ctl.snapshot()
    assert set(snap["arms"]) == {"PSM1", "PSM2", "PSM3", "ECM"}
    assert snap["hands"] == {"right": "PSM1", "left": "PSM2"} and snap["idle"] == "PSM3"
    assert [snap["arms"][a]["hand"] for a in ("PSM1", "PSM2", "PSM3", "ECM")] == ["right", "left", None, "both"]
    for arm in snap["arms"].values():
        assert {"state", "reason", "guidance", "active_limits", "scale"} <= set(arm)
    assert {"scale", "effective_scale", "latency", "operator_present", "estop", "tremor_hz"} <= set(snap)


@pytest.mark.parametrize("enabled", [True, False])
def test_tremor_filter_is_in_the_path_and_switchable(enabled: bool) -> None:
    w = World(fast_cfg(tremor_enabled=enabled))
    w.engage()
    x0 = HANDS0[0].position[0]
    swing = []
    for i in range(3000):  # a still hand with a 10 Hz, 0.5 mm tremor: 0.1 mm at the tool if unfiltered
        w.hands[0] = Pose((x0 + 0.0005 * math.sin(2 * math.pi * 10 * i / 1000), 0.0, 0.0), IDENTITY_Q)
        w.tick()
        if i >= 2500:
            swing.append(w.tools[0].position[0])
    amp = (max(swing) - min(swing)) / 2
    if enabled:
        assert amp < 0.1e-3 / 10  # at least 20 dB down
        assert w.ctl.snapshot()["tremor_hz"][0] == pytest.approx(10, abs=0.3)
    else:
        assert amp == pytest.approx(0.1e-3, rel=0.01)
        assert w.ctl.snapshot()["tremor_hz"] == [None, None]


def test_engage_pressed_while_presence_is_still_debouncing_waits_for_it() -> None:
    w = World(fast_cfg(presence_on_ms=200.0))
    w.tick(150)  # present for 150 ms: not yet confirmed
    w.press("engage")
    assert w.state("PSM1") == "DISABLED" and "engage refused" not in w.names()
    w.tick(60)
    assert w.state("PSM1") == "FOLLOWING"


def test_a_deferred_engage_is_dropped_by_any_other_hold() -> None:
    w = World(fast_cfg(presence_on_ms=200.0))
    w.tick(100)
    w.press("engage")
    w.ctl.hold(w.now, Reason.GUI_LOST, "GUI stopped")
    w.tick(200)
    assert w.state("PSM1") == "DISABLED"
    w2 = World(fast_cfg(presence_on_ms=200.0))
    w2.tick(100)
    w2.press("engage")
    w2.set(operator_present=False)
    w2.tick(300)
    assert w2.state("PSM1") == "DISABLED" and w2.events[-1].name == "engage refused"
