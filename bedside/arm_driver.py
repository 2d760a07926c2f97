"""The seam between the bedside agent and a robot: what an arm driver offers, in CRTK terms.

The agent (bedside/agent.py) decides; a driver moves one arm. The agent judges every setpoint with the limits
both ends share (safety/limits.py) and asks the driver only about what is truly the arm's own (reach, joint
limits, wrist, jaw range); it commands a driver only with setpoints that passed both. `SimulatedArm`
(bedside/arm.py) is one implementation; bedside/drivers.py picks one by `bedside.arm_driver`. The contract a
real robot's driver must meet (rates, time budgets, threads, hold and fault) is docs/architecture.md,
"The arm driver contract (real robots)".

Names follow CRTK (the Collaborative Robotics Toolkit convention of dVRK, Raven and others): commands
`enable`, `disable`, `hold`, `servo_cp`; queries `measured_cp`, `setpoint_cp`, `measured_js`, `measured_cf`,
`operating_state` (with `is_homed`, `is_busy`). Poses are `CartesianSetpoint`s as on the wire (patient
frame, metres, unit quaternion x y z w, jaw in radians).

Every driver has its own watchdog, independent of the loop that calls it (`ServiceBound`): not serviced for
`bedside.driver_watchdog_ms` (a stalled bedside loop), it holds its arm on its own and says so in
`ArmOperatingState.held`, as the dVRK's FPGA boards cut power when the PC stops writing to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from base.geometry import Vec3
from safety.limits import SetpointLimits
from transport.messages import CartesianSetpoint, OperatingState


@dataclass(frozen=True, slots=True)
class ArmOperatingState:
    """CRTK operating_state of one arm: DISABLED, ENABLED or FAULT (PAUSED is the agent's, not an arm's)."""

    state: OperatingState
    is_homed: bool
    is_busy: bool
    """Still moving toward its setpoint."""
    fault: str = ""
    """With FAULT: one sentence naming the cause, published in the bedside's FAULT event."""
    held: str = ""
    """The driver's own watchdog held the arm (no service within its bound): one sentence saying how long it went
    unserviced. Stays until the next `enable`; the agent ends the session on it (docs/architecture.md)."""


@dataclass(frozen=True, slots=True)
class ServiceBound:
    """A driver's own watchdog: hold the arm if no call services it (`enable`, `disable`, `hold`, `servo_cp`,
    `advance`) for `timeout_ns` by `clock`, which must keep running when the bedside loop does not."""

    timeout_ns: int
    clock: Callable[[], int]
    """Monotonic nanoseconds (the bedside: `time.monotonic_ns`; tests: a clock they move)."""
    thread: bool = True
    """Watch from a thread of the driver's own, so the hold happens during the stall, not after it; False for tests
    that drive the clock and every call themselves."""


@runtime_checkable
class ArmDriver(Protocol):
    """One arm. Every method returns within its budget and never blocks (docs/architecture.md)."""

    name: str
    """The arm's name on the wire (PSM1, PSM2, ECM)."""
    limits: SetpointLimits
    """The rate limits it servoes under, built from configuration (the bedside's `limits_from_config`): the
    tool never moves faster than these, whatever it is sent."""

    def enable(self) -> None:
        """Power on (if off) and hold where the tool is: the session's first setpoint is judged from there. Clears
        a hold of the driver's own watchdog (`held`) and restarts it."""

    def disable(self) -> None:
        """Hold where the tool is and report DISABLED; the next motion needs `enable`."""

    def hold(self) -> None:
        """Stop where the tool is now: from here `setpoint_cp` = `measured_cp` until the next `servo_cp`."""

    def servo_cp(self, sp: CartesianSetpoint) -> None:
        """Servo toward `sp`, which the agent has checked (shared limits and `reach_violation`); ignored while the
        driver's watchdog holds the arm (`held`), until `enable`."""

    def reach_violation(self, sp: CartesianSetpoint) -> str | None:
        """None if the arm can take pose `sp`; else one sentence naming its own limit that `sp` breaks."""

    def advance(self, dt_s: float) -> None:
        """Called every bedside tick with the time since the last call: integrate or collect new state. Also the
        heartbeat of the driver's watchdog: a loop that stops calling it has stalled."""

    def measured_cp(self) -> CartesianSetpoint:
        """Where the tool is (with the jaw's measured angle)."""

    def setpoint_cp(self) -> CartesianSetpoint:
        """What the arm servoes toward now: the last `servo_cp`, or the held pose."""

    def measured_js(self) -> tuple[float, ...]:
        """Seven joints: outer yaw, outer pitch, insertion, roll, wrist pitch, wrist yaw, jaw."""

    def measured_cf(self) -> Vec3:
        """The contact force on the tip, N, patient frame (the environment's force on the tool: pressing into tissue
        gives +z); a zero vector without a force sensor or estimate. Read at every tick: no blocking."""

    def operating_state(self) -> ArmOperatingState:
        """CRTK operating state; FAULT makes the agent hold every arm and go FAULT itself."""
