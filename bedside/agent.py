"""The bedside agent's logic, free of I/O: bytes and the current time in, acks, telemetry and events out.

Theory of operation
-------------------
The bedside is the last line of defence: it trusts nothing the console says beyond what it can check.

States (CRTK operating_state) and what moves them, all in `_TRANSITIONS`:

    DISABLED --enable--> ENABLED --watchdog / estop / operator absent--> PAUSED --enable--> ENABLED
    ENABLED --disable--> DISABLED          any --estop--> PAUSED(ESTOP), enable refused until reset

* ENABLE grants a new session epoch and holds every arm where it is: the first servo_cp of the session is
  checked against the pose the arm actually has, so re-engaging cannot make an instrument jump.
* servo_cp moves arms only in ENABLED, from the peer that enabled, with the current epoch, a sequence
  number above the last one, and no more than `max_command_age_ms` of queueing (safety.command_gate).
  Each arm's setpoint is then checked against its own step, orientation-step and workspace limits
  (bedside.arm); one bad arm rejects the whole command, so no half-valid command is ever executed.
* The watchdog is fed by valid commands only. When it trips, every arm holds, the epoch is withdrawn
  and the agent goes PAUSED with the reason; a backlog that arrives later carries the withdrawn epoch
  and is refused. Only a fresh ENABLE (new epoch) resumes.
* Every transition is logged with its reason, published as an Event and kept in `freezes`/`counters`.

Roles and control (docs/security.md). Every frame arrives with its sender's `role:name` (the CURVE key's
ZAP User-Id). A `monitor` may raise an e-stop and nothing else; only a `surgeon` may ENABLE or command.
Exactly one surgeon controls: another surgeon's ENABLE is refused (and announced to the controller as a
handover request) while the controller holds an ENABLED session; control passes when the controller
releases (DISABLE) or after its link was lost and the arms were held. Every grant, release and refusal is
an audited event.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter
from dataclasses import dataclass

from base.config import BedsideConfig
from bedside.arm import DEFAULT_ARMS, ArmModel, MotionLimits, SimulatedArm
from safety.command_gate import NO_EPOCH, CommandGate
from safety.watchdog import Watchdog
from transport import codec
from transport.messages import (
    AckStatus,
    ArmMode,
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
    Telemetry,
)
from transport.security import INSECURE_USER

log = logging.getLogger("bedside.agent")

S = OperatingState
# (state, trigger) -> next state. A trigger the table lacks for a state is a programming error.
_TRANSITIONS: dict[tuple[OperatingState, str], OperatingState] = {
    (S.DISABLED, "enable"): S.ENABLED,
    (S.PAUSED, "enable"): S.ENABLED,
    (S.ENABLED, "enable"): S.ENABLED,  # a new session replaces the old one, arms held in between
    (S.ENABLED, "disable"): S.DISABLED,
    (S.PAUSED, "disable"): S.DISABLED,
    (S.DISABLED, "disable"): S.DISABLED,
    (S.ENABLED, "pause"): S.PAUSED,
    (S.DISABLED, "estop"): S.PAUSED,
    (S.ENABLED, "estop"): S.PAUSED,
    (S.PAUSED, "estop"): S.PAUSED,
    (S.FAULT, "estop"): S.FAULT,
    (S.DISABLED, "fault"): S.FAULT,
    (S.ENABLED, "fault"): S.FAULT,
    (S.PAUSED, "fault"): S.FAULT,
}


class TransitionError(RuntimeError):
    """A trigger that the transition table does not allow in the current state."""


@dataclass(frozen=True, slots=True)
class Freeze:
    """Arms held without the surgeon asking: when, why, and how long after the last valid command."""

    reason: Reason
    at_ns: int
    last_valid_ns: int
    latency_ns: int
    text: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    peer: bytes
    data: bytes


_REJECTION_REASON = {
    AckStatus.REJECTED_STALE: Reason.STALE_COMMAND,
    AckStatus.REJECTED_STEP: Reason.LIMIT,
    AckStatus.REJECTED_ORIENTATION_STEP: Reason.LIMIT,
    AckStatus.REJECTED_WORKSPACE: Reason.LIMIT,
    AckStatus.REJECTED_OPERATOR_ABSENT: Reason.OPERATOR_ABSENT,
}


_ACK_COUNTER = {s: f"ack_{s.name.lower()}" for s in AckStatus}
_OPERATOR_PRESENT = int(ConsoleFlags.OPERATOR_PRESENT)


class BedsideAgent:
    def __init__(
        self,
        cfg: BedsideConfig,
        now_ns: int,
        arms: tuple[ArmModel, ...] = DEFAULT_ARMS,
        first_epoch: int | None = None,
    ) -> None:
        self.cfg = cfg
        limits = MotionLimits(
            max_step_m=cfg.max_step_mm / 1000.0,
            max_rot_step_rad=math.radians(cfg.max_rot_step_deg),
            max_speed_m_s=cfg.max_speed_mm_s / 1000.0,
            max_rot_speed_rad_s=math.radians(cfg.max_rot_speed_deg_s),
            max_jaw_speed_rad_s=cfg.max_jaw_speed_rad_s,
        )
        self.arms = [SimulatedArm(m, limits) for m in arms]
        self.state = OperatingState.DISABLED
        self.reason = Reason.STARTUP
        self.gate = CommandGate(int(cfg.max_command_age_ms * 1e6))
        self.watchdog = Watchdog(cfg.watchdog_ms * 1_000_000)
        # Random start: an epoch from an earlier run of this bedside can never match a new session.
        self._next_epoch = first_epoch if first_epoch is not None else secrets.randbelow(2**31) + 1
        self.controller: bytes | None = None
        self.controller_user: str | None = None
        self.estop_console = False
        self.estop_local = False
        self.last_valid_ns = now_ns
        self.last_applied_seq = 0
        self._last_tick_ns = now_ns
        self._tx_seq = 0
        self._last_rejection: AckStatus | None = None
        self._last_rejection_ns = 0
        self._frozen_at_ns: int | None = None  # set from a freeze until the next ENABLE
        self._event_ns: dict[object, int] = {}
        self.counters: Counter[str] = Counter()
        self.freezes: list[Freeze] = []
        self.events: list[Event] = []
        """Outbox: the socket layer publishes and clears it."""

    # ------------------------------------------------------------------ helpers

    @property
    def epoch(self) -> int:
        return self.gate.epoch

    @property
    def estop(self) -> bool:
        return self.estop_console or self.estop_local

    def _seq(self) -> int:
        self._tx_seq += 1
        return self._tx_seq

    def _emit(self, now_ns: int, kind: EventKind, reason: Reason, text: str, prev: OperatingState) -> None:
        self.events.append(Event(self.epoch, self._seq(), now_ns, kind, reason, prev, self.state, text))

    def _transition(self, now_ns: int, trigger: str, reason: Reason, text: str) -> None:
        key = (self.state, trigger)
        if key not in _TRANSITIONS:
            raise TransitionError(f"{trigger!r} is not allowed in {self.state.name}")
        prev = self.state
        self.state = _TRANSITIONS[key]
        self.reason = reason
        level = logging.INFO if reason in (Reason.NONE, Reason.CONSOLE_REQUEST) else logging.WARNING
        log.log(level, "%s -> %s on %s (%s): %s", prev.name, self.state.name, trigger, reason.name, text)
        self._emit(now_ns, EventKind.STATE_CHANGE, reason, text, prev)

    def _hold_all(self, disabled: bool = False) -> None:
        for arm in self.arms:
            arm.hold(disabled=disabled)

    def _ack(self, now_ns: int, msg: Message, rx_ns: int, status: AckStatus) -> bytes:
        self.counters[_ACK_COUNTER[status]] += 1
        # encode_ack: the bytes of codec.encode(Ack(...)) without building the Ack, once per command
        return codec.encode_ack(self.gate.epoch, self._seq(), now_ns, msg.seq, msg.send_ns, rx_ns, status,
                                self.state, self.reason)

    def _freeze(self, now_ns: int, reason: Reason, text: str) -> None:
        """Hold every arm and withdraw the session: nothing moves until a new ENABLE."""
        latency = now_ns - self.last_valid_ns
        self._hold_all()
        self.gate.close()
        self.watchdog.disarm()
        self.freezes.append(Freeze(reason, now_ns, self.last_valid_ns, latency, text))
        self._frozen_at_ns = now_ns
        self.counters["freezes"] += 1

    # ------------------------------------------------------------------ inputs

    def on_message(self, now_ns: int, peer: bytes, data: bytes, user: str = INSECURE_USER) -> list[Outgoing]:
        """Handle one frame from `user` (`role:name`); returns the replies (an Ack per decodable command)."""
        self.counters["received"] += 1
        try:
            msg = codec.decode(data)
        except codec.ProtocolError as exc:
            self.counters["decode_errors"] += 1
            self.counters[f"decode_error_{type(exc).__name__}"] += 1
            self._rate_limited_event(now_ns, None, Reason.NONE, f"malformed frame from {user} dropped: {exc}")
            return []
        role = user.partition(":")[0]
        if role != "surgeon" and not (role == "monitor" and (isinstance(msg, Ping)
                                                              or (isinstance(msg, EStop) and msg.engage))):
            self.counters["forged_role"] += 1
            status = AckStatus.REJECTED_ROLE
        elif isinstance(msg, ServoCp):
            status = self._servo(now_ns, peer, msg)
            if self._frozen_at_ns is not None:
                # Between a freeze and the next ENABLE nothing may move. Same-host runs share one monotonic
                # clock, so send_ns <= freeze time identifies commands queued before the freeze (backlog).
                self.counters["received_while_frozen"] += 1
                if msg.send_ns <= self._frozen_at_ns:
                    self.counters["backlog_received"] += 1
                if status is AckStatus.APPLIED:
                    self.counters["backlog_executed"] += 1
        elif isinstance(msg, Enable):
            status = self._enable(now_ns, peer, user)
        elif isinstance(msg, Disable):
            status = self._disable(now_ns, peer, user)
        elif isinstance(msg, EStop):
            self.gate.observe(now_ns, msg)
            source = "local" if role == "monitor" else "console"  # the on-site team's remote button
            if msg.engage:
                status = self.raise_estop(now_ns, f"{source} ({user})" if source == "console" else "local", user)
            else:
                status = self.reset_estop(now_ns, "console")
        elif isinstance(msg, Ping):
            self.gate.observe(now_ns, msg)
            status = AckStatus.PONG
        else:
            self.counters["unexpected_type"] += 1
            return []
        if status.rejected:
            self.counters["rejected"] += 1
            self.counters[f"rejected_{status.name.lower()}"] += 1
            self._last_rejection = status
            self._last_rejection_ns = now_ns
            self._rate_limited_event(now_ns, status, _REJECTION_REASON.get(status, Reason.NONE),
                                     f"{type(msg).__name__} seq {msg.seq} from {user} refused: {status.name}")
        return [Outgoing(peer, self._ack(now_ns, msg, now_ns, status))]

    def _due(self, now_ns: int, key: object) -> bool:
        """One event per `key` per second: counters carry exact numbers, events must not flood at 1 kHz."""
        if now_ns - self._event_ns.get(key, -(10**18)) < 1_000_000_000:
            return False
        self._event_ns[key] = now_ns
        return True

    def _rate_limited_event(self, now_ns: int, status: AckStatus | None, reason: Reason, text: str) -> None:
        if self._due(now_ns, status or "malformed"):
            log.warning("%s", text)
            self._emit(now_ns, EventKind.REJECTION, reason, text, self.state)

    def _may_take_control(self, user: str) -> bool:
        """Control changes hands only after a release or after the controller's link was lost."""
        if self.controller_user in (None, user):
            return True
        return self.state is OperatingState.DISABLED or (
            self.state is OperatingState.PAUSED and self.reason in (Reason.LINK_LOST, Reason.STALE_COMMAND))

    def _audit(self, now_ns: int, text: str) -> None:
        log.warning("control: %s", text)
        self._emit(now_ns, EventKind.INFO, Reason.HANDOVER, text, self.state)

    def _enable(self, now_ns: int, peer: bytes, user: str) -> AckStatus:
        if self.estop:
            return AckStatus.REJECTED_ESTOP
        if self.state is OperatingState.FAULT:
            return AckStatus.REJECTED_FAULT
        if not self._may_take_control(user):
            self.counters["control_refused"] += 1
            if self._due(now_ns, AckStatus.REJECTED_NOT_CONTROLLER):
                self._audit(now_ns, f"{user} requests control; refused while {self.controller_user} is in control "
                                    "(handover: the controlling surgeon disengages first)")
            return AckStatus.REJECTED_NOT_CONTROLLER
        if self.controller_user != user:
            self._audit(now_ns, f"control granted to {user}" + (
                f" (was {self.controller_user}, {self.state.name} {self.reason.name})" if self.controller_user else ""))
        self.controller_user = user
        epoch = self._next_epoch
        self._next_epoch = self._next_epoch % (2**32 - 1) + 1
        self._hold_all()
        self.gate.open(epoch)
        self.controller = peer
        self.watchdog.arm(now_ns, self.cfg.first_command_ms * 1_000_000)
        self.last_valid_ns = now_ns
        self._last_rejection = None
        self._frozen_at_ns = None
        self._transition(now_ns, "enable", Reason.NONE, f"session epoch {epoch} granted; arms held in place")
        return AckStatus.ENABLED

    def _disable(self, now_ns: int, peer: bytes, user: str) -> AckStatus:
        if self.controller is not None and (peer != self.controller or user != self.controller_user):
            return AckStatus.REJECTED_NOT_CONTROLLER
        if self.controller_user is not None:
            self._audit(now_ns, f"control released by {user}")
        self._hold_all(disabled=True)
        self.gate.close()
        self.watchdog.disarm()
        self._transition(now_ns, "disable", Reason.CONSOLE_REQUEST, "console released control")
        return AckStatus.DISABLED

    def _servo(self, now_ns: int, peer: bytes, msg: ServoCp) -> AckStatus:
        status = self.gate.check(now_ns, msg)
        if status is not AckStatus.APPLIED:
            return AckStatus.REJECTED_ESTOP if self.estop else status
        if peer != self.controller:
            return AckStatus.REJECTED_EPOCH
        if msg.arm_mask and not int(msg.flags) & _OPERATOR_PRESENT:  # int: IntFlag's own & builds a flag
            return AckStatus.REJECTED_OPERATOR_ABSENT
        for i, arm in enumerate(self.arms):
            if msg.arm_mask >> i & 1:
                bad = arm.validate(msg.arms[i])
                if bad is not None:
                    arm.hold()
                    arm.limit_hit = True
                    self._rate_limited_event(now_ns, bad[0], Reason.LIMIT, bad[1])
                    return bad[0]
        for i, arm in enumerate(self.arms):
            if msg.arm_mask >> i & 1:
                arm.servo(msg.arms[i])
                arm.limit_hit = False
            elif arm.mode is ArmMode.FOLLOWING:
                arm.hold()
        self.watchdog.feed(now_ns)
        self.last_valid_ns = now_ns
        self.last_applied_seq = msg.seq
        self._last_rejection = None  # a freeze is blamed on rejections only if nothing valid came after them
        self.counters["applied"] += 1
        return AckStatus.APPLIED

    def raise_estop(self, now_ns: int, source: str, user: str = "") -> AckStatus:
        """Latch an e-stop from `source` ('local' = the bedside team's, else the console's); arms hold at once."""
        if source == "local":
            self.estop_local = True
        else:
            self.estop_console = True
        self._freeze(now_ns, Reason.ESTOP, f"e-stop raised by {source}")
        self._transition(now_ns, "estop", Reason.ESTOP, f"e-stop raised by {source}; arms held")
        return AckStatus.ESTOP_LATCHED

    def reset_estop(self, now_ns: int, source: str) -> AckStatus:
        """Clear `source`'s latch only; motion still needs a new ENABLE from the surgeon."""
        if source == "local":
            self.estop_local = False
        else:
            self.estop_console = False
        text = f"e-stop reset by {source}" + ("; still latched elsewhere" if self.estop else "")
        log.warning("%s", text)
        self._emit(now_ns, EventKind.INFO, Reason.RESET, text, self.state)
        return AckStatus.ESTOP_LATCHED if self.estop else AckStatus.DISABLED

    # ------------------------------------------------------------------ time

    def next_deadline_ns(self) -> int | None:
        """When `tick` must run at the latest so the watchdog fires on time."""
        return self.watchdog.deadline_ns()

    def tick(self, now_ns: int) -> None:
        """Watchdog first (so a stalled bedside freezes before it reads a backlog), then arm motion."""
        self.check_watchdog(now_ns)
        self.advance(now_ns)

    def check_watchdog(self, now_ns: int) -> None:
        """Hold everything if the session went quiet. Must run before the frames that piled up are read."""
        trip = self.watchdog.check(now_ns)
        if trip is not None and self.state is OperatingState.ENABLED:
            # Blame refused commands only if they were still arriving in the last fifth of the window; a refusal
            # followed by silence is a lost link (QA reads this reason in the recording as the cause).
            last = self._last_rejection
            if now_ns - self._last_rejection_ns > self.cfg.watchdog_ms * 200_000:
                last = None
            reason = _REJECTION_REASON.get(last, Reason.LINK_LOST)  # type: ignore[arg-type]
            why = "no valid command" if reason is Reason.LINK_LOST else f"only {reason.name} commands"
            text = f"{why} for {trip.silence_ns / 1e6:.1f} ms (watchdog {self.cfg.watchdog_ms} ms); arms held"
            self._freeze(now_ns, reason, text)
            self._transition(now_ns, "pause", reason, text)

    def advance(self, now_ns: int) -> None:
        """Integrate the arms' motion up to `now_ns`."""
        dt = (now_ns - self._last_tick_ns) / 1e9
        self._last_tick_ns = now_ns
        for arm in self.arms:
            arm.advance(min(dt, 0.01))

    def telemetry(self, now_ns: int) -> bytes:
        return codec.encode(
            Telemetry(
                self.epoch if self.epoch != NO_EPOCH else 0,
                self._seq(),
                now_ns,
                self.state,
                self.reason,
                self.estop,
                self.last_applied_seq,
                tuple(a.telemetry() for a in self.arms),
            )
        )

    def record_refusal(self, now_ns: int, domain: str, why: str, fingerprint: str) -> None:
        """A handshake the ZAP handler refused: published and recorded with the key's fingerprint."""
        self._emit(now_ns, EventKind.REJECTION, Reason.SECURITY,
                   f"refused {domain} connection: {why} (key {fingerprint})", self.state)

    def counters_message(self, now_ns: int) -> bytes:
        return codec.encode(Counters(self.epoch, self._seq(), now_ns, dict(self.counters)))

    def drain_events(self) -> list[Event]:
        ev, self.events = self.events, []
        return ev
