"""Property tests: over arbitrary master trajectories, pedals, scale changes, link drops, latency spikes,
e-stops and re-engagements, the controller never commands anything unsafe.

Checked on every tick, for every commanded arm (bit set in arm_mask):

1. the setpoint lies inside the workspace box;
2. it moves from the previous command by no more than the step limit and the speed limit over the
   elapsed time, and turns by no more than the orientation step and rate limits;
3. the first command after any period without one (engage, re-engage, pedal release, camera mode)
   equals the tool's measured pose: no re-engagement jump at all, let alone one above the step limit;
4. an arm the controller has put in HELD leaves it only by disengage, or after an engage press made
   after the hold began (a press made earlier never releases a later hold);
5. nothing is commanded while a hold condition is present this tick (link down, device fault, bedside
   e-stop, console e-stop button, operator absent, RTT at or above the hard threshold), and no arm is
   ever commanded without the operator-present flag;
6. arm swaps (the arm-swap pedal, pressed at any time): the idle instrument (no hand on it) is never
   commanded, so it receives no motion; no hand ever drives two arms (the two hands' instruments differ, at
   most two instruments are commanded and each is one a hand drives now); and the first command to the arm a
   swap took is its measured pose (3.), so no swap produces a jump.

Time is injected (1 ms ticks with occasional jitter and stalls); nothing reads a clock.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_teleop_world import HANDS0, MS, TOOLS0, World, fast_cfg

from base.geometry import Pose, q_angle, q_from_rotvec, q_mul, q_normalize, v_add, v_dist, v_scale
from console.mapping import align_target
from safety.limits import limits_from_config
from transport.messages import ARM_NAMES, ECM_INDEX, INSTRUMENT_ARMS, N_ARMS, CartesianSetpoint, ConsoleFlags

CFG = fast_cfg(tremor_enabled=True, presence_on_ms=3.0, presence_off_ms=0.0, latency_settle_s=0.02)
LIM = limits_from_config(CFG)
BOX = LIM.workspace
EPS_POS = 1e-9
EPS_ROT = 1e-7

finite = dict(allow_nan=False, allow_infinity=False)


def vec(lo: float, hi: float):
    return st.tuples(*(st.floats(lo, hi, **finite),) * 3)


def weighted(value, other, n: int):
    """`value` n times as often as `other`."""
    return st.sampled_from([value] * n + [other])


segment = st.fixed_dictionaries({
    "ticks": st.integers(1, 120),
    "dt_ms": st.sampled_from([1.0] * 6 + [0.5, 3.0, 25.0]),
    "v": st.tuples(vec(-0.8, 0.8), vec(-0.8, 0.8)),  # hand velocities, m/s
    "w": st.tuples(vec(-4.0, 4.0), vec(-4.0, 4.0)),  # hand angular velocities, rad/s
    "grip": st.floats(0.0, 1.0, **finite),
    "present": weighted(True, False, 6),
    "clutch": weighted(False, True, 4),
    "camera": weighted(False, True, 5),
    "link": weighted(True, False, 7),
    "valid": weighted(True, False, 12),
    "bedside_estop": weighted(False, True, 20),
    "estop": weighted(False, True, 20),
    "reset": st.booleans(),
    "engage": st.booleans(),
    "swap": weighted(False, True, 2),
    "disengage": weighted(False, True, 15),
    "align": weighted(True, False, 2),
    "scale": st.none() | st.floats(0.01, 2.0, **finite),
    "rtt": st.none() | st.floats(1.0, 400.0, **finite),
    "jump": st.none() | vec(-0.3, 0.3),
})


@st.composite
def start(draw):
    """Tools somewhere inside the box with any orientation; the camera anywhere, oriented any way."""
    def pose_in_box(jaw_max: float) -> CartesianSetpoint:
        p = tuple(draw(st.floats(lo + 0.001, hi - 0.001)) for lo, hi in zip(BOX.lo, BOX.hi, strict=True))
        q = q_from_rotvec(draw(vec(-3.0, 3.0)))
        return CartesianSetpoint(p, q, draw(st.floats(0.0, jaw_max)))
    tools = (pose_in_box(1.0), pose_in_box(1.0), pose_in_box(1.0), pose_in_box(0.0))
    hands = tuple(Pose(v_add(h.position, draw(vec(-0.05, 0.05))), q_from_rotvec(draw(vec(-3.0, 3.0))))
                  for h in HANDS0)
    return tools, hands


def jitter(q, r):
    return q_normalize(q_mul(q_from_rotvec(r), q))


def run_scenario(tools, hands, segments) -> dict:
    w = World(CFG, tools=tools, hands=hands)
    stats = {"commanded": 0, "reengaged": 0, "swaps": 0, "by_arm": dict.fromkeys(ARM_NAMES, 0)}
    prev_cmd: list[tuple[CartesianSetpoint, int] | None] = [None] * N_ARMS
    prev_state = ["DISABLED"] * N_ARMS
    held_from: list[int | None] = [None] * N_ARMS
    last_press: int | None = None
    tick = 0
    for seg in segments:
        w.link_ok = seg["link"]
        w.valid = seg["valid"]
        w.bedside_estop = seg["bedside_estop"]
        w.rtt = seg["rtt"]
        w.grippers = [seg["grip"], 1.0 - seg["grip"]]
        w.set(operator_present=seg["present"], clutch=seg["clutch"], camera=seg["camera"], estop=seg["estop"],
              disengage=seg["disengage"])
        if seg["scale"] is not None:
            w.ctl.set_scale(w.now, seg["scale"])
        if seg["reset"]:
            w.ctl.reset_estop(w.now)
        if seg["align"] and w.tools[ECM_INDEX] is not None:
            hands_now = w.ctl.snapshot()["hands"]
            for h, hand in ((0, "right"), (1, "left")):
                tool = w.tools[ARM_NAMES.index(hands_now[hand])]
                target = align_target(tool.orientation, w.tools[ECM_INDEX].orientation)
                w.turn(h, jitter(target, (0.03, -0.02, 0.03)))  # ~2.5° off: inside the 5° tolerance
        if seg["jump"] is not None:
            w.move(0, seg["jump"])
        for k in range(seg["ticks"]):
            dt = seg["dt_ms"]
            tick += 1
            pressing = seg["engage"] and k == 0
            if pressing and not w.buttons.engage and not w.buttons.disengage:
                last_press = tick
            w.set(engage=pressing, swap=seg["swap"] and k == 0)
            for h in (0, 1):
                w.move(h, v_scale(seg["v"][h], dt / 1e3))
                spin = q_from_rotvec(v_scale(seg["w"][h], dt / 1e3))
                w.turn(h, q_normalize(q_mul(spin, w.hands[h].orientation)))
            before = list(w.tools)
            assignment = w.ctl.hands.state
            out = w.ctl.step(w.now, w.sample(), w.view())
            stats["swaps"] += w.ctl.hands.state is not assignment
            hands_now = w.ctl.snapshot()["hands"]
            driven = {hands_now["right"], hands_now["left"]}
            assert len(driven) == 2 and driven <= set(INSTRUMENT_ARMS), ("a hand on two arms", hands_now)
            commanded = {ARM_NAMES[i] for i in range(N_ARMS) if out.arm_mask >> i & 1}
            assert commanded - {"ECM"} <= driven, ("an instrument no hand drives was commanded", commanded, hands_now)
            too_slow = w.rtt is not None and w.rtt >= CFG.latency_hard_ms
            hold_now = (not w.link_ok or not w.valid or w.bedside_estop or w.buttons.estop
                        or not w.buttons.operator_present or too_slow)
            if out.arm_mask:
                assert out.flags & ConsoleFlags.OPERATOR_PRESENT
                assert not hold_now, "commanded while a hold condition is present"
            for i in range(N_ARMS):
                cmd = out.arm_mask >> i & 1
                if not cmd:
                    prev_cmd[i] = None
                    continue
                sp = out.setpoints[i]
                assert BOX.contains(sp.position, EPS_POS), ("outside the workspace", i, sp.position)
                if prev_cmd[i] is None:
                    stats["reengaged"] += 1
                    assert v_dist(sp.position, before[i].position) <= EPS_POS, "re-engagement jump"
                    assert q_angle(sp.orientation, before[i].orientation) <= 1e-6, "re-engagement turn"
                else:
                    last, t_last = prev_cmd[i]
                    assert last == before[i]
                    el = min((w.now - t_last) / 1e9, LIM.max_dt_s)
                    step = v_dist(sp.position, last.position)
                    assert step <= LIM.max_step_m + EPS_POS
                    assert step <= LIM.max_speed_m_s * el + EPS_POS
                    turn = q_angle(sp.orientation, last.orientation)
                    assert turn <= LIM.max_rot_step_rad + EPS_ROT
                    assert turn <= LIM.max_rot_speed_rad_s * el + EPS_ROT
                    assert abs(sp.jaw - last.jaw) <= LIM.max_jaw_speed_rad_s * el + EPS_POS
                prev_cmd[i] = (sp, w.now)
                stats["commanded"] += 1
                stats["by_arm"][ARM_NAMES[i]] += 1
            w.apply(out)
            snap = w.ctl.snapshot()["arms"]
            for i, name in enumerate(ARM_NAMES):
                state = snap[name]["state"]
                if state == "HELD" and prev_state[i] != "HELD":
                    held_from[i] = tick
                if prev_state[i] == "HELD" and state != "HELD":
                    assert state == "DISABLED" or (last_press is not None and last_press > held_from[i]), (
                        f"{name} left HELD without an engage press after the hold")
                if out.arm_mask >> i & 1:
                    assert state == "FOLLOWING"
                if name not in driven and name != "ECM":
                    assert state in ("DISABLED", "IDLE") and not out.arm_mask >> i & 1, (name, state)
                    assert w.tools[i] == before[i], f"idle {name} moved"
                prev_state[i] = state
            w.now += int(dt * MS)
    return stats


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(start(), st.lists(segment, min_size=1, max_size=10))
def test_no_command_is_ever_unsafe(begin, segments) -> None:
    tools, hands = begin
    run_scenario(tools, hands, segments)


# A friendlier world for the same checks: always present, link up, aligned, so most ticks are spent
# following, clutching, changing scale and re-engaging rather than held.
busy_segment = segment.map(lambda s: {**s, "present": True, "link": True, "valid": True, "estop": False,
                                      "bedside_estop": False, "align": True,
                                      "rtt": None if s["rtt"] is None else s["rtt"] * 0.6})


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(start(), st.lists(busy_segment, min_size=2, max_size=10))
def test_following_clutching_and_rescaling_stay_within_limits(begin, segments) -> None:
    tools, hands = begin
    segments[0]["engage"] = True
    run_scenario(tools, hands, segments)


def test_the_property_harness_actually_follows() -> None:
    """Guard against a vacuous pass: a plain scenario spends most of its ticks commanding arms."""
    seg = {"ticks": 300, "dt_ms": 1.0, "v": ((0.05, 0.0, 0.0), (0.0, 0.05, 0.0)), "w": ((0.0, 0.0, 0.5),) * 2,
           "grip": 0.7, "present": True, "clutch": False, "camera": False, "link": True, "valid": True,
           "bedside_estop": False, "estop": False, "reset": False, "engage": True, "disengage": False,
           "align": True, "scale": 0.5, "rtt": 150.0, "jump": (0.1, 0.0, 0.0), "swap": False}
    swap = {**seg, "engage": False, "swap": True, "align": False}  # the hand has turned off the new tool's
    segs = [seg, {**seg, "engage": False, "clutch": True}, {**seg, "engage": False},
            swap, {**seg, "engage": False}, swap, {**seg, "engage": False}]
    stats = run_scenario(TOOLS0, HANDS0, segs)
    assert stats["commanded"] > 1000 and stats["reengaged"] >= 6 and stats["swaps"] == 2
    assert all(stats["by_arm"][a] > 100 for a in INSTRUMENT_ARMS), stats["by_arm"]  # PSM3 followed once taken
