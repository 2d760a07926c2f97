"""The bedside agent's logic, free of I/O: bytes and the current time in, acks, telemetry and events out.

Theory of operation
-------------------
The bedside is the last line of defence: it trusts nothing the console says beyond what it can check.

States (CRTK operating_state) and what moves them, all in `SESSION` (the one mechanism, safety/statemachine.py):

    DISABLED --enable--> ENABLED --watchdog / estop / operator absent--> PAUSED --enable--> ENABLED
    ENABLED --disable--> DISABLED          any --estop--> PAUSED(ESTOP), enable refused until reset

* ENABLE grants a new session epoch and holds every arm where it is: the first servo_cp of the session is
  checked against the pose the arm actually has, so re-engaging cannot make an instrument jump.
* servo_cp moves arms only in ENABLED, from the controller (the connection and key that enabled), with the
  current epoch, a sequence number above the last one applied, and no more than `max_command_age_ms` of
  queueing (safety.command_gate).
  Each arm's setpoint is then checked against the limits the console clamps to (safety.limits, the same
  code with the bedside's numbers: step and orientation step from the arm's current setpoint, the workspace
  box; speed, orientation rate and jaw rate over a window of send times, `RateWindow`, which allows the
  console's send jitter so a healthy console is never refused) and against the arm's own reach (its driver,
  bedside/arm_driver.py); one bad arm rejects the whole command, so no half-valid command is ever executed.
  The driver never moves a tool faster than the speed limits either.
* Arms are driven through `ArmDriver` (enable, hold, servo_cp, measured_cp/js, operating_state), of the kind
  `bedside.arm_driver` names (bedside/drivers.py). A driver reporting FAULT holds every arm and makes the
  agent FAULT: ENABLE is refused until the bedside is restarted. Each driver also holds on its own when this
  loop stops servicing it (its watchdog, `bedside.driver_watchdog_ms`); the agent then reports the stall and
  ends the session (PAUSED, Reason.FAULT): the surgeon engages again.
* The watchdog, the sequence mark and the transit baseline are fed by the controller's applied commands
  only (judge, apply, then accept; docs/protocol.md "Check order at the bedside"): no other peer's frame,
  no ping or e-stop, and no refused frame changes how its next command is judged. When the watchdog trips,
  every arm holds, the epoch is withdrawn and the agent goes PAUSED with the reason; a backlog that arrives
  later carries the withdrawn epoch and is refused. Only a fresh ENABLE (new epoch) resumes.
* Every transition is logged with its reason, published as an Event and kept in `freezes`/`counters`.

Roles and control (docs/security.md). Every frame arrives with its sender's `role:name` (the CURVE key's
ZAP User-Id). The bedside `station` may raise the bedside's (local) e-stop and reset it with a reason, which is
audited; a `monitor` may only ping; only a `surgeon` may ENABLE or command.
Exactly one surgeon controls: another surgeon's ENABLE is refused (and announced to the controller as a
handover request) while the controller holds an ENABLED session; control passes when the controller
releases (DISABLE) or after its link was lost and the arms were held. Every grant, release and refusal is
an audited event.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from base.config import BedsideConfig, TeleopConfig
from base.geometry import Vec3
from bedside.arm import ArmModel, arm_models
from bedside.arm_driver import ArmDriver
from bedside.drivers import build_arms
from safety.command_gate import NO_EPOCH, CommandGate
from safety.limits import LimitKind, limits_from_config, rate_window
from safety.statemachine import StateMachine, TransitionTable
from safety.tissue import tissue_from_config
from safety.watchdog import Watchdog
from transport import codec
from transport.messages import (
    INSTRUMENT_ARMS,
    N_HANDS,
    AckStatus,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    CartesianSetpoint,
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
from transport.paths import TOOK_EFFECT, CopyFilter, ack_status
from transport.security import INSECURE_USER

log = logging.getLogger("bedside.agent")

class SessionTrigger(StrEnum):
    """What moves the bedside's operating state; each is published as an EVENT (STATE_CHANGE)."""

    ENABLE = "enable"
    DISABLE = "disable"
    PAUSE = "pause"
    ESTOP = "estop"
    FAULT = "fault"


S, T = OperatingState, SessionTrigger
# (state, trigger) -> next state. A trigger the table lacks for a state raises TransitionError.
SESSION: TransitionTable[OperatingState, SessionTrigger] = TransitionTable("bedside session", S.DISABLED, {
    (S.DISABLED, T.ENABLE): S.ENABLED,
    (S.PAUSED, T.ENABLE): S.ENABLED,
    (S.ENABLED, T.ENABLE): S.ENABLED,  # a new session replaces the old one, arms held in between
    (S.ENABLED, T.DISABLE): S.DISABLED,
    (S.PAUSED, T.DISABLE): S.DISABLED,
    (S.DISABLED, T.DISABLE): S.DISABLED,
    (S.ENABLED, T.PAUSE): S.PAUSED,
    (S.DISABLED, T.ESTOP): S.PAUSED,
    (S.ENABLED, T.ESTOP): S.PAUSED,
    (S.PAUSED, T.ESTOP): S.PAUSED,
    (S.FAULT, T.ESTOP): S.FAULT,
    (S.DISABLED, T.FAULT): S.FAULT,
    (S.ENABLED, T.FAULT): S.FAULT,
    (S.PAUSED, T.FAULT): S.FAULT,
}, alarm={S.PAUSED, S.FAULT})
del S, T


@dataclass(frozen=True, slots=True)
class Freeze:
    """Arms held without the surgeon asking: when, why, and how long after the last valid command."""

    reason: Reason
    at_ns: int
    last_valid_ns: int
    latency_ns: int
    text: str

    def record(self) -> dict[str, object]:
        """The teleop.Freeze record (docs/recording.md): `/bedside/freeze` in the recording, the event log."""
        return {"t_ns": self.at_ns, "reason": self.reason.name, "last_valid_ns": self.last_valid_ns,
                "latency_ms": self.latency_ns / 1e6, "text": self.text}

    def summary(self) -> dict[str, object]:
        """One entry of the bedside summary's `freezes` (the fault suite and the benches read it)."""
        return {"reason": self.reason.name, "latency_ms": self.latency_ns / 1e6, "text": self.text}


class Outgoing(NamedTuple):
    """A reply to send: to `peer`, the frame `data`. A named tuple, built once per command at 1 kHz: a frozen
    dataclass's __init__ (object.__setattr__ per field) cost ~0.5 µs of the dwell."""

    peer: bytes
    data: bytes


_REJECTION_REASON = {
    AckStatus.REJECTED_STALE: Reason.STALE_COMMAND,
    AckStatus.REJECTED_STEP: Reason.LIMIT,
    AckStatus.REJECTED_ORIENTATION_STEP: Reason.LIMIT,
    AckStatus.REJECTED_WORKSPACE: Reason.LIMIT,
    AckStatus.REJECTED_SPEED: Reason.LIMIT,
    AckStatus.REJECTED_TISSUE_DEPTH: Reason.LIMIT,
    AckStatus.REJECTED_OPERATOR_ABSENT: Reason.OPERATOR_ABSENT,
}


_LIMIT_ACK = {
    LimitKind.STEP: AckStatus.REJECTED_STEP,
    LimitKind.ROT_STEP: AckStatus.REJECTED_ORIENTATION_STEP,
    LimitKind.WORKSPACE: AckStatus.REJECTED_WORKSPACE,
    LimitKind.SPEED: AckStatus.REJECTED_SPEED,
    LimitKind.ROT_RATE: AckStatus.REJECTED_SPEED,
    LimitKind.JAW_RATE: AckStatus.REJECTED_SPEED,
}
"""The ack for each shared limit the bedside judges (docs/protocol.md): per command, step, orientation step and
the box; over the rate window, speed, orientation rate and jaw rate (all REJECTED_SPEED). The arm's own reach
is REJECTED_WORKSPACE too."""


class _Commanded:
    """What the agent last asked of one arm; the driver reports the rest (telemetry: mode and LIMIT flag)."""

    __slots__ = ("held_reported", "limit_hit", "mode")

    def __init__(self) -> None:
        self.mode = ArmMode.DISABLED
        self.limit_hit = False
        self.held_reported = ""
        """The driver's own hold (ArmOperatingState.held) last reported: each one is reported once."""


_ACK_COUNTER = {s: f"ack_{s.name.lower()}" for s in AckStatus}
_REJECTED = frozenset(s for s in AckStatus if s.rejected)
"""`status in _REJECTED` is `status.rejected` without two property calls (the property and Enum's `value`)."""
_APPLIED, _FOLLOWING = AckStatus.APPLIED, ArmMode.FOLLOWING
"""Members the 1 kHz path compares with, read once: reading a member off an Enum class costs ~100 ns in 3.11."""
_OPERATOR_PRESENT = int(ConsoleFlags.OPERATOR_PRESENT)
REVOCATION_REFRESH_NS = 100_000_000
"""How stale the bedside's copy of the revoked keys may get (the registry is a file another process writes)."""


class BedsideAgent:
    def __init__(
        self,
        cfg: BedsideConfig,
        now_ns: int,
        arms: tuple[ArmModel, ...] | None = None,
        first_epoch: int | None = None,
        teleop: TeleopConfig | None = None,
        driver_clock: Callable[[], int] | None = None,
    ) -> None:
        """`teleop`: the [teleop] section whose workspace box the bedside shares with the console (the bedside
        process passes its configuration's; None = the default box). `driver_clock`: the clock the arm drivers'
        own watchdogs run on (the bedside process passes `time.monotonic_ns`; None = no driver watchdog, for
        tests that invent the time). `arms`: the arm models in wire order (None: `arm_models(cfg)`, the four arms
        placed as `bedside.<arm>_rcm_mm` / `_insertion_mm` say). ConfigError for an unknown arm driver."""
        self.cfg = cfg
        self.limits = limits_from_config(teleop if teleop is not None else TeleopConfig(), cfg)
        """The console's limits with the bedside's numbers (safety/limits.py): every commanded setpoint passes."""
        self.arms: list[ArmDriver] = build_arms(cfg, arm_models(cfg) if arms is None else arms, self.limits,
                                                driver_clock)
        mounted = cfg.mounted_arms()
        self._mounted = [a.name in mounted for a in self.arms]
        """Arms not mounted (`bedside.arms`) are never enabled nor moved, and are reported DISABLED, not homed."""
        self._mounted_mask = sum(1 << i for i, m in enumerate(self._mounted) if m)
        self._instrument_mask = sum(1 << i for i, a in enumerate(self.arms) if a.name in INSTRUMENT_ARMS)
        n = len(self.arms)
        self._arms_in = tuple(tuple(i for i in range(n) if m >> i & 1) for m in range(1 << n))
        """The arms each arm mask names, in order: the 1 kHz path visits those, not every arm with a bit test."""
        self._driver_bound_ns = None if driver_clock is None else int(cfg.driver_watchdog_ms * 1e6)
        self._commanded = [_Commanded() for _ in self.arms]
        self._rates = [rate_window(self.limits, cfg) for _ in self.arms]
        """Each arm's speed over a window of send times (safety/limits.py RateWindow); reset when it holds."""
        self.session = StateMachine(SESSION, "bedside", now_ns, logger=log)
        """Operating state and its reason; only `_transition` fires it."""
        self.gate = CommandGate(int(cfg.max_command_age_ms * 1e6))
        self.watchdog = Watchdog(cfg.watchdog_ms * 1_000_000)
        # Random start: an epoch from an earlier run of this bedside can never match a new session.
        self._next_epoch = first_epoch if first_epoch is not None else secrets.randbelow(2**31) + 1
        self.controller: bytes | None = None
        self.controller_user: str | None = None
        self.estop_console = False
        self.estop_local = False
        self._estop_raisers: set[str] = set()
        """The surgeon keys that latched the console's e-stop: they (or the controller) may clear it."""
        self._controller_heard_ns = now_ns
        """When the controller's key and connection last sent anything decodable (pings while held included)."""
        self.last_valid_ns = now_ns
        self.last_applied: tuple[int, int, int, int] = (0, 0, 0, 0)
        """The last servo_cp applied: (epoch, seq, its send time on the console's clock, when it arrived here), for
        the frames drawn from this state (transport/bedside_state.py, the video wire's SceneStamp)."""
        self.last_telemetry_seq = 0
        self.tissue = tissue_from_config(cfg)
        """The simulated patient's tissue: the depth rule `_validate` applies (the drivers simulate its force)."""
        self._last_tick_ns = now_ns
        self._tx_seq = 0
        self._last_rejection: AckStatus | None = None
        self._last_rejection_ns = 0
        self._frozen_at_ns: int | None = None  # set from a freeze until the next ENABLE
        self._event_ns: dict[object, int] = {}
        self.counters: Counter[str] = Counter()
        self.freezes: list[Freeze] = []
        self._freezes_drained = 0
        self._revoked: frozenset[str] = frozenset()
        self._revoked_at_ns = -(10**18)
        self._control_since_ns = now_ns  # when the controller last changed
        self._stations: set[bytes] = set()  # station connections told who is in control (`_station_joined`)
        self.events: list[Event] = []
        """Outbox: the socket layer publishes and clears it."""
        self.copies: CopyFilter | None = None
        """With several paths (`use_paths`): the controller's applied frames, to know their copies by."""

    # ------------------------------------------------------------------ helpers

    @property
    def state(self) -> OperatingState:
        return self.session.state

    @property
    def reason(self) -> Reason:
        return self.session.reason

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

    def _transition(self, now_ns: int, trigger: SessionTrigger, reason: Reason, text: str) -> None:
        """Fire the session table (logged there; TransitionError if not allowed) and publish it as an EVENT."""
        tr = self.session.fire(now_ns, trigger, reason, text)
        self._emit(now_ns, EventKind.STATE_CHANGE, reason, text, tr.from_state)

    def _hold_all(self, disabled: bool = False) -> None:
        for i in range(len(self.arms)):
            self._hold(i, disabled)

    def _hold(self, i: int, disabled: bool = False) -> None:
        """Arm `i` stops where it is (CRTK hold), or is disabled: its next setpoint is judged from there."""
        if disabled or not self._mounted[i]:
            self.arms[i].disable()
            self._commanded[i].mode = ArmMode.DISABLED
        else:
            self.arms[i].hold()
            self._commanded[i].mode = ArmMode.HOLDING
        self._rates[i].reset()

    def _enable_arms(self) -> None:
        """Every arm powered (CRTK enable) and held where it is: a session's first setpoint starts from there."""
        for arm, c, mounted in zip(self.arms, self._commanded, self._mounted, strict=True):
            if mounted:
                arm.enable()
                c.mode = ArmMode.HOLDING
        for r in self._rates:
            r.reset()

    def _validate(self, i: int, sp: CartesianSetpoint, send_ns: int) -> tuple[AckStatus, str] | None:
        """None if arm `i` may servo to `sp`, sent at `send_ns`, now; else the refusal and why. The shared limits
        (the code the console clamps with: step, orientation step, workspace box from the arm's current
        setpoint; speed, orientation rate and jaw rate over the rate window), then the tissue (no deeper than
        `bedside.tissue_max_depth_mm`, safety/tissue.py), then what is the arm's own (reach, joints, wrist, jaw
        range). Changes nothing."""
        arm = self.arms[i]
        prev = arm.setpoint_cp()
        bad = self.limits.check(prev, sp) or self._rates[i].check(send_ns, sp)
        if bad is not None:
            return _LIMIT_ACK[bad.kind], f"{arm.name}: {bad.text}"
        deep = self.tissue.check(prev.position, sp.position)
        if deep is not None:
            return AckStatus.REJECTED_TISSUE_DEPTH, f"{arm.name}: {deep}"
        why = arm.reach_violation(sp)
        return None if why is None else (AckStatus.REJECTED_WORKSPACE, why)

    def _ack(self, now_ns: int, msg: Message, rx_ns: int, status: AckStatus) -> bytes:
        self.counters[_ACK_COUNTER[status]] += 1
        # encode_ack: the bytes of codec.encode(Ack(...)) without building the Ack, once per command; the session's
        # state and reason read from it directly, not through this class's properties
        self._tx_seq = seq = self._tx_seq + 1  # `_seq()` inlined
        session = self.session
        return codec.encode_ack(self.gate.epoch, seq, now_ns, msg.seq, msg.send_ns, rx_ns, status,
                                session.state, session.reason)

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
        # Who, before anything is judged: only the connection and key that enabled may touch the controller's state.
        from_controller = peer == self.controller and user == self.controller_user
        role = "surgeon" if from_controller else user.partition(":")[0]  # only a surgeon's ENABLE is ever granted
        if from_controller:
            self._controller_heard_ns = now_ns
        if role != "surgeon" and not ((role == "station" and isinstance(msg, Ping | EStop))
                                      or (role == "monitor" and isinstance(msg, Ping))):
            self.counters["forged_role"] += 1
            status = AckStatus.REJECTED_ROLE
        elif isinstance(msg, ServoCp):
            status = self._servo(now_ns, from_controller, msg)
            if self._frozen_at_ns is not None:
                # Between a freeze and the next ENABLE nothing may move. Same-host runs share one monotonic
                # clock, so send_ns <= freeze time identifies commands queued before the freeze (backlog).
                self.counters["received_while_frozen"] += 1
                if msg.send_ns <= self._frozen_at_ns:
                    self.counters["backlog_received"] += 1
                if status is _APPLIED:
                    self.counters["backlog_executed"] += 1
        elif isinstance(msg, Enable):
            status = self._enable(now_ns, peer, user, msg)
        elif isinstance(msg, Disable):
            status = self._disable(now_ns, peer, user)
        elif isinstance(msg, EStop):  # latches whoever sends it (a surgeon or the bedside station); judges nobody
            if role == "station":  # the on-site team's button: the bedside's own (local) latch
                status = self._station_estop(now_ns, user, msg)
            elif msg.engage:
                status = self.raise_estop(now_ns, f"console ({user})", user)
            else:
                status = self._console_estop_reset(now_ns, from_controller, user)
        elif isinstance(msg, Ping):  # changes nothing: not even the controller's pings feed its transit baseline
            status = AckStatus.PONG
            if (role == "station" and (msg.epoch != self.epoch or peer not in self._stations)
                    and self._due(now_ns, (peer, "station"))):
                self._station_joined(now_ns, peer, user)
        else:  # ACK, TELEMETRY, EVENT, COUNTERS: the bedside sends these, it never acts on one (no ack either)
            self.counters["unexpected_type"] += 1
            self._rate_limited_event(now_ns, "unexpected_type", Reason.NONE, f"{type(msg).__name__} seq {msg.seq} "
                                     f"from {user} dropped: a bedside-to-console message type, never a request")
            return []
        if status in _REJECTED:
            self.counters["rejected"] += 1
            self.counters[f"rejected_{status.name.lower()}"] += 1
            if from_controller and isinstance(msg, ServoCp):  # only its own refusals may explain its watchdog's trip
                self._last_rejection = status
                self._last_rejection_ns = now_ns
            self._rate_limited_event(now_ns, status, _REJECTION_REASON.get(status, Reason.NONE),
                                     f"{type(msg).__name__} seq {msg.seq} from {user} refused: {status.name}")
        return [Outgoing(peer, self._ack(now_ns, msg, now_ns, status))]

    def use_paths(self, n_paths: int) -> None:
        """The bedside listens on `n_paths` paths (link.paths): the socket layer calls `on_path_message`."""
        self.copies = CopyFilter(n_paths)

    def on_path_message(self, now_ns: int, path: int, peer: bytes, data: bytes,
                        user: str = INSECURE_USER) -> list[Outgoing]:
        """`on_message` for a frame that came on `path` of several (transport/paths.py). Who first, as there: a
        byte-identical copy, from the controller (its key and its connections' one routing id), of a frame that
        took effect, on a path that has not delivered it yet, is dropped silently and counted per path (so is one
        too old to tell, CopyFilter.copy_key); a servo_cp no path delivered before, which the gate refuses only
        because a newer one was applied, is answered SUPERSEDED (`_superseded`); every other frame, a replay
        included, is judged in full by `on_message`. Only the controller's frames feed the filter: no other peer
        changes what counts as a copy, and a refused frame only makes its own copies be judged again."""
        copies = self.copies
        assert copies is not None, "use_paths first"
        if peer == self.controller and user == self.controller_user and (key := copies.copy_key(path, data)):
            if key is not copies.superseded_keys[path]:
                self.counters[key] += 1
                return []
            late = self._superseded(now_ns, path, peer, data, key)
            if late is not None:
                return late
        before = (self.controller, self.controller_user)
        out = self.on_message(now_ns, peer, data, user)
        if (self.controller, self.controller_user) != before:
            copies.reset()  # control changed hands: the old controller's frames are nobody's copies now
        if out and peer == self.controller and user == self.controller_user:
            status = ack_status(out[0].data)
            if status in TOOK_EFFECT:
                copies.took_effect(path, data)
                if status == _APPLIED:
                    self.counters[copies.applied_keys[path]] += 1
            elif status in _REJECTED:
                copies.refused(data)
                if status == AckStatus.REJECTED_SEQUENCE and self._due(now_ns, "sequence_on_path"):
                    # which path brought it and why it was no copy (docs/protocol.md "Duplicates")
                    log.warning("REJECTED_SEQUENCE %s; highest applied seq %d", copies.explain(path, data),
                                self.gate.last_seq)
        return out

    def _superseded(self, now_ns: int, path: int, peer: bytes, data: bytes, key: str) -> list[Outgoing] | None:
        """The controller's servo_cp that no path delivered before, older than the newest that took effect
        (CopyFilter.copy_key): the path that had it first lost its copy (a connection that dropped and came back,
        a full queue), this one brings it after a newer one was applied. If the gate refuses it for its sequence
        alone (the session's epoch, the gate open), it is no replay and can never apply: answered SUPERSEDED,
        counted per path, nothing else changes. None: judged in full (`on_message`)."""
        try:
            msg = codec.decode(data)
        except codec.ProtocolError:
            return None
        if self.gate.judge(now_ns, msg) is not AckStatus.REJECTED_SEQUENCE or self.estop:
            return None
        assert self.copies is not None
        if self._due(now_ns, "superseded"):
            log.info("SUPERSEDED seq %d on path%d (marks %s, highest applied seq %d): no path delivered it before",
                     msg.seq, path, self.copies.marks, self.gate.last_seq)
        self.copies.superseded(path, data)
        self.counters[key] += 1
        return [Outgoing(peer, self._ack(now_ns, msg, now_ns, AckStatus.SUPERSEDED))]

    def _due(self, now_ns: int, key: object) -> bool:
        """One event per `key` per second: counters carry exact numbers, events must not flood at 1 kHz."""
        if now_ns - self._event_ns.get(key, -(10**18)) < 1_000_000_000:
            return False
        self._event_ns[key] = now_ns
        return True

    def _rate_limited_event(self, now_ns: int, key: AckStatus | str | None, reason: Reason, text: str) -> None:
        """A REJECTION event, one per `key` (an ack status, or a kind of dropped frame; None = malformed) per second."""
        if self._due(now_ns, key or "malformed"):
            log.warning("%s", text)
            self._emit(now_ns, EventKind.REJECTION, reason, text, self.state)

    def _may_take_control(self, now_ns: int, user: str) -> bool:
        """Control changes hands only after a release or after the controller's link was lost: its commands
        stopped (LINK_LOST, STALE_COMMAND), or, held for another reason (an e-stop, absence), it has sent nothing
        at all, not even a ping, for `bedside.takeover_silence_ms` (its console or its link is gone)."""
        if self.controller_user in (None, user):
            return True
        return self.state is OperatingState.DISABLED or (
            self.state is OperatingState.PAUSED and (
                self.reason in (Reason.LINK_LOST, Reason.STALE_COMMAND)
                or now_ns - self._controller_heard_ns >= self.cfg.takeover_silence_ms * 1e6))

    def _console_estop_reset(self, now_ns: int, from_controller: bool, user: str) -> AckStatus:
        """A surgeon's e-stop reset clears the console's latch only if it comes from the controller, from the only key
        that latched it (a surgeon may undo their own press, not another's), or from a surgeon who may take control
        now (the controller's link is gone): another surgeon's reset must not change what the controller's next
        ENABLE meets (each peer in its own lane)."""
        if (not self.estop_console or from_controller or self._estop_raisers == {user}
                or self._may_take_control(now_ns, user)):
            return self.reset_estop(now_ns, "console", f"console ({user})")
        self.counters["estop_reset_refused"] += 1
        if self._due(now_ns, "estop_reset_refused"):
            self._audit(now_ns, f"{user} asked to reset the console's e-stop; refused while {self.controller_user} "
                                "is in control and its link is up (the controlling surgeon resets it)")
        return AckStatus.REJECTED_NOT_CONTROLLER

    def _audit(self, now_ns: int, text: str) -> None:
        log.warning("control: %s", text)
        self._emit(now_ns, EventKind.INFO, Reason.HANDOVER, text, self.state)

    def _enable(self, now_ns: int, peer: bytes, user: str, msg: Enable) -> AckStatus:
        if self.estop:
            return AckStatus.REJECTED_ESTOP
        if self.state is OperatingState.FAULT:
            return AckStatus.REJECTED_FAULT
        if not self._may_take_control(now_ns, user):
            self.counters["control_refused"] += 1
            if self._due(now_ns, AckStatus.REJECTED_NOT_CONTROLLER):
                self._audit(now_ns, f"{user} requests control; refused while {self.controller_user} is in control "
                                    "(handover: the controlling surgeon disengages first)")
            return AckStatus.REJECTED_NOT_CONTROLLER
        if self.controller_user != user:
            self._audit(now_ns, f"control granted to {user}" + (
                f" (was {self.controller_user}, {self.state.name} {self.reason.name})" if self.controller_user else ""))
        new_controller = (peer, user) != (self.controller, self.controller_user)
        if self.controller_user != user:
            self._control_since_ns = now_ns
        self.controller_user = user
        epoch = self._next_epoch
        self._next_epoch = self._next_epoch % (2**32 - 1) + 1
        self._enable_arms()
        self.gate.open(epoch, now_ns, msg, new_controller=new_controller)
        self.controller = peer
        self.watchdog.arm(now_ns, self.cfg.first_command_ms * 1_000_000)
        self.last_valid_ns = now_ns
        self._last_rejection = None
        self._frozen_at_ns = None
        self._transition(now_ns, SessionTrigger.ENABLE, Reason.NONE,
                         f"session epoch {epoch} granted; arms held in place")
        return AckStatus.ENABLED

    def _disable(self, now_ns: int, peer: bytes, user: str) -> AckStatus:
        if self.state is OperatingState.FAULT:  # arms already held; FAULT has no way out but a restart (SESSION)
            return AckStatus.REJECTED_FAULT
        if self.controller is not None and (peer != self.controller or user != self.controller_user):
            return AckStatus.REJECTED_NOT_CONTROLLER
        if self.controller_user is not None:
            self._audit(now_ns, f"control released by {user}")
        self._hold_all(disabled=True)
        self.gate.close()
        self.watchdog.disarm()
        self._transition(now_ns, SessionTrigger.DISABLE, Reason.CONSOLE_REQUEST, "console released control")
        return AckStatus.DISABLED

    def _servo(self, now_ns: int, from_controller: bool, msg: ServoCp) -> AckStatus:
        """Judge, apply, then accept (docs/protocol.md, "Check order at the bedside"): the gate, the watchdog and
        `last_valid_ns` learn only from the controller's applied commands, never from a refused frame or a peer."""
        if self.gate.epoch != NO_EPOCH and not from_controller:
            return AckStatus.REJECTED_EPOCH  # the session is the enabling connection's: judged no further
        status = self.gate.judge(now_ns, msg)
        if status is not _APPLIED:
            return AckStatus.REJECTED_ESTOP if self.estop else status
        if msg.arm_mask and not int(msg.flags) & _OPERATOR_PRESENT:  # int: IntFlag's own & builds a flag
            return AckStatus.REJECTED_OPERATOR_ABSENT
        if msg.arm_mask & ~self._mounted_mask or (msg.arm_mask & self._instrument_mask).bit_count() > N_HANDS:
            self._rate_limited_event(now_ns, AckStatus.REJECTED_ARM, Reason.NONE, self._arm_refusal(msg.arm_mask))
            return AckStatus.REJECTED_ARM
        commanded, setpoints, send_ns = self._arms_in[msg.arm_mask], msg.arms, msg.send_ns
        for i in commanded:
            bad = self._validate(i, setpoints[i], send_ns)
            if bad is not None:
                self._hold(i)
                self._commanded[i].limit_hit = True
                self._rate_limited_event(now_ns, bad[0], Reason.LIMIT, bad[1])
                return bad[0]
        for i in commanded:
            self.arms[i].servo_cp(setpoints[i])
            self._rates[i].accept(send_ns, setpoints[i])
            c = self._commanded[i]
            c.mode = _FOLLOWING
            c.limit_hit = False
        for i in self._arms_in[~msg.arm_mask & self._mounted_mask]:  # the arms left out hold where they are
            if self._commanded[i].mode is _FOLLOWING:
                self._hold(i)
        self.gate.accept(now_ns, msg)
        self.watchdog.feed(now_ns)
        self.last_valid_ns = now_ns
        self.last_applied = (msg.epoch, msg.seq, msg.send_ns, now_ns)
        self._last_rejection = None  # a freeze is blamed on rejections only if nothing valid came after them
        self.counters["applied"] += 1
        return _APPLIED

    def _arm_refusal(self, mask: int) -> str:
        """Why a servo_cp's arm mask is refused (REJECTED_ARM), in words: nothing of it moved."""
        named = [a.name for i, a in enumerate(self.arms) if mask >> i & 1]
        absent = [a.name for i, a in enumerate(self.arms) if mask >> i & 1 and not self._mounted[i]]
        if absent:
            return (f"servo_cp commands {', '.join(absent)}, not mounted at this bedside (bedside.arms = "
                    f"{self.cfg.arms}): refused, nothing moved")
        return (f"servo_cp commands {len(named)} instruments at once ({', '.join(named)}); a surgeon has "
                f"{N_HANDS} hands: refused, nothing moved")

    def _station_joined(self, now_ns: int, peer: bytes, user: str) -> None:
        """Who is in control and for how long, as an INFO (HANDOVER) event, for a station that does not know: its
        first ping on a connection, or a ping whose header epoch is not the current session's (the station puts
        the epoch of the last such answer it saw there; telemetry events can be dropped for a slow subscriber).
        At most one a second per connection. So a station started mid-operation, or one that missed a grant,
        shows who is in control."""
        if len(self._stations) >= 64:  # connections come and go; a bound, not a history
            self._stations.clear()
        self._stations.add(peer)
        if self.controller_user is None or self.state is OperatingState.DISABLED:
            text = f"{user} asked who is in control: nobody"
        else:
            text = (f"{user} asked who is in control: {self.controller_user}, for "
                    f"{(now_ns - self._control_since_ns) / 1e9:.1f} s")
        self._emit(now_ns, EventKind.INFO, Reason.HANDOVER, text, self.state)

    def _station_estop(self, now_ns: int, user: str, msg: EStop) -> AckStatus:
        """The bedside station's e-stop (the local latch) and its reset, which must say why: the reason is in
        the RESET event, so in the event log and the recording."""
        who = f"the bedside station ({user})"
        if msg.engage:
            return self.raise_estop(now_ns, "local", user, who)
        reason = msg.reason.strip()
        if not reason:
            return AckStatus.REJECTED_NO_REASON
        if self.estop_console and self._may_take_control(now_ns, user):
            # The console's latch of a controller that is gone (silent for bedside.takeover_silence_ms): the team
            # at the bedside clears it too, or nobody could take over (docs/operations.md, takeover).
            self.reset_estop(now_ns, "console", f"console (its controller is gone: cleared by {who}), reason: {reason}")
        return self.reset_estop(now_ns, "local", f"{who}, reason: {reason}")

    def raise_estop(self, now_ns: int, source: str, user: str = "", by: str = "") -> AckStatus:
        """Latch an e-stop from `source` ('local' = the bedside team's, else the console's); arms hold at once.
        `by`: who, in the event's words (default: the bedside's own button for 'local', else `source`)."""
        if source == "local":
            self.estop_local = True
        else:
            self.estop_console = True
            if user:
                self._estop_raisers.add(user)
        by = by or ("the bedside e-stop" if source == "local" else source)
        self._freeze(now_ns, Reason.ESTOP, f"e-stop raised by {by}")
        self._transition(now_ns, SessionTrigger.ESTOP, Reason.ESTOP, f"e-stop raised by {by}; arms held")
        return AckStatus.ESTOP_LATCHED

    def reset_estop(self, now_ns: int, source: str, by: str = "") -> AckStatus:
        """Clear `source`'s latch only; motion still needs a new ENABLE from the surgeon."""
        if source == "local":
            self.estop_local = False
        else:
            self.estop_console = False
            self._estop_raisers.clear()
        by = by or ("the bedside e-stop" if source == "local" else source)
        text = f"e-stop reset by {by}" + ("; still latched elsewhere" if self.estop else "")
        log.warning("%s", text)
        self._emit(now_ns, EventKind.INFO, Reason.RESET, text, self.state)
        return AckStatus.ESTOP_LATCHED if self.estop else AckStatus.DISABLED

    # ------------------------------------------------------------------ time

    @property
    def last_applied_seq(self) -> int:
        """The sequence number of the last servo_cp applied (0 before any), as TELEMETRY reports it."""
        return self.last_applied[1]

    def next_deadline_ns(self) -> int | None:
        """When `check_watchdog` must run at the latest: the watchdog's deadline or, with drivers that watch their
        own service, the moment they would hold on their own (the loop stalled), whichever comes first."""
        dl = self.watchdog.deadline_ns()
        if self._driver_bound_ns is None:
            return dl
        held_at = self._last_tick_ns + self._driver_bound_ns
        return held_at if dl is None or held_at < dl else dl  # min() without a builtin call: every iteration

    def tick(self, now_ns: int) -> None:
        """Watchdog first (so a stalled bedside freezes before it reads a backlog), then arm motion."""
        self.check_watchdog(now_ns)
        self.advance(now_ns)

    def check_watchdog(self, now_ns: int) -> None:
        """Hold everything if an arm's driver held on its own or failed, or the session went quiet. Must run before
        the frames that piled up are read. The drivers first: after a stall of the loop, the cause is the stall,
        not the silence it made."""
        self._check_drivers(now_ns, now_ns - self._last_tick_ns)
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
            self._transition(now_ns, SessionTrigger.PAUSE, reason, text)

    def advance(self, now_ns: int) -> None:
        """Integrate the arms' motion up to `now_ns` (this services their drivers' watchdogs), then act on what the
        drivers report."""
        gap = now_ns - self._last_tick_ns
        self._last_tick_ns = now_ns
        dt = gap / 1e9
        if dt > 0.01:  # min(·, 0.01) without a builtin call: every tick
            dt = 0.01
        for arm in self.arms:
            arm.advance(dt)
        self._check_drivers(now_ns, gap)

    def _check_drivers(self, now_ns: int, gap_ns: int) -> None:
        """A driver reporting FAULT holds every arm and makes the agent FAULT. A driver that held on its own (its
        watchdog: the loop did not service it in time, `gap_ns` since the last tick) holds every arm and ends an
        ENABLED session (PAUSED, Reason.FAULT: the surgeon engages again); each such hold is reported once."""
        if self.state is OperatingState.FAULT:
            return
        held = []
        for arm, c in zip(self.arms, self._commanded, strict=True):
            st = arm.operating_state()
            if st.state is OperatingState.FAULT:
                text = f"{arm.name} arm driver fault: {st.fault or 'no cause given'}; every arm held"
                self._freeze(now_ns, Reason.FAULT, text)
                self._transition(now_ns, SessionTrigger.FAULT, Reason.FAULT, text)
                return
            if st.held != c.held_reported:
                c.held_reported = st.held
                if st.held:
                    held.append(f"{arm.name} {st.held}")
        if not held:
            return
        self.counters["driver_holds"] += 1
        text = f"bedside loop stalled ({gap_ns / 1e6:.1f} ms since its last tick): {'; '.join(held)}; every arm held"
        if self.state is OperatingState.ENABLED:
            self._freeze(now_ns, Reason.FAULT, text)
            self._transition(now_ns, SessionTrigger.PAUSE, Reason.FAULT, text)
        else:  # nothing was following: the stall is reported, the state stays
            log.warning("%s", text)
            self._emit(now_ns, EventKind.INFO, Reason.FAULT, text, self.state)

    def _arm_telemetry(self, arm: ArmDriver, c: _Commanded, mounted: bool) -> ArmTelemetry:
        st = arm.operating_state()
        flags = ((ArmFlags.HOMED if st.is_homed and mounted else ArmFlags.NONE)
                 | (ArmFlags.BUSY if st.is_busy else ArmFlags.NONE)
                 | (ArmFlags.LIMIT if c.limit_hit else ArmFlags.NONE))
        return ArmTelemetry(c.mode, flags, arm.measured_cp(), arm.setpoint_cp(), arm.measured_js(), arm.measured_cf())

    def scene(self) -> list[tuple[int, CartesianSetpoint, Vec3]]:
        """What the endoscope's renderer draws of each arm, in wire order: mode, measured_cp, measured_cf (the
        socket layer writes it to the video process after every tick: transport/bedside_state.py)."""
        return [(c.mode, a.measured_cp(), a.measured_cf()) for a, c in zip(self.arms, self._commanded, strict=True)]

    def telemetry(self, now_ns: int) -> bytes:
        self.last_telemetry_seq = seq = self._seq()
        return codec.encode(
            Telemetry(
                self.epoch if self.epoch != NO_EPOCH else 0,
                seq,
                now_ns,
                self.state,
                self.reason,
                self.estop,
                self.last_applied_seq,
                tuple(self._arm_telemetry(a, c, m) for a, c, m in zip(self.arms, self._commanded, self._mounted,
                                                                     strict=True)),
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

    def drain_freezes(self) -> list[Freeze]:
        """Freezes since the last call, for the event log and the recording (`freezes` keeps every one)."""
        new = self.freezes[self._freezes_drained:]
        self._freezes_drained = len(self.freezes)
        return new

    def summary(self) -> dict[str, object]:
        """Counters, every freeze and the final state: `teleop bedside --summary`."""
        return {"counters": dict(self.counters), "freezes": [f.summary() for f in self.freezes],
                "state": self.state.name}

    # ------------------------------------------------------------------ what the socket layer reports

    def on_bad_envelope(self) -> None:
        """A control-socket message that is not [peer, frame]: a decode error, never handled."""
        self.counters["decode_errors"] += 1
        self.counters["multipart_frames"] += 1

    def on_ack_dropped(self) -> None:
        """An ack the socket could not queue (that console's queue is full, or it is gone)."""
        self.counters["ack_dropped"] += 1

    def on_auth_report(self, now_ns: int, refusals: Iterable[Mapping[str, str]], counters: Mapping[str, int]) -> None:
        """What the ZAP handler saw: each refused handshake becomes an event; its counters are running totals
        and replace ours of the same name."""
        for r in refusals:
            self.record_refusal(now_ns, r["domain"], r["why"], r["fingerprint"])
        for k, v in counters.items():
            self.counters[k] = v

    def on_loop_health(self, now_ns: int, counters: Mapping[str, int], overrun: str | None = None) -> None:
        """The server loop's health (safety/loop_health.py): its `loop_*` figures replace ours of the same name,
        and an over-bound tick (`overrun`: its text, already logged there; at most one a second) becomes an
        INFO event with reason LOOP_OVERRUN. Nothing else changes: the watchdog judges what a stall did."""
        for k, v in counters.items():
            self.counters[k] = v
        if overrun is not None:
            self._emit(now_ns, EventKind.INFO, Reason.LOOP_OVERRUN, overrun, self.state)

    def revocations_due(self, now_ns: int) -> bool:
        """The list of revoked keys is older than REVOCATION_REFRESH_NS: the socket layer reads the registry and
        calls `set_revoked`. So a live connection whose key is revoked is refused from then on, message by
        message, without reading the registry for every message on the control path."""
        return now_ns - self._revoked_at_ns > REVOCATION_REFRESH_NS

    def set_revoked(self, now_ns: int, names: Iterable[str]) -> None:
        """The names of the revoked clients, as read from the key registry at `now_ns`."""
        self._revoked = frozenset(names)
        self._revoked_at_ns = now_ns

    def refuse_revoked(self, user: str) -> bool:
        """True, and counted, when `user` (`role:name`) holds a revoked key: the frame is dropped unread."""
        if user.partition(":")[2] in self._revoked:
            self.counters["revoked_messages"] += 1
            return True
        return False
