"""Master-to-tool mapping: relative position, absolute rotation with offset, endoscope frame, re-anchoring."""

from __future__ import annotations

import math

import pytest

from base.geometry import (
    IDENTITY_Q,
    Pose,
    q_angle,
    q_conj,
    q_from_axis_angle,
    q_mul,
    q_rotate,
    v_dist,
    v_sub,
)
from console.mapping import ArmMapping, align_target, alignment_error, jaw_target, mean_pose
from transport.messages import CartesianSetpoint

TOOL = CartesianSetpoint((0.08, 0.0, -0.10), q_from_axis_angle((1, 0, 0), 0.3), 0.2)
HAND = Pose((0.1, 0.2, 0.3), q_from_axis_angle((0, 1, 0), 0.2))
CAM_YAW90 = q_from_axis_angle((0, 0, 1), math.pi / 2)


def close(a, b, tol=1e-12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("cam", [IDENTITY_Q, CAM_YAW90, q_from_axis_angle((1, 1, 0), 2.0)])
def test_capture_reproduces_the_tool_pose_exactly(cam) -> None:
    m = ArmMapping.capture(TOOL, HAND, cam, 0.2)
    pos, ori = m.target(HAND)
    assert pos == TOOL.position
    assert q_angle(ori, TOOL.orientation) < 1e-7


def test_position_is_relative_and_scaled() -> None:
    m = ArmMapping.capture(TOOL, HAND, IDENTITY_Q, 0.2)
    pos, _ = m.target(Pose((0.11, 0.2, 0.28), HAND.orientation))
    assert close(v_sub(pos, TOOL.position), (0.002, 0.0, -0.004))


def test_hand_right_moves_the_tool_right_in_the_image_whatever_the_camera() -> None:
    # The camera is yawed 90° about the patient's z: its image-right axis is the patient's +y.
    m = ArmMapping.capture(TOOL, HAND, CAM_YAW90, 0.5)
    pos, _ = m.target(Pose((0.11, 0.2, 0.3), HAND.orientation))
    delta = v_sub(pos, TOOL.position)
    assert close(delta, (0.0, 0.005, 0.0))
    assert close(delta, q_rotate(CAM_YAW90, (0.005, 0.0, 0.0)))


def test_rotation_is_absolute_through_the_camera() -> None:
    m = ArmMapping.capture(TOOL, HAND, CAM_YAW90, 0.2)
    turn = q_from_axis_angle((0, 0, 1), 0.4)  # the hand rolls 0.4 rad about the master's z axis
    _, ori = m.target(Pose(HAND.position, q_mul(turn, HAND.orientation)))
    # The tool turns by the same rotation expressed in the camera frame: R_cam · turn · R_cam⁻¹.
    rel_tool = q_mul(ori, q_conj(TOOL.orientation))
    assert q_angle(rel_tool, q_mul(q_mul(CAM_YAW90, turn), q_conj(CAM_YAW90))) < 1e-7


def test_reanchor_with_a_new_scale_does_not_jump_and_then_uses_the_new_scale() -> None:
    m = ArmMapping.capture(TOOL, HAND, IDENTITY_Q, 0.2)
    moved = Pose((0.15, 0.2, 0.3), HAND.orientation)
    before, _ = m.target(moved)
    m2 = m.reanchor(moved, scale=1.0)
    after, _ = m2.target(moved)
    assert v_dist(before, after) < 1e-15
    further, _ = m2.target(Pose((0.16, 0.2, 0.3), HAND.orientation))
    assert close(v_sub(further, after), (0.01, 0.0, 0.0))


def test_reanchor_to_a_clamped_pose_makes_it_the_new_start() -> None:
    m = ArmMapping.capture(TOOL, HAND, IDENTITY_Q, 0.2)
    moved = Pose((0.2, 0.2, 0.3), HAND.orientation)
    m2 = m.reanchor(moved, position=(0.09, 0.0, -0.10))
    assert m2.target(moved)[0] == (0.09, 0.0, -0.10)
    back, _ = m2.target(Pose((0.19, 0.2, 0.3), HAND.orientation))
    assert close(back, (0.088, 0.0, -0.10))


def test_alignment_error_and_target() -> None:
    for cam in (IDENTITY_Q, CAM_YAW90):
        q = align_target(TOOL.orientation, cam)
        assert alignment_error(q, TOOL.orientation, cam) < 1e-7
        off = q_mul(q_from_axis_angle((0, 1, 0), math.radians(10)), q)
        assert abs(math.degrees(alignment_error(off, TOOL.orientation, cam)) - 10) < 1e-6


def test_endoscope_mapping_holds_its_orientation() -> None:
    m = ArmMapping.capture(TOOL, HAND, IDENTITY_Q, 0.2, follow_rotation=False)
    _, ori = m.target(Pose(HAND.position, q_from_axis_angle((1, 0, 0), 1.0)))
    assert ori == TOOL.orientation


def test_jaw_and_mean_pose() -> None:
    assert jaw_target(-1.0, 1.0) == 0.0 and jaw_target(2.0, 1.0) == 1.0 and jaw_target(0.5, 1.2) == 0.6
    assert mean_pose(Pose((0, 0, 0)), Pose((0.2, 0.4, -0.2))).position == (0.1, 0.2, -0.1)
