"""Simulated surgical arms: remote-centre-of-motion (RCM) manipulators like the da Vinci PSM and ECM.

The tool shaft pivots about the RCM (the incision): outer yaw and pitch aim it, insertion slides it, and a
wrist (roll, pitch, yaw) orients the tip. Position reachability is exact inverse kinematics of that
chain; joint limits make the workspace a cone section. Motion toward a setpoint is rate-limited in
position, orientation and jaw, so the simulated tip moves like a servoed arm, not a teleport.

Frames: the patient frame has x to the patient's left, y toward the head, z up; metres, radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from base.geometry import (
    Quat,
    Vec3,
    q_angle,
    q_conj,
    q_mul,
    q_rotate,
    q_step_toward,
    q_to_rotvec,
    v_add,
    v_dist,
    v_norm,
    v_scale,
    v_sub,
)
from transport.messages import AckStatus, ArmFlags, ArmMode, ArmTelemetry, CartesianSetpoint

_DOWN: Vec3 = (0.0, 0.0, -1.0)


@dataclass(frozen=True, slots=True)
class ArmModel:
    name: str
    rcm: Vec3
    yaw_limit: float = math.radians(70)
    pitch_limit: float = math.radians(55)
    insertion_min: float = 0.03
    insertion_max: float = 0.22
    home_insertion: float = 0.10
    wrist_limit: float = math.radians(80)
    jaw_max: float = 1.2  # radians; 0 = closed
    has_jaw: bool = True


DEFAULT_ARMS: tuple[ArmModel, ...] = (
    ArmModel("PSM1", rcm=(0.08, 0.0, 0.0)),
    ArmModel("PSM2", rcm=(-0.08, 0.0, 0.0)),
    ArmModel("ECM", rcm=(0.0, -0.06, 0.02), insertion_max=0.18, home_insertion=0.06, has_jaw=False),
)


def shaft_orientation(yaw: float, pitch: float) -> Quat:
    """Ry(yaw)·Rx(pitch) in closed form (this runs for every validated setpoint)."""
    cy, sy = math.cos(yaw / 2.0), math.sin(yaw / 2.0)
    cp, sp = math.cos(pitch / 2.0), math.sin(pitch / 2.0)
    return (cy * sp, sy * cp, -sy * sp, cy * cp)


@dataclass(frozen=True, slots=True)
class JointSolution:
    yaw: float
    pitch: float
    insertion: float
    wrist: Vec3  # rotation vector of the tip relative to the shaft: roll about z, pitch about x, yaw about y
    jaw: float


def _shaft(model: ArmModel, sp: CartesianSetpoint) -> tuple[float, float, float, Vec3] | str:
    """(yaw, pitch, insertion, shaft direction) reaching sp's position, or which limit it breaks."""
    rel = v_sub(sp.position, model.rcm)
    d = v_norm(rel)
    if d < model.insertion_min or d > model.insertion_max:
        return (f"{model.name}: insertion {d * 1000:.1f} mm outside [{model.insertion_min * 1000:.0f}, "
                f"{model.insertion_max * 1000:.0f}] mm")
    u = v_scale(rel, 1.0 / d)
    pitch = math.asin(max(-1.0, min(1.0, u[1])))
    yaw = math.atan2(-u[0], -u[2])
    if abs(yaw) > model.yaw_limit or abs(pitch) > model.pitch_limit:
        return (f"{model.name}: shaft angle yaw {math.degrees(yaw):.0f}° pitch {math.degrees(pitch):.0f}° "
                "outside the joint limits")
    return yaw, pitch, d, u


def reachable(model: ArmModel, sp: CartesianSetpoint) -> str | None:
    """None if the arm can take pose `sp`; else a sentence naming the limit. The validation hot path."""
    shaft = _shaft(model, sp)
    if isinstance(shaft, str):
        return shaft
    u = shaft[3]
    tip = q_rotate(sp.orientation, _DOWN)  # roll is unlimited; the bend of the tip off the shaft is not
    bend = math.acos(max(-1.0, min(1.0, tip[0] * u[0] + tip[1] * u[1] + tip[2] * u[2])))
    if bend > model.wrist_limit:
        return f"{model.name}: wrist bend {math.degrees(bend):.0f}° beyond {math.degrees(model.wrist_limit):.0f}°"
    jaw_max = model.jaw_max if model.has_jaw else 0.0
    if not (-1e-6 <= sp.jaw <= jaw_max + 1e-6):
        return f"{model.name}: jaw {sp.jaw:.2f} rad outside [0, {jaw_max:.2f}]"
    return None


def inverse_kinematics(model: ArmModel, sp: CartesianSetpoint) -> JointSolution | str:
    """Joints reaching `sp` (for measured_js), or a sentence saying which limit it breaks."""
    bad = reachable(model, sp)
    if bad is not None:
        return bad
    yaw, pitch, d, _ = _shaft(model, sp)  # type: ignore[misc]
    wrist = q_to_rotvec(q_mul(q_conj(shaft_orientation(yaw, pitch)), sp.orientation))
    return JointSolution(yaw, pitch, d, wrist, sp.jaw)


def home_setpoint(model: ArmModel) -> CartesianSetpoint:
    return CartesianSetpoint(v_add(model.rcm, v_scale(_DOWN, model.home_insertion)), (0.0, 0.0, 0.0, 1.0), 0.0)


@dataclass(frozen=True, slots=True)
class MotionLimits:
    max_step_m: float
    max_rot_step_rad: float
    max_speed_m_s: float
    max_rot_speed_rad_s: float
    max_jaw_speed_rad_s: float


class SimulatedArm:
    """One arm: validates setpoints against its own limits and servoes toward the accepted one."""

    def __init__(self, model: ArmModel, limits: MotionLimits) -> None:
        self.model = model
        self.limits = limits
        self.measured = home_setpoint(model)
        self.setpoint = self.measured
        self.mode = ArmMode.DISABLED
        self.limit_hit = False
        joints = inverse_kinematics(model, self.measured)
        assert isinstance(joints, JointSolution), joints
        self.joints: JointSolution = joints
        self._joints_of: CartesianSetpoint | None = self.measured

    def validate(self, sp: CartesianSetpoint) -> tuple[AckStatus, str] | None:
        """None if `sp` may be servoed to now; else the rejection and why. Never changes the arm.

        Runs for every commanded arm at 1 kHz, so the accepting case is `_acceptable`, the checks below
        inlined with the same arithmetic; anything it does not accept goes through the checks themselves,
        which name the first limit broken."""
        if self._acceptable(sp):
            return None
        return self._first_violation(sp)

    def _acceptable(self, sp: CartesianSetpoint) -> bool:
        """True iff `_first_violation(sp)` is None: v_dist, q_angle and reachable() inlined, term for term
        (tests/test_bedside_agent.py::test_fast_validation_agrees_with_the_checks compares the two)."""
        m, lim = self.model, self.limits
        px, py, pz = sp.position
        cx, cy, cz = self.setpoint.position
        dx, dy, dz = px - cx, py - cy, pz - cz
        if math.sqrt(dx * dx + dy * dy + dz * dz) > lim.max_step_m:
            return False
        # q_angle(sp.orientation, setpoint.orientation) = angle of q_mul(setpoint, q_conj(sp))
        qx, qy, qz, qw = sp.orientation
        sx, sy, sz, sw = self.setpoint.orientation
        x = sw * -qx + sx * qw + sy * -qz - sz * -qy
        y = sw * -qy - sx * -qz + sy * qw + sz * -qx
        z = sw * -qz + sx * -qy - sy * -qx + sz * qw
        w = sw * qw - sx * -qx - sy * -qy - sz * -qz
        if 2.0 * math.atan2(math.sqrt(x * x + y * y + z * z), abs(w)) > lim.max_rot_step_rad:
            return False
        # reachable(): _shaft, then the wrist bend (q_rotate of _DOWN by sp.orientation), then the jaw
        rx, ry, rz = m.rcm
        r0, r1, r2 = px - rx, py - ry, pz - rz
        d = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
        if d < m.insertion_min or d > m.insertion_max:
            return False
        inv = 1.0 / d
        u0, u1, u2 = r0 * inv, r1 * inv, r2 * inv
        if abs(math.atan2(-u0, -u2)) > m.yaw_limit or abs(math.asin(max(-1.0, min(1.0, u1)))) > m.pitch_limit:
            return False
        t0 = qz * -qx + -qy * qw + qx * -qz - -qw * -qy  # q_mul(q_mul(q, (0, 0, -1, 0)), q_conj(q))
        t1 = qz * -qy - -qy * -qz + qx * qw + -qw * -qx
        t2 = qz * -qz + -qy * -qy - qx * -qx + -qw * qw
        if math.acos(max(-1.0, min(1.0, t0 * u0 + t1 * u1 + t2 * u2))) > m.wrist_limit:
            return False
        jaw_max = m.jaw_max if m.has_jaw else 0.0
        return -1e-6 <= sp.jaw <= jaw_max + 1e-6

    def _first_violation(self, sp: CartesianSetpoint) -> tuple[AckStatus, str] | None:
        """The checks in order, with the sentence naming the first limit `sp` breaks."""
        if v_dist(sp.position, self.setpoint.position) > self.limits.max_step_m:
            return AckStatus.REJECTED_STEP, (
                f"{self.model.name}: step {v_dist(sp.position, self.setpoint.position) * 1000:.1f} mm "
                f"exceeds {self.limits.max_step_m * 1000:.1f} mm"
            )
        if q_angle(sp.orientation, self.setpoint.orientation) > self.limits.max_rot_step_rad:
            return AckStatus.REJECTED_ORIENTATION_STEP, (
                f"{self.model.name}: orientation step "
                f"{math.degrees(q_angle(sp.orientation, self.setpoint.orientation)):.1f}° too large"
            )
        bad = reachable(self.model, sp)
        if bad is not None:
            return AckStatus.REJECTED_WORKSPACE, bad
        return None

    def servo(self, sp: CartesianSetpoint) -> None:
        """Accept a validated setpoint (call validate first)."""
        self.setpoint = sp if self.model.has_jaw else CartesianSetpoint(sp.position, sp.orientation, 0.0)
        self.mode = ArmMode.FOLLOWING

    def hold(self, disabled: bool = False) -> None:
        """Stop where the tip is now: the setpoint becomes the measured pose."""
        self.setpoint = self.measured
        self.mode = ArmMode.DISABLED if disabled else ArmMode.HOLDING

    def advance(self, dt_s: float) -> None:
        """Servo toward the setpoint for `dt_s` seconds under the speed limits."""
        if dt_s <= 0.0:
            return
        m, sp, lim = self.measured, self.setpoint, self.limits
        if m == sp:
            return
        delta = v_sub(sp.position, m.position)
        dist = v_norm(delta)
        step = lim.max_speed_m_s * dt_s
        pos = sp.position if dist <= step else v_add(m.position, v_scale(delta, step / dist))
        ori = q_step_toward(m.orientation, sp.orientation, lim.max_rot_speed_rad_s * dt_s)
        dj = sp.jaw - m.jaw
        jstep = lim.max_jaw_speed_rad_s * dt_s
        jaw = sp.jaw if abs(dj) <= jstep else m.jaw + math.copysign(jstep, dj)
        self.measured = CartesianSetpoint(pos, ori, jaw)
        self._joints_of = None  # joint angles are solved when telemetry asks, not every tick

    def telemetry(self) -> ArmTelemetry:
        if self._joints_of != self.measured:
            ik = inverse_kinematics(self.model, self.measured)
            if isinstance(ik, JointSolution):  # else keep the last reachable solution
                self.joints = ik
            self._joints_of = self.measured
        j = self.joints
        flags = ArmFlags.HOMED
        if self.measured != self.setpoint:
            flags |= ArmFlags.BUSY
        if self.limit_hit:
            flags |= ArmFlags.LIMIT
        js = (j.yaw, j.pitch, j.insertion, j.wrist[2], j.wrist[0], j.wrist[1], j.jaw)
        return ArmTelemetry(self.mode, flags, self.measured, self.setpoint, js)
