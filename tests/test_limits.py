"""safety.limits: the workspace box and step/speed/orientation/jaw limits, clamp and check agreeing."""

from __future__ import annotations

import math

import pytest

from base.config import TeleopConfig
from base.geometry import IDENTITY_Q, q_angle, q_from_axis_angle, v_dist
from safety.limits import LimitKind, SetpointLimits, WorkspaceBox, limits_from_config
from transport.messages import CartesianSetpoint as Sp

BOX = WorkspaceBox.from_mm((-100, 100), (-50, 50), (-200, -20))
LIM = SetpointLimits(BOX, max_step_m=0.002, max_speed_m_s=0.1, max_rot_step_rad=math.radians(2),
                     max_rot_speed_rad_s=math.radians(90), max_jaw_speed_rad_s=2.0)
P0 = Sp((0.0, 0.0, -0.1), IDENTITY_Q, 0.5)


def test_box_validates_and_contains() -> None:
    with pytest.raises(ValueError):
        WorkspaceBox((0, 0, 0), (1, -1, 1))
    assert BOX.contains((0.1, 0.05, -0.02)) and not BOX.contains((0.1001, 0, -0.1))
    assert BOX.check((0.0, 0.0, -0.1)) is None
    bad = BOX.check((0.0, 0.0, 0.01))
    assert bad is not None and bad.kind is LimitKind.WORKSPACE and bad.value == pytest.approx(0.03)


def test_box_clamp_is_nearest_point_and_never_pulls_a_tool_that_starts_outside() -> None:
    assert BOX.clamp((0.5, -0.5, 0.0)) == (0.1, -0.05, -0.02)
    outside = (0.15, 0.0, -0.1)
    assert BOX.clamp((0.2, 0.0, -0.1), outside) == (0.15, 0.0, -0.1)  # no further out
    assert BOX.clamp((0.12, 0.0, -0.1), outside) == (0.12, 0.0, -0.1)  # back toward the box: allowed


def test_clamp_limits_speed_by_dt_and_step_after_a_stall() -> None:
    far = Sp((0.05, 0.0, -0.1), IDENTITY_Q, 0.5)
    sp, hit = LIM.clamp(P0, far, 0.001)
    assert v_dist(sp.position, P0.position) == pytest.approx(0.0001) and hit == (LimitKind.SPEED,)
    sp, hit = LIM.clamp(P0, far, 1.0)  # a stall: the step limit, not the gap, bounds the move
    assert v_dist(sp.position, P0.position) == pytest.approx(0.002) and hit == (LimitKind.STEP,)
    sp, hit = LIM.clamp(P0, far, 0.0)
    assert sp.position == P0.position


def test_clamp_workspace_then_motion() -> None:
    near_wall = Sp((0.0999, 0.0, -0.1), IDENTITY_Q, 0.5)
    sp, hit = LIM.clamp(near_wall, Sp((0.2, 0.0, -0.1), IDENTITY_Q, 0.5), 0.001)
    assert sp.position[0] == pytest.approx(0.1) and LimitKind.WORKSPACE in hit


def test_clamp_orientation_and_jaw_rates() -> None:
    turned = Sp(P0.position, q_from_axis_angle((0, 0, 1), 1.0), 1.5)
    sp, hit = LIM.clamp(P0, turned, 0.01)
    assert q_angle(sp.orientation, P0.orientation) == pytest.approx(math.radians(0.9))
    assert sp.jaw == pytest.approx(0.52)
    assert set(hit) == {LimitKind.ROT_RATE, LimitKind.JAW_RATE}


def test_nothing_to_clamp_returns_the_target_unchanged() -> None:
    t = Sp((0.00005, 0.0, -0.1), IDENTITY_Q, 0.501)
    assert LIM.clamp(P0, t, 0.001) == (t, ())


@pytest.mark.parametrize("dt", [0.0, 0.0005, 0.001, 0.02, 3.0])
def test_whatever_clamp_returns_check_accepts(dt: float) -> None:
    targets = [Sp((x, y, z), q_from_axis_angle((1, 2, 3), a), j)
               for x in (-1.0, 0.0, 0.001) for y in (0.0, 0.3) for z in (-0.1, 0.5) for a in (0.0, 0.01, 3.0)
               for j in (0.0, 0.5, 9.0)]
    for t in targets:
        sp, _ = LIM.clamp(P0, t, dt)
        assert LIM.check(P0, sp, dt) is None, (t, sp)


def test_check_reports_each_violation() -> None:
    assert LIM.check(P0, Sp((0.0, 0.0, -0.095), IDENTITY_Q, 0.5)).kind is LimitKind.STEP
    assert LIM.check(P0, Sp((0.0, 0.0, -0.099), IDENTITY_Q, 0.5), 0.001).kind is LimitKind.SPEED
    assert LIM.check(P0, Sp((0.0, 0.0, -0.099), IDENTITY_Q, 0.5)) is None  # no dt: per-step limits only
    assert LIM.check(P0, Sp(P0.position, q_from_axis_angle((1, 0, 0), 0.1), 0.5)).kind is LimitKind.ROT_STEP
    rot = Sp(P0.position, q_from_axis_angle((1, 0, 0), 0.01), 0.5)
    assert LIM.check(P0, rot, 0.001).kind is LimitKind.ROT_RATE
    assert LIM.check(P0, Sp(P0.position, IDENTITY_Q, 0.6), 0.001).kind is LimitKind.JAW_RATE
    assert LIM.check(None, Sp((0.0, 0.0, 0.0), IDENTITY_Q, 0.5)).kind is LimitKind.WORKSPACE


def test_console_limits_from_config_stay_inside_the_bedside_limits(cfg) -> None:
    lim = limits_from_config(cfg.teleop)
    assert lim.max_step_m <= cfg.bedside.max_step_mm / 1e3
    assert lim.max_rot_step_rad <= math.radians(cfg.bedside.max_rot_step_deg)
    assert lim.max_speed_m_s <= cfg.bedside.max_speed_mm_s / 1e3
    assert lim.max_rot_speed_rad_s <= math.radians(cfg.bedside.max_rot_speed_deg_s)
    assert lim.max_jaw_speed_rad_s <= cfg.bedside.max_jaw_speed_rad_s
    assert lim.workspace.contains((0.08, 0.0, -0.10)) and lim.workspace.contains((0.0, -0.06, -0.04))
    assert isinstance(cfg.teleop, TeleopConfig)
