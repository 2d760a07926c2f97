"""Master-to-tool mapping, as dVRK does it, in the endoscope's frame.

Pure, tuples only (it runs at 1 kHz).

* Position is relative: p_tool = p_tool0 + R_cam · (scale · (p_master − p_master0)). Relative motion is what
  lets the surgeon clutch (re-centre the hand) and change the scale.
* Rotation is absolute with an alignment offset: q_tool = R_cam · q_master · offset, where the offset is the
  small residual (within the alignment tolerance) measured at capture so the first setpoint equals the
  tool's pose exactly.
* R_cam is the endoscope arm's orientation, captured with the start poses (at engage and at every
  clutch/camera release), so a moving camera never drags the instruments.

Frames. The master frame is x right, y up, z toward the surgeon (console/master.py). The endoscope tip frame
is taken as an OpenGL-style camera frame: the camera looks along its −z, with image x to the right and
image y up. The two frames therefore coincide on screen: a hand moving right moves the tool right in the
image, whatever the endoscope's orientation in the patient frame.

Re-anchoring (`rescale`, `reanchor`) makes the current target the new start pose: a scale change, or a limit
that absorbed part of the hand's motion, never turns into a jump later.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.geometry import (
    Pose,
    Quat,
    Vec3,
    q_angle,
    q_conj,
    q_mul,
    q_normalize,
    q_rotate,
    v_add,
    v_scale,
    v_sub,
)
from transport.messages import CartesianSetpoint


@dataclass(frozen=True, slots=True)
class ArmMapping:
    tool_pos: Vec3
    tool_ori: Quat
    master_pos: Vec3
    r_cam: Quat
    offset: Quat
    scale: float
    follow_rotation: bool = True
    """False for the endoscope in camera mode: the hands pan and insert it, its orientation holds."""

    @classmethod
    def capture(cls, tool: CartesianSetpoint, master: Pose, r_cam: Quat, scale: float,
                follow_rotation: bool = True) -> ArmMapping:
        offset = q_mul(q_conj(q_mul(r_cam, master.orientation)), tool.orientation)
        return cls(tool.position, tool.orientation, master.position, r_cam, offset, scale, follow_rotation)

    def position(self, master_pos: Vec3) -> Vec3:
        delta = v_scale(v_sub(master_pos, self.master_pos), self.scale)
        return v_add(self.tool_pos, q_rotate(self.r_cam, delta))

    def orientation(self, master_ori: Quat) -> Quat:
        if not self.follow_rotation:
            return self.tool_ori
        return q_mul(q_mul(self.r_cam, master_ori), self.offset)

    def target(self, master: Pose) -> tuple[Vec3, Quat]:
        return self.position(master.position), self.orientation(master.orientation)

    def reanchor(self, master: Pose, position: Vec3 | None = None, orientation: Quat | None = None,
                 scale: float | None = None) -> ArmMapping:
        """Start again from `master`, keeping the current target unless a (clamped) pose is given."""
        pos, ori = self.target(master)
        pos = pos if position is None else position
        ori = ori if orientation is None else q_normalize(orientation)
        offset = self.offset
        if self.follow_rotation:
            offset = q_mul(q_conj(q_mul(self.r_cam, master.orientation)), ori)
        new_scale = self.scale if scale is None else scale
        return ArmMapping(pos, ori, master.position, self.r_cam, offset, new_scale, self.follow_rotation)


def alignment_error(master_ori: Quat, tool_ori: Quat, r_cam: Quat) -> float:
    """Angle (radians) between the master's orientation seen through the camera and the tool's."""
    return q_angle(q_mul(r_cam, master_ori), tool_ori)


def align_target(tool_ori: Quat, r_cam: Quat) -> Quat:
    """The master orientation that would match the tool exactly (for guidance and 'snap' helpers)."""
    return q_normalize(q_mul(q_conj(r_cam), tool_ori))


def jaw_target(gripper: float, open_rad: float) -> float:
    """Gripper 0 (closed) .. 1 (open) to a jaw angle; the rate limit is applied by the limits clamp."""
    return min(1.0, max(0.0, gripper)) * open_rad


def mean_pose(a: Pose, b: Pose) -> Pose:
    """Midpoint of both hands: the camera-mode input (orientation unused)."""
    pa, pb = a.position, b.position
    return Pose(((pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0, (pa[2] + pb[2]) / 2.0), a.orientation)
