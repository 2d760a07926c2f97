"""Force feedback for a master that takes force (a haptic bridge): the bedside's contact force, made safe to feel.

Pure and sans-IO: the engine feeds each telemetry's forces (`on_force`, with its measurement and receive times)
and calls `step` once per control tick with the hands' velocities (from the device) and `now`; out come the forces
to send. Between the two, the playout (console/force_playout.py) releases one sample per tick at the spacing the
bedside measured them, a few milliseconds late, instead of the bunches a jittery link delivers.

Theory of operation
-------------------
The bedside publishes each arm's contact force (CRTK `measured_cf`, patient frame, newtons: safety/tissue.py).
`hand_forces` turns the arms' forces into the forces of the two hands: the arm each hand drives (the console's
hand assignment), only while that arm FOLLOWS the hand (a held, clutched or idle arm is not coupled to the hand,
so the hand feels nothing), rotated into the master frame through the endoscope's orientation (the inverse of
the motion mapping of console/mapping.py: a tip pressed down into tissue pushes the hand back up the screen).

Then, per hand, every tick, on the newest sample the playout released, in this order:

1. scale: `gain` · force (dVRK's bilateral example uses 0.2);
2. smooth: a first-order low-pass at `smoothing_hz` (telemetry arrives in steps; the filter's lag is one more
   reason for step 6);
3. stale guard: a force not refreshed for `stale_ms` (by the console's receive clock) fades linearly to zero
   over `fade_ms`, and is exactly zero from `stale_ms + fade_ms` on: it never holds at its last value;
4. saturate: the force's magnitude is clamped to `max_n` (direction kept);
5. no velocity from the device: zero force (passivity cannot be observed without it);
6. passivity (Hannaford & Ryu, IEEE T-RA 18(1), 2002). The observer integrates the energy flowing INTO the
   system at the master port, E(k) = E(k-1) − F(k)·v(k)·Δt (F pushes the hand, v is the hand's velocity: a
   hand pressing against the force puts energy in, a force pushing the hand along takes it out). Delay and
   filtering make the loop active: the force on the way out of the tissue is larger than on the way in, and
   E goes negative = energy created. The controller acts whenever this tick's force would make E negative: it
   adds a damper against the hand's motion, F' = F − α·v with α = −(E(k−1) − F·v·Δt) / (|v|²·Δt), which is
   exactly enough to keep E(k) = 0, then clamps to `max_n` again (clamping only reduces what flows out, so E
   stays ≥ 0). The master therefore never receives more energy than it put in.

`min_energy_j` is what the benchmark reports (`teleop bench haptics`, JSON `energy_min_j`): ≥ 0 with passivity
on, by construction; negative with it off over a delayed link, which is what it prevents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from base.config import ConsoleConfig
from base.geometry import ZERO_V, Quat, Vec3, q_conj, q_rotate
from console.force_playout import ForcePlayout, ForceSample

_MAX_DT_S = 0.1
"""A longer gap between ticks (a stall) integrates no more than this."""


@dataclass(frozen=True, slots=True)
class ForceSettings:
    gain: float = 0.2
    max_n: float = 3.0
    smoothing_hz: float = 100.0
    stale_ns: int = 20_000_000
    fade_ns: int = 30_000_000
    passivity: bool = True
    playout_ns: int = 10_000_000

    @classmethod
    def from_config(cls, c: ConsoleConfig) -> ForceSettings:
        return cls(c.force_gain, c.force_max_n, c.force_smoothing_hz, int(c.force_stale_ms * 1e6),
                   int(c.force_fade_ms * 1e6), c.force_passivity, int(c.force_playout_ms * 1e6))

    @property
    def zero_after_ns(self) -> int:
        """A force stream that stops is zero at the master this long after its last sample arrived."""
        return self.stale_ns + self.fade_ns


def _dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _scale(a: Vec3, k: float) -> Vec3:
    return (a[0] * k, a[1] * k, a[2] * k)


def clamp_norm(f: Vec3, limit: float) -> Vec3:
    n = math.sqrt(_dot(f, f))
    return f if n <= limit else _scale(f, limit / n) if n > 0.0 else ZERO_V


def hand_forces(arm_forces: Sequence[Vec3], hand_arms: tuple[int | None, int | None],
                coupled: tuple[bool, bool], r_cam: Quat) -> tuple[Vec3, Vec3]:
    """Each hand's force, master frame, N (unscaled): its arm's contact force while that arm follows it."""
    inv = q_conj(r_cam)
    out: list[Vec3] = []
    for arm, on in zip(hand_arms, coupled, strict=True):
        f = arm_forces[arm] if arm is not None and on else ZERO_V
        out.append(q_rotate(inv, f) if f != ZERO_V else ZERO_V)
    return out[0], out[1]


class PassivityPort:
    """Hannaford & Ryu's observer and controller at one hand's port (module docstring, step 6)."""

    def __init__(self) -> None:
        self.energy_j = 0.0
        self.min_energy_j = 0.0
        self.acted = 0
        """Ticks on which the controller changed the force."""
        self.dissipated_j = 0.0
        """Energy the controller's damper took out."""

    def step(self, f: Vec3, v: Vec3, dt: float, enabled: bool, limit: float) -> tuple[Vec3, bool]:
        """The force to apply this tick, and whether the controller changed it; updates the observer."""
        acted = False
        flow = _dot(f, v) * dt  # energy the force delivers to the hand this tick
        if enabled and self.energy_j - flow < 0.0:
            vv = _dot(v, v)
            if vv > 0.0:  # |alpha·v| <= 2|f| whatever |v| (we are here only if E < f·v·dt): no division blow-up
                alpha = (flow - self.energy_j) / (vv * dt)
                f2 = clamp_norm((f[0] - alpha * v[0], f[1] - alpha * v[1], f[2] - alpha * v[2]), limit)
                self.dissipated_j += (_dot(f, v) - _dot(f2, v)) * dt
                f, acted = f2, True
                flow = _dot(f, v) * dt
        self.energy_j -= flow
        if enabled and self.energy_j < 0.0:
            self.energy_j = 0.0 if self.energy_j > -1e-12 else self.energy_j  # round-off only
        self.min_energy_j = min(self.min_energy_j, self.energy_j)
        if acted:
            self.acted += 1
        return f, acted


@dataclass(frozen=True, slots=True)
class ForceOutput:
    forces: tuple[Vec3, Vec3]
    fresh: bool
    """The newest force is within the stale bound (not fading, not zeroed)."""
    passivity: tuple[bool, bool]
    measured_ns: int
    rx_ns: int


class ForceFeedback:
    """The whole pipeline for both hands (module docstring)."""

    def __init__(self, settings: ForceSettings) -> None:
        self.s = settings
        self.raw: tuple[Vec3, Vec3] = (ZERO_V, ZERO_V)
        self.rx_ns: int | None = None
        self.measured_ns = 0
        self.smoothed: list[Vec3] = [ZERO_V, ZERO_V]
        self.ports = (PassivityPort(), PassivityPort())
        self._last_ns: int | None = None
        self.samples = 0
        self.playout = ForcePlayout(settings.playout_ns)

    def on_force(self, rx_ns: int, measured_ns: int, forces: tuple[Vec3, Vec3], timed: bool = True) -> None:
        """A new force sample per hand (master frame, N at the tip: `hand_forces`), measured at `measured_ns`
        (console clock; `timed` False = that clock is not known yet and `measured_ns` is a guess), received at
        `rx_ns`. It reaches the hands through the playout (console/force_playout.py) at a later `step`."""
        if not all(math.isfinite(c) for f in forces for c in f):
            return  # the bedside's codec refuses these already; never let one reach a hand
        self.playout.push(ForceSample(measured_ns, rx_ns, forces), timed)
        self.samples += 1

    def fade(self, now_ns: int) -> float:
        """1 while fresh, falling linearly to 0 over `fade_ns` once stale, 0 with no force yet."""
        if self.rx_ns is None:
            return 0.0
        late = now_ns - self.rx_ns - self.s.stale_ns
        if late <= 0:
            return 1.0
        if self.s.fade_ns <= 0 or late >= self.s.fade_ns:
            return 0.0
        return 1.0 - late / self.s.fade_ns

    def step(self, now_ns: int, velocities: tuple[Vec3, Vec3] | None) -> ForceOutput:
        s = self.s
        new = self.playout.pop(now_ns)
        if new is not None:
            self.measured_ns, self.rx_ns, self.raw = new
        dt = 0.0 if self._last_ns is None else min(max((now_ns - self._last_ns) / 1e9, 0.0), _MAX_DT_S)
        self._last_ns = now_ns
        a = 1.0 if s.smoothing_hz <= 0.0 else 1.0 - math.exp(-2.0 * math.pi * s.smoothing_hz * dt)
        k = self.fade(now_ns)
        out: list[Vec3] = []
        acted: list[bool] = []
        for h in range(2):
            target = _scale(self.raw[h], s.gain)
            y = self.smoothed[h]
            y = (y[0] + a * (target[0] - y[0]), y[1] + a * (target[1] - y[1]), y[2] + a * (target[2] - y[2]))
            self.smoothed[h] = y
            f = clamp_norm(_scale(y, k), s.max_n) if k > 0.0 else ZERO_V
            if velocities is None:
                f, pc = ZERO_V, False
            else:
                f, pc = self.ports[h].step(f, velocities[h], dt, s.passivity, s.max_n)
            out.append(f)
            acted.append(pc)
        return ForceOutput((out[0], out[1]), k >= 1.0, (acted[0], acted[1]), self.measured_ns, self.rx_ns or 0)

    @property
    def min_energy_j(self) -> float:
        return min(p.min_energy_j for p in self.ports)

    def stats(self) -> dict:
        return {"samples": self.samples, "playout": self.playout.stats(), "energy_min_j": self.min_energy_j,
                "energy_j": [p.energy_j for p in self.ports], "passivity_ticks": [p.acted for p in self.ports],
                "passivity_dissipated_j": [p.dissipated_j for p in self.ports], "passivity": self.s.passivity}
