"""One limits rule at both ends, as a property: whatever the console's clamp emits, the bedside's check accepts.

For arbitrary valid limit settings (any values the configuration accepts: every key in its range, the
console's step limits at or below the bedside's, any workspace box) and arbitrary master trajectories
(targets anywhere, jumps, turns, any jaw, intervals from 0 to a stall, tools starting outside the box):

1. every setpoint `clamp` emits passes the bedside's `check` (built by the same `limits_from_config` from the
   bedside's keys, judged as bedside/agent.py judges it: from the previous setpoint, without an interval)
   and its rate window (`RateWindow`: speed, orientation rate and jaw rate over a window of send times, each
   command sent up to `bedside.rate_jitter_ms` after the tick that clamped it);
2. every setpoint the bedside would refuse is one the console never emits: asked for exactly that setpoint,
   the console's clamp changes it.

Once on the limits alone (A), once through the whole teleoperation controller (B: mapping, scale, clutch,
camera mode, holds and re-engagement), where the bedside's previous setpoint is the last commanded one, or
after a gap the tool's held pose, as the agent keeps it. Pure and fast: no clock, bounded examples,
deadline=None.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_teleop_properties import jitter, segment
from test_teleop_world import HANDS0, MS, TOOLS0, World, fast_cfg

from base.config import BedsideConfig, Config, TeleopConfig
from base.geometry import q_from_rotvec, q_mul, q_normalize, v_add, v_scale
from console.mapping import align_target
from safety.limits import RateWindow, SetpointLimits, limits_from_config, rate_window
from transport.messages import CartesianSetpoint

finite = dict(allow_nan=False, allow_infinity=False)
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

# (console key, bedside key, Config keeps the bedside's at or above the console's)
PAIRS = (
    ("max_step_mm", "max_step_mm", True),
    ("max_rot_step_deg", "max_rot_step_deg", True),
    ("max_speed_mm_s", "max_speed_mm_s", True),
    ("max_rot_speed_deg_s", "max_rot_speed_deg_s", True),
    ("jaw_rate_rad_s", "max_jaw_speed_rad_s", True),
)


def _range(cls, name: str) -> tuple[float, float]:
    meta = next(f for f in dataclasses.fields(cls) if f.name == name).metadata
    return meta["min"], meta["max"]


@st.composite
def limit_settings(draw, **teleop_over) -> Config:
    """Any limits the configuration accepts: each key inside its declared range, the bedside's limits not
    below the console's, any rate window and send-jitter allowance; a workspace box of any size around the
    simulated arms' site. Built (and so validated) by Config."""
    teleop: dict = dict(teleop_over)
    bedside: dict = {}
    for tkey, bkey, margin in PAIRS:
        (tlo, thi), (blo, bhi) = _range(TeleopConfig, tkey), _range(BedsideConfig, bkey)
        if margin:
            c = draw(st.floats(tlo, min(thi, bhi)) | st.sampled_from([tlo, min(thi, bhi)]))
            b = draw(st.just(max(c, blo)) | st.floats(max(c, blo), bhi))  # equal to the console's: the tightest
        else:
            c, b = draw(st.floats(tlo, thi)), draw(st.floats(blo, bhi))
        teleop[tkey], bedside[bkey] = c, b
    for key in ("rate_window_ms", "rate_jitter_ms"):
        bedside[key] = draw(st.floats(*_range(BedsideConfig, key)) | st.sampled_from(_range(BedsideConfig, key)))
    for axis, centre in zip("xyz", (0.0, 0.0, -100.0), strict=True):
        lo = draw(st.floats(centre - 300.0, centre + 100.0))
        teleop[f"workspace_{axis}_min_mm"] = lo
        teleop[f"workspace_{axis}_max_mm"] = lo + draw(st.floats(1.0, 400.0))
    return Config(teleop=TeleopConfig(**teleop), bedside=BedsideConfig(**bedside))


def both_ends(cfg: Config) -> tuple[SetpointLimits, SetpointLimits]:
    return limits_from_config(cfg.teleop), limits_from_config(cfg.teleop, cfg.bedside)


# ---------------------------------------------------------------------------------------------- A: the limits


def trajectory(box_lo, box_hi):
    """A start pose and a list of (target, dt): targets around (and far outside) the box, small and wild turns,
    any jaw; intervals from 0 through jitter to stalls beyond `max_dt_s`."""
    near = st.tuples(*(st.floats(lo - (hi - lo), hi + (hi - lo)) for lo, hi in zip(box_lo, box_hi, strict=True)))
    point = st.one_of(near, near, near, near, st.tuples(*(st.floats(-2.0, 2.0),) * 3))
    small = st.tuples(*(st.floats(-0.05, 0.05),) * 3)
    turn = st.one_of(small, small, small, st.tuples(*(st.floats(-3.0, 3.0),) * 3)).map(q_from_rotvec)
    dt = st.sampled_from([0.0, 0.0005, 0.001, 0.001, 0.001, 0.0011, 0.002, 0.02, 0.05, 0.3]) | st.floats(0.0, 0.1)
    start = st.builds(CartesianSetpoint, point, turn, st.floats(0.0, 1.2))
    step = st.tuples(point, turn, st.floats(-0.5, 2.0), dt)

    def walk(args):
        first, moves = args
        ori, steps = first.orientation, []
        for p, q, jaw, t in moves:
            ori = q_normalize(q_mul(q, ori))  # small turns accumulate, wild ones jump
            steps.append((CartesianSetpoint(p, ori, jaw), t))
        return first, steps

    return st.tuples(start, st.lists(step, min_size=1, max_size=40)).map(walk)


def run_limits(console: SetpointLimits, bedside: SetpointLimits, start, steps, window: RateWindow | None = None,
               delays: random.Random | None = None) -> dict[str, int]:
    """Clamp each target at the console, judge the result at the bedside; each command leaves a random delay
    in [0, jitter allowance] after its tick (`delays`), which is what the bedside's rate window sees."""
    seen = {"emitted": 0, "clamped": 0, "refused_asked": 0}
    prev = start
    tick_ns = 0
    rng = delays or random.Random(0)
    for target, dt in steps:
        tick_ns += round(dt * 1e9)
        send_ns = tick_ns + (round(rng.uniform(0, window.jitter_ns)) if window is not None else 0)
        refused = bedside.check(prev, target) or (window.check(send_ns, target) if window is not None else None)
        sp, hit = console.clamp(prev, target, dt)
        bad = bedside.check(prev, sp) or (window.check(send_ns, sp) if window is not None else None)
        assert bad is None, f"the bedside refuses what the console emits: {bad} (prev {prev}, dt {dt}, sp {sp})"
        if window is not None:
            window.accept(send_ns, sp)
        assert console.check(prev, sp, dt) is None  # and the console's own check agrees with its clamp
        if refused is not None:
            assert sp != target, f"asked for a setpoint the bedside refuses ({refused}), the console emitted it"
            seen["refused_asked"] += 1
        seen["emitted"] += 1
        seen["clamped"] += bool(hit)
        prev = sp
    return seen


@st.composite
def limits_case(draw):
    cfg = draw(limit_settings())
    console, bedside = both_ends(cfg)
    start, steps = draw(trajectory(console.workspace.lo, console.workspace.hi))
    return console, bedside, start, steps, rate_window(bedside, cfg.bedside), draw(st.randoms(use_true_random=False))


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(limits_case())
def test_the_bedside_accepts_whatever_the_consoles_clamp_emits(case) -> None:
    run_limits(*case)


def test_the_limits_property_is_not_vacuous() -> None:
    """The same run on a seeded sample: the console clamps often and is often asked for refused setpoints."""
    total = {"emitted": 0, "clamped": 0, "refused_asked": 0}
    rng = random.Random(7)
    for _ in range(40):
        cfg = Config(teleop=TeleopConfig(max_step_mm=rng.uniform(0.05, 3.0), max_speed_mm_s=rng.uniform(10, 200)),
                     bedside=BedsideConfig(max_step_mm=3.0, max_speed_mm_s=200.0))
        console, bedside = both_ends(cfg)
        lo, hi = console.workspace.lo, console.workspace.hi
        prev = CartesianSetpoint((0.08, 0.0, -0.1), (0.0, 0.0, 0.0, 1.0), 0.3)
        steps = []
        for _ in range(50):
            p = tuple(rng.uniform(a - 0.05, b + 0.05) if rng.random() < 0.1 else c + rng.gauss(0, 0.003)
                      for a, b, c in zip(lo, hi, prev.position, strict=True))
            q = q_normalize(q_mul(q_from_rotvec(tuple(rng.gauss(0, 0.05) for _ in range(3))), prev.orientation))
            steps.append((CartesianSetpoint(p, q, prev.jaw + rng.gauss(0, 0.01)), rng.choice([0.001, 0.002, 0.05])))
        seen = run_limits(console, bedside, prev, steps, rate_window(bedside, cfg.bedside), rng)
        for k in total:
            total[k] += seen[k]
    assert total["clamped"] > 0.3 * total["emitted"] and total["refused_asked"] > 0.2 * total["emitted"], total


# ------------------------------------------------------------------------------ B: through the controller


@st.composite
def controller_case(draw):
    """Limit settings with the fast harness settings, tools anywhere near the site, a master trajectory."""
    cfg = draw(limit_settings(**dataclasses.asdict(fast_cfg(presence_on_ms=3.0, latency_settle_s=0.02))
                              | {"tremor_enabled": draw(st.booleans())}))
    tools = tuple(CartesianSetpoint(v_add(t.position, draw(st.tuples(*(st.floats(-0.03, 0.03),) * 3))),
                                    q_from_rotvec(draw(st.tuples(*(st.floats(-3.0, 3.0),) * 3))), t.jaw)
                  for t in TOOLS0)
    segments = draw(st.lists(segment.map(lambda s: {**s, "present": True, "link": True, "valid": True,
                                                    "estop": False, "bedside_estop": False, "rtt": None}),
                             min_size=1, max_size=6))
    segments[0]["engage"] = True
    return cfg, tools, segments


def run_controller(cfg: Config, tools, segments) -> int:
    """Drive the controller like test_teleop_properties does; check every commanded setpoint at the bedside."""
    _, bedside = both_ends(cfg)
    w = World(cfg.teleop, tools=tools, hands=HANDS0)
    last: list[CartesianSetpoint | None] = [None, None, None]  # the bedside's view of each arm
    windows = [rate_window(bedside, cfg.bedside) for _ in range(3)]
    delays = random.Random(len(segments))
    commanded = 0
    for seg in segments:
        w.grippers = [seg["grip"], 1.0 - seg["grip"]]
        w.set(clutch=seg["clutch"], camera=seg["camera"], disengage=seg["disengage"])
        if seg["scale"] is not None:
            w.ctl.set_scale(w.now, seg["scale"])
        if seg["jump"] is not None:
            w.move(0, seg["jump"])
        if seg["align"] and w.tools[2] is not None:
            for h in (0, 1):  # within the 5° tolerance, so instruments follow too
                w.turn(h, jitter(align_target(w.tools[h].orientation, w.tools[2].orientation), (0.03, -0.02, 0.03)))
        for k in range(seg["ticks"]):
            w.set(engage=seg["engage"] and k == 0)
            for h in (0, 1):
                w.move(h, v_scale(seg["v"][h], seg["dt_ms"] / 1e3))
                spin = q_from_rotvec(v_scale(seg["w"][h], seg["dt_ms"] / 1e3))
                w.turn(h, q_normalize(q_mul(spin, w.hands[h].orientation)))
            held = list(w.tools)
            out = w.ctl.step(w.now, w.sample(), w.view())
            for i in range(3):
                if not out.arm_mask >> i & 1:
                    last[i] = None  # the bedside holds an arm left out of a command
                    windows[i].reset()
                    continue
                sp = out.setpoints[i]
                prev = held[i] if last[i] is None else last[i]  # first after a gap: from the held pose
                send_ns = w.now + round(delays.uniform(0, windows[i].jitter_ns))
                bad = bedside.check(prev, sp) or windows[i].check(send_ns, sp)
                assert bad is None, f"arm {i}: the bedside refuses a commanded setpoint: {bad}"
                windows[i].accept(send_ns, sp)
                last[i] = sp
                commanded += 1
            w.apply(out)
            w.now += int(seg["dt_ms"] * MS)
    return commanded


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW_OK)
@given(controller_case())
def test_the_bedside_accepts_every_setpoint_the_controller_commands(case) -> None:
    run_controller(*case)


def test_the_controller_property_is_not_vacuous() -> None:
    """A plain scenario with tight console limits equal to the bedside's: most ticks command clamped motion."""
    cfg = Config(teleop=fast_cfg(max_step_mm=0.1, max_speed_mm_s=20.0, max_rot_speed_deg_s=20.0),
                 bedside=BedsideConfig(max_step_mm=0.1, max_speed_mm_s=20.0, max_rot_speed_deg_s=20.0))
    seg = {"ticks": 300, "dt_ms": 1.0, "v": ((0.5, 0.0, 0.0), (0.0, -0.5, 0.0)), "w": ((0.0, 2.0, 0.0),) * 2,
           "grip": 1.0, "clutch": False, "camera": False, "disengage": False, "engage": True, "scale": None,
           "jump": None, "align": True}
    assert run_controller(cfg, TOOLS0, [seg, {**seg, "engage": False, "jump": (0.2, 0.0, 0.0)}]) > 2 * 500
