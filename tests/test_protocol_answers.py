"""What docs/protocol.md says each end answers ("What the bedside answers to each request", "A message sent the
wrong way"), checked against the pure BedsideAgent and ConsoleEngine: bytes and an injected clock, no sockets."""

from __future__ import annotations

import logging

import pytest
from conftest import ms

from bedside.agent import BedsideAgent
from bedside.arm import SimulatedArm
from bedside.arm_driver import ArmOperatingState
from bedside.drivers import ARM_DRIVERS
from console.controller import TeleopController
from console.engine import ConsoleEngine, LinkState
from transport import codec
from transport.messages import (
    HOLD_SETPOINT,
    N_ARMS,
    Ack,
    AckStatus,
    ConsoleFlags,
    Counters,
    Disable,
    Enable,
    EStop,
    Event,
    EventKind,
    Message,
    OperatingState,
    Ping,
    Reason,
    ServoCp,
)

SURGEON, MONITOR, STATION = "surgeon:a", "monitor:m", "station:s"
HOLD = (HOLD_SETPOINT,) * N_ARMS


class Bedside:
    def __init__(self, cfg) -> None:
        self.agent = BedsideAgent(cfg.bedside, 0, first_epoch=7)
        self.t = ms(1)
        self.seq = 0

    def send(self, msg: Message | bytes, user: str = SURGEON, peer: bytes = b"console") -> list:
        data = msg if isinstance(msg, bytes) else codec.encode(msg)
        return [codec.decode(o.data) for o in self.agent.on_message(self.t, peer, data, user)]

    def status(self, make, user: str = SURGEON) -> AckStatus:
        self.seq += 1
        (ack,) = self.send(make(self.seq), user)
        return ack.status


def _bedside_kinds(b: Bedside) -> list[Message]:
    return [Ack(0, 1, 0, 1, 0, 0, AckStatus.APPLIED, OperatingState.ENABLED, Reason.NONE),
            codec.decode(b.agent.telemetry(b.t)),
            Event(0, 2, 0, EventKind.INFO, Reason.NONE, OperatingState.DISABLED, OperatingState.DISABLED, "x"),
            Counters(0, 3, 0, {"applied": 1})]


def test_a_bedside_type_sent_to_the_bedside_is_dropped_counted_and_announced(cfg):
    b = Bedside(cfg)
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.ENABLED
    b.agent.drain_events()
    for msg in _bedside_kinds(b):
        assert b.send(msg) == []  # no ack: it is not a request
    assert b.agent.counters["unexpected_type"] == 4
    events = b.agent.drain_events()
    assert [(e.kind, e.reason) for e in events] == [(EventKind.REJECTION, Reason.NONE)]  # one per second
    assert "Ack seq 1 from surgeon:a dropped" in events[0].text
    assert b.agent.state is OperatingState.ENABLED and b.agent.epoch == 7  # nothing else changed
    b.t += ms(1000)
    assert b.send(_bedside_kinds(b)[1]) == [] and len(b.agent.drain_events()) == 1
    assert b.status(lambda s: ServoCp(7, s, b.t, ConsoleFlags.OPERATOR_PRESENT, 0, HOLD)) is AckStatus.APPLIED


def test_from_another_role_the_role_check_answers_first(cfg):
    b = Bedside(cfg)
    (ack,) = b.send(_bedside_kinds(b)[0], MONITOR)
    assert ack.status is AckStatus.REJECTED_ROLE and b.agent.counters["unexpected_type"] == 0


def test_a_console_type_sent_to_the_console_is_dropped_logged_and_no_sign_of_life(cfg, caplog):
    engine = ConsoleEngine(cfg, TeleopController(cfg.teleop, 0), 0)
    requests = [ServoCp(0, 1, 0, ConsoleFlags.NONE, 0, HOLD), Enable(0, 2, 0), Disable(0, 3, 0), Ping(0, 4, 0),
                EStop(0, 5, 0, True)]
    with caplog.at_level(logging.WARNING, logger="console.engine"):
        for msg in requests:
            engine.on_bytes(ms(1), codec.encode(msg))
    assert engine.counters["unexpected_type"] == 5 and engine.link is LinkState.CONNECTING and engine.epoch == 0
    dropped = [r for r in caplog.records if "console-to-bedside message type" in r.getMessage()]
    assert len(dropped) == 3  # the first three, then only counted


def test_estop_answers_and_the_two_latches(cfg):
    b = Bedside(cfg)
    assert b.status(lambda s: EStop(0, s, b.t, False)) is AckStatus.DISABLED  # nothing latched: still answered
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.ENABLED
    assert b.status(lambda s: EStop(7, s, b.t, True)) is AckStatus.ESTOP_LATCHED
    assert (b.agent.state, b.agent.reason) == (OperatingState.PAUSED, Reason.ESTOP)
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.REJECTED_ESTOP
    assert b.status(lambda s: EStop(0, s, b.t, False)) is AckStatus.DISABLED  # console latch cleared...
    assert (b.agent.state, b.agent.reason) == (OperatingState.PAUSED, Reason.ESTOP)  # ...state unchanged
    assert b.status(lambda s: EStop(0, s, b.t, True), MONITOR) is AckStatus.REJECTED_ROLE  # a monitor only watches
    assert b.status(lambda s: EStop(0, s, b.t, True), STATION) is AckStatus.ESTOP_LATCHED  # the local latch
    assert b.status(lambda s: EStop(0, s, b.t, False), MONITOR) is AckStatus.REJECTED_ROLE
    assert b.status(lambda s: EStop(0, s, b.t, False)) is AckStatus.ESTOP_LATCHED  # the local one is still set
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.REJECTED_ESTOP
    assert b.status(lambda s: EStop(0, s, b.t, False, "  "), STATION) is AckStatus.REJECTED_NO_REASON
    assert b.agent.estop_local
    b.agent.drain_events()
    assert b.status(lambda s: EStop(0, s, b.t, False, "instrument checked"), STATION) is AckStatus.DISABLED
    (reset,) = [e for e in b.agent.drain_events() if e.reason is Reason.RESET]
    assert reset.text == "e-stop reset by the bedside station (station:s), reason: instrument checked"
    assert b.status(lambda s: EStop(0, s, b.t, True), STATION) is AckStatus.ESTOP_LATCHED
    b.agent.reset_estop(b.t, "local")  # SIGUSR2 at the bedside process clears it too
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.ENABLED


class _FailingArm(SimulatedArm):
    """A simulated arm whose driver reports FAULT once `failed` is set, as a real driver would."""

    failed = ""

    def operating_state(self) -> ArmOperatingState:
        st = super().operating_state()
        return ArmOperatingState(OperatingState.FAULT, st.is_homed, False, self.failed) if self.failed else st


def test_disable_in_fault_is_refused_and_never_raises(cfg, monkeypatch):
    """FAULT has no DISABLE transition: the request once raised TransitionError out of on_message (a dead
    bedside loop). Now it is answered REJECTED_FAULT, and the state and reason stay FAULT."""
    monkeypatch.setitem(ARM_DRIVERS, "simulated", _FailingArm)
    b = Bedside(cfg)
    assert b.status(lambda s: Enable(0, s, b.t)) is AckStatus.ENABLED
    b.agent.arms[1].failed = "encoder lost"
    b.agent.tick(b.t + ms(1))
    assert (b.agent.state, b.agent.reason) == (OperatingState.FAULT, Reason.FAULT)
    assert b.status(lambda s: Disable(7, s, b.t)) is AckStatus.REJECTED_FAULT
    assert b.status(lambda s: Disable(0, s, b.t), "surgeon:other") is AckStatus.REJECTED_FAULT
    assert (b.agent.state, b.agent.reason) == (OperatingState.FAULT, Reason.FAULT)
    assert b.status(lambda s: Ping(0, s, b.t)) is AckStatus.PONG


@pytest.mark.parametrize("user", [SURGEON, MONITOR, STATION, "qa:q"])
def test_only_a_surgeon_commands_a_station_may_raise_an_estop_a_monitor_only_ping(cfg, user):
    b = Bedside(cfg)
    may = {MONITOR: {"Ping": AckStatus.PONG},
           STATION: {"Ping": AckStatus.PONG, "EStop": AckStatus.ESTOP_LATCHED, "Reset": AckStatus.DISABLED}}
    for name, make in (("Enable", lambda s: Enable(0, s, b.t)), ("Disable", lambda s: Disable(0, s, b.t)),
                       ("ServoCp", lambda s: ServoCp(0, s, b.t, ConsoleFlags.NONE, 0, HOLD)),
                       ("Ping", lambda s: Ping(0, s, b.t)), ("EStop", lambda s: EStop(0, s, b.t, True)),
                       ("Reset", lambda s: EStop(0, s, b.t, False, "checked"))):
        got = b.status(make, user)
        if user == SURGEON:
            assert got is not AckStatus.REJECTED_ROLE, name
        elif user in may:
            assert got is may[user].get(name, AckStatus.REJECTED_ROLE), name
        else:
            assert got is AckStatus.REJECTED_ROLE, name
