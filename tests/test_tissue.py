"""Tissue contact (safety/tissue.py): the spring-damper force, measured_cf in telemetry and recordings, and the
bedside's depth refusal, which never moves an arm (docs/safety.md, "contact force past a limit")."""

from __future__ import annotations

import pytest
from test_bedside_agent import Harness

from base.config import Config
from bedside.arm import SimulatedArm, arm_models
from recording.convert import telemetry_json
from safety.limits import limits_from_config
from safety.tissue import Tissue, tissue_from_config
from transport import codec
from transport.messages import ARM_NAMES, AckStatus, CartesianSetpoint, Reason, Telemetry

K, C, DEPTH = 300.0, 2.0, 0.010
T = Tissue(-0.110, K, C, DEPTH)


def at(z: float, x: float = 0.0) -> tuple[float, float, float]:
    return (x, 0.0, z)


def test_no_force_above_the_surface_and_a_spring_below_it():
    assert T.force(at(-0.100), (0.0, 0.0, -0.1)) == (0.0, 0.0, 0.0)
    assert T.force(at(-0.110), (0.0, 0.0, 0.0)) == (0.0, 0.0, 0.0)
    for d in (0.0005, 0.002, 0.005, 0.010):
        f = T.force(at(-0.110 - d), (0.0, 0.0, 0.0))
        assert f[0] == f[1] == 0.0  # frictionless: along the normal only
        assert f[2] == pytest.approx(K * d)  # the tissue pushes the tip back up: +z, k·d
        assert f[2] > 0


def test_the_damper_adds_going_in_subtracts_coming_out_and_never_pulls():
    d = 0.004
    going_in = T.force(at(-0.110 - d), (0.0, 0.0, -0.1))[2]
    coming_out = T.force(at(-0.110 - d), (0.0, 0.0, 0.1))[2]
    assert going_in == pytest.approx(K * d + C * 0.1)
    assert coming_out == pytest.approx(K * d - C * 0.1)
    assert T.force(at(-0.110 - 0.0001), (0.0, 0.0, 1.0)) == (0.0, 0.0, 0.0)  # tissue never pulls the tip in


def test_the_depth_rule_refuses_deeper_than_allowed_but_lets_a_tool_back_out():
    surface = -0.110
    assert T.check(at(surface), at(surface - DEPTH)) is None  # exactly at the limit
    why = T.check(at(surface), at(surface - DEPTH - 0.0005))
    assert why is not None and "10.5 mm inside the tissue" in why and "tissue_max_depth_mm" in why
    deep = at(surface - 0.015)  # placed deeper than allowed (e.g. the limit was lowered)
    assert T.check(deep, at(surface - 0.014)) is None  # backing out: allowed
    assert T.check(deep, at(surface - 0.016)) is not None  # further in: refused
    assert T.max_static_force == pytest.approx(K * DEPTH)


def test_config_keys_build_the_model_and_are_range_checked():
    cfg = Config()
    t = tissue_from_config(cfg.bedside)
    assert t.stiffness == pytest.approx(cfg.bedside.tissue_stiffness_n_mm * 1e3)
    assert t.max_depth == pytest.approx(cfg.bedside.tissue_max_depth_mm / 1e3)
    from base.config import ConfigError, with_overrides
    with pytest.raises(ConfigError, match="tissue_max_depth_mm"):
        with_overrides(cfg, ["bedside.tissue_max_depth_mm=-1"])


def test_a_simulated_tip_pressed_into_the_tissue_measures_a_force_within_the_stated_stiffness():
    cfg = Config()
    tissue = tissue_from_config(cfg.bedside)
    model = arm_models(cfg.bedside)[0]
    arm = SimulatedArm(model, limits_from_config(cfg.teleop, cfg.bedside), tissue=tissue)
    arm.enable()
    x, y, _ = arm.measured_cp().position
    for depth in (-0.005, 0.002, 0.006):  # above the surface, then 2 and 6 mm in
        arm.servo_cp(CartesianSetpoint((x, y, tissue.surface_z - depth)))
        for _ in range(200):
            arm.advance(0.001)
        f = arm.measured_cf()
        assert f[0] == f[1] == 0.0
        if depth < 0:
            assert f[2] == 0.0
        else:  # at rest: the spring alone, k·d, pushing up
            assert f[2] == pytest.approx(tissue.stiffness * depth, rel=1e-6)
    arm.servo_cp(CartesianSetpoint((x, y, tissue.surface_z - 0.008)))  # moving in: the damper adds, within c·v_max
    arm.advance(0.001)
    f = arm.measured_cf()[2]
    static = tissue.stiffness * tissue.depth(arm.measured_cp().position)
    assert static < f <= static + tissue.damping * arm.limits.max_speed_m_s + 1e-9


def _press(h: Harness, arm: int, depth: float, step: float = 0.004) -> AckStatus:
    """Servo arm `arm` straight down in steps until its setpoint is `depth` below the surface; the last status."""
    surface = h.agent.tissue.surface_z
    status = AckStatus.APPLIED
    while status is AckStatus.APPLIED:
        sp = h.agent.arms[arm].setpoint_cp()
        z = max(surface - depth, sp.position[2] - step)
        if z == sp.position[2]:
            break
        cmd = h.tools()
        cmd[arm] = CartesianSetpoint((sp.position[0], sp.position[1], z), sp.orientation, sp.jaw)
        status = h.servo(cmd, mask=1 << arm).status
        h.advance(20)  # 4 mm at 250 mm/s: arrived, well within the 50 ms watchdog
    return status


def test_measured_cf_is_in_telemetry_and_in_the_recording(cfg):
    h = Harness(cfg)
    h.enable()
    assert _press(h, 0, 0.004) is AckStatus.APPLIED
    tel = codec.decode(h.agent.telemetry(h.t))
    assert isinstance(tel, Telemetry)
    k = h.agent.tissue.stiffness
    assert tel.arms[0].measured_cf[2] == pytest.approx(k * 0.004, rel=1e-6)
    assert all(a.measured_cf == (0.0, 0.0, 0.0) for a in tel.arms[1:])
    rec = telemetry_json(tel, h.t)
    assert [a["name"] for a in rec["arms"]] == list(ARM_NAMES)
    assert rec["arms"][0]["measured_cf"] == pytest.approx([0.0, 0.0, k * 0.004])


def test_a_setpoint_past_the_depth_limit_is_refused_and_moves_no_arm(cfg):
    h = Harness(cfg)
    h.enable()
    agent = h.agent
    limit = agent.tissue.max_depth
    assert _press(h, 0, limit) is AckStatus.APPLIED  # down to the limit: applied
    before = [(a.setpoint_cp(), a.measured_cp()) for a in agent.arms]
    sp = agent.arms[0].setpoint_cp()
    cmd = h.tools()
    cmd[0] = CartesianSetpoint((sp.position[0], sp.position[1], sp.position[2] - 0.001), sp.orientation, sp.jaw)
    cmd[1] = CartesianSetpoint((cmd[1].position[0] + 0.001, *cmd[1].position[1:]), cmd[1].orientation)
    ack = h.servo(cmd, mask=0b11)
    assert ack.status is AckStatus.REJECTED_TISSUE_DEPTH
    ev = agent.drain_events()[-1]
    assert ev.reason is Reason.LIMIT and "inside the tissue" in ev.text and ARM_NAMES[0] in ev.text
    h.advance(20)
    assert [(a.setpoint_cp(), a.measured_cp()) for a in agent.arms] == before  # neither arm moved
    assert agent.arms[0].measured_cf()[2] <= agent.tissue.max_static_force + 1e-9
    # backing out is never refused
    cmd = h.tools()
    cmd[0] = CartesianSetpoint((sp.position[0], sp.position[1], sp.position[2] + 0.002), sp.orientation, sp.jaw)
    assert h.servo(cmd, mask=0b1).status is AckStatus.APPLIED
