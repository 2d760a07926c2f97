"""What the endoscope sees, as geometry: a stereo pinhole camera at the endoscope arm's tip, the tissue plane, and
each instrument's parts in the patient frame. Pure (numpy); video/render.py draws it.

Camera. The endoscope tip frame is an OpenGL-style camera frame (console/mapping.py uses the same): it looks along
its −z, image x to the right, image y up. The two eyes sit at ∓baseline/2 along the camera's x, axes parallel
(no toe-in), so a point at depth Z appears `f·b/Z` pixels further right in the left eye than in the right: the
disparity. Pixel coordinates: u to the right, v down, the optical axis at (width/2, height/2); focal length
f = (width/2) / tan(hfov/2) in pixels. Points nearer than `near_m` are clipped, farther than `far_m` not drawn.

Instruments (a 5 mm EndoWrist-like tool). The shaft runs from the arm's remote centre of motion (RCM, the
incision) toward the tip, as the arm's kinematics say (bedside/arm.py: the tip lies on the line from the RCM);
it ends `JAW_LENGTH_M + WRIST_LENGTH_M` before the tip. A wrist link joins the shaft's end to the jaw pivot, which
lies `JAW_LENGTH_M` behind the tip along the tool's pointing direction (the orientation applied to −z). The two
jaws open symmetrically about the tool's x axis by the measured jaw angle; closed, both end at the tip.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from base.geometry import Quat, Vec3
from transport.messages import CartesianSetpoint

SHAFT_RADIUS_M = 0.0025
WRIST_RADIUS_M = 0.0021
WRIST_LENGTH_M = 0.004
JAW_LENGTH_M = 0.009
JAW_WIDTH_M = (0.0016, 0.0006)
"""A jaw's width at its pivot and at its tip."""


@dataclass(frozen=True, slots=True)
class StereoCamera:
    """A stereo pinhole camera: both eyes `width`×`height`, parallel axes `baseline_m` apart."""

    width: int
    height: int
    hfov_deg: float = 75.0
    baseline_m: float = 0.005
    near_m: float = 0.003
    far_m: float = 0.3

    @property
    def focal_px(self) -> float:
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    def disparity_px(self, depth_m: float) -> float:
        """Left-eye u minus right-eye u of a point at `depth_m` in front of the camera."""
        return self.focal_px * self.baseline_m / depth_m

    def resized(self, width: int, height: int) -> StereoCamera:
        """The same camera imaging onto `width`×`height`: same field of view, baseline and planes, so the focal
        length and the optical centre scale with the picture, and every pixel position and disparity with them
        (a point at u, v in this camera's picture is at k·u, k·v in the new one, k = width/self.width, when both
        sides scale by k, as every step of the picture fitting does from 1280×720; pixels stay square).
        What the picture fitting draws at (video/rendered.py) instead of shrinking a full-size picture."""
        return dataclasses.replace(self, width=width, height=height)


def rotation(q: Quat) -> np.ndarray:
    """3×3 rotation matrix of unit quaternion (x, y, z, w): its columns are the rotated frame's axes."""
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass(frozen=True, slots=True)
class Eye:
    origin: np.ndarray  # patient frame, m
    rot: np.ndarray  # columns: the eye's x (right), y (up), z (back) in the patient frame

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """Patient-frame points (N×3) in this eye's frame (x right, y up, looking along −z)."""
        return (pts - self.origin) @ self.rot


def eyes(camera: StereoCamera, pose: CartesianSetpoint) -> tuple[Eye, Eye]:
    """Left and right eye of the camera whose tip frame is `pose` (the endoscope arm's measured_cp)."""
    r = rotation(pose.orientation)
    p = np.asarray(pose.position, float)
    half = r[:, 0] * (camera.baseline_m / 2.0)
    return Eye(p - half, r), Eye(p + half, r)


def project(camera: StereoCamera, cam_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points (N×3) → pixel coordinates (N×2) and depths (N,); depth ≤ 0 is behind the eye."""
    z = -cam_pts[:, 2]
    safe = np.where(np.abs(z) < 1e-12, 1e-12, z)
    f = camera.focal_px
    uv = np.empty((len(cam_pts), 2))
    uv[:, 0] = camera.cx + f * cam_pts[:, 0] / safe
    uv[:, 1] = camera.cy - f * cam_pts[:, 1] / safe
    return uv, z


def project_point(camera: StereoCamera, eye: Eye, p: Vec3) -> tuple[float, float, float]:
    """One patient-frame point → (u, v, depth) in `eye`."""
    uv, z = project(camera, eye.to_camera(np.asarray([p], float)))
    return float(uv[0, 0]), float(uv[0, 1]), float(z[0])


def clip_near(a: np.ndarray, b: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of camera-frame segment a→b at depth ≥ `near` (depth = −z), or None if none of it is."""
    za, zb = -a[2], -b[2]
    if za < near and zb < near:
        return None
    if za >= near and zb >= near:
        return a, b
    t = (near - za) / (zb - za)
    m = a + (b - a) * t
    return (m, b) if za < near else (a, m)


def plane_homography(camera: StereoCamera, eye: Eye, surface_z: float, texel_m: float,
                     origin_xy: tuple[float, float]) -> np.ndarray:
    """3×3 map from texture pixels (s right, t down) to image pixels for the plane z = `surface_z`, textured with
    texel (s, t) at patient (origin_x + s·texel, origin_y − t·texel): exact for a plane under a pinhole camera."""
    m = np.array([[texel_m, 0.0, origin_xy[0]], [0.0, -texel_m, origin_xy[1]], [0.0, 0.0, surface_z]])
    a = eye.rot.T @ m
    a[:, 2] -= eye.rot.T @ eye.origin
    f = camera.focal_px
    k = np.array([[f, 0.0, -camera.cx], [0.0, -f, -camera.cy], [0.0, 0.0, -1.0]])
    return k @ a


@dataclass(frozen=True, slots=True)
class InstrumentGeometry:
    """One instrument's parts in the patient frame (m): shaft from `shaft_start` (its RCM) to `shaft_end`, the
    wrist link to `pivot`, and the two jaw tips."""

    shaft_start: np.ndarray
    shaft_end: np.ndarray
    pivot: np.ndarray
    jaw_tips: tuple[np.ndarray, np.ndarray]
    tip: np.ndarray
    hinge_axis: np.ndarray


def instrument(rcm: Vec3, pose: CartesianSetpoint) -> InstrumentGeometry:
    """The parts of an instrument whose arm pivots about `rcm` and whose tip is at `pose` (measured_cp, jaw)."""
    tip = np.asarray(pose.position, float)
    r = rotation(pose.orientation)
    pointing, opening = -r[:, 2], r[:, 1]
    base = np.asarray(rcm, float)
    shaft = tip - base
    n = float(np.linalg.norm(shaft))
    u = shaft / n if n > 1e-9 else pointing
    shaft_end = tip - u * (JAW_LENGTH_M + WRIST_LENGTH_M)
    pivot = tip - pointing * JAW_LENGTH_M
    half = max(0.0, pose.jaw) / 2.0
    c, s = math.cos(half), math.sin(half)
    jaws = (pivot + (pointing * c + opening * s) * JAW_LENGTH_M, pivot + (pointing * c - opening * s) * JAW_LENGTH_M)
    return InstrumentGeometry(base, shaft_end, pivot, jaws, tip, r[:, 0])
