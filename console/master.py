"""Master devices behind one interface: every device yields a MasterSample when asked at time `now`.

A sample carries both hands' poses (metres, quaternion x,y,z,w, in the master's own frame: x right,
y up, z toward the surgeon), the grippers (0 = closed .. 1 = open) and the pedal/button levels.
`engage` is a momentary request: the console acts on its rising edge.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

from base.errors import UserError
from base.geometry import IDENTITY_Q, Pose, Vec3


@dataclass(frozen=True, slots=True)
class MasterHand:
    pose: Pose = field(default_factory=Pose)
    gripper: float = 0.5


@dataclass(frozen=True, slots=True)
class MasterButtons:
    operator_present: bool = False
    clutch: bool = False
    camera: bool = False
    engage: bool = False
    disengage: bool = False
    estop: bool = False
    swap: bool = False
    """The arm-swap pedal (momentary; its rising edge moves `teleop.swap_hand` to the idle instrument)."""


@dataclass(frozen=True, slots=True)
class MasterSample:
    """One reading of the master console. hands[0] is the right hand, hands[1] the left; which instrument each
    drives is the console's hand assignment (console/hands.py: PSM1 and PSM2 until a swap)."""

    t_ns: int
    hands: tuple[MasterHand, MasterHand]
    buttons: MasterButtons
    valid: bool = True
    """False when the device reports a fault (lost tracking, stale HID report): the console holds."""
    fault: str = ""
    """Why the sample is invalid, with what to do, in one sentence (the console shows it with the FAULT hold)."""
    presence_immediate: bool = False
    """The device's presence input needs no debounce (a deadman switch, a head sensor the device debounces
    itself): losing it holds the arms on the first tick without it, not after `teleop.presence_off_ms`."""
    velocities: tuple[Vec3, Vec3] | None = None
    """Each hand's velocity (m/s, master frame) as the device measures it; the force loop's passivity observer
    needs it (console/force.py). None: the device does not report it (and receives no force)."""


class MasterDevice(Protocol):
    name: str

    def read(self, now_ns: int) -> MasterSample:
        """The newest sample at `now_ns`. Never blocks the control loop."""
        ...

    def close(self) -> None: ...


class MasterError(UserError, RuntimeError):
    """A master device that cannot be opened or read; the message says what to do (one line, no traceback)."""

    label = "master device"


@dataclass(frozen=True, slots=True)
class ScriptEvent:
    """At `t_s` seconds after the script starts, set input `name` to `level`.

    `name` is a MasterButtons field (operator_present, clutch, camera, engage, disengage, estop, swap) or "valid"
    (False = the device reports a fault). Levels persist until the next event for the same input.
    """

    t_s: float
    name: str
    level: bool


SCRIPT_INPUTS = frozenset(f.name for f in fields(MasterButtons)) | {"valid"}


def pulse(name: str, t_s: float, width_s: float = 0.05) -> tuple[ScriptEvent, ScriptEvent]:
    """A momentary press: `name` high at `t_s` for `width_s`."""
    return ScriptEvent(t_s, name, True), ScriptEvent(t_s + width_s, name, False)


_RIGHT_HOME = (0.08, 0.0, 0.0)
_LEFT_HOME = (-0.08, 0.0, 0.0)


class ScriptedMaster:
    """Plays a trajectory as a function of time: a stand-in for a surgeon's hands in demos and tests.

    `engage_at_s` presses engage once (a 50 ms pulse) so the demo starts following on its own; after any
    hold the script does NOT re-engage by itself unless `reengage_every_s` is set, exactly as a surgeon
    would have to press engage again. `script` adds timed inputs (clutch, camera, presence, e-stop, device
    faults, extra engage presses, arm swaps: `pulse("swap", t)`): see ScriptEvent and pulse().
    """

    def __init__(
        self,
        shape: str = "circle",
        start_ns: int = 0,
        radius_m: float = 0.03,
        period_s: float = 4.0,
        engage_at_s: float | None = 0.2,
        reengage_every_s: float | None = None,
        script: Sequence[ScriptEvent] = (),
    ) -> None:
        if shape not in ("circle", "figure8", "still"):
            raise MasterError(f"unknown scripted trajectory {shape!r}: use circle, figure8 or still")
        for ev in script:
            if ev.name not in SCRIPT_INPUTS:
                known = ", ".join(sorted(SCRIPT_INPUTS))
                raise MasterError(f"unknown scripted input {ev.name!r}: use one of {known}")
        self._script_t, self._script_levels = _compile_script(script)
        self.name = f"scripted:{shape}"
        self.shape = shape
        self.start_ns = start_ns
        self.radius = radius_m
        self.period = period_s
        self.engage_at = engage_at_s
        self.reengage_every = reengage_every_s

    def _offset(self, t: float, phase: float) -> tuple[float, float, float]:
        if self.shape == "still":
            return (0.0, 0.0, 0.0)
        w = 2.0 * math.pi / self.period
        a = w * t + phase
        if self.shape == "circle":
            return (self.radius * math.cos(a) - self.radius, self.radius * math.sin(a), 0.0)
        return (self.radius * math.sin(a), self.radius * math.sin(2 * a) / 2.0, 0.0)

    def _engage_pulse(self, t: float) -> bool:
        if self.engage_at is None or t < self.engage_at:
            return False
        if self.reengage_every is None:
            return t - self.engage_at < 0.05
        return (t - self.engage_at) % self.reengage_every < 0.05

    def read(self, now_ns: int) -> MasterSample:
        t = (now_ns - self.start_ns) / 1e9
        hands = []
        for home, phase in ((_RIGHT_HOME, 0.0), (_LEFT_HOME, math.pi)):
            o = self._offset(t, phase)
            pos = (home[0] + o[0], home[1] + o[1], home[2] + o[2])
            grip = 0.5 + 0.4 * math.sin(2.0 * math.pi * t / self.period)
            hands.append(MasterHand(Pose(pos, IDENTITY_Q), grip))
        levels = dict(self._script_levels[bisect.bisect_right(self._script_t, t)])
        valid = levels.pop("valid", True)
        buttons = MasterButtons(operator_present=True, engage=self._engage_pulse(t))
        if levels:
            buttons = replace(buttons, **levels)
            buttons = replace(buttons, engage=buttons.engage or self._engage_pulse(t))
        return MasterSample(now_ns, (hands[0], hands[1]), buttons, valid)

    def close(self) -> None:
        pass


class FileMaster:
    """Replays a recorded CSV trajectory, looping.

    Columns: t_s, then for each hand x, y, z, qx, qy, qz, qw, gripper (right hand first), then
    operator_present, clutch. Rows must be in increasing time. Engage is pressed once at the first row.
    """

    COLUMNS = 1 + 2 * 8 + 2

    def __init__(self, path: str | Path, start_ns: int = 0) -> None:
        p = Path(path)
        self.name = f"file:{p.name}"
        self.start_ns = start_ns
        try:
            with p.open(newline="") as f:
                rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        except OSError as exc:
            raise MasterError(f"cannot read master trajectory {p}: {exc}") from None
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]  # header line
        if not rows:
            raise MasterError(f"master trajectory {p} has no samples")
        self.rows: list[tuple[float, ...]] = []
        for i, r in enumerate(rows):
            if len(r) != self.COLUMNS:
                raise MasterError(f"{p}:{i + 1}: expected {self.COLUMNS} columns, got {len(r)}")
            try:
                vals = tuple(float(x) for x in r)
            except ValueError:
                raise MasterError(f"{p}:{i + 1}: not a number") from None
            if not all(math.isfinite(v) for v in vals):
                raise MasterError(f"{p}:{i + 1}: non-finite value")
            if self.rows and vals[0] <= self.rows[-1][0]:
                raise MasterError(f"{p}:{i + 1}: time does not increase")
            self.rows.append(vals)
        self.duration = self.rows[-1][0] - self.rows[0][0] or 1e-3
        self._i = 0

    def read(self, now_ns: int) -> MasterSample:
        t = ((now_ns - self.start_ns) / 1e9) % (self.duration + 1e-3) + self.rows[0][0]
        if self.rows[self._i][0] > t:
            self._i = 0
        while self._i + 1 < len(self.rows) and self.rows[self._i + 1][0] <= t:
            self._i += 1
        r = self.rows[self._i]
        hands = []
        for h in range(2):
            b = 1 + 8 * h
            q = r[b + 3 : b + 7]
            n = math.sqrt(sum(c * c for c in q)) or 1.0
            hands.append(
                MasterHand(Pose(r[b : b + 3], tuple(c / n for c in q)), min(1.0, max(0.0, r[b + 7])))
            )
        first = (now_ns - self.start_ns) < 50_000_000
        buttons = MasterButtons(operator_present=r[17] > 0.5, clutch=r[18] > 0.5, engage=first)
        return MasterSample(now_ns, (hands[0], hands[1]), buttons)

    def close(self) -> None:
        pass


def _compile_script(script: Sequence[ScriptEvent]) -> tuple[list[float], list[dict[str, bool]]]:
    """Times and the input levels in force from each time on (index 0: before the first event)."""
    events = sorted(script, key=lambda e: e.t_s)
    times: list[float] = []
    levels: list[dict[str, bool]] = [{}]
    for ev in events:
        times.append(ev.t_s)
        levels.append({**levels[-1], ev.name: ev.level})
    return times, levels


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
