"""The messages of the control and telemetry links, as small immutable objects.

Names follow CRTK (servo_cp, measured_cp, measured_js, operating_state, enable/disable/pause) so that
robotics people read them at sight. Every message carries the session epoch, a sequence number and the
sender's monotonic send time; docs/protocol.md gives the byte layout, transport/codec.py turns these into
bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from base.geometry import IDENTITY_Q, ZERO_V, Quat, Vec3

ARM_NAMES: tuple[str, ...] = ("PSM1", "PSM2", "PSM3", "ECM")
"""Arms in wire order: three patient-side instrument manipulators and the endoscope camera manipulator (the
four arms of the da Vinci that operated London-Gibraltar). A surgeon has two hands: two instruments follow,
the third holds until a swap takes it (console/hands.py)."""
N_ARMS = len(ARM_NAMES)
ECM_INDEX = ARM_NAMES.index("ECM")
INSTRUMENT_ARMS: tuple[str, ...] = tuple(n for n in ARM_NAMES if n != "ECM")
"""The instrument arms (PSMs), in wire order."""
N_HANDS = 2
"""Master hands: right (index 0) and left (1). At most this many instruments follow at once."""
N_JOINTS = 7
"""measured_js per arm: outer yaw, outer pitch, insertion, roll, wrist pitch, wrist yaw, jaw."""


class MsgType(IntEnum):
    SERVO_CP = 1
    ENABLE = 2
    DISABLE = 3
    PING = 4
    ESTOP = 5
    ACK = 16
    TELEMETRY = 17
    EVENT = 18
    COUNTERS = 19


class OperatingState(IntEnum):
    """CRTK operating_state of the bedside as a whole."""

    DISABLED = 0
    ENABLED = 1
    PAUSED = 2
    FAULT = 3


class Reason(IntEnum):
    """Why something holds, stops or changes state; shared by both ends, logs and recordings."""

    NONE = 0
    LINK_LOST = 1
    OPERATOR_ABSENT = 2
    ESTOP = 3
    FAULT = 4
    LIMIT = 5
    VIDEO_STALE = 6
    LATENCY = 7
    CONSOLE_REQUEST = 8
    STARTUP = 9
    STALE_COMMAND = 10
    GUI_LOST = 11
    HANDOVER = 12
    RESET = 13
    SECURITY = 14
    LOOP_OVERRUN = 15
    """The sender's own control loop took longer than its tick bound (safety/loop_health.py)."""


class AckStatus(IntEnum):
    """Outcome of one command at the bedside. Values >= 16 are rejections: the arm did not move."""

    APPLIED = 0
    ENABLED = 2
    DISABLED = 3
    PONG = 4
    ESTOP_LATCHED = 5
    SUPERSEDED = 6
    """Several paths only: the controller's servo_cp arrived, for the first time on any path, after a newer one was
    applied (the path that had it first lost its copy): not applied, and no refusal (transport/paths.py)."""
    REJECTED_NOT_ENABLED = 16
    REJECTED_EPOCH = 17
    REJECTED_SEQUENCE = 18
    REJECTED_STALE = 19
    REJECTED_STEP = 20
    REJECTED_WORKSPACE = 21
    REJECTED_ESTOP = 22
    REJECTED_OPERATOR_ABSENT = 23
    REJECTED_ORIENTATION_STEP = 24
    REJECTED_FAULT = 25
    REJECTED_ROLE = 26
    REJECTED_NOT_CONTROLLER = 27
    REJECTED_SPEED = 28
    REJECTED_ARM = 29
    """The mask commands an arm this bedside has not mounted, or more instruments than a surgeon has hands."""
    REJECTED_TISSUE_DEPTH = 30
    """A setpoint deeper inside the tissue than `bedside.tissue_max_depth_mm` (safety/tissue.py)."""
    REJECTED_NO_REASON = 31
    """A station's e-stop reset without a reason: the reset is audited, so it must say why."""

    @property
    def rejected(self) -> bool:
        return self.value >= 16


class ConsoleFlags(IntFlag):
    """Console inputs carried with every servo_cp."""

    NONE = 0
    OPERATOR_PRESENT = 1
    CLUTCH = 2
    CAMERA = 4


class ArmMode(IntEnum):
    """What one arm is doing at the bedside."""

    DISABLED = 0
    HOLDING = 1
    FOLLOWING = 2


class ArmFlags(IntFlag):
    NONE = 0
    HOMED = 1
    BUSY = 2
    LIMIT = 4


class EventKind(IntEnum):
    STATE_CHANGE = 1
    REJECTION = 2
    LIMIT = 3
    INFO = 4


@dataclass(frozen=True, slots=True)
class Message:
    """Header fields common to every message."""

    epoch: int
    seq: int
    send_ns: int


@dataclass(frozen=True, slots=True)
class CartesianSetpoint:
    """One arm's absolute servo_cp target: never an increment (a lost packet must not leave an offset)."""

    position: Vec3 = ZERO_V
    orientation: Quat = IDENTITY_Q
    jaw: float = 0.0


HOLD_SETPOINT = CartesianSetpoint()


@dataclass(frozen=True, slots=True)
class ServoCp(Message):
    """Absolute Cartesian setpoints; only arms whose bit is set in `arm_mask` are commanded."""

    flags: ConsoleFlags
    arm_mask: int
    arms: tuple[CartesianSetpoint, ...]


@dataclass(frozen=True, slots=True)
class Enable(Message):
    """Ask for a fresh session: the bedside answers with a new epoch and holds every arm where it is."""


@dataclass(frozen=True, slots=True)
class Disable(Message):
    """Release control: the bedside holds every arm and returns to DISABLED."""


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Clock-offset and RTT probe; answered with an Ack carrying PONG."""


@dataclass(frozen=True, slots=True)
class EStop(Message):
    """Latching emergency stop (raise=True) or its reset (raise=False, honoured only where allowed).

    `reason`: why, in the sender's words (UTF-8, at most codec.MAX_ESTOP_REASON_BYTES): the bedside station's
    reset must carry one, which the bedside writes into its audit (event log and recording)."""

    engage: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Bedside answer to every command; echoes the command's seq and send time (t1) and gives t2."""

    echo_seq: int
    echo_send_ns: int
    rx_ns: int
    status: AckStatus
    operating_state: OperatingState
    reason: Reason


@dataclass(frozen=True, slots=True)
class ArmTelemetry:
    mode: ArmMode
    flags: ArmFlags
    measured_cp: CartesianSetpoint
    setpoint_cp: CartesianSetpoint
    measured_js: tuple[float, ...]
    measured_cf: Vec3 = ZERO_V
    """CRTK measured_cf: the force the tissue exerts on the tip, N, patient frame (safety/tissue.py)."""


@dataclass(frozen=True, slots=True)
class Telemetry(Message):
    """Periodic bedside state (CRTK measured_cp / setpoint_cp / measured_js / operating_state)."""

    operating_state: OperatingState
    reason: Reason
    estop: bool
    last_applied_seq: int
    arms: tuple[ArmTelemetry, ...]


@dataclass(frozen=True, slots=True)
class Event(Message):
    """A named transition or decision, with its reason in words, for the operator and the record."""

    kind: EventKind
    reason: Reason
    from_state: OperatingState
    to_state: OperatingState
    text: str


@dataclass(frozen=True, slots=True)
class Counters(Message):
    """The bedside's counters (commands by outcome, refused handshakes, malformed frames…), once a second."""

    values: dict[str, int]
