"""The patient's tissue, simulated: a compliant plane, its contact force, and the depth the bedside allows.

Pure. The tissue is the half-space below the plane z = `surface_z` (patient frame, z up, metres). A tool tip
at depth d = surface_z − z > 0 has pressed the surface in by d (the arm is position-controlled, so the
tissue yields to it: the render shows a dimple of that depth). The tissue pushes back with a spring-damper
force along the surface normal (+z):

    f_z = k · d − c · v_z        (d > 0, clamped at 0: tissue pushes, it never pulls)
    f_x = f_y = 0                (frictionless)

with k = `stiffness` (N/m) and c = `damping` (N·s/m); v_z < 0 while the tip goes in, so the damper adds to
the spring then and takes from it on the way out. This is the force the tissue exerts ON the tip, the one a
force-feedback master would push the hand back with: pressing down gives a positive z. It is published as
CRTK `measured_cf` per arm (docs/protocol.md, TELEMETRY).

Why a plane and a spring-damper (Kelvin-Voigt) and not MuJoCo: the contact is one point against one surface,
so the model is exact to its own assumptions, costs well under a microsecond per arm at 1 kHz, and its
numbers can be stated and tested; the render's tissue texture maps onto a plane by an exact homography.
Soft-tissue indentation stiffness measured with probes lies around 0.1–1 N/mm over the first millimetres;
the defaults (base/config.py, `bedside.tissue_*`) take 0.3 N/mm.

The depth rule (`check`): a setpoint deeper than `max_depth` below the surface is refused, unless it is no
deeper than where the arm's setpoint already is (a tool may always back out, never go further in). So the
static contact force never exceeds k · max_depth (`max_static_force`), and the whole force never exceeds that
plus c times the arm's speed limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.config import BedsideConfig
from base.geometry import ZERO_V, Vec3

EPS = 1e-9
"""Slack for floating-point round-off in `check` (metres)."""


@dataclass(frozen=True, slots=True)
class Tissue:
    surface_z: float
    """Height of the tissue surface in the patient frame (m); the tissue lies below it."""
    stiffness: float
    """k, N/m."""
    damping: float
    """c, N·s/m."""
    max_depth: float
    """How far below the surface a setpoint may reach (m)."""

    def depth(self, p: Vec3) -> float:
        """How far `p` lies below the surface (m); zero or negative above it."""
        return self.surface_z - p[2]

    def force(self, p: Vec3, v: Vec3) -> Vec3:
        """The tissue's force on a tip at `p` moving at `v` (m/s), N, patient frame."""
        d = self.surface_z - p[2]
        if d <= 0.0:
            return ZERO_V
        f = self.stiffness * d - self.damping * v[2]
        return (0.0, 0.0, f) if f > 0.0 else ZERO_V

    @property
    def max_static_force(self) -> float:
        """The largest force a tip at rest can meet without a refused setpoint: k · max_depth (N)."""
        return self.stiffness * self.max_depth

    def check(self, prev: Vec3, target: Vec3) -> str | None:
        """None if a tip whose setpoint is at `prev` may be sent to `target`; else one sentence saying why not."""
        d = self.surface_z - target[2]
        if d <= self.max_depth + EPS or d <= self.surface_z - prev[2] + EPS:
            return None
        return (f"setpoint {d * 1e3:.1f} mm inside the tissue, beyond the {self.max_depth * 1e3:g} mm allowed "
                f"(bedside.tissue_max_depth_mm; {self.stiffness * d:.1f} N at rest)")


def tissue_from_config(cfg: BedsideConfig) -> Tissue:
    return Tissue(cfg.tissue_z_mm / 1e3, cfg.tissue_stiffness_n_mm * 1e3, cfg.tissue_damping_n_s_m,
                  cfg.tissue_max_depth_mm / 1e3)
