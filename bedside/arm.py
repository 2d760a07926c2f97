"""Simulated surgical arms: remote-centre-of-motion (RCM) manipulators like the da Vinci PSM and ECM.

The tool shaft pivots about the RCM (the incision): outer yaw and pitch aim it, insertion slides it, and a
wrist (roll, pitch, yaw) orients the tip. Position reachability is exact inverse kinematics of that
chain; joint limits make the workspace a cone section. Motion toward a setpoint is rate-limited in
position, orientation and jaw, so the simulated tip moves like a servoed arm, not a teleport.
`SimulatedArm` is the `simulated` arm driver (bedside/arm_driver.py, bedside/drivers.py); it honours the
driver watchdog of the contract from its own clock and thread.

Frames: the patient frame has x to the patient's left, y toward the head, z up; metres, radians.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from dataclasses import dataclass, replace

from base.config import BedsideConfig
from base.geometry import (
    ZERO_V,
    Quat,
    Vec3,
    q_conj,
    q_mul,
    q_rotate,
    q_step_toward,
    q_to_rotvec,
    v_add,
    v_norm,
    v_scale,
    v_sub,
)
from bedside.arm_driver import ArmOperatingState, ServiceBound
from safety.limits import SetpointLimits
from safety.tissue import Tissue
from safety.watchdog import Watchdog
from transport.messages import CartesianSetpoint, OperatingState

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
    home_tip: Vec3 | None = None
    """Where the tip starts (identity orientation); None: straight down from the RCM by `home_insertion`."""


DEFAULT_ARMS: tuple[ArmModel, ...] = (
    ArmModel("PSM1", rcm=(0.08, 0.0, 0.0)),
    ArmModel("PSM2", rcm=(-0.08, 0.0, 0.0)),
    ArmModel("PSM3", rcm=(-0.06, 0.08, 0.0)),
    ArmModel("ECM", rcm=(0.0, -0.06, 0.02), insertion_max=0.18, home_insertion=0.06, has_jaw=False),
)
"""The four arms in wire order (transport.messages.ARM_NAMES) with the default configuration's geometry."""


def arm_models(cfg: BedsideConfig) -> tuple[ArmModel, ...]:
    """DEFAULT_ARMS placed as the configuration says: each arm's base (RCM, `bedside.<arm>_rcm_mm`) and workspace
    (insertion range, `bedside.<arm>_insertion_mm`); the home pose stays inside that range."""
    out = []
    for m in DEFAULT_ARMS:
        lo, hi = cfg.arm_insertion_m(m.name)
        out.append(replace(m, rcm=cfg.arm_rcm_m(m.name), insertion_min=lo, insertion_max=hi,
                           home_insertion=min(hi, max(lo, m.home_insertion))))
    return aim_at_worksite(tuple(out), cfg.tissue_z_mm / 1e3)


HOME_STANDOFF_M = 0.015
"""How far above the tissue the instruments start (`aim_at_worksite`)."""


def aim_at_worksite(models: tuple[ArmModel, ...], surface_z: float) -> tuple[ArmModel, ...]:
    """The instruments start where the endoscope sees them: each tip on the line from its RCM to the tissue point
    straight below the endoscope's home tip, `HOME_STANDOFF_M` above the tissue (safety/tissue.py). An arm that
    cannot reach that point (its insertion range, joint limits) keeps its straight-down home."""
    ecm = next((m for m in models if not m.has_jaw), None)
    if ecm is None:
        return models
    aim = (ecm.rcm[0], ecm.rcm[1], surface_z)
    out = []
    for m in models:
        if m.has_jaw and m.rcm[2] - surface_z > HOME_STANDOFF_M:
            s = (m.rcm[2] - surface_z - HOME_STANDOFF_M) / (m.rcm[2] - surface_z)
            tip = v_add(m.rcm, v_scale(v_sub(aim, m.rcm), s))
            if reachable(m, CartesianSetpoint(tip)) is None:
                m = replace(m, home_tip=tip)
        out.append(m)
    return tuple(out)


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
    if model.home_tip is not None:
        return CartesianSetpoint(model.home_tip, (0.0, 0.0, 0.0, 1.0), 0.0)
    return CartesianSetpoint(v_add(model.rcm, v_scale(_DOWN, model.home_insertion)), (0.0, 0.0, 0.0, 1.0), 0.0)


class SimulatedArm:
    """One simulated arm, an `ArmDriver` (bedside/arm_driver.py): servoes toward the accepted setpoint under its
    rate limits; its own limits are the RCM chain's (`reachable`).

    Its watchdog (with a `ServiceBound`): every command and `advance` service it; `_expire` holds the arm
    (setpoint := measured, `held` set, motion and servo_cp refused until `enable`) once the bound has passed
    since the last service. A thread of its own (`_watch`) runs `_expire` at each deadline, so the arm holds
    during a stall of the bedside loop; each call runs it first too, so a stall that also starved that thread
    (one holding the GIL) cannot move the arm when the loop resumes. One lock orders the two threads. The
    thread starts with the first service and takes the servicing thread's scheduling (the bedside loop's
    SCHED_FIFO): a CPU hog can neither delay it nor preempt it while it holds the GIL."""

    def __init__(self, model: ArmModel, limits: SetpointLimits, service: ServiceBound | None = None,
                 tissue: Tissue | None = None) -> None:
        """`tissue`: the simulated patient its tip may press into (measured_cf); None: it touches nothing."""
        self.name = model.name
        self.model = model
        self.limits = limits
        self.tissue = tissue
        self.velocity: Vec3 = ZERO_V
        """Of the tip over the last `advance` (m/s): the tissue's damper reads it."""
        self.measured = home_setpoint(model)
        self.setpoint = self.measured
        self.state = OperatingState.DISABLED
        joints = inverse_kinematics(model, self.measured)
        assert isinstance(joints, JointSolution), joints
        self.joints: JointSolution = joints
        self._joints_of: CartesianSetpoint | None = self.measured
        self._lock = threading.Lock()
        self._clock = service.clock if service is not None else _no_clock
        self._watchdog = Watchdog(service.timeout_ns) if service is not None else None
        """Armed by the first service (nothing to watch before the loop runs), tripped = held until `enable`."""
        self.held = ""
        """Why the watchdog holds the arm (ArmOperatingState.held); empty when it does not."""
        self._wake = threading.Event()
        self._watching = service is None or not service.thread  # True once its thread runs, or if it has none

    # ------------------------------------------------------------------ the driver's own watchdog

    def _expire(self, now_ns: int) -> None:
        """Under the lock: hold the arm if it went unserviced for the bound."""
        wd = self._watchdog
        trip = wd.check(now_ns) if wd is not None else None
        if wd is not None and trip is not None:
            self.setpoint = self.measured
            self.held = (f"held on its own after {trip.silence_ns / 1e6:.1f} ms without service (driver watchdog "
                         f"{wd.timeout_ns / 1e6:g} ms)")

    def _serviced(self) -> bool:
        """Under the lock, at each service: judge the gap since the last one, then restart the bound. False while
        the watchdog holds the arm."""
        wd = self._watchdog
        if wd is None:
            return True
        now = self._clock()
        dl = wd.deadline_ns()  # None: not armed, or tripped
        if dl is not None and now < dl:  # within the bound (every call at 1 kHz): nothing expires, the bound restarts
            wd.feed(now)
            return True
        self._expire(now)
        if wd.tripped:
            return False
        if wd.armed:
            wd.feed(now)
        else:
            self._arm(wd, now)
        return True

    def _arm(self, wd: Watchdog, now_ns: int) -> None:
        """Under the lock: (re)start the bound from `now_ns`; the first time, start the watchdog thread."""
        wd.arm(now_ns)
        self._wake.set()
        if not self._watching:
            self._watching = True
            sched = (os.sched_getscheduler(0), os.sched_getparam(0)) if hasattr(os, "sched_getscheduler") else None
            threading.Thread(target=_watch, args=(weakref.ref(self), self._wake, sched), name=f"{self.name}-watchdog",
                             daemon=True).start()

    def watch(self) -> int | None:
        """Hold the arm if its bound has passed; the nanoseconds to its next deadline (None: nothing to watch).
        What the watchdog thread runs; a test with its own clock may call it too."""
        wd = self._watchdog
        if wd is None:
            return None
        with self._lock:
            now = self._clock()
            self._expire(now)
            dl = wd.deadline_ns()
        return None if dl is None else max(0, dl - now)

    # ------------------------------------------------------------------ commands

    def enable(self) -> None:
        with self._lock:
            self.setpoint = self.measured
            self.state = OperatingState.ENABLED
            if self._watchdog is not None:
                self.held = ""
                self._arm(self._watchdog, self._clock())

    def disable(self) -> None:
        with self._lock:
            self._serviced()
            self.setpoint = self.measured
            self.state = OperatingState.DISABLED

    def hold(self) -> None:
        """Stop where the tip is now: the setpoint becomes the measured pose."""
        with self._lock:
            self._serviced()
            self.setpoint = self.measured

    def servo_cp(self, sp: CartesianSetpoint) -> None:
        """Accept a checked setpoint; an arm without a jaw keeps it at 0. Ignored while held on its own."""
        with self._lock:
            if self._serviced():
                self.setpoint = sp if self.model.has_jaw else CartesianSetpoint(sp.position, sp.orientation, 0.0)

    def reach_violation(self, sp: CartesianSetpoint) -> str | None:
        """`reachable(model, sp)`; runs for every commanded arm at 1 kHz, so the accepting case is `_within_reach`,
        the same arithmetic inlined."""
        if self._within_reach(sp):
            return None
        return reachable(self.model, sp)

    def _within_reach(self, sp: CartesianSetpoint) -> bool:
        """True iff `reachable(model, sp)` is None: _shaft, the wrist bend (q_rotate of _DOWN by sp.orientation)
        and the jaw range inlined, term for term (tests/test_bedside_agent.py::test_fast_reach_agrees_with_reachable
        compares the two)."""
        m = self.model
        px, py, pz = sp.position
        rx, ry, rz = m.rcm
        r0, r1, r2 = px - rx, py - ry, pz - rz
        d = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
        if d < m.insertion_min or d > m.insertion_max:
            return False
        inv = 1.0 / d
        u0, u1, u2 = r0 * inv, r1 * inv, r2 * inv
        # max(-1.0, min(1.0, c)) as conditional expressions: the same value (NaN included: -1.0), without two
        # builtin calls (~3.7k instructions a pair, more than the rest of the pitch test)
        c = u1 if u1 < 1.0 else 1.0
        if abs(math.atan2(-u0, -u2)) > m.yaw_limit or abs(math.asin(c if c > -1.0 else -1.0)) > m.pitch_limit:
            return False
        qx, qy, qz, qw = sp.orientation
        t0 = qz * -qx + -qy * qw + qx * -qz - -qw * -qy  # q_mul(q_mul(q, (0, 0, -1, 0)), q_conj(q))
        t1 = qz * -qy - -qy * -qz + qx * qw + -qw * -qx
        t2 = qz * -qz + -qy * -qy - qx * -qx + -qw * qw
        c = t0 * u0 + t1 * u1 + t2 * u2
        c = c if c < 1.0 else 1.0
        if math.acos(c if c > -1.0 else -1.0) > m.wrist_limit:
            return False
        jaw_max = m.jaw_max if m.has_jaw else 0.0
        return -1e-6 <= sp.jaw <= jaw_max + 1e-6

    def advance(self, dt_s: float) -> None:
        """Servo toward the setpoint for `dt_s` seconds under the speed limits (not at all while held on its own)."""
        with self._lock:
            if self._serviced() and dt_s > 0.0:
                self._integrate(dt_s)
            else:
                self.velocity = ZERO_V

    def _integrate(self, dt_s: float) -> None:
        """Under the lock: `dt_s` seconds of servoing toward the setpoint under the speed limits."""
        m, sp, lim = self.measured, self.setpoint, self.limits
        if m is sp or m == sp:
            self.velocity = ZERO_V
            return
        delta = v_sub(sp.position, m.position)
        dist = v_norm(delta)
        step = lim.max_speed_m_s * dt_s
        pos = sp.position if dist <= step else v_add(m.position, v_scale(delta, step / dist))
        ori = q_step_toward(m.orientation, sp.orientation, lim.max_rot_speed_rad_s * dt_s)
        dj = sp.jaw - m.jaw
        jstep = lim.max_jaw_speed_rad_s * dt_s
        jaw = sp.jaw if abs(dj) <= jstep else m.jaw + math.copysign(jstep, dj)
        arrived = pos is sp.position and ori is sp.orientation and jaw == sp.jaw
        self.velocity = v_scale(v_sub(pos, m.position), 1.0 / dt_s)
        self.measured = sp if arrived else CartesianSetpoint(pos, ori, jaw)  # arrived: `is` says so from now on
        self._joints_of = None  # joint angles are solved when telemetry asks, not every tick

    # ------------------------------------------------------------------ queries

    def measured_cp(self) -> CartesianSetpoint:
        return self.measured

    def setpoint_cp(self) -> CartesianSetpoint:
        return self.setpoint

    def measured_cf(self) -> Vec3:
        """The tissue's force on the tip (safety/tissue.py), N; zero without tissue or out of contact."""
        t = self.tissue
        return ZERO_V if t is None else t.force(self.measured.position, self.velocity)

    def measured_js(self) -> tuple[float, ...]:
        if self._joints_of != self.measured:
            ik = inverse_kinematics(self.model, self.measured)
            if isinstance(ik, JointSolution):  # else keep the last reachable solution
                self.joints = ik
            self._joints_of = self.measured
        j = self.joints
        return (j.yaw, j.pitch, j.insertion, j.wrist[2], j.wrist[0], j.wrist[1], j.jaw)

    def operating_state(self) -> ArmOperatingState:
        """Never FAULT: a simulated arm has no hardware to fail. Read every tick, so from prebuilt values."""
        wd = self._watchdog
        if wd is not None:
            dl = wd.deadline_ns()
            if dl is not None and self._clock() >= dl:  # the lock only when it is due
                with self._lock:
                    self._expire(self._clock())
            if self.held:
                return ArmOperatingState(self.state, True, False, held=self.held)
        m, sp = self.measured, self.setpoint
        return _OPERATING_STATES[self.state, m is not sp and m != sp]


_OPERATING_STATES = {(s, busy): ArmOperatingState(s, True, busy)
                     for s in (OperatingState.DISABLED, OperatingState.ENABLED) for busy in (False, True)}


def _no_clock() -> int:
    """The clock of an arm without a watchdog: never read for a decision."""
    return 0


def _watch(ref: weakref.ReferenceType[SimulatedArm], wake: threading.Event,
           sched: tuple[int, os.sched_param] | None) -> None:
    """The simulated arm's watchdog thread: sleeps until the arm's deadline (a service only moves it later, so
    it wakes about once per bound), holds the arm if it passed; ends with the arm. Holds no reference between
    wake-ups, so an arm nobody uses is collected. `sched`: the servicing thread's policy and priority, taken on
    (a new thread does not inherit SCHED_FIFO under SCHED_RESET_ON_FORK, base/runtime.py)."""
    if sched is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, *sched)
    while (arm := ref()) is not None:
        wake.clear()  # before `watch`: a re-arm after it is not missed
        wait_ns = arm.watch()
        del arm
        wake.wait(1.0 if wait_ns is None else min(1.0, wait_ns / 1e9))
