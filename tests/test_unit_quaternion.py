"""One unit-quaternion check with one tolerance (base.geometry.is_unit_quat, UNIT_QUAT_TOLERANCE), used on the wire
(transport/codec.py), from master devices (console/masters/network.py) and in the controller
(console/controller.py): the three accept and refuse exactly the same quaternions."""

from __future__ import annotations

import math

import pytest

from base.geometry import UNIT_QUAT_TOLERANCE, Pose, is_unit_quat, q_from_axis_angle, q_norm
from console.controller import _finite_pose, _sample_ok
from console.master import MasterButtons, MasterHand, MasterSample
from console.masters.network import MessageError, decode_master_message, encode_master_message
from transport import codec
from transport.messages import N_ARMS, CartesianSetpoint, ConsoleFlags, ServoCp

TURN = q_from_axis_angle((1.0, -2.0, 0.5), 0.7)


def scaled(norm: float) -> tuple[float, float, float, float]:
    return (TURN[0] * norm, TURN[1] * norm, TURN[2] * norm, TURN[3] * norm)


def wire_accepts(q) -> bool:
    sp = CartesianSetpoint((0.01, 0.0, -0.1), q, 0.3)
    frame = codec.encode(ServoCp(1, 1, 0, ConsoleFlags.OPERATOR_PRESENT, 0b001, (sp,) * N_ARMS))
    try:
        return codec.decode(frame).arms[0].orientation == q
    except codec.InvalidField as exc:
        assert "unit quaternion" in str(exc) and f"tolerance {UNIT_QUAT_TOLERANCE:g}" in str(exc)
        return False


def master_accepts(q) -> bool:
    hand = MasterHand(Pose((0.0, 0.0, 0.0), q), 0.5)
    try:
        got = decode_master_message(encode_master_message(1, 0, (hand, hand), MasterButtons()))
    except MessageError as exc:
        assert "quaternion norm" in str(exc)
        return False
    assert abs(q_norm(got.hands[0].pose.orientation) - 1.0) < 1e-15  # accepted, then normalised
    return True


def controller_accepts(q) -> bool:
    hand = MasterHand(Pose((0.0, 0.0, 0.0), q), 0.5)
    sample_ok = _sample_ok(0, MasterSample(0, (hand, hand), MasterButtons(operator_present=True)))
    tool_ok = _finite_pose(CartesianSetpoint((0.0, 0.0, -0.1), q, 0.0))
    assert sample_ok == tool_ok
    return sample_ok


@pytest.mark.parametrize(("norm", "unit"), [
    (1.0, True), (1.0 + 0.9 * UNIT_QUAT_TOLERANCE, True), (1.0 - 0.9 * UNIT_QUAT_TOLERANCE, True),
    (1.0 + 1.1 * UNIT_QUAT_TOLERANCE, False), (1.0 - 1.1 * UNIT_QUAT_TOLERANCE, False),
    (1.05, False), (0.95, False), (1.5, False), (0.6, False),  # the old 0.9..1.1 and 0.5..2 bands let these in
    (0.0, False), (1e200, False),
])
def test_the_wire_the_masters_and_the_controller_apply_the_one_check(norm: float, unit: bool) -> None:
    q = scaled(norm)
    assert is_unit_quat(q) is unit
    assert wire_accepts(q) is unit
    assert master_accepts(q) is unit
    assert controller_accepts(q) is unit


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_quaternions_are_never_unit(bad: float) -> None:
    q = (bad, 0.0, 0.0, 1.0)
    assert not is_unit_quat(q) and not controller_accepts(q)


def test_the_tolerance_is_stated_once() -> None:
    """The value, and why, live in base/geometry.py and in docs/protocol.md; no module keeps its own."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert f"unit within {UNIT_QUAT_TOLERANCE:g}" in (root / "docs" / "protocol.md").read_text(encoding="utf-8")
    for path in root.glob("*/**/*.py"):
        if path.parts[len(root.parts)] in ("tests", ".venv") or path.name == "geometry.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "QUAT_NORM_TOLERANCE" not in text and "0.5 < sum(c * c" not in text, path
