"""3Dconnexion SpaceMouse as a master for one hand, through hidapi (the optional `spacemouse` extra).

A SpaceMouse is a rate device: pushing the cap sets a velocity, so the hand's pose here is the integral of
the cap's deflection over the injected time (`read(now_ns)`), with a dead band so a resting hand does not
drift. It has no presence sensor and only two buttons, so presence and the pedals normally come from
another device (`buttons_from`, e.g. the keyboard master); on its own, its left button is the clutch and
its right button is engage, and operator presence is False (the console will not engage).

HID reports (3Dconnexion's layout): report 1 = translation x, y, z as int16 little-endian (newer devices
send all six axes in report 1, 12 bytes), report 2 = rotation rx, ry, rz, report 3 = button bitmask. The
device's axes are x right, y toward the user, z down; they are mapped to the master frame (x right,
y up, z toward the surgeon) as x → x, −z → y, y → z, and the same for the rotations. This mapping follows
the published report layout; it has not been checked against a physical device here (none available).
"""

from __future__ import annotations

import contextlib
import math
import struct

from base.geometry import IDENTITY_Q, Pose, q_from_rotvec, q_mul, q_normalize, v_add
from console.master import MasterButtons, MasterDevice, MasterError, MasterHand, MasterSample

VENDOR_IDS = (0x046D, 0x256F)
"""3Dconnexion devices enumerate under Logitech's vendor id (older) or 3Dconnexion's own (newer)."""
FULL_SCALE = 350.0
"""Typical maximum axis value of a SpaceMouse report."""
_HOME = ((0.08, 0.0, 0.0), (-0.08, 0.0, 0.0))
_MAX_DT_S = 0.1
_INT16x3 = struct.Struct("<hhh")
_INT16x6 = struct.Struct("<hhhhhh")


def parse_report(data: bytes | list[int]) -> tuple[str, tuple[int, ...]]:
    """('translation' | 'rotation' | 'motion' | 'buttons' | 'other', values) for one raw HID report."""
    raw = bytes(data)
    if not raw:
        return "other", ()
    rid, body = raw[0], raw[1:]
    if rid == 1 and len(body) >= 12:
        return "motion", _INT16x6.unpack_from(body)
    if rid == 1 and len(body) >= 6:
        return "translation", _INT16x3.unpack_from(body)
    if rid == 2 and len(body) >= 6:
        return "rotation", _INT16x3.unpack_from(body)
    if rid == 3:
        return "buttons", (int.from_bytes(body, "little"),)
    return "other", tuple(body)


def open_device():
    """The first SpaceMouse found, opened non-blocking; MasterError saying what to do otherwise."""
    try:
        import hid  # the `hidapi` package (cython-hidapi)
    except ImportError:
        raise MasterError(
            "SpaceMouse support needs the hidapi library: pip install 'teleop-console[spacemouse]' "
            "(and the system's libhidapi / libusb)"
        ) from None
    found = [d for d in hid.enumerate() if d.get("vendor_id") in VENDOR_IDS]
    if not found:
        raise MasterError("no 3Dconnexion SpaceMouse found (USB vendor 046d or 256f): plug it in; on Linux, "
                          "give your user read access to its /dev/hidraw* node (udev rule)")
    dev = hid.device()
    try:
        dev.open_path(found[0]["path"])
        dev.set_nonblocking(1)
    except OSError as exc:
        raise MasterError(f"cannot open the SpaceMouse {found[0].get('product_string', '')!r}: {exc}; "
                          "check the permissions of its /dev/hidraw* node") from None
    return dev


class SpaceMouseMaster:
    def __init__(self, device=None, hand: int = 0, buttons_from: MasterDevice | None = None,
                 speed_mm_s: float = 80.0, rot_deg_s: float = 90.0, deadband: float = 0.08,
                 start_ns: int = 0) -> None:
        self.dev = device if device is not None else open_device()
        self.name = "spacemouse"
        self.hand = hand
        self.buttons_from = buttons_from
        self.speed = speed_mm_s / 1e3
        self.rot_rate = math.radians(rot_deg_s)
        self.deadband = deadband
        self.poses = [Pose(_HOME[0], IDENTITY_Q), Pose(_HOME[1], IDENTITY_Q)]
        self.axes = [0.0] * 6
        self.button_bits = 0
        self.fault: str | None = None
        self._last_ns = start_ns

    def _axis(self, v: int) -> float:
        x = max(-1.0, min(1.0, v / FULL_SCALE))
        if abs(x) <= self.deadband:
            return 0.0
        return math.copysign((abs(x) - self.deadband) / (1.0 - self.deadband), x)

    def _drain(self) -> None:
        for _ in range(64):  # bounded: a chatty device never stalls the control loop
            data = self.dev.read(64)
            if not data:
                return
            kind, vals = parse_report(data)
            if kind == "motion":
                self.axes = [self._axis(v) for v in vals]
            elif kind == "translation":
                self.axes[0:3] = [self._axis(v) for v in vals]
            elif kind == "rotation":
                self.axes[3:6] = [self._axis(v) for v in vals]
            elif kind == "buttons":
                self.button_bits = vals[0]

    def read(self, now_ns: int) -> MasterSample:
        dt = min(max((now_ns - self._last_ns) / 1e9, 0.0), _MAX_DT_S)
        self._last_ns = now_ns
        if self.fault is None:
            try:
                self._drain()
            except (OSError, ValueError) as exc:
                self.fault = f"SpaceMouse read failed: {exc}"
                self.axes = [0.0] * 6
        tx, ty, tz, rx, ry, rz = self.axes
        p = self.poses[self.hand]
        step = self.speed * dt
        pos = v_add(p.position, (tx * step, -tz * step, ty * step))
        turn = self.rot_rate * dt
        ori = q_normalize(q_mul(q_from_rotvec((rx * turn, -rz * turn, ry * turn)), p.orientation))
        self.poses[self.hand] = Pose(pos, ori)
        if self.buttons_from is not None:
            buttons = self.buttons_from.read(now_ns).buttons
        else:
            buttons = MasterButtons(clutch=bool(self.button_bits & 1), engage=bool(self.button_bits & 2))
        hands = (MasterHand(self.poses[0]), MasterHand(self.poses[1]))
        return MasterSample(now_ns, hands, buttons, valid=self.fault is None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.dev.close()
