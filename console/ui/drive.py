"""A scripted operator at the keyboard, for the screenshot and the window benchmark only.

It presses what a person would press, through the window's own controls (presence, align, engage) and
moves both hands in a circle with mouse drags: the same code path as a human, at a steady pace, so the
benchmark measures the control stream while the window paints and is being driven. It is never wired into
`teleop console`: a surgeon's window never drives itself.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QObject, QTimer, Slot

STEP_HZ = 100


class AutoDriver(QObject):
    def __init__(self, window, radius_px: float = 40.0, period_s: float = 6.0) -> None:
        super().__init__(window)
        self.w = window
        self.radius = radius_px
        self.omega = 2 * math.pi / period_s
        self.t0 = time.monotonic()
        self.last = self.t0
        self.last_engage = 0.0
        self.engages = 0
        self._timer = QTimer(self)
        self._timer.setInterval(1000 // STEP_HZ)
        self._timer.timeout.connect(self.step)
        self._timer.start()

    def following(self) -> bool:
        return all(self.w.arm_state(n) == "FOLLOWING" for n in self.w.hand_arms())

    @Slot()
    def step(self) -> None:
        now = time.monotonic()
        dt, self.last = now - self.last, now
        state = self.w.state
        if state is None:
            return
        if not self.w.streamer.with_master(lambda m: m.present_latched):
            self.w.set_presence(True)
            return
        self.w.align()
        t = state.get("teleop") or {}
        states = [self.w.arm_state(n) for n in self.w.hand_arms()]
        if (any(s in ("DISABLED", "HELD") for s in states) and now - self.last_engage > 1.0
                and t.get("operator_present") and (state.get("video") or {}).get("ok")
                and state.get("link") == "UP" and not t.get("estop")):
            self.last_engage = now
            self.engages += 1
            self.w.press("return")
        if "FOLLOWING" in states:
            a = self.omega * (now - self.t0)
            k = self.radius * self.omega * dt
            dx, dy = -k * math.sin(a), k * math.cos(a)

            def move(m) -> None:
                active = m.active
                for hand in (0, 1):
                    m.active = hand
                    m.mouse_drag(dx, dy if hand == 0 else -dy, True, False)
                m.active = active
            self.w.streamer.with_master(move)

    def stop(self) -> None:
        self._timer.stop()
