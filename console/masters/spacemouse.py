"""3Dconnexion SpaceMouse as a master for one hand, through hidapi (the optional `spacemouse` extra).

A SpaceMouse is a rate device: pushing the cap sets a velocity, so the hand's pose here is the integral of
the cap's deflection over the injected time (`read(now_ns)`), with a dead band so a resting hand does not
drift. It has no presence sensor and only two buttons: on its own (`console.master = spacemouse`), its left
button is a deadman (operator present while held; releasing it holds the arms on that tick) and its right
button is engage. A rate device needs no clutch: releasing the cap stops the hand. With `buttons_from` (e.g. the
keyboard master) presence and the pedals come from that device instead.

Faults, each a FAULT hold with its sentence (MasterSample.fault): a read error (hidapi raises when the device
is unplugged) or a device that is deflected but sends no report for `stale_ms` (a SpaceMouse repeats its report
while deflected: silence then means a stalled or vanished device, and the stale deflection must not keep moving
the hand). After a read error the device is reopened once a second (`opener`); once back, the arms still wait
for a new engage.

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


_REOPEN_NS = 1_000_000_000


class SpaceMouseMaster:
    def __init__(self, device=None, hand: int = 0, buttons_from: MasterDevice | None = None,
                 speed_mm_s: float = 80.0, rot_deg_s: float = 90.0, deadband: float = 0.08,
                 start_ns: int = 0, stale_ms: float = 250.0, opener=None) -> None:
        """`device`: an open hidapi device (tests pass a fake); None opens the first SpaceMouse found, and
        `opener` (default: the same search) reopens it after an unplug."""
        self.opener = opener if opener is not None else (open_device if device is None else None)
        self.dev = device if device is not None else open_device()
        self.stale_ns = int(stale_ms * 1e6)
        self._last_report_ns = start_ns
        self._next_reopen_ns = 0
        self.reopened = 0
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
        self._unplugged = False
        self._last_ns = start_ns

    def _axis(self, v: int) -> float:
        x = max(-1.0, min(1.0, v / FULL_SCALE))
        if abs(x) <= self.deadband:
            return 0.0
        return math.copysign((abs(x) - self.deadband) / (1.0 - self.deadband), x)

    def _drain(self, now_ns: int) -> None:
        for _ in range(64):  # bounded: a chatty device never stalls the control loop
            data = self.dev.read(64)
            if not data:
                return
            self._last_report_ns = now_ns
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
        if self.fault is not None and self._unplugged and self.opener is not None and now_ns >= self._next_reopen_ns:
            self._reopen(now_ns)
        if self.fault is None or not self._unplugged:
            try:
                self._drain(now_ns)
            except (OSError, ValueError) as exc:
                self.fault = (f"SpaceMouse unplugged or unreadable ({exc}): plug it back in (the console retries "
                              "every second), then press engage")
                self._unplugged = True
                self._next_reopen_ns = now_ns + _REOPEN_NS
                self.axes = [0.0] * 6
                self.button_bits = 0
            else:
                silent_ms = (now_ns - self._last_report_ns) / 1e6
                if any(self.axes) and silent_ms * 1e6 > self.stale_ns:
                    self.fault = (f"SpaceMouse deflected but silent for {silent_ms:.0f} ms (stalled or unplugged): "
                                  "arms held; check its cable, then press engage")
                    self.axes = [0.0] * 6
                    self.button_bits = 0
                elif self.fault is not None and silent_ms * 1e6 <= self.stale_ns:
                    self.fault = None  # reports again: the hold stays until a new engage
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
            buttons = MasterButtons(operator_present=bool(self.button_bits & 1), engage=bool(self.button_bits & 2))
        hands = (MasterHand(self.poses[0]), MasterHand(self.poses[1]))
        return MasterSample(now_ns, hands, buttons, valid=self.fault is None, fault=self.fault or "",
                            presence_immediate=self.buttons_from is None)

    def _reopen(self, now_ns: int) -> None:
        self._next_reopen_ns = now_ns + _REOPEN_NS
        try:
            dev = self.opener()
        except MasterError:
            return
        with contextlib.suppress(OSError):
            self.dev.close()
        self.dev, self.fault, self._unplugged = dev, None, False
        self._last_report_ns = now_ns
        self.reopened += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.dev.close()
