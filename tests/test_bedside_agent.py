"""The bedside agent as a pure state machine: bytes and injected time in, acks and arm motion out."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import ms

from base.config import BedsideConfig, ConfigError
from base.geometry import q_from_axis_angle
from bedside.agent import BedsideAgent
from bedside.arm import DEFAULT_ARMS, SimulatedArm, arm_models, home_setpoint, inverse_kinematics, reachable
from bedside.arm_driver import ArmDriver, ArmOperatingState
from bedside.drivers import ARM_DRIVERS
from safety.limits import limits_from_config
from transport import codec
from transport.messages import (
    N_ARMS,
    AckStatus,
    ArmFlags,
    ArmMode,
    CartesianSetpoint,
    ConsoleFlags,
    Disable,
    Enable,
    EStop,
    OperatingState,
    Reason,
    ServoCp,
)

PEER = b"console-1"
PRESENT = ConsoleFlags.OPERATOR_PRESENT


class Harness:
    """Drives an agent like the socket loop does, with a fake clock in ms."""

    def __init__(self, cfg, teleop=None) -> None:
        self.t = 0
        self.agent = BedsideAgent(cfg.bedside, 0, first_epoch=100, teleop=teleop)
        self.seq = 0
        self.epoch = 0

    def send(self, msg, peer: bytes = PEER):
        replies = self.agent.on_message(self.t, peer, codec.encode(msg))
        return codec.decode(replies[0].data) if replies else None

    def nseq(self) -> int:
        self.seq += 1
        return self.seq

    def enable(self) -> int:
        ack = self.send(Enable(0, self.nseq(), self.t))
        assert ack.status is AckStatus.ENABLED
        self.epoch = ack.epoch
        return ack.epoch

    def servo(self, setpoints, mask=0b011, flags=PRESENT, epoch=None, send_ns=None, peer=PEER):
        """`setpoints` for the first arms; the rest (not in the default mask) are where they are."""
        setpoints = [*setpoints, *self.tools()[len(setpoints):]]
        msg = ServoCp(self.epoch if epoch is None else epoch, self.nseq(), self.t if send_ns is None else send_ns,
                      flags, mask, tuple(setpoints))
        return self.send(msg, peer)

    def advance(self, dt_ms: float, step_ms: float = 1.0) -> None:
        end = self.t + ms(dt_ms)
        while self.t < end:
            self.t = min(end, self.t + ms(step_ms))
            self.agent.tick(self.t)

    def tools(self):
        return [a.measured for a in self.agent.arms]


def moved(sp: CartesianSetpoint, dx: float) -> CartesianSetpoint:
    return CartesianSetpoint((sp.position[0] + dx, sp.position[1], sp.position[2]), sp.orientation, sp.jaw)


@pytest.fixture
def h(cfg):
    return Harness(cfg)


def test_starts_disabled_and_refuses_motion(h):
    ack = h.servo(h.tools(), epoch=0)
    assert ack.status is AckStatus.REJECTED_NOT_ENABLED
    assert h.agent.state is OperatingState.DISABLED


def test_enable_grants_new_epochs_and_holds_in_place(h):
    home = h.tools()
    e1 = h.enable()
    e2 = h.enable()
    assert e2 == e1 + 1
    assert h.agent.state is OperatingState.ENABLED
    assert [a.setpoint for a in h.agent.arms] == home


def test_valid_servo_moves_the_arm_within_its_speed_limit(h):
    h.enable()
    start = h.tools()
    target = [moved(start[0], 0.004), start[1], start[2]]
    assert h.servo(target).status is AckStatus.APPLIED
    h.advance(4)
    # 250 mm/s for 4 ms = 1 mm: the simulated tip servoes, it does not teleport
    assert h.tools()[0].position[0] == pytest.approx(start[0].position[0] + 0.001, abs=1e-9)
    h.advance(20)
    assert h.tools()[0].position[0] == pytest.approx(start[0].position[0] + 0.004)


def test_step_orientation_and_workspace_limits_reject_and_hold(h):
    h.enable()
    start = h.tools()
    jump = [moved(start[0], 0.006), start[1], start[2]]  # 6 mm > 5 mm step
    assert h.servo(jump).status is AckStatus.REJECTED_STEP
    twist = CartesianSetpoint(start[0].position, q_from_axis_angle((0, 0, 1), math.radians(10)), 0.0)
    assert h.servo([twist, start[1], start[2]]).status is AckStatus.REJECTED_ORIENTATION_STEP
    # walk PSM1 toward its RCM in legal steps until insertion falls below the minimum
    sp = start[0]
    status = AckStatus.APPLIED
    for _ in range(40):
        sp = CartesianSetpoint((sp.position[0], sp.position[1], sp.position[2] + 0.004), sp.orientation, 0.0)
        status = h.servo([sp, start[1], start[2]]).status
        h.advance(20)
        if status is not AckStatus.APPLIED:
            break
    assert status is AckStatus.REJECTED_WORKSPACE
    assert isinstance(inverse_kinematics(DEFAULT_ARMS[0], h.tools()[0]), object)
    held = h.tools()[0]
    h.advance(50)
    assert h.tools()[0] == held  # the arm holds where it was, it does not chase the bad setpoint
    assert h.agent.counters["rejected_rejected_workspace"] == 1


def test_one_bad_arm_rejects_the_whole_command(h):
    h.enable()
    start = h.tools()
    cmd = [moved(start[0], 0.001), moved(start[1], 0.02), start[2]]
    assert h.servo(cmd).status is AckStatus.REJECTED_STEP
    h.advance(10)
    assert h.tools()[0] == start[0]


def test_operator_absent_motion_is_refused(h):
    h.enable()
    start = h.tools()
    assert h.servo([moved(start[0], 0.001), start[1], start[2]], flags=ConsoleFlags.NONE).status \
        is AckStatus.REJECTED_OPERATOR_ABSENT


def test_watchdog_freezes_at_its_timeout_and_backlog_is_refused(h, cfg):
    h.enable()
    start = h.tools()
    sp = start[0]
    for _ in range(20):
        h.advance(1)
        sp = moved(sp, 0.0002)
        assert h.servo([sp, start[1], start[2]]).status is AckStatus.APPLIED
    last_valid = h.t
    h.advance(cfg.bedside.watchdog_ms - 1)
    assert h.agent.state is OperatingState.ENABLED
    h.advance(1)
    assert h.agent.state is OperatingState.PAUSED and h.agent.reason is Reason.LINK_LOST
    f = h.agent.freezes[-1]
    assert f.latency_ns == ms(cfg.bedside.watchdog_ms) and f.last_valid_ns == last_valid
    held = h.tools()
    assert [a.setpoint for a in h.agent.arms] == held
    # the console wakes up and its queued commands arrive: same epoch, fresh sequence numbers
    for i in range(5):
        ack = h.servo([moved(sp, 0.0002 * i), start[1], start[2]], send_ns=last_valid + ms(i))
        assert ack.status is AckStatus.REJECTED_NOT_ENABLED
    h.advance(100)
    assert h.tools() == held
    assert h.agent.counters["applied"] == 20


def test_reengage_needs_a_new_epoch_and_starts_from_the_held_pose(h):
    e1 = h.enable()
    assert h.servo(h.tools()).status is AckStatus.APPLIED
    h.advance(100)  # watchdog trips
    assert h.agent.state is OperatingState.PAUSED
    held = h.tools()
    e2 = h.enable()
    assert e2 != e1
    assert h.servo(held, epoch=e1).status is AckStatus.REJECTED_EPOCH
    assert h.servo([moved(held[0], 0.001), held[1], held[2]]).status is AckStatus.APPLIED


def test_estop_latches_until_reset_and_then_needs_enable(h):
    h.enable()
    assert h.send(EStop(h.epoch, h.nseq(), h.t, True)).status is AckStatus.ESTOP_LATCHED
    assert h.agent.state is OperatingState.PAUSED and h.agent.reason is Reason.ESTOP
    assert h.send(Enable(0, h.nseq(), h.t)).status is AckStatus.REJECTED_ESTOP
    h.agent.raise_estop(h.t, "local")
    h.send(EStop(0, h.nseq(), h.t, False))  # the console may clear its own latch only
    assert h.send(Enable(0, h.nseq(), h.t)).status is AckStatus.REJECTED_ESTOP
    h.agent.reset_estop(h.t, "local")
    assert h.servo(h.tools(), epoch=h.epoch).status.rejected
    h.enable()
    assert h.agent.state is OperatingState.ENABLED


def test_malformed_bytes_are_counted_never_acked_never_move(h):
    h.enable()
    before = h.tools()
    for junk in (b"", b"\x00" * 31, b"SRGT" + b"\xff" * 300, codec.encode(Disable(0, 1, 0))[:-1]):
        assert h.agent.on_message(h.t, PEER, junk) == []
    h.advance(5)
    assert h.tools() == before
    assert h.agent.counters["decode_errors"] == 4


def test_only_the_enabling_console_commands(h):
    h.enable()
    start = h.tools()
    ack = h.servo([moved(start[0], 0.001), start[1], start[2]], peer=b"intruder")
    assert ack.status is AckStatus.REJECTED_EPOCH


def test_clutched_arms_hold_while_the_stream_feeds_the_watchdog(h, cfg):
    h.enable()
    start = h.tools()
    for _ in range(200):  # 200 ms of mask-0 heartbeats: nobody moves, nobody freezes
        assert h.servo(start, mask=0).status is AckStatus.APPLIED
        h.advance(1)
    assert h.agent.state is OperatingState.ENABLED
    assert h.tools() == start
    assert N_ARMS == 4


def test_first_command_may_arrive_a_long_round_trip_after_enable(h, cfg):
    h.enable()
    start = h.tools()
    h.advance(650)  # satellite: the ENABLED ack and the first servo_cp take ~630 ms round trip
    assert h.agent.state is OperatingState.ENABLED and not h.agent.freezes
    assert h.servo([moved(start[0], 0.001), start[1], start[2]]).status is AckStatus.APPLIED
    h.advance(cfg.bedside.watchdog_ms + 1)
    assert h.agent.state is OperatingState.PAUSED  # after the first command, the 50 ms rule again


def test_a_console_that_never_commands_after_enable_is_timed_out(h, cfg):
    h.enable()
    h.advance(cfg.bedside.first_command_ms + 1)
    assert h.agent.state is OperatingState.PAUSED and h.agent.reason is Reason.LINK_LOST


def test_fast_reach_agrees_with_reachable(cfg):
    """SimulatedArm._within_reach (the 1 kHz path, checks inlined) accepts exactly what `reachable` accepts, on
    poses scattered across and just around every limit of the arm's own: insertion, shaft angles, wrist bend, jaw.
    (The shared limits' fast path has its own test: test_limits.py::test_fast_check_agrees_with_the_named_checks.)"""
    import random

    agent = BedsideAgent(cfg.bedside, 0, first_epoch=100)
    rng = random.Random(20261122)
    seen: dict[str, int] = {}
    for arm in agent.arms:
        assert isinstance(arm, SimulatedArm)
        for _ in range(6000):
            d = rng.uniform(0.0, 0.25)
            u = (rng.gauss(0, 1), rng.gauss(0, 1), -abs(rng.gauss(0, 1)))
            n = math.sqrt(sum(c * c for c in u))
            pos = tuple(r + d * c / n for r, c in zip(arm.model.rcm, u, strict=True))
            ori = q_from_axis_angle((rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)), rng.uniform(0, 3.0))
            jaw = rng.choice([0.0, 0.5, 1.2, 1.2 + 2e-6, -2e-6, rng.uniform(-0.1, 1.5)])
            sp = CartesianSetpoint(pos, ori, jaw)
            bad = reachable(arm.model, sp)
            assert arm._within_reach(sp) == (bad is None), (arm.model.name, sp, bad)
            assert arm.reach_violation(sp) == bad
            what = "ok" if bad is None else bad.split(": ")[1].split()[0]
            seen[what] = seen.get(what, 0) + 1
    assert {"ok", "insertion", "shaft", "wrist", "jaw"} <= set(seen), seen  # every check both passed and failed
    assert min(seen.values()) > 50, seen


def test_the_bedside_checks_the_shared_limits_with_its_own_numbers(h, cfg):
    """The bedside's rule is safety.limits with the console's box and the bedside's step keys, judged from each
    arm's current setpoint whatever the send times say: a burst of commands sent together (a console whose sends
    jitter) is not refused, and the arm still moves no faster than its speed limit."""
    assert h.agent.limits == limits_from_config(cfg.teleop, cfg.bedside)
    lim = h.agent.limits
    h.enable()
    start = h.tools()
    sp = start[0]
    for _ in range(5):  # 5 × 1 mm with one send time, as a delayed burst arrives: each step is within 5 mm
        sp = moved(sp, 0.001)
        assert h.servo([sp, start[1], start[2]], send_ns=0).status is AckStatus.APPLIED
    h.advance(4)
    assert h.tools()[0].position[0] == pytest.approx(start[0].position[0] + lim.max_speed_m_s * 0.004, abs=1e-9)
    over = moved(sp, lim.max_step_m + 1e-6)
    assert h.servo([over, start[1], start[2]]).status is AckStatus.REJECTED_STEP
    assert h.agent.arms[0].setpoint_cp() == h.agent.arms[0].measured_cp()  # refused: the arm holds
    held = h.tools()[0]
    assert h.servo([moved(held, lim.max_step_m - 1e-6), start[1], start[2]]).status is AckStatus.APPLIED
    h.advance(30)  # 5 mm at 250 mm/s: there, and inside the 50 ms watchdog
    p = h.tools()[0]
    turn = q_from_axis_angle((0, 0, 1), lim.max_rot_step_rad * 1.01)
    ack = h.servo([CartesianSetpoint(p.position, turn, p.jaw), start[1], start[2]])
    assert ack.status is AckStatus.REJECTED_ORIENTATION_STEP
    turn = q_from_axis_angle((0, 0, 1), lim.max_rot_step_rad * 0.99)
    assert h.servo([CartesianSetpoint(p.position, turn, p.jaw), start[1], start[2]]).status is AckStatus.APPLIED
    assert h.agent.counters["rejected_rejected_step"] == 1
    assert "step 5.00 mm exceeds 5.00 mm" in " ".join(e.text for e in h.agent.drain_events())


def test_a_stream_faster_than_the_speed_limit_is_refused_and_the_arm_holds(h, cfg):
    """Each command within the step limit, but 4 mm every millisecond (4 m/s, sixteen times the bedside's
    250 mm/s): the rate window refuses it within a few commands (REJECTED_SPEED, a LIMIT event) and the arm
    holds; the same steps at the console's speed are applied (tests/test_limits.py has the window's bounds)."""
    h.enable()
    start = h.tools()
    sp, status, n = start[0], AckStatus.APPLIED, 0
    while status is AckStatus.APPLIED and n < 50:
        h.advance(1)
        sp = moved(sp, 0.004)
        status = h.servo([sp, start[1], start[2]]).status
        n += 1
    assert status is AckStatus.REJECTED_SPEED and n <= 10
    assert h.agent.arms[0].setpoint_cp() == h.agent.arms[0].measured_cp()  # refused: the arm holds
    assert "mm/s" in " ".join(e.text for e in h.agent.drain_events())
    held = h.tools()[0]
    sp = held
    for _ in range(100):  # 0.15 mm per ms = the console's 150 mm/s for 100 ms (15 mm: inside the box)
        h.advance(1)
        sp = moved(sp, cfg.teleop.max_speed_mm_s * 1e-6)
        assert h.servo([sp, start[1], start[2]]).status is AckStatus.APPLIED


def test_the_workspace_box_is_the_consoles_and_a_tool_outside_may_only_come_back(cfg):
    """The bedside refuses a reachable pose outside the configured teleop workspace box; a tool already outside
    on an axis may move back toward the box, never further out (the widening `clamp` applies)."""
    home_x_mm = home_setpoint(arm_models(cfg.bedside)[0]).position[0] * 1e3
    teleop = dataclasses.replace(cfg.teleop, workspace_x_max_mm=home_x_mm + 5.0)  # 5 mm right of PSM1's home
    h = Harness(cfg, teleop)
    agent = h.agent
    h.enable()
    start = h.tools()
    out = moved(start[0], 0.004)  # home + 4 mm: inside
    assert h.servo([out, start[1], start[2]]).status is AckStatus.APPLIED
    h.advance(20)
    beyond = moved(out, 0.002)  # home + 6 mm: reachable, but beyond the box
    assert reachable(DEFAULT_ARMS[0], beyond) is None
    assert h.servo([beyond, start[1], start[2]]).status is AckStatus.REJECTED_WORKSPACE
    assert "workspace box" in agent.drain_events()[-1].text
    # the tool placed outside (home + 10 mm) may come back, not go further out
    agent.arms[0].measured = agent.arms[0].setpoint = moved(start[0], 0.010)
    h.advance(20)
    assert h.servo([moved(start[0], 0.011), start[1], start[2]]).status is AckStatus.REJECTED_WORKSPACE
    assert h.servo([moved(start[0], 0.009), start[1], start[2]]).status is AckStatus.APPLIED


def test_the_arm_driver_comes_from_configuration(cfg):
    """bedside.arm_driver names the driver; an unknown name is refused naming the key and the accepted values,
    before any arm exists (the configuration refuses it too: test_config.py)."""
    agent = BedsideAgent(cfg.bedside, 0)
    assert cfg.bedside.arm_driver == "simulated"
    assert all(isinstance(a, SimulatedArm) and isinstance(a, ArmDriver) for a in agent.arms)
    assert [a.name for a in agent.arms] == [m.name for m in DEFAULT_ARMS]
    with pytest.raises(ConfigError, match=r"^bedside\.arm_driver: 'ur5' is not one of simulated$"):
        BedsideAgent(dataclasses.replace(cfg.bedside, arm_driver="ur5"), 0)
    choices = next(f for f in dataclasses.fields(BedsideConfig) if f.name == "arm_driver").metadata["choices"]
    assert tuple(ARM_DRIVERS) == choices  # the key's choices and the drivers that exist: one list


class _FaultyArm(SimulatedArm):
    """A simulated arm whose hardware fails on demand, as a real driver reports it."""

    failed = ""

    def operating_state(self) -> ArmOperatingState:
        st = super().operating_state()
        return ArmOperatingState(OperatingState.FAULT, st.is_homed, False, self.failed) if self.failed else st


def test_a_driver_fault_holds_every_arm_and_refuses_enable(cfg, monkeypatch):
    monkeypatch.setitem(ARM_DRIVERS, "simulated", _FaultyArm)
    h = Harness(cfg)
    h.enable()
    start = h.tools()
    sp = [moved(start[0], 0.004), moved(start[1], -0.004), start[2]]
    assert h.servo(sp).status is AckStatus.APPLIED
    h.advance(2)
    h.agent.arms[1].failed = "encoder 3 lost"
    h.advance(1)
    assert h.agent.state is OperatingState.FAULT and h.agent.reason is Reason.FAULT
    assert "PSM2 arm driver fault: encoder 3 lost" in h.agent.freezes[-1].text
    held = h.tools()
    assert [a.setpoint_cp() for a in h.agent.arms] == held  # every arm, not only the faulty one
    assert h.servo(sp).status.rejected
    assert h.send(Enable(0, h.nseq(), h.t)).status is AckStatus.REJECTED_FAULT
    h.advance(50)
    assert h.tools() == held
    assert len(h.agent.freezes) == 1  # reported once, not every tick


def test_telemetry_reports_what_was_commanded_and_what_the_driver_measures(h):
    h.enable()
    start = h.tools()
    assert h.servo([moved(start[0], 0.004), start[1], start[2]], mask=0b001).status is AckStatus.APPLIED
    h.advance(1)
    t = codec.decode(h.agent.telemetry(h.t))
    assert [a.mode for a in t.arms] == [ArmMode.FOLLOWING, ArmMode.HOLDING, ArmMode.HOLDING, ArmMode.HOLDING]
    assert t.arms[0].flags == ArmFlags.HOMED | ArmFlags.BUSY and t.arms[1].flags == ArmFlags.HOMED
    assert t.arms[0].setpoint_cp == moved(start[0], 0.004) and t.arms[0].measured_cp == h.tools()[0]
    assert h.servo([moved(start[0], 0.02), start[1], start[2]], mask=0b001).status is AckStatus.REJECTED_STEP
    t = codec.decode(h.agent.telemetry(h.t))
    assert t.arms[0].mode is ArmMode.HOLDING and t.arms[0].flags & ArmFlags.LIMIT
    assert h.send(Disable(h.epoch, h.nseq(), h.t)).status is AckStatus.DISABLED
    assert {a.mode for a in codec.decode(h.agent.telemetry(h.t)).arms} == {ArmMode.DISABLED}


def test_freeze_reason_blames_rejections_only_while_they_still_arrive(h):
    """A limit rejection followed by valid commands, then silence, is a lost link, not a LIMIT freeze; a stream of
    nothing but rejected commands is a LIMIT freeze (what QA reads in the recording must be the true cause)."""
    h.enable()
    start = h.tools()
    assert h.servo([moved(start[0], 0.006), start[1], start[2]]).status is AckStatus.REJECTED_STEP
    for _ in range(5):
        h.advance(1)
        assert h.servo(start).status is AckStatus.APPLIED
    h.advance(200)
    assert h.agent.freezes[-1].reason is Reason.LINK_LOST

    h.enable()
    for _ in range(5):  # rejections keep arriving until the watchdog fires
        h.advance(1)
        h.servo(start)
    for _ in range(80):
        h.advance(1)
        h.servo([moved(start[0], 0.006), start[1], start[2]])  # REJECTED_STEP, then REJECTED_NOT_ENABLED
    assert h.agent.freezes[-1].reason is Reason.LIMIT

    h.enable()
    h.advance(1)
    h.servo(start)
    h.advance(1)
    h.servo([moved(start[0], 0.006), start[1], start[2]])  # one rejection, then nothing at all
    h.advance(300)
    assert h.agent.freezes[-1].reason is Reason.LINK_LOST


# ---------------------------------------------------------------------- four arms: which may be commanded


def test_four_arms_in_wire_order_placed_by_configuration(cfg):
    """PSM1, PSM2, PSM3, ECM, each at the base (RCM) and with the insertion range its keys give."""
    from base.config import BEDSIDE_ARMS, with_overrides
    from transport.messages import ARM_NAMES

    assert BEDSIDE_ARMS == ARM_NAMES  # base/config.py cannot import transport: the two lists must agree
    moved_cfg = with_overrides(cfg, ["bedside.psm3_rcm_mm=-50,70,5", "bedside.psm3_insertion_mm=40,200"])
    agent = BedsideAgent(moved_cfg.bedside, 0)
    assert [a.name for a in agent.arms] == list(ARM_NAMES)
    psm3 = agent.arms[2].model
    assert psm3.rcm == pytest.approx((-0.05, 0.07, 0.005)) and (psm3.insertion_min, psm3.insertion_max) == (
        pytest.approx(0.04), pytest.approx(0.2))
    with pytest.raises(ConfigError, match=r"^bedside\.psm3_rcm_mm: '1,2' must be 3 comma-separated numbers"):
        with_overrides(cfg, ["bedside.psm3_rcm_mm=1,2"])
    with pytest.raises(ConfigError, match=r"^bedside\.ecm_insertion_mm: '90,40': min must be below max"):
        with_overrides(cfg, ["bedside.ecm_insertion_mm=90,40"])
    with pytest.raises(ConfigError, match=r"^bedside\.arms: 'PSM1,PSM4' must name each mounted arm once"):
        with_overrides(cfg, ["bedside.arms=PSM1,PSM4"])


def test_a_command_for_an_arm_not_mounted_is_refused_and_moves_nothing(cfg):
    """bedside.arms without PSM3: a servo_cp whose mask names PSM3 is REJECTED_ARM with a sentence naming it; no
    arm moves (not even the mounted ones in the same command); PSM3 is reported DISABLED and not homed."""
    from base.config import with_overrides

    h = Harness(with_overrides(cfg, ["bedside.arms=PSM1,PSM2,ECM"]))
    h.enable()
    start = h.tools()
    ack = h.servo([moved(start[0], 0.001), start[1], moved(start[2], 0.001)], mask=0b101)
    assert ack.status is AckStatus.REJECTED_ARM and ack.status.rejected
    h.advance(20)
    assert h.tools() == start
    text = " ".join(e.text for e in h.agent.drain_events())
    assert "PSM3, not mounted at this bedside" in text and "nothing moved" in text
    t = codec.decode(h.agent.telemetry(h.t))
    assert t.arms[2].mode is ArmMode.DISABLED and not t.arms[2].flags & ArmFlags.HOMED
    assert t.arms[0].flags & ArmFlags.HOMED
    assert h.servo([moved(start[0], 0.001)], mask=0b001).status is AckStatus.APPLIED  # the mounted ones still go


def test_three_instruments_in_one_command_are_refused(h):
    """Two hands drive at most two instruments: a mask with PSM1, PSM2 and PSM3 is a console bug (one hand on two
    arms) and is refused whole; two instruments and the endoscope are fine."""
    h.enable()
    start = h.tools()
    ack = h.servo([moved(s, 0.001) for s in start[:3]], mask=0b0111)
    assert ack.status is AckStatus.REJECTED_ARM
    h.advance(20)
    assert h.tools() == start
    assert "3 instruments at once" in " ".join(e.text for e in h.agent.drain_events())
    assert h.servo([start[0], moved(start[1], 0.001), moved(start[2], 0.001)], mask=0b1110).status is \
        AckStatus.APPLIED


def test_a_mask_naming_an_arm_beyond_the_four_never_decodes(h):
    """Bit 4 names no arm: a ProtocolError, counted, no ack, nothing moves (the codec's check, before the agent)."""
    h.enable()
    start = h.tools()
    raw = bytearray(codec.encode(ServoCp(h.epoch, h.nseq(), h.t, PRESENT, 0b1, tuple(start))))
    raw[33] = 0b10001
    assert h.agent.on_message(h.t, PEER, bytes(raw)) == []
    assert h.agent.counters["decode_error_InvalidField"] == 1
    h.advance(20)
    assert h.tools() == start
