"""Pose arithmetic on plain float tuples.

Tuples, not numpy: on the 1 kHz path a 3-vector in numpy costs ~1 µs per operation, a tuple ~0.1 µs.
Quaternions are (x, y, z, w), the order ROS, CRTK and Foxglove use. Positions are metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

IDENTITY_Q: Quat = (0.0, 0.0, 0.0, 1.0)
ZERO_V: Vec3 = (0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Pose:
    """A Cartesian pose: position in metres and orientation as a unit quaternion (x, y, z, w)."""

    position: Vec3 = ZERO_V
    orientation: Quat = IDENTITY_Q


def v_add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def v_sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def v_scale(a: Vec3, s: float) -> Vec3:
    return (a[0] * s, a[1] * s, a[2] * s)


def v_norm(a: Vec3) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def v_dist(a: Vec3, b: Vec3) -> float:
    return v_norm(v_sub(a, b))


def v_clamp_norm(a: Vec3, limit: float) -> Vec3:
    """Shorten `a` to at most `limit` keeping its direction."""
    n = v_norm(a)
    if n <= limit or n == 0.0:
        return a
    return v_scale(a, limit / n)


def q_norm(q: Quat) -> float:
    return math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])


UNIT_QUAT_TOLERANCE = 1e-3
"""How far from 1 a quaternion's norm may be and still count as a unit quaternion (`is_unit_quat`).

Why 1e-3: every honest producer normalises, in float64 (norm off by ~1e-16) or float32 (~1e-7), so the
tolerance never refuses a real orientation; a norm off by 1e-3, used as it is, rotates vectors 0.2 % long
(q·v·q* scales by |q|²) and leaves angles (q_angle is scale-free) unchanged. Anything farther from 1 is not
round-off but a bug or corruption (an unnormalised sum, angles in the wrong fields, a zero quaternion)."""


def is_unit_quat(q: Quat) -> bool:
    """True iff `q` is finite and |‖q‖ − 1| ≤ UNIT_QUAT_TOLERANCE: the one check, on the wire, from master
    devices and in the controller (NaN and ±inf fail it)."""
    x, y, z, w = q
    return abs(math.sqrt(x * x + y * y + z * z + w * w) - 1.0) <= UNIT_QUAT_TOLERANCE


def q_normalize(q: Quat) -> Quat:
    n = q_norm(q)
    if n == 0.0 or not math.isfinite(n):
        raise ValueError(f"cannot normalise quaternion {q}")
    return (q[0] / n, q[1] / n, q[2] / n, q[3] / n)


def q_conj(q: Quat) -> Quat:
    return (-q[0], -q[1], -q[2], q[3])


def q_mul(a: Quat, b: Quat) -> Quat:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def q_from_axis_angle(axis: Vec3, angle: float) -> Quat:
    n = v_norm(axis)
    if n == 0.0:
        return IDENTITY_Q
    s = math.sin(angle / 2.0) / n
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2.0))


def q_to_rotvec(q: Quat) -> Vec3:
    """Rotation vector (axis × angle, radians) of the shortest rotation `q` represents."""
    x, y, z, w = q
    if w < 0.0:
        x, y, z, w = -x, -y, -z, -w
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return (2.0 * x, 2.0 * y, 2.0 * z)
    angle = 2.0 * math.atan2(s, w)
    return (x / s * angle, y / s * angle, z / s * angle)


def q_from_rotvec(r: Vec3) -> Quat:
    angle = v_norm(r)
    if angle < 1e-12:
        return q_normalize((r[0] / 2.0, r[1] / 2.0, r[2] / 2.0, 1.0))
    return q_from_axis_angle(r, angle)


def q_angle(a: Quat, b: Quat) -> float:
    """Smallest rotation angle (radians) between two orientations.

    atan2 of the relative rotation's vector and scalar parts, not acos of a dot product: exact near zero
    (acos loses ~1e-8 rad there) and indifferent to quaternions a few ulps off unit length.
    """
    x, y, z, w = q_mul(b, q_conj(a))
    return 2.0 * math.atan2(math.sqrt(x * x + y * y + z * z), abs(w))


def q_rotate(q: Quat, v: Vec3) -> Vec3:
    """Rotate vector `v` by unit quaternion `q`."""
    p = q_mul(q_mul(q, (v[0], v[1], v[2], 0.0)), q_conj(q))
    return (p[0], p[1], p[2])


def q_step_toward(a: Quat, b: Quat, max_angle: float) -> Quat:
    """Rotate from `a` toward `b` by at most `max_angle` radians (slerp, shortest path)."""
    rel = q_mul(b, q_conj(a))
    r = q_to_rotvec(rel)
    ang = v_norm(r)
    if ang <= max_angle:
        return b
    return q_normalize(q_mul(q_from_rotvec(v_scale(r, max_angle / ang)), a))
