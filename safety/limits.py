"""Setpoint limits shared by both ends: the console clamps to them, the bedside checks against them.

Pure. One definition of the workspace box and of the step/speed/orientation/jaw-rate limits, and one
function that builds them from configuration (`limits_from_config`), so the console's clamp and the
bedside's refusal cannot drift apart. The console calls `clamp` every tick (console/controller.py) and warns;
the bedside calls `check` on every commanded arm of every servo_cp (bedside/agent.py), which returns the
first violation or None, and refuses and holds on a violation. The two ends differ only in numbers: the
same box, and bedside step limits at or above the console's (a margin `Config` enforces), so whatever
`clamp` emits, `check` accepts (tests/test_limits_property.py shows it for arbitrary settings and master
trajectories). The bedside checks without an interval (`dt_s` None: step, orientation step, box): the wire
carries the time a command left, not the tick time the console clamped with, and judging a rate over the
send times would refuse a healthy console whose sends jitter; its speed limits are the arm driver's motion
limits instead. What is truly an arm's own (reach, joint limits, wrist bend, jaw range) the driver checks.

Clamping a position is done in two stages, workspace first, then motion: both the previous setpoint and the
clamped target lie in the (convex) box, so every point of the move between them does too.

A tool that starts outside the box (for instance, the arm was placed there at the bedside) is never pulled
in with a jump: on each axis where the previous setpoint is outside, the box is widened to include it, so
the tool may move back toward the box but never further out. The widening shrinks as the tool comes in.
`check` applies the same widening around its `prev`, so it accepts exactly the moves `clamp` may make.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from base.config import BedsideConfig, TeleopConfig
from base.geometry import Vec3, q_angle, q_step_toward, v_add, v_clamp_norm, v_dist, v_norm, v_sub
from transport.messages import CartesianSetpoint

EPS = 1e-9
"""Slack for floating-point round-off in `check` (metres, radians)."""
_ROUNDING = 1e-12
"""Differences below this are round-off (q·q⁻¹ is not exactly identity), never motion to clamp."""


class LimitKind(StrEnum):
    WORKSPACE = "workspace"
    STEP = "step"
    SPEED = "speed"
    ROT_STEP = "orientation_step"
    ROT_RATE = "orientation_rate"
    JAW_RATE = "jaw_rate"


@dataclass(frozen=True, slots=True)
class LimitViolation:
    kind: LimitKind
    value: float
    limit: float
    text: str


@dataclass(frozen=True, slots=True)
class WorkspaceBox:
    """An axis-aligned box in the patient frame (metres) that tool tips must stay inside."""

    lo: Vec3
    hi: Vec3

    def __post_init__(self) -> None:
        if not all(a < b for a, b in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"workspace box lo {self.lo} must be below hi {self.hi} on every axis")

    @classmethod
    def from_mm(cls, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]) -> WorkspaceBox:
        return cls((x[0] / 1e3, y[0] / 1e3, z[0] / 1e3), (x[1] / 1e3, y[1] / 1e3, z[1] / 1e3))

    def contains(self, p: Vec3, tol: float = 0.0) -> bool:
        lo, hi = self.lo, self.hi
        return all(lo[i] - tol <= p[i] <= hi[i] + tol for i in range(3))

    def clamp(self, p: Vec3, current: Vec3 | None = None) -> Vec3:
        """Nearest point of the box to `p`; the box is widened on any axis where `current` lies outside."""
        lo, hi = self.lo, self.hi
        if current is None:
            return (min(max(p[0], lo[0]), hi[0]), min(max(p[1], lo[1]), hi[1]), min(max(p[2], lo[2]), hi[2]))
        return (
            min(max(p[0], min(lo[0], current[0])), max(hi[0], current[0])),
            min(max(p[1], min(lo[1], current[1])), max(hi[1], current[1])),
            min(max(p[2], min(lo[2], current[2])), max(hi[2], current[2])),
        )

    def widened(self, current: Vec3 | None) -> tuple[Vec3, Vec3]:
        """(lo, hi) of the box widened on each axis where `current` lies outside (as `clamp` widens it)."""
        lo, hi = self.lo, self.hi
        if current is None:
            return lo, hi
        return ((min(lo[0], current[0]), min(lo[1], current[1]), min(lo[2], current[2])),
                (max(hi[0], current[0]), max(hi[1], current[1]), max(hi[2], current[2])))

    def check(self, p: Vec3, current: Vec3 | None = None) -> LimitViolation | None:
        """None if `p` lies in the box (widened around `current`, as `clamp` does), else how far out it is."""
        lo, hi = self.widened(current)
        if all(lo[i] - EPS <= p[i] <= hi[i] + EPS for i in range(3)):
            return None
        out = max(max(lo[i] - p[i], p[i] - hi[i]) for i in range(3))
        return LimitViolation(
            LimitKind.WORKSPACE, out, 0.0,
            f"position ({p[0] * 1e3:.1f}, {p[1] * 1e3:.1f}, {p[2] * 1e3:.1f}) mm is {out * 1e3:.1f} mm "
            "outside the workspace box",
        )


@dataclass(frozen=True, slots=True)
class SetpointLimits:
    """Everything one servo_cp may ask of one arm, relative to the previous setpoint `dt_s` earlier."""

    workspace: WorkspaceBox
    max_step_m: float
    max_speed_m_s: float
    max_rot_step_rad: float
    max_rot_speed_rad_s: float
    max_jaw_speed_rad_s: float
    max_dt_s: float = 0.05
    """Longest interval a rate is integrated over: after a stall the step limits bound motion, not the gap."""

    def _budgets(self, dt_s: float) -> tuple[float, float, float]:
        dt = min(max(dt_s, 0.0), self.max_dt_s)
        return (
            min(self.max_step_m, self.max_speed_m_s * dt),
            min(self.max_rot_step_rad, self.max_rot_speed_rad_s * dt),
            self.max_jaw_speed_rad_s * dt,
        )

    def check(self, prev: CartesianSetpoint | None, sp: CartesianSetpoint, dt_s: float | None = None
              ) -> LimitViolation | None:
        """The first limit `sp` breaks moving from `prev` in `dt_s` seconds, or None.

        In order: step, orientation step; with `dt_s`, speed, orientation rate and jaw rate over that
        interval; then the workspace box, widened around `prev` as `clamp` widens it. Without `dt_s` (the
        bedside, which has no interval it can trust: see above) only the per-step limits and the box; without
        `prev`, only the box. Runs for every commanded arm at 1 kHz at the bedside, so the accepting case is
        `_accepts`, the same arithmetic inlined; whatever it does not accept goes through `_violation`, which
        names the limit (tests/test_limits.py::test_fast_check_agrees_with_the_named_checks compares them)."""
        if prev is not None and self._accepts(prev, sp, dt_s):
            return None
        return self._violation(prev, sp, dt_s)

    def _accepts(self, prev: CartesianSetpoint, sp: CartesianSetpoint, dt_s: float | None) -> bool:
        """True iff `_violation(prev, sp, dt_s)` is None: v_dist, q_angle, `_budgets` and the widened box inlined,
        term for term, so both give the same answer to the last bit."""
        px, py, pz = sp.position
        cx, cy, cz = prev.position
        dx, dy, dz = px - cx, py - cy, pz - cz
        # q_angle(sp.orientation, prev.orientation) = angle of q_mul(prev.orientation, q_conj(sp.orientation))
        qx, qy, qz, qw = sp.orientation
        sx, sy, sz, sw = prev.orientation
        x = sw * -qx + sx * qw + sy * -qz - sz * -qy
        y = sw * -qy - sx * -qz + sy * qw + sz * -qx
        z = sw * -qz + sx * -qy - sy * -qx + sz * qw
        w = sw * qw - sx * -qx - sy * -qy - sz * -qz
        # `_budgets` and the widened box with conditional expressions: the values min()/max() give, without the
        # cost of a builtin call each
        pos_budget, rot_budget = self.max_step_m, self.max_rot_step_rad
        if dt_s is not None:
            dt = dt_s if dt_s > 0.0 else 0.0
            if dt > self.max_dt_s:
                dt = self.max_dt_s
            b = self.max_speed_m_s * dt
            if b < pos_budget:
                pos_budget = b
            b = self.max_rot_speed_rad_s * dt
            if b < rot_budget:
                rot_budget = b
            if abs(sp.jaw - prev.jaw) > self.max_jaw_speed_rad_s * dt + EPS:
                return False
        if math.sqrt(dx * dx + dy * dy + dz * dz) > pos_budget + EPS:
            return False
        if 2.0 * math.atan2(math.sqrt(x * x + y * y + z * z), abs(w)) > rot_budget + EPS:
            return False
        (lx, ly, lz), (hx, hy, hz) = self.workspace.lo, self.workspace.hi
        return ((lx if lx < cx else cx) - EPS <= px <= (hx if hx > cx else cx) + EPS
                and (ly if ly < cy else cy) - EPS <= py <= (hy if hy > cy else cy) + EPS
                and (lz if lz < cz else cz) - EPS <= pz <= (hz if hz > cz else cz) + EPS)

    def _violation(self, prev: CartesianSetpoint | None, sp: CartesianSetpoint, dt_s: float | None
                   ) -> LimitViolation | None:
        """The checks of `check` one by one, with the sentence naming the first limit broken."""
        if prev is None:
            return self.workspace.check(sp.position)
        step = v_dist(sp.position, prev.position)
        rot = q_angle(sp.orientation, prev.orientation)
        if step > self.max_step_m + EPS:
            return LimitViolation(LimitKind.STEP, step, self.max_step_m,
                                  f"step {step * 1e3:.2f} mm exceeds {self.max_step_m * 1e3:.2f} mm")
        if rot > self.max_rot_step_rad + EPS:
            return LimitViolation(LimitKind.ROT_STEP, rot, self.max_rot_step_rad,
                                  f"orientation step {math.degrees(rot):.2f}° exceeds "
                                  f"{math.degrees(self.max_rot_step_rad):.2f}°")
        if dt_s is not None:
            pos_budget, rot_budget, jaw_budget = self._budgets(dt_s)
            if step > pos_budget + EPS:
                return LimitViolation(LimitKind.SPEED, step, pos_budget,
                                      f"{step * 1e3:.2f} mm in {dt_s * 1e3:.1f} ms exceeds "
                                      f"{self.max_speed_m_s * 1e3:.0f} mm/s")
            if rot > rot_budget + EPS:
                return LimitViolation(LimitKind.ROT_RATE, rot, rot_budget,
                                      f"{math.degrees(rot):.2f}° in {dt_s * 1e3:.1f} ms exceeds "
                                      f"{math.degrees(self.max_rot_speed_rad_s):.0f}°/s")
            jaw = abs(sp.jaw - prev.jaw)
            if jaw > jaw_budget + EPS:
                return LimitViolation(LimitKind.JAW_RATE, jaw, jaw_budget,
                                      f"jaw {jaw:.3f} rad in {dt_s * 1e3:.1f} ms exceeds "
                                      f"{self.max_jaw_speed_rad_s:.1f} rad/s")
        return self.workspace.check(sp.position, prev.position)

    def clamp(self, prev: CartesianSetpoint, target: CartesianSetpoint, dt_s: float
              ) -> tuple[CartesianSetpoint, tuple[LimitKind, ...]]:
        """The setpoint nearest `target` that `check(prev, ·, dt_s)` accepts, and which limits bit."""
        hit: list[LimitKind] = []
        pos_budget, rot_budget, jaw_budget = self._budgets(dt_s)
        goal = self.workspace.clamp(target.position, prev.position)
        if v_dist(goal, target.position) > EPS:
            hit.append(LimitKind.WORKSPACE)
        delta = v_sub(goal, prev.position)
        pos = goal
        if v_norm(delta) > pos_budget + _ROUNDING:
            pos = v_add(prev.position, v_clamp_norm(delta, pos_budget))
            hit.append(LimitKind.STEP if pos_budget >= self.max_step_m else LimitKind.SPEED)
        ori = target.orientation
        if q_angle(prev.orientation, ori) > rot_budget + _ROUNDING:
            ori = q_step_toward(prev.orientation, ori, rot_budget)
            hit.append(LimitKind.ROT_STEP if rot_budget >= self.max_rot_step_rad else LimitKind.ROT_RATE)
        dj = target.jaw - prev.jaw
        jaw = target.jaw if abs(dj) <= jaw_budget else prev.jaw + math.copysign(jaw_budget, dj)
        if jaw != target.jaw:
            hit.append(LimitKind.JAW_RATE)
        return CartesianSetpoint(pos, ori, jaw), tuple(hit)


class RateWindow:
    """One arm's speed, orientation rate and jaw rate at the bedside, judged over a window of send times.

    Why a window, and what it allows: the console clamps each setpoint with its own tick interval, but the
    wire carries the time each command left (`send_ns`), which lags its tick by whatever happened between the
    two (up to `jitter_ns`). Judged command by command, a 1 ms tick whose predecessor left late looks like a
    burst, and a healthy console is refused. Judged against the setpoint accepted at least `window_ns`
    earlier (or the oldest one kept), a console within the rates has moved at most v · (elapsed + jitter):
    exactly what `check` allows. So whatever the console's clamp emits passes (tests/test_limits_property.py,
    with send jitter), and a stream faster than v · (1 + jitter/window) on average is refused within a window
    (at the defaults, 200 ms and 20 ms: 10 % over the bedside's speed, which is itself above the console's).
    The step limits (`SetpointLimits.check`) still bound every single command.

    Pure: fed the accepted setpoints and their send times; `reset` when the arm holds (its next setpoint is
    judged from where it stopped, by the step limits alone)."""

    __slots__ = ("_hist", "jitter_ns", "limits", "window_ns")

    def __init__(self, limits: SetpointLimits, window_ns: int, jitter_ns: int) -> None:
        self.limits = limits
        self.window_ns = window_ns
        self.jitter_ns = jitter_ns
        self._hist: deque[tuple[int, CartesianSetpoint]] = deque()

    def check(self, send_ns: int, sp: CartesianSetpoint) -> LimitViolation | None:
        """None if moving to `sp`, sent at `send_ns`, keeps every rate over the window; else the first broken.

        Runs for every commanded arm at 1 kHz, so the accepting case is decided first with squared distances
        and a quaternion dot product (no call per term): it accepts only what `_violation` accepts (a turn
        whose |q·q0| is at least cos(budget/2) is within the budget), and anything else is judged there."""
        hist = self._hist
        if not hist:
            return None
        t0, sp0 = hist[0]
        lim = self.limits
        dt = ((send_ns - t0 if send_ns > t0 else 0) + self.jitter_ns) * 1e-9
        (px, py, pz), (cx, cy, cz) = sp.position, sp0.position
        dx, dy, dz = px - cx, py - cy, pz - cz
        b = lim.max_speed_m_s * dt
        rb = lim.max_rot_speed_rad_s * dt
        if dx * dx + dy * dy + dz * dz <= b * b and abs(sp.jaw - sp0.jaw) <= lim.max_jaw_speed_rad_s * dt:
            if rb >= math.pi:
                return None
            (qx, qy, qz, qw), (rx, ry, rz, rw) = sp.orientation, sp0.orientation
            if abs(qx * rx + qy * ry + qz * rz + qw * rw) >= math.cos(0.5 * rb):
                return None
        return self._violation(send_ns, sp, t0, sp0)

    def _violation(self, send_ns: int, sp: CartesianSetpoint, t0: int, sp0: CartesianSetpoint
                   ) -> LimitViolation | None:
        """The rates one by one against the setpoint sent at `t0`, with the sentence naming the first broken."""
        span = max(send_ns - t0, 0) + self.jitter_ns
        dt = span / 1e9
        lim = self.limits
        d = v_dist(sp.position, sp0.position)
        if d > lim.max_speed_m_s * dt + EPS:
            return LimitViolation(LimitKind.SPEED, d, lim.max_speed_m_s * dt,
                                  f"{d * 1e3:.2f} mm in {span / 1e6:.1f} ms (with {self.jitter_ns / 1e6:.0f} ms of "
                                  f"send jitter) exceeds {lim.max_speed_m_s * 1e3:.0f} mm/s")
        r = q_angle(sp.orientation, sp0.orientation)
        if r > lim.max_rot_speed_rad_s * dt + EPS:
            return LimitViolation(LimitKind.ROT_RATE, r, lim.max_rot_speed_rad_s * dt,
                                  f"{math.degrees(r):.2f}° in {span / 1e6:.1f} ms exceeds "
                                  f"{math.degrees(lim.max_rot_speed_rad_s):.0f}°/s")
        j = abs(sp.jaw - sp0.jaw)
        if j > lim.max_jaw_speed_rad_s * dt + EPS:
            return LimitViolation(LimitKind.JAW_RATE, j, lim.max_jaw_speed_rad_s * dt,
                                  f"jaw {j:.3f} rad in {span / 1e6:.1f} ms exceeds "
                                  f"{lim.max_jaw_speed_rad_s:.1f} rad/s")
        return None

    def accept(self, send_ns: int, sp: CartesianSetpoint) -> None:
        """`sp` was applied: keep it, and drop what is older than the newest setpoint a window old."""
        hist = self._hist
        hist.append((send_ns, sp))
        while len(hist) > 1 and send_ns - hist[1][0] >= self.window_ns:
            hist.popleft()

    def reset(self) -> None:
        self._hist.clear()


def rate_window(limits: SetpointLimits, bedside: BedsideConfig) -> RateWindow:
    """One arm's rate window with the bedside's configured window and send-jitter allowance."""
    return RateWindow(limits, int(bedside.rate_window_ms * 1e6), int(bedside.rate_jitter_ms * 1e6))


def limits_from_config(teleop: TeleopConfig, bedside: BedsideConfig | None = None) -> SetpointLimits:
    """The limits one end enforces, built from configuration the one way both ends build them.

    The console: `limits_from_config(cfg.teleop)`. The bedside: `limits_from_config(cfg.teleop, cfg.bedside)`,
    the same workspace box (`teleop.workspace_*`: one surgical site, one box) with the bedside's own motion
    keys (`bedside.max_step_mm`, `max_rot_step_deg`, which it checks, and `max_speed_mm_s`,
    `max_rot_speed_deg_s`, `max_jaw_speed_rad_s`, which its arms move under). Their defaults (5 mm, 5°,
    250 mm/s, 360°/s, 6 rad/s against 2 mm, 2°, 150 mm/s, 180°/s, 3 rad/s) are a deliberate margin over the
    console's: the bedside's check is wider than the console's clamp, so a console bug is caught and a healthy
    console is never refused (`Config` refuses a console step limit above the bedside's), and its arms are
    faster than the console commands, so they never lag (docs/teleoperation.md, "Limits")."""
    box = WorkspaceBox.from_mm(
        (teleop.workspace_x_min_mm, teleop.workspace_x_max_mm),
        (teleop.workspace_y_min_mm, teleop.workspace_y_max_mm),
        (teleop.workspace_z_min_mm, teleop.workspace_z_max_mm),
    )
    if bedside is None:
        return SetpointLimits(
            workspace=box,
            max_step_m=teleop.max_step_mm / 1e3,
            max_speed_m_s=teleop.max_speed_mm_s / 1e3,
            max_rot_step_rad=math.radians(teleop.max_rot_step_deg),
            max_rot_speed_rad_s=math.radians(teleop.max_rot_speed_deg_s),
            max_jaw_speed_rad_s=teleop.jaw_rate_rad_s,
        )
    return SetpointLimits(
        workspace=box,
        max_step_m=bedside.max_step_mm / 1e3,
        max_speed_m_s=bedside.max_speed_mm_s / 1e3,
        max_rot_step_rad=math.radians(bedside.max_rot_step_deg),
        max_rot_speed_rad_s=math.radians(bedside.max_rot_speed_deg_s),
        max_jaw_speed_rad_s=bedside.max_jaw_speed_rad_s,
    )
