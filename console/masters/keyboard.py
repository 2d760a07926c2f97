"""Keyboard and mouse as a two-handed master, for the GUI demo and for people without a haptic device.

Pure: the GUI feeds key and mouse events (Qt key names mapped to the lower-case names below) and calls
`read(now_ns)` every control tick; held keys move the active hand at a fixed speed integrated over the
injected time. Nothing here reads a clock or touches Qt, so the whole device is testable headless.

Bindings (docs/masters.md has the same table):

    tab / 1 / 2          switch the active hand / right hand / left hand (PSM1 / PSM2 until a swap)
    mouse drag, left     move the active hand in the screen plane (x right, y up)
    mouse wheel          move it in depth (wheel up = away from you, into the screen)
    mouse drag, right    rotate it (horizontal drag: yaw, vertical drag: pitch)
    arrows, pageup/down  move it at `speed_mm_s` while held (x, y; z toward you / away)
    q / e                roll it while held
    z / x                close / open its gripper while held
    space                operator present (held; `sticky_presence=True` makes it a toggle that also ends
                         after `idle_s` without any key or mouse input: a surgeon who walked away)
    c                    clutch (held)
    v                    camera (held)
    s                    arm-swap pedal (momentary): `teleop.swap_hand` takes the idle instrument
    return               engage (momentary)
    backspace            disengage
    escape               e-stop (the console latches it; reset from the GUI)

A keyboard cannot feel the tool's orientation, so `snap(hand, q)` sets a hand's orientation outright: bind
it to a key and pass the controller snapshot's `align_target` to satisfy the alignment check. The GUI must
call `release_all()` when its window loses focus, or a held key would stay held (releasing everything also
releases presence, so the arms hold).
"""

from __future__ import annotations

import math

from base.geometry import IDENTITY_Q, Pose, Quat, q_from_axis_angle, q_mul, q_normalize, v_add
from console.master import MasterButtons, MasterHand, MasterSample

_HOME = ((0.08, 0.0, 0.0), (-0.08, 0.0, 0.0))
_MOVE_KEYS = {
    "right": (1.0, 0.0, 0.0), "left": (-1.0, 0.0, 0.0), "up": (0.0, 1.0, 0.0), "down": (0.0, -1.0, 0.0),
    "pagedown": (0.0, 0.0, 1.0), "pageup": (0.0, 0.0, -1.0),
}
_HELD_BUTTONS = {
    "c": "clutch", "v": "camera", "return": "engage", "backspace": "disengage", "escape": "estop", "s": "swap",
}
_MAX_DT_S = 0.1
"""A gap between reads longer than this (a stalled GUI) moves held keys by this much at most."""


class KeyboardMouseMaster:
    def __init__(self, start_ns: int = 0, mm_per_px: float = 0.5, deg_per_px: float = 0.3,
                 speed_mm_s: float = 60.0, roll_deg_s: float = 90.0, grip_per_s: float = 1.0,
                 wheel_mm: float = 2.0, sticky_presence: bool = False, idle_s: float | None = None) -> None:
        """`idle_s`: with `sticky_presence`, the toggled presence ends after this long without input (None:
        never; the window passes `console.presence_idle_s`)."""
        self.name = "keyboard+mouse"
        self.m_per_px = mm_per_px / 1e3
        self.rad_per_px = math.radians(deg_per_px)
        self.speed = speed_mm_s / 1e3
        self.roll_rate = math.radians(roll_deg_s)
        self.grip_rate = grip_per_s
        self.wheel_m = wheel_mm / 1e3
        self.sticky_presence = sticky_presence
        self.active = 0
        self.poses = [Pose(_HOME[0], IDENTITY_Q), Pose(_HOME[1], IDENTITY_Q)]
        self.grippers = [0.5, 0.5]
        self.held: set[str] = set()
        self.present_latched = False
        self.idle_ns = None if idle_s is None else int(idle_s * 1e9)
        self.idle_ended = 0
        """How many times toggled presence ended for want of input (the window logs each)."""
        self._input = False  # any key or mouse input since the last read
        self._last_input_ns = start_ns
        self._last_ns = start_ns

    # ---------------------------------------------------------------- events from the GUI

    def key_down(self, key: str) -> None:
        key = key.lower()
        if key in self.held:
            return  # auto-repeat
        self._input = True
        self.held.add(key)
        if key == "tab":
            self.active = 1 - self.active
        elif key in ("1", "2"):
            self.active = int(key) - 1
        elif key == "space" and self.sticky_presence:
            self.present_latched = not self.present_latched

    def key_up(self, key: str) -> None:
        self._input = True
        self.held.discard(key.lower())

    def release_all(self) -> None:
        """Focus lost: every key up, presence off."""
        self.held.clear()
        self.present_latched = False

    def mouse_drag(self, dx_px: float, dy_px: float, left: bool = True, right: bool = False) -> None:
        """Mouse moved by (dx, dy) pixels (y down, as screens count) with these buttons held."""
        self._input = True
        if left:
            self._translate((dx_px * self.m_per_px, -dy_px * self.m_per_px, 0.0))
        if right:
            yaw = q_from_axis_angle((0.0, 1.0, 0.0), dx_px * self.rad_per_px)
            pitch = q_from_axis_angle((1.0, 0.0, 0.0), dy_px * self.rad_per_px)
            self._rotate(q_mul(yaw, pitch))

    def wheel(self, steps: float) -> None:
        """Wheel turned by `steps` notches; positive (away from you) pushes the hand into the screen."""
        self._input = True
        self._translate((0.0, 0.0, -steps * self.wheel_m))

    def snap(self, hand: int, orientation: Quat) -> None:
        """Set a hand's orientation outright (e.g. to the controller's `align_target`)."""
        p = self.poses[hand]
        self.poses[hand] = Pose(p.position, q_normalize(orientation))

    # ---------------------------------------------------------------- the device interface

    def read(self, now_ns: int) -> MasterSample:
        dt = min(max((now_ns - self._last_ns) / 1e9, 0.0), _MAX_DT_S)
        self._last_ns = now_ns
        if dt > 0.0:
            self._integrate(dt)
        held = self.held
        if self._input:  # a change: a key held still (a book on the keyboard) is no sign of a surgeon
            self._input = False
            self._last_input_ns = now_ns
        elif (self.present_latched and self.idle_ns is not None
              and now_ns - self._last_input_ns >= self.idle_ns):
            self.present_latched = False
            self.idle_ended += 1
        present = self.present_latched if self.sticky_presence else "space" in held
        buttons = MasterButtons(operator_present=present, **{f: k in held for k, f in _HELD_BUTTONS.items()})
        hands = (MasterHand(self.poses[0], self.grippers[0]), MasterHand(self.poses[1], self.grippers[1]))
        return MasterSample(now_ns, hands, buttons)

    def close(self) -> None:
        self.release_all()

    # ---------------------------------------------------------------- internals

    def _integrate(self, dt: float) -> None:
        held = self.held
        step = self.speed * dt
        for key, d in _MOVE_KEYS.items():
            if key in held:
                self._translate((d[0] * step, d[1] * step, d[2] * step))
        roll = (("e" in held) - ("q" in held)) * self.roll_rate * dt
        if roll:
            self._rotate(q_from_axis_angle((0.0, 0.0, 1.0), roll))
        grip = (("x" in held) - ("z" in held)) * self.grip_rate * dt
        if grip:
            g = self.grippers[self.active] + grip
            self.grippers[self.active] = min(1.0, max(0.0, g))

    def _translate(self, d: tuple[float, float, float]) -> None:
        p = self.poses[self.active]
        self.poses[self.active] = Pose(v_add(p.position, d), p.orientation)

    def _rotate(self, q: Quat) -> None:
        p = self.poses[self.active]
        self.poses[self.active] = Pose(p.position, q_normalize(q_mul(q, p.orientation)))
