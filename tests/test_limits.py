"""safety.limits: the workspace box and step/speed/orientation/jaw limits, clamp and check agreeing."""

from __future__ import annotations

import math
import random

import pytest

from base.config import BedsideConfig, ConfigError, TeleopConfig, load_config
from base.geometry import IDENTITY_Q, q_angle, q_from_axis_angle, q_mul, v_dist
from safety.limits import LimitKind, RateWindow, SetpointLimits, WorkspaceBox, limits_from_config
from transport.messages import CartesianSetpoint as Sp

BOX = WorkspaceBox.from_mm((-100, 100), (-50, 50), (-200, -20))
LIM = SetpointLimits(BOX, max_step_m=0.002, max_speed_m_s=0.1, max_rot_step_rad=math.radians(2),
                     max_rot_speed_rad_s=math.radians(90), max_jaw_speed_rad_s=2.0)
P0 = Sp((0.0, 0.0, -0.1), IDENTITY_Q, 0.5)


def test_box_validates_and_contains() -> None:
    with pytest.raises(ValueError):
        WorkspaceBox((0, 0, 0), (1, -1, 1))
    assert BOX.contains((0.1, 0.05, -0.02)) and not BOX.contains((0.1001, 0, -0.1))
    assert BOX.check((0.0, 0.0, -0.1)) is None
    bad = BOX.check((0.0, 0.0, 0.01))
    assert bad is not None and bad.kind is LimitKind.WORKSPACE and bad.value == pytest.approx(0.03)


def test_box_clamp_is_nearest_point_and_never_pulls_a_tool_that_starts_outside() -> None:
    assert BOX.clamp((0.5, -0.5, 0.0)) == (0.1, -0.05, -0.02)
    outside = (0.15, 0.0, -0.1)
    assert BOX.clamp((0.2, 0.0, -0.1), outside) == (0.15, 0.0, -0.1)  # no further out
    assert BOX.clamp((0.12, 0.0, -0.1), outside) == (0.12, 0.0, -0.1)  # back toward the box: allowed


def test_clamp_limits_speed_by_dt_and_step_after_a_stall() -> None:
    far = Sp((0.05, 0.0, -0.1), IDENTITY_Q, 0.5)
    sp, hit = LIM.clamp(P0, far, 0.001)
    assert v_dist(sp.position, P0.position) == pytest.approx(0.0001) and hit == (LimitKind.SPEED,)
    sp, hit = LIM.clamp(P0, far, 1.0)  # a stall: the step limit, not the gap, bounds the move
    assert v_dist(sp.position, P0.position) == pytest.approx(0.002) and hit == (LimitKind.STEP,)
    sp, hit = LIM.clamp(P0, far, 0.0)
    assert sp.position == P0.position


def test_clamp_workspace_then_motion() -> None:
    near_wall = Sp((0.0999, 0.0, -0.1), IDENTITY_Q, 0.5)
    sp, hit = LIM.clamp(near_wall, Sp((0.2, 0.0, -0.1), IDENTITY_Q, 0.5), 0.001)
    assert sp.position[0] == pytest.approx(0.1) and LimitKind.WORKSPACE in hit


def test_clamp_orientation_and_jaw_rates() -> None:
    turned = Sp(P0.position, q_from_axis_angle((0, 0, 1), 1.0), 1.5)
    sp, hit = LIM.clamp(P0, turned, 0.01)
    assert q_angle(sp.orientation, P0.orientation) == pytest.approx(math.radians(0.9))
    assert sp.jaw == pytest.approx(0.52)
    assert set(hit) == {LimitKind.ROT_RATE, LimitKind.JAW_RATE}


def test_nothing_to_clamp_returns_the_target_unchanged() -> None:
    t = Sp((0.00005, 0.0, -0.1), IDENTITY_Q, 0.501)
    assert LIM.clamp(P0, t, 0.001) == (t, ())


@pytest.mark.parametrize("dt", [0.0, 0.0005, 0.001, 0.02, 3.0])
def test_whatever_clamp_returns_check_accepts(dt: float) -> None:
    targets = [Sp((x, y, z), q_from_axis_angle((1, 2, 3), a), j)
               for x in (-1.0, 0.0, 0.001) for y in (0.0, 0.3) for z in (-0.1, 0.5) for a in (0.0, 0.01, 3.0)
               for j in (0.0, 0.5, 9.0)]
    for t in targets:
        sp, _ = LIM.clamp(P0, t, dt)
        assert LIM.check(P0, sp, dt) is None, (t, sp)


def test_check_reports_each_violation() -> None:
    assert LIM.check(P0, Sp((0.0, 0.0, -0.095), IDENTITY_Q, 0.5)).kind is LimitKind.STEP
    assert LIM.check(P0, Sp((0.0, 0.0, -0.099), IDENTITY_Q, 0.5), 0.001).kind is LimitKind.SPEED
    assert LIM.check(P0, Sp((0.0, 0.0, -0.099), IDENTITY_Q, 0.5)) is None  # no dt: per-step limits only
    assert LIM.check(P0, Sp(P0.position, q_from_axis_angle((1, 0, 0), 0.1), 0.5)).kind is LimitKind.ROT_STEP
    rot = Sp(P0.position, q_from_axis_angle((1, 0, 0), 0.01), 0.5)
    assert LIM.check(P0, rot, 0.001).kind is LimitKind.ROT_RATE
    assert LIM.check(P0, Sp(P0.position, IDENTITY_Q, 0.6), 0.001).kind is LimitKind.JAW_RATE
    assert LIM.check(None, Sp((0.0, 0.0, 0.0), IDENTITY_Q, 0.5)).kind is LimitKind.WORKSPACE


def test_both_ends_build_their_limits_with_one_function_from_their_keys(cfg) -> None:
    """The same box; the bedside's motion keys, at or above the console's (the margin Config enforces)."""
    console, bedside = limits_from_config(cfg.teleop), limits_from_config(cfg.teleop, cfg.bedside)
    assert console.workspace == bedside.workspace
    assert bedside.max_step_m == cfg.bedside.max_step_mm / 1e3 and console.max_step_m == cfg.teleop.max_step_mm / 1e3
    assert bedside.max_rot_step_rad == math.radians(cfg.bedside.max_rot_step_deg)
    assert bedside.max_speed_m_s == cfg.bedside.max_speed_mm_s / 1e3
    assert bedside.max_rot_speed_rad_s == math.radians(cfg.bedside.max_rot_speed_deg_s)
    assert bedside.max_jaw_speed_rad_s == cfg.bedside.max_jaw_speed_rad_s
    for name in ("max_step_m", "max_rot_step_rad", "max_speed_m_s", "max_rot_speed_rad_s", "max_jaw_speed_rad_s"):
        assert getattr(console, name) < getattr(bedside, name), name  # the defaults keep a real margin
    assert console.workspace.contains((0.08, 0.0, -0.10)) and console.workspace.contains((0.0, -0.06, -0.04))
    assert isinstance(cfg.teleop, TeleopConfig)


@pytest.mark.parametrize("key", ["max_step_mm", "max_rot_step_deg"])
def test_a_console_step_limit_above_the_bedsides_is_refused(key) -> None:
    """The limits the bedside checks: a console allowed more would be refused by it, and pause."""
    low = getattr(TeleopConfig(), key)
    with pytest.raises(ConfigError, match=rf"^bedside\.{key}: .* is below teleop\.{key} "):
        load_config(None, [f"bedside.{key}={low * 0.9}"])  # the message leads with the key the user set
    with pytest.raises(ConfigError, match=rf"^teleop\.{key}: .* is above bedside\.{key} "):
        load_config(None, [f"teleop.{key}={getattr(BedsideConfig(), key) * 1.1}"])
    load_config(None, [f"bedside.{key}={low}"])  # equal is allowed


def test_check_widens_the_box_around_prev_as_clamp_does() -> None:
    outside = Sp((0.15, 0.0, -0.1), IDENTITY_Q, 0.5)  # 50 mm beyond x max
    back = Sp((0.1495, 0.0, -0.1), IDENTITY_Q, 0.5)
    further = Sp((0.1505, 0.0, -0.1), IDENTITY_Q, 0.5)
    assert LIM.check(outside, back, 0.01) is None
    bad = LIM.check(outside, further, 0.01)
    assert bad is not None and bad.kind is LimitKind.WORKSPACE and bad.value == pytest.approx(0.0005)
    assert LIM.check(None, back).kind is LimitKind.WORKSPACE  # without prev: the box itself
    for target in (further, back, Sp((0.3, 0.2, 0.1), IDENTITY_Q, 0.5)):
        sp, _ = LIM.clamp(outside, target, 0.01)
        assert LIM.check(outside, sp, 0.01) is None


def test_check_order_motion_before_the_box() -> None:
    """A jump that also leaves the box is a STEP (the bedside's ack for it before the box was shared)."""
    jump_out = Sp((0.0, 0.0, 0.01), IDENTITY_Q, 0.5)
    assert LIM.check(P0, jump_out).kind is LimitKind.STEP


def test_fast_check_agrees_with_the_named_checks() -> None:
    """`_accepts` (the inlined 1 kHz path) accepts exactly what `_violation` accepts, on setpoints scattered across
    and just around every limit: step, orientation step, speed, orientation rate, jaw rate, box (and its widening
    around a prev outside it), with and without an interval."""
    rng = random.Random(20261123)
    seen: dict[str, int] = {}
    for _ in range(40000):
        prev = Sp(tuple(rng.uniform(lo - 0.01, hi + 0.01) for lo, hi in zip(BOX.lo, BOX.hi, strict=True)),
                  q_from_axis_angle((rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)), rng.uniform(0, 3.0)),
                  rng.uniform(0.0, 1.0))
        scale = rng.choice([1e-5, 1e-4, 1.5e-3, 2e-3, 2.1e-3, 2e-2])
        pos = tuple(c + rng.gauss(0.0, scale) for c in prev.position)
        ang = rng.choice([0.0, 1e-3, 0.02, math.radians(2.0), 0.1])
        turn = q_from_axis_angle((rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)), rng.uniform(0.0, ang))
        jaw = prev.jaw + rng.choice([0.0, rng.gauss(0.0, 0.002), rng.gauss(0.0, 0.05)])
        sp = Sp(pos, q_mul(turn, prev.orientation) if ang else prev.orientation, jaw)
        dt = rng.choice([None, 0.0, 0.0005, 0.001, 0.01, 0.05, 2.0])
        bad = LIM._violation(prev, sp, dt)
        assert LIM._accepts(prev, sp, dt) == (bad is None), (prev, sp, dt, bad)
        assert LIM.check(prev, sp, dt) == bad
        what = "ok" if bad is None else bad.kind.value
        seen[what] = seen.get(what, 0) + 1
    assert {"ok", *(k.value for k in LimitKind)} <= set(seen), seen  # every check both passed and failed
    assert min(seen.values()) > 100, seen


# ----------------------------------------------------------------------------------- the bedside's rate window


def _stream(window: RateWindow, speed_m_s: float, n: int, late_every: int = 0, late_ns: int = 0,
            period_ns: int = 1_000_000) -> tuple[int, LimitKind | None]:
    """Feed `n` setpoints moving along x at `speed_m_s`, one per tick; every `late_every`-th leaves `late_ns`
    after its tick. The index of the first refusal and its kind, or (n, None)."""
    x = 0.0
    for k in range(n):
        x += speed_m_s * period_ns / 1e9
        send = k * period_ns + (late_ns if late_every and k % late_every == 0 else 0)
        sp = Sp((x, 0.0, -0.1), IDENTITY_Q, 0.5)
        bad = window.check(send, sp)
        if bad is not None:
            return k, bad.kind
        window.accept(send, sp)
    return n, None


def test_rate_window_accepts_a_console_at_its_speed_whatever_its_send_jitter() -> None:
    """At the bedside's own speed, with commands sent up to the allowance late (every 7th: 20 ms, the worst the
    allowance covers), over 3 s: nothing is refused. Judged command by command it would be (the second test)."""
    lim = limits_from_config(TeleopConfig())
    w = RateWindow(lim, 200_000_000, 20_000_000)
    assert _stream(w, lim.max_speed_m_s, 3000, late_every=7, late_ns=20_000_000) == (3000, None)
    per_command = RateWindow(lim, 0, 0)  # no window, no allowance: what "a rate judged per command" means
    k, kind = _stream(per_command, lim.max_speed_m_s * 0.9, 100, late_every=7, late_ns=600_000)
    assert kind is LimitKind.SPEED and k < 20


def test_rate_window_refuses_a_stream_faster_than_the_limit_within_a_window() -> None:
    """A stream 20 % over the speed limit (above the 10 % that 20 ms of allowance over 200 ms permits) is refused
    before 400 ms; one at 5 m/s (a bug or an attacker sending whole steps every tick) within a few commands."""
    lim = limits_from_config(TeleopConfig())
    k, kind = _stream(RateWindow(lim, 200_000_000, 20_000_000), lim.max_speed_m_s * 1.2, 2000)
    assert kind is LimitKind.SPEED and k < 400
    k, kind = _stream(RateWindow(lim, 200_000_000, 20_000_000), 5.0, 2000)
    assert kind is LimitKind.SPEED and k < 10


def test_rate_window_judges_orientation_and_jaw_rates_and_forgets_on_reset() -> None:
    lim = limits_from_config(TeleopConfig())
    w = RateWindow(lim, 200_000_000, 20_000_000)
    p = (0.0, 0.0, -0.1)
    w.accept(0, Sp(p, IDENTITY_Q, 0.5))
    fast_turn = Sp(p, q_from_axis_angle((0.0, 0.0, 1.0), lim.max_rot_speed_rad_s * 0.030), 0.5)
    assert w.check(1_000_000, fast_turn).kind is LimitKind.ROT_RATE  # 30 ms worth of turn in 1 + 20 ms
    fast_jaw = Sp(p, IDENTITY_Q, 0.5 + lim.max_jaw_speed_rad_s * 0.030)
    assert w.check(1_000_000, fast_jaw).kind is LimitKind.JAW_RATE
    assert w.check(20_000_000, fast_jaw) is None  # 20 + 20 ms of allowance covers 30 ms worth
    w.reset()
    assert w.check(1_000_000, fast_turn) is None  # after a hold the next setpoint is judged by the step limits


def test_rate_window_keeps_bounded_memory() -> None:
    lim = limits_from_config(TeleopConfig())
    w = RateWindow(lim, 200_000_000, 20_000_000)
    _stream(w, 0.01, 5000)
    assert len(w._hist) <= 202


def test_rate_window_fast_check_agrees_with_the_named_checks() -> None:
    """`RateWindow.check`'s accepting shortcut (squared distance, quaternion dot product) accepts exactly what
    its named checks accept, on setpoints scattered across and just around every rate."""
    lim = limits_from_config(TeleopConfig())
    rng = random.Random(20261201)
    seen = {"ok": 0, "bad": 0}
    for _ in range(20000):
        w = RateWindow(lim, 200_000_000, rng.choice([0, 1_000_000, 20_000_000]))
        sp0 = Sp((rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), -0.1),
                 q_from_axis_angle((rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)), rng.uniform(0, 3.0)),
                 rng.uniform(0.0, 1.0))
        w.accept(0, sp0)
        t = rng.choice([0, 1_000_000, 5_000_000, 50_000_000, 400_000_000, -1_000_000])
        dt = (max(t, 0) + w.jitter_ns) / 1e9
        scale = rng.choice([0.5, 0.99, 1.0, 1.01, 2.0])
        pos = tuple(c + rng.gauss(0.0, 1.0) * lim.max_speed_m_s * dt * scale / 1.7 for c in sp0.position)
        turn = q_from_axis_angle((rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)),
                                 rng.uniform(0.0, lim.max_rot_speed_rad_s * dt * scale))
        jaw = sp0.jaw + rng.gauss(0.0, lim.max_jaw_speed_rad_s * dt * scale)
        sp = Sp(pos, q_mul(turn, sp0.orientation), jaw)
        named = w._violation(t, sp, 0, sp0)
        assert (w.check(t, sp) is None) == (named is None), (t, sp0, sp, named)
        seen["ok" if named is None else "bad"] += 1
    assert min(seen.values()) > 2000, seen
