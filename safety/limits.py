"""Setpoint limits shared by both ends: the console clamps to them, the bedside checks against them.

Pure. One definition of the workspace box and of the step/speed/orientation-rate limits, so the console's
clamp and the bedside's reject test cannot drift apart. The console calls `clamp` (and warns); the bedside
calls `check`, which returns the first violation or None, and rejects and holds on a violation.

Clamping a position is done in two stages, workspace first, then motion: both the previous setpoint and the
clamped target lie in the (convex) box, so every point of the move between them does too.

A tool that starts outside the box (for instance, the arm was placed there at the bedside) is never pulled
in with a jump: on each axis where the previous setpoint is outside, the box is widened to include it, so
the tool may move back toward the box but never further out. The widening shrinks as the tool comes in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from base.config import TeleopConfig
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

    def check(self, p: Vec3) -> LimitViolation | None:
        if self.contains(p, EPS):
            return None
        lo, hi = self.lo, self.hi
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
        """The first limit `sp` breaks, or None. Without `dt_s`, only the workspace and per-step limits."""
        bad = self.workspace.check(sp.position)
        if bad is not None or prev is None:
            return bad
        step = v_dist(sp.position, prev.position)
        rot = q_angle(sp.orientation, prev.orientation)
        if step > self.max_step_m + EPS:
            return LimitViolation(LimitKind.STEP, step, self.max_step_m,
                                  f"step {step * 1e3:.2f} mm exceeds {self.max_step_m * 1e3:.2f} mm")
        if rot > self.max_rot_step_rad + EPS:
            return LimitViolation(LimitKind.ROT_STEP, rot, self.max_rot_step_rad,
                                  f"orientation step {math.degrees(rot):.2f}° exceeds "
                                  f"{math.degrees(self.max_rot_step_rad):.2f}°")
        if dt_s is None:
            return None
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
        return None

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


def limits_from_config(t: TeleopConfig) -> SetpointLimits:
    """SetpointLimits from a TeleopConfig (console side)."""
    return SetpointLimits(
        workspace=WorkspaceBox.from_mm(
            (t.workspace_x_min_mm, t.workspace_x_max_mm),
            (t.workspace_y_min_mm, t.workspace_y_max_mm),
            (t.workspace_z_min_mm, t.workspace_z_max_mm),
        ),
        max_step_m=t.max_step_mm / 1e3,
        max_speed_m_s=t.max_speed_mm_s / 1e3,
        max_rot_step_rad=math.radians(t.max_rot_step_deg),
        max_rot_speed_rad_s=math.radians(t.max_rot_speed_deg_s),
        max_jaw_speed_rad_s=t.jaw_rate_rad_s,
    )
