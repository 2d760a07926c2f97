"""Peer isolation at the bedside (docs/protocol.md, "Check order at the bedside"): what other authenticated peers
send, and what the controller's own connection sends that is refused, changes nothing of how the controller's
commands are judged.

The stateful test runs two pure agents on one injected clock. The twin is fed the controller's stream only; the
agent under test gets the same stream with frames from a second surgeon, a monitor and a QA station (ENABLE,
DISABLE, SERVO_CP with replayed, future or arbitrary epochs, sequence numbers and ages, PING, bedside-to-console
types, malformed bytes) and refused frames on the controller's own connection (bad epoch, stale, out of order,
operator absent, and its pings) interleaved. After every step both must agree on every arm (telemetry), the
session, the sequence mark, the transit baseline, the watchdog and every ack the controller gets.

What the model delivers to both, because it is meant to act: a genuine e-stop (a surgeon's or the bedside
station's raise or reset: it latches whoever may send it; a monitor's is refused) and the controller's own
over-limit setpoints (a refused arm holds where it is, docs/safety.md: the controller's own doing, and its next
command is judged from the held pose). Time advances only with the controller's commands (0-10 ms apart), so
its watchdog never trips: a trip would let the second surgeon take control (a handover, docs/security.md), not a
disturbance.

Then each attack on its own, and the same over real CURVE sockets: a `teleop console` streams to a real
`teleop bedside` while a second surgeon key and a monitor key send hostile frames on their own connections; the
bedside's summary and event log must show one uninterrupted session with every command the console sent applied.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import zmq
from conftest import ms
from crossproc import Session, TelemetryTap
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from base.config import load_config
from bedside.agent import BedsideAgent
from transport import codec
from transport.messages import (
    N_ARMS,
    AckStatus,
    CartesianSetpoint,
    ConsoleFlags,
    Disable,
    Enable,
    EStop,
    Message,
    OperatingState,
    Ping,
    Reason,
    ServoCp,
)
from transport.security import client_security
from transport.zmqlink import control_client, tcp

CFG = load_config(None, ["security.insecure=true"]).bedside
MAX_AGE_NS = int(CFG.max_command_age_ms * 1e6)
CTL = (b"ctl", "surgeon:surgeon")
SECOND = (b"s2", "surgeon:surgeon-2")
MONITOR = (b"mon", "monitor:monitor")
QA = (b"qa", "qa:qa")
OTHERS = (SECOND, MONITOR, QA)
OFFSET = 7_000_000_123  # the controller's monotonic clock is this far behind the bedside's
PRESENT = ConsoleFlags.OPERATOR_PRESENT
BOX_M = 0.003  # the valid stream stays within 3 mm of where the session started
SPEED_M_PER_NS = 0.1e-9  # 100 mm/s: within the bedside's step and speed limits
U32, U64 = 2**32 - 1, 2**64 - 1
I64 = (-(2**63), 2**63 - 1)

transits = st.integers(ms(0.1), ms(3))

MASKS = st.sampled_from([m for m in range(1 << N_ARMS) if (m & 0b0111).bit_count() <= 2])
"""Arm masks a console may send: any arms, at most two of the three instruments (two hands)."""


def _moved(sp: CartesianSetpoint, d: tuple[float, float, float]) -> CartesianSetpoint:
    return CartesianSetpoint(tuple(p + x for p, x in zip(sp.position, d, strict=True)), sp.orientation, sp.jaw)


class PeerIsolation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.t = 0
        self.twin = BedsideAgent(CFG, 0, first_epoch=100)  # the controller's stream (and genuine e-stops) only
        self.agent = BedsideAgent(CFG, 0, first_epoch=100)  # the same, with everything else interleaved
        self.seq = 0
        self.epoch = 0
        self.applied_in_epoch = False
        self.home: list[CartesianSetpoint] = []
        self.sent: list[bytes] = []  # every frame the controller sent, for replays

    # ------------------------------------------------------------------ delivery

    def _both(self, sender: tuple[bytes, str], frame: bytes) -> AckStatus:
        """Deliver to both agents: they must answer the same, to the sender."""
        acks = []
        for a in (self.twin, self.agent):
            out = a.on_message(self.t, sender[0], frame, sender[1])
            assert len(out) == 1 and out[0].peer == sender[0]
            acks.append(codec.decode(out[0].data))
        assert (acks[0].status, acks[0].epoch) == (acks[1].status, acks[1].epoch)
        return acks[0].status

    def _agent_only(self, sender: tuple[bytes, str], frame: bytes) -> AckStatus | None:
        """Deliver to the agent under test only; returns the ack status (None: no ack, as for malformed bytes)."""
        out = self.agent.on_message(self.t, sender[0], frame, sender[1])
        assert all(o.peer == sender[0] for o in out)  # an answer goes to whoever asked, nobody else
        return codec.decode(out[0].data).status if out else None

    def _genuine_estop(self, sender: tuple[bytes, str], msg: Message) -> bool:
        """An ESTOP its sender may send (a surgeon's or a station's raise or reset; a monitor's is refused) acts on
        both agents."""
        role = sender[1].partition(":")[0]
        return isinstance(msg, EStop) and role in ("surgeon", "station")

    def _from_other(self, sender: tuple[bytes, str], frame: bytes) -> None:
        try:
            msg = codec.decode(frame)
        except codec.ProtocolError:
            msg = None
        if msg is not None and self._genuine_estop(sender, msg):
            self._both(sender, frame)
            return
        status = self._agent_only(sender, frame)
        if isinstance(msg, Ping) and sender[1].partition(":")[0] in ("surgeon", "monitor"):
            assert status is AckStatus.PONG
        elif status is not None:
            assert status.rejected, (sender, msg, status)

    def _send_ns(self, transit_ns: int) -> int:
        return self.t - OFFSET - transit_ns

    def _advance(self, dt_ns: int) -> None:
        end = self.t + dt_ns
        while self.t < end:
            self.t = min(end, self.t + ms(1))
            self.twin.tick(self.t)
            self.agent.tick(self.t)

    def _setpoints(self) -> list[CartesianSetpoint]:
        return [a.setpoint_cp() for a in self.twin.arms]

    def _servo(self, seq: int, send_ns: int, setpoints, mask: int = 0b1011, flags=PRESENT, epoch=None) -> bytes:
        return codec.encode(ServoCp(self.epoch if epoch is None else epoch, seq, send_ns, flags, mask,
                                    tuple(setpoints)))

    def _ctl(self, frame: bytes) -> AckStatus:
        self.sent.append(frame)
        return self._both(CTL, frame)

    @property
    def _engaged(self) -> bool:
        return self.twin.state is OperatingState.ENABLED

    def _refusal_while_stopped(self) -> AckStatus:
        """What any command gets between a genuine e-stop and the controller's next ENABLE."""
        return AckStatus.REJECTED_ESTOP if self.twin.estop else AckStatus.REJECTED_NOT_ENABLED

    # ------------------------------------------------------------------ the controller

    @initialize(transit=transits)
    def engage(self, transit: int) -> None:
        self._reengage(transit)

    def _reengage(self, transit: int) -> None:
        if self.twin.estop_local:  # the on-site team's reset (SIGUSR2)
            self.twin.reset_estop(self.t, "local")
            self.agent.reset_estop(self.t, "local")
        self.seq += 1
        self._ctl(codec.encode(EStop(self.epoch, self.seq, self._send_ns(transit), False)))
        self.seq += 1
        assert self._ctl(codec.encode(Enable(self.epoch, self.seq, self._send_ns(transit)))) is AckStatus.ENABLED
        self.epoch = self.twin.epoch
        self.applied_in_epoch = False
        self.home = self._setpoints()

    @precondition(lambda self: not self._engaged)
    @rule(transit=transits)
    def reengage_after_an_estop(self, transit: int) -> None:
        self._reengage(transit)

    @rule(dt=st.integers(0, ms(10)), transit=transits, mask=MASKS,
          pull=st.lists(st.tuples(*[st.floats(-1, 1)] * 3), min_size=N_ARMS, max_size=N_ARMS))
    def controller_commands(self, dt: int, transit: int, mask: int, pull) -> None:
        """The valid stream: small moves within 3 mm of the session's start, slower than every limit."""
        self._advance(dt)
        reach = min(dt * SPEED_M_PER_NS, 0.001)
        sps = []
        for cur, home, d in zip(self._setpoints(), self.home, pull, strict=True):
            p = [min(max(c + x * reach, h - BOX_M), h + BOX_M) for c, x, h in zip(cur.position, d, home.position,
                                                                                   strict=True)]
            sps.append(CartesianSetpoint(tuple(p), cur.orientation, cur.jaw))
        self.seq += 1
        status = self._ctl(self._servo(self.seq, self._send_ns(transit), sps, mask))
        if self._engaged:
            assert status is AckStatus.APPLIED  # the model's stream is valid: the test is not vacuous
            self.applied_in_epoch = True
        else:
            assert status is self._refusal_while_stopped()

    @precondition(lambda self: self._engaged)
    @rule(arm=st.sampled_from([0, 1, N_ARMS - 1]), mm=st.floats(6, 50), transit=transits)  # in the default mask
    def controller_oversteps(self, arm: int, mm: float, transit: int) -> None:
        """Refused for a limit: the arm holds in both agents. The next valid command reuses the sequence number."""
        sps = self._setpoints()
        sps[arm] = _moved(sps[arm], (mm / 1000, 0.0, 0.0))
        assert self._both(CTL, self._servo(self.seq + 1, self._send_ns(transit), sps)).rejected  # not for replays

    # ------------------------------------------------------------------ refused on the controller's connection

    @rule(bad=st.sampled_from(["epoch", "stale", "absent"]), transit=transits, extra=st.integers(ms(1), ms(5000)),
          epoch=st.integers(0, U32))
    def controller_refused(self, bad: str, transit: int, extra: int, epoch: int) -> None:
        """Refused before anything is applied: never seen by the twin. Reuses the next sequence number."""
        sps, send_ns, flags, e = self._setpoints(), self._send_ns(transit), PRESENT, self.epoch
        if bad == "epoch":
            e = epoch if epoch != self.epoch else self.epoch + 1
        elif bad == "stale":  # beyond every transit the stream had, by more than the allowed queueing
            send_ns = self._send_ns(ms(3) + MAX_AGE_NS + extra)
        else:
            flags = ConsoleFlags.NONE
        frame = self._servo(self.seq + 1, send_ns, sps, flags=flags, epoch=e)
        status = self._agent_only(CTL, frame)
        expected = {"epoch": AckStatus.REJECTED_EPOCH, "stale": AckStatus.REJECTED_STALE,
                    "absent": AckStatus.REJECTED_OPERATOR_ABSENT}[bad]
        assert status is (expected if self._engaged else self._refusal_while_stopped())

    @precondition(lambda self: self.applied_in_epoch)
    @rule(data=st.data())
    def controller_out_of_order(self, data) -> None:
        """A duplicate or reordered command of this session: its sequence number was passed already."""
        seq = data.draw(st.integers(0, self.twin.gate.last_seq))
        status = self._agent_only(CTL, self._servo(seq, self._send_ns(ms(1)), self._setpoints()))
        assert status is (AckStatus.REJECTED_SEQUENCE if self._engaged else self._refusal_while_stopped())

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def controller_replayed(self, data) -> None:
        frame = data.draw(st.sampled_from(self.sent))
        if isinstance(codec.decode(frame), ServoCp):  # an ENABLE or e-stop replayed by the controller is its own act
            assert self._agent_only(CTL, frame).rejected

    @rule(transit=st.integers(-(10**12), 10**12))
    def controller_pings(self, transit: int) -> None:
        """Pings (any send time: from the future, long past) feed nothing, the controller's own included."""
        self.seq += 1
        # to both: the controller's own frames (pings included) say it is there (bedside.takeover_silence_ms)
        assert self._both(CTL, codec.encode(Ping(self.epoch, self.seq, self._send_ns(transit)))) is AckStatus.PONG

    # ------------------------------------------------------------------ genuine e-stops

    @rule(sender=st.sampled_from([CTL, SECOND, MONITOR]), engage=st.booleans(), transit=transits)
    def estop(self, sender, engage: bool, transit: int) -> None:
        self._both(sender, codec.encode(EStop(self.epoch, 1, self._send_ns(transit), engage)))

    # ------------------------------------------------------------------ other peers

    @rule(sender=st.sampled_from(OTHERS), kind=st.sampled_from([Enable, Disable, Ping, ServoCp]), data=st.data())
    def other_request(self, sender, kind, data) -> None:
        epoch = data.draw(st.one_of(st.just(self.epoch), st.just(self.epoch + 1), st.just(0), st.integers(0, U32)))
        seq = data.draw(st.one_of(st.just(self.seq), st.just(self.seq + 1), st.integers(self.seq, U64),
                                  st.integers(0, U64)))
        send_ns = data.draw(st.one_of(st.integers(-(10**10), 10**10).map(lambda d: self._send_ns(0) + d),
                                      st.integers(*I64)))
        if kind is ServoCp:
            d = st.tuples(*[st.floats(-0.01, 0.01)] * 3)
            sps = [_moved(sp, data.draw(d)) for sp in self._setpoints()]
            flags = data.draw(st.sampled_from([PRESENT, ConsoleFlags.NONE]))
            frame = self._servo(seq, send_ns, sps, data.draw(MASKS), flags, epoch)
        else:
            frame = codec.encode(kind(epoch, seq, send_ns))
        self._from_other(sender, frame)

    @precondition(lambda self: self.sent)
    @rule(sender=st.sampled_from(OTHERS), data=st.data())
    def other_replays_the_controller(self, sender, data) -> None:
        self._from_other(sender, data.draw(st.sampled_from(self.sent)))

    @rule(sender=st.sampled_from([*OTHERS, CTL]), data=st.data())
    def malformed(self, sender, data) -> None:
        """Random bytes, or a controller frame cut or with bytes flipped; from the controller only what does not
        decode (what decodes from it is a command of its own)."""
        if self.sent and data.draw(st.booleans()):
            raw = bytearray(data.draw(st.sampled_from(self.sent)))
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            frame = bytes(raw[:data.draw(st.integers(0, len(raw)))])
        else:
            frame = data.draw(st.binary(max_size=400))
        if sender is CTL:
            try:
                codec.decode(frame)
                return
            except codec.ProtocolError:
                assert self._agent_only(CTL, frame) is None
        else:
            self._from_other(sender, frame)

    @rule(sender=st.sampled_from(OTHERS))
    def other_sends_a_bedside_type(self, sender) -> None:
        assert self._agent_only(sender, self.agent.telemetry(self.t)) in (None, AckStatus.REJECTED_ROLE)

    # ------------------------------------------------------------------ the property

    @invariant()
    def the_controller_is_judged_as_if_alone(self) -> None:
        a, b = self.agent, self.twin
        ta, tb = codec.decode(a.telemetry(self.t)), codec.decode(b.telemetry(self.t))
        # every arm's mode, flags, setpoint, measured pose and joints; the session, its reason, the e-stop
        assert dataclasses.replace(ta, seq=0) == dataclasses.replace(tb, seq=0)
        assert (a.gate.epoch, a.gate.last_seq, a.last_applied_seq, a.last_valid_ns) == \
               (b.gate.epoch, b.gate.last_seq, b.last_applied_seq, b.last_valid_ns)
        probe = self.t - 10**15  # a transit far above any: its queueing delay reveals the baseline's best transit
        assert a.gate.baseline.queued_ns(self.t, probe) == b.gate.baseline.queued_ns(self.t, probe)
        assert a.watchdog.deadline_ns() == b.watchdog.deadline_ns()
        assert [(f.reason, f.at_ns) for f in a.freezes] == [(f.reason, f.at_ns) for f in b.freezes]
        assert a.counters["applied"] == b.counters["applied"]
        assert a.controller_user == b.controller_user == CTL[1]


PeerIsolation.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_other_peers_and_refused_frames_never_change_how_the_controller_is_judged = PeerIsolation.TestCase


# ---------------------------------------------------------------------- the attacks, one by one


def _agent() -> BedsideAgent:
    a = BedsideAgent(CFG, 0, first_epoch=100)
    out = a.on_message(0, CTL[0], codec.encode(Enable(0, 1, -OFFSET)), CTL[1])
    assert codec.decode(out[0].data).status is AckStatus.ENABLED
    return a


def _send(a: BedsideAgent, t: int, who: tuple[bytes, str], msg: Message) -> AckStatus:
    return codec.decode(a.on_message(t, who[0], codec.encode(msg), who[1])[0].data).status


def _home(a: BedsideAgent) -> tuple[CartesianSetpoint, ...]:
    return tuple(arm.setpoint_cp() for arm in a.arms)


@pytest.mark.parametrize("who", [SECOND, (b"ctl-2", CTL[1]), (CTL[0], SECOND[1])], ids=["second-surgeon",
                                                                                        "other-connection",
                                                                                        "other-key"])
def test_a_servo_from_anyone_but_the_enabling_connection_and_key_is_refused_unjudged(who):
    """With the session's epoch, a sequence number far ahead and a send time from the future, it would once have
    raised the sequence mark and lowered the transit baseline, refusing every later command of the controller."""
    a = _agent()
    status = _send(a, ms(1), who, ServoCp(a.epoch, 2**63, ms(1) + 10**12, PRESENT, 0b1011, _home(a)))
    assert status is AckStatus.REJECTED_EPOCH
    assert _send(a, ms(2), CTL, ServoCp(a.epoch, 2, ms(2) - OFFSET, PRESENT, 0b1011, _home(a))) is AckStatus.APPLIED


def test_pings_and_estop_resets_feed_no_baseline():
    """A ping sent 'from the future' (send time far ahead of the transit) once set the baseline so low that every
    command of the controller after it was refused as stale."""
    a = _agent()
    for who in (MONITOR, SECOND, CTL):
        assert _send(a, ms(1), who, Ping(0, 5, ms(1) + 10**12)) is AckStatus.PONG
    assert _send(a, ms(1), SECOND, EStop(0, 6, ms(1) + 10**12, False)) is AckStatus.DISABLED  # nothing latched
    assert _send(a, ms(2), CTL, ServoCp(a.epoch, 2, ms(2) - OFFSET, PRESENT, 0b1011, _home(a))) is AckStatus.APPLIED
    assert a.state is OperatingState.ENABLED and not a.freezes


def test_a_freeze_is_blamed_only_on_the_controllers_own_refusals():
    """The controller's commands go stale, then silence: STALE_COMMAND, however the second surgeon's refused
    ENABLEs and servos interleave (they once overwrote the reason, and with it who may take control)."""
    a = _agent()
    t, i = ms(1), 2
    assert _send(a, t, CTL, ServoCp(a.epoch, i, t - OFFSET, PRESENT, 0, _home(a))) is AckStatus.APPLIED
    epoch = a.epoch
    while True:
        t, i = t + ms(1), i + 1
        a.tick(t)
        if a.state is not OperatingState.ENABLED:
            break
        assert _send(a, t, CTL, ServoCp(epoch, i, t - OFFSET - ms(500), PRESENT, 0, _home(a))) \
            is AckStatus.REJECTED_STALE
        assert _send(a, t, SECOND, Enable(0, i, t)) is AckStatus.REJECTED_NOT_CONTROLLER
        assert _send(a, t, SECOND, ServoCp(epoch, i, t, PRESENT, 0, _home(a))) is AckStatus.REJECTED_EPOCH
    assert a.reason is Reason.STALE_COMMAND and a.freezes[-1].reason is Reason.STALE_COMMAND


def test_refused_commands_of_the_controller_move_neither_the_mark_nor_the_baseline():
    """Stale, operator-absent and over-limit commands are refused; the next valid one, with the very sequence
    number they carried, is applied, and its age is judged against the accepted commands only."""
    a = _agent()
    home = _home(a)
    assert _send(a, ms(1), CTL, ServoCp(a.epoch, 5, ms(1) - OFFSET - ms(400), PRESENT, 0, home)) \
        is AckStatus.REJECTED_STALE
    assert _send(a, ms(2), CTL, ServoCp(a.epoch, 5, ms(2) - OFFSET, ConsoleFlags.NONE, 0b1, home)) \
        is AckStatus.REJECTED_OPERATOR_ABSENT
    far = (_moved(home[0], (0.02, 0, 0)), *home[1:])
    assert _send(a, ms(3), CTL, ServoCp(a.epoch, 5, ms(3) - OFFSET + ms(900), PRESENT, 0b1, far)).rejected
    assert (a.gate.last_seq, a.counters["applied"]) == (-1, 0)
    assert _send(a, ms(4), CTL, ServoCp(a.epoch, 5, ms(4) - OFFSET - ms(100), PRESENT, 0, home)) \
        is AckStatus.APPLIED  # 100 ms behind the granted ENABLE: within the 150 ms allowed


# ---------------------------------------------------------------------- the same over real CURVE sockets


class Hostile:
    """A peer on the control link with its own key and connection, sending whatever it likes and keeping the acks."""

    def __init__(self, session: Session, identity: str) -> None:
        keys_dir = session.key_overrides[0].split("=", 1)[1]
        self.sock = control_client(zmq.Context.instance(), tcp("127.0.0.1", session.ports[0]),
                                   client_security(keys_dir, identity))
        self.acks: list[AckStatus] = []
        self.sent = 0

    def send(self, frame: bytes | Message) -> None:
        try:
            self.sock.send(frame if isinstance(frame, bytes) else codec.encode(frame), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:  # not connected yet, or its queue is full: this peer's problem only
            pass

    def drain(self) -> None:
        while self.sock.poll(0):
            self.acks.append(codec.decode(self.sock.recv()).status)

    def connected(self, timeout_s: float = 10.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.send(Ping(0, 1, time.monotonic_ns()))
            if self.sock.poll(100):
                self.drain()
                return True
        return False

    def close(self) -> None:
        self.sock.close(0)


@pytest.mark.fault
def test_over_curve_a_second_surgeon_and_a_monitor_cannot_disturb_the_controllers_session(tmp_path):
    """A console streams at 1 kHz while a second surgeon key and a monitor key, each on its own connection, send
    what the controller would (its last command replayed, its next sequence numbers, sequence numbers far ahead,
    send times from the future), ENABLE, DISABLE, pings and garbage. The bedside's summary and event log: one
    session from engage to release, no hold, no freeze, every command the console sent applied."""
    s = Session(tmp_path, con_extra=["console.engage_at_s=0.3"])
    peers: list[Hostile] = []
    tap = None
    try:
        s.start_bedside()
        s.start_console()
        s.wait_engaged()
        tap = TelemetryTap("127.0.0.1", s.ports[1], s)
        second, monitor = Hostile(s, "surgeon-2"), Hostile(s, "monitor")
        peers += [second, monitor]
        assert second.connected() and monitor.connected(), s.diagnostics()
        rounds, end = 0, time.monotonic() + 1.5
        while time.monotonic() < end:
            tele = tap.latest()
            e, last, sps = tele.epoch, tele.last_applied_seq, tuple(a.setpoint_cp for a in tele.arms)
            now, later = time.monotonic_ns(), time.monotonic_ns() + 10**10
            rounds += 1
            for p in peers:
                p.send(ServoCp(e, last, now, PRESENT, 0b1011, sps))  # the controller's last command again
                p.send(ServoCp(e, last + 1, later, PRESENT, 0b1011, sps))  # its next number, sent "from the future"
                p.send(ServoCp(e, 2**63 + rounds, now, PRESENT, 0, sps))  # far ahead of it
                p.send(Enable(0, rounds, now))
                p.send(Disable(e, rounds, now))
                p.send(Ping(e, rounds, later))
                p.send(b"SRGT\x01\x01garbage")
                p.drain()
            time.sleep(0.02)
        time.sleep(0.3)  # the controller streams on after the last hostile frame
        for p in peers:
            p.drain()
        con = s.console_summary()  # the console releases control (DISABLE) on the way out
        assert s.wait_event(lambda r: "control released by surgeon:surgeon" in r.get("text", ""), 5.0), \
            s.diagnostics()
        bed = s.bedside_summary()
        s.seen += s.events.new()
    finally:
        if tap is not None:
            tap.close()
        for p in peers:
            p.close()
        s.close()
    assert rounds > 10 and second.sent > 50 and monitor.sent > 50
    assert set(second.acks) <= {AckStatus.REJECTED_EPOCH, AckStatus.REJECTED_NOT_CONTROLLER, AckStatus.PONG}
    assert AckStatus.REJECTED_EPOCH in second.acks and AckStatus.REJECTED_NOT_CONTROLLER in second.acks
    assert set(monitor.acks) <= {AckStatus.REJECTED_ROLE, AckStatus.PONG} and AckStatus.REJECTED_ROLE in monitor.acks
    changes = [(r["to"], r["reason"]) for r in s.seen if r.get("type") == "event" and r.get("kind") == "STATE_CHANGE"]
    assert changes == [("ENABLED", "NONE"), ("DISABLED", "CONSOLE_REQUEST")], changes  # one session, no hold
    assert bed["freezes"] == [] and not any(r.get("type") == "freeze" for r in s.seen)
    assert not any("granted to surgeon:surgeon-2" in r.get("text", "") for r in s.seen)
    c = bed["counters"]
    assert c["ack_rejected_epoch"] > 0 and c["control_refused"] > 0 and c["forged_role"] > 0 and c["decode_errors"] > 0
    assert con["commands_sent"] > 500, con  # ~1.8 s at 1 kHz; a starved host skips ticks, it never bursts
    assert c["applied"] == con["commands_sent"] == con["commands_applied"], (c, con)
    assert con["commands_rejected"] == 0 and con["lost"] == 0, con


STATION = (b"st", "station:nurse")


def test_a_second_surgeon_cannot_clear_the_controllers_estop_but_may_undo_only_their_own():
    """The console's latch: any surgeon may raise it; while the controller is in control and heard, only the
    controller, or the one key that alone latched it, may clear it. A second surgeon's reset once cleared the
    controller's press, changing what the controller's next ENABLE met."""
    a = _agent()
    assert _send(a, ms(1), CTL, EStop(0, 2, ms(1) - OFFSET, True)) is AckStatus.ESTOP_LATCHED
    a.drain_events()
    assert _send(a, ms(2), SECOND, EStop(0, 3, ms(2), False)) is AckStatus.REJECTED_NOT_CONTROLLER
    assert a.estop_console and a.counters["estop_reset_refused"] == 1
    (audit,) = [e for e in a.drain_events() if e.reason is Reason.HANDOVER]
    assert "surgeon:surgeon-2 asked to reset the console's e-stop; refused" in audit.text
    assert _send(a, ms(3), SECOND, Enable(0, 4, ms(3))) is AckStatus.REJECTED_ESTOP
    assert _send(a, ms(4), SECOND, EStop(0, 5, ms(4), True)) is AckStatus.ESTOP_LATCHED  # anyone may stop
    assert _send(a, ms(5), SECOND, EStop(0, 6, ms(5), False)) is AckStatus.REJECTED_NOT_CONTROLLER  # not alone
    assert _send(a, ms(6), CTL, EStop(0, 7, ms(6) - OFFSET, False)) is AckStatus.DISABLED  # the controller may
    assert not a.estop and a.controller_user == CTL[1]
    assert _send(a, ms(7), SECOND, EStop(0, 8, ms(7), True)) is AckStatus.ESTOP_LATCHED
    assert _send(a, ms(8), SECOND, EStop(0, 9, ms(8), False)) is AckStatus.DISABLED  # its own press, alone
    assert _send(a, ms(9), CTL, Enable(0, 10, ms(9) - OFFSET)) is AckStatus.ENABLED


def test_a_session_held_by_an_estop_is_taken_over_once_the_controller_is_silent():
    """The takeover path when the remote surgeon pressed e-stop and then its link died: the session stays PAUSED
    for ESTOP (the watchdog only trips an enabled session), so before `bedside.takeover_silence_ms` no other
    surgeon could ever reset or engage. While the controller pings (50 Hz when held) it keeps control."""
    a = _agent()
    silence = int(CFG.takeover_silence_ms * 1e6)
    assert _send(a, ms(1), CTL, EStop(0, 2, ms(1) - OFFSET, True)) is AckStatus.ESTOP_LATCHED
    last = ms(1)
    for t in range(20, 2000, 20):  # two seconds of pings: the controller is there
        assert _send(a, ms(t), CTL, Ping(0, 3 + t, ms(t) - OFFSET)) is AckStatus.PONG
        last = ms(t)
        assert _send(a, ms(t) + 1, SECOND, EStop(0, 10**6 + t, ms(t), False)) is AckStatus.REJECTED_NOT_CONTROLLER
    assert _send(a, last + silence - 1, SECOND, EStop(0, 2 * 10**6, 0, False)) is AckStatus.REJECTED_NOT_CONTROLLER
    assert _send(a, last + silence, SECOND, EStop(0, 2 * 10**6 + 1, 0, False)) is AckStatus.DISABLED
    a.drain_events()
    assert _send(a, last + silence + 1, SECOND, Enable(0, 2 * 10**6 + 2, 0)) is AckStatus.ENABLED
    assert a.controller_user == SECOND[1]
    texts = [e.text for e in a.drain_events() if e.reason is Reason.HANDOVER]
    assert texts == ["control granted to surgeon:surgeon-2 (was surgeon:surgeon, PAUSED ESTOP)"]
    assert _send(a, last + silence + 2, CTL, Enable(0, 2 * 10**6 + 3, 0)) is AckStatus.REJECTED_NOT_CONTROLLER


def test_after_the_stations_estop_and_the_controllers_silence_the_local_surgeon_takes_over():
    """The on-site team's e-stop, then the remote link dies: the station resets with a reason, and the bedside
    console's surgeon engages through the audited handover."""
    a = _agent()
    assert _send(a, ms(1), STATION, EStop(0, 2, ms(1), True)) is AckStatus.ESTOP_LATCHED
    assert _send(a, ms(2), SECOND, Enable(0, 3, ms(2))) is AckStatus.REJECTED_ESTOP
    assert _send(a, ms(3), STATION, EStop(0, 4, ms(3), False, "remote link down, local surgeon ready")) \
        is AckStatus.DISABLED
    assert _send(a, ms(4), SECOND, Enable(0, 5, ms(4))) is AckStatus.REJECTED_NOT_CONTROLLER  # CTL still heard
    t = int(CFG.takeover_silence_ms * 1e6)  # the controller's last frame: its ENABLE at 0
    assert _send(a, t, SECOND, Enable(0, 6, t)) is AckStatus.ENABLED and a.controller_user == SECOND[1]


def test_the_station_clears_a_gone_controllers_estop_and_only_then():
    """The remote surgeon pressed e-stop and its link died: the bedside console has no latch of its own to reset,
    so the station's audited reset clears the console's latch too, but only once the controller is silent."""
    a = _agent()
    assert _send(a, ms(1), CTL, EStop(0, 2, ms(1) - OFFSET, True)) is AckStatus.ESTOP_LATCHED
    reason = "remote link down, local surgeon at the console"
    assert _send(a, ms(2), STATION, EStop(0, 3, ms(2), False, reason)) is AckStatus.ESTOP_LATCHED
    assert a.estop_console  # the controller is still heard: its press stands
    t = ms(1) + int(CFG.takeover_silence_ms * 1e6)
    a.drain_events()
    assert _send(a, t, STATION, EStop(0, 4, t, False, reason)) is AckStatus.DISABLED and not a.estop
    texts = [e.text for e in a.drain_events() if e.reason is Reason.RESET]
    assert texts[0].startswith("e-stop reset by console (its controller is gone: cleared by the bedside station "
                               "(station:nurse)), reason: remote link down")
    assert _send(a, t + 1, SECOND, Enable(0, 5, t)) is AckStatus.ENABLED and a.controller_user == SECOND[1]
