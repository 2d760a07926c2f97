"""The on-site team's station without widgets: what `teleop station` shows and what its buttons may do.

Pure in the style of h11 (no Qt, no sockets, no clock): the Qt station (console/ui/station.py) feeds it the
bedside's telemetry stream and the acks of its own control connection with `now_ns`, and paints what
`refresh` returns. It builds on the monitor's model (console/monitor_model.py) and adds:

* who is in control and since when, from the bedside's audited handover events ("control granted to …",
  "control released by …"; bedside/agent.py), and which e-stop latch is set, from its e-stop events;
* guidance for each state in plain words (`Guidance`): what the team sees and what to do now;
* the e-stop button's guard (`HoldToActivate`: it fires only after being held `hold_s`, a brush does
  nothing) and the reset's rule (a reason is required; the bedside refuses a reset without one too);
* the e-stop path: the station pings the bedside on its control connection; no answer for `PATH_TIMEOUT_S`
  means its button cannot reach the bedside, which it says;
* the event log's follow rule (`LogFollow`): it shows the newest line unless the user scrolled back;
* the conditions its alarms sound for (console/alarm_sound.py).

The station's control key has the role `station` (transport/security.py): the bedside accepts from it a
PING and an ESTOP, raise or reset, nothing else; the reset clears only the bedside's own (local) latch.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from console.alarm_sound import Condition
from console.indicators import Alarm, Severity
from console.monitor_model import REASON_WORDS, LogLine, MonitorModel, MonitorView, VideoStatus, event_severity
from transport import codec
from transport.messages import Ack, AckStatus, EStop, Event, EventKind, OperatingState, Ping, Reason

ESTOP_HOLD_S = 1.0
"""How long the station's e-stop button must be held before it fires: a brush or a misclick does nothing."""
PING_S = 0.5
PATH_TIMEOUT_S = 2.0
"""No answer on the control connection for this long: the station's e-stop button cannot reach the bedside."""
REASON_MIN_CHARS = 5


_GRANTED = re.compile(r"^control granted to (\S+)")
_RELEASED = re.compile(r"^control released by (\S+)")
_JOINED = re.compile(r"^\S+ asked who is in control: (?:nobody|(\S+), for ([\d.]+) s)")
_REFUSED = re.compile(r"^(\w+) seq \d+ from (\S+) refused: (\w+)$")
_REFUSAL_WORDS = {"REJECTED_ESTOP": "the e-stop is latched", "REJECTED_NOT_CONTROLLER": "another surgeon is in control",
                  "REJECTED_ROLE": "its key may not do that", "REJECTED_FAULT": "the bedside is in fault",
                  "REJECTED_OPERATOR_ABSENT": "the surgeon is not present", "REJECTED_NO_REASON": "no reason given"}
_RAISED = re.compile(r"^e-stop raised by (the bedside|console)")
_RESET = re.compile(r"^e-stop reset by (the bedside|console)")


def reset_reason_problem(text: str) -> str | None:
    """Why `text` cannot be the reason of an e-stop reset (None if it can): it is audited, so it must say
    something, and it must fit the wire (codec.MAX_ESTOP_REASON_BYTES)."""
    t = text.strip()
    if len(t) < REASON_MIN_CHARS:
        return f"enter why it is safe to reset (at least {REASON_MIN_CHARS} characters): it goes into the audit"
    if len(t.encode("utf-8")) > codec.MAX_ESTOP_REASON_BYTES:
        return f"the reason is too long: at most {codec.MAX_ESTOP_REASON_BYTES} bytes"
    return None


class HoldToActivate:
    """A button that acts only when held for `hold_s`: `press`, `release`, and `poll(now)` returns True once
    per press, when the hold is complete. Releasing early cancels (and says so)."""

    def __init__(self, hold_s: float = ESTOP_HOLD_S) -> None:
        if not 0.2 <= hold_s <= 5.0:
            raise ValueError(f"hold time {hold_s} s outside 0.2..5 s")
        self.hold_ns = int(hold_s * 1e9)
        self._since: int | None = None
        self._fired = False

    @property
    def pressed(self) -> bool:
        return self._since is not None

    def press(self, now_ns: int) -> None:
        if self._since is None:
            self._since, self._fired = now_ns, False

    def release(self, now_ns: int) -> bool:
        """Button up; True if it was released before it fired (a cancelled press)."""
        early = self._since is not None and not self._fired and now_ns - self._since < self.hold_ns
        self._since = None
        return early

    def progress(self, now_ns: int) -> float:
        """0..1 of the hold done (0 when not pressed)."""
        if self._since is None:
            return 0.0
        return min(1.0, max(0.0, (now_ns - self._since) / self.hold_ns))

    def poll(self, now_ns: int) -> bool:
        if self._since is None or self._fired or now_ns - self._since < self.hold_ns:
            return False
        self._fired = True
        return True


class LogFollow:
    """The event log follows the newest line unless the user scrolled away from the bottom; scrolling back to
    the bottom follows again. `unseen` counts lines added while not following."""

    def __init__(self) -> None:
        self.following = True
        self.unseen = 0

    def scrolled(self, value: int, maximum: int) -> None:
        self.following = value >= maximum
        if self.following:
            self.unseen = 0

    def added(self, n: int = 1) -> bool:
        """`n` lines were added; True if the view must jump to the newest."""
        if not self.following:
            self.unseen += n
        return self.following


@dataclass(frozen=True, slots=True)
class Guidance:
    title: str
    text: str  # what this means and what to do now
    severity: Severity


@dataclass(frozen=True, slots=True)
class StationView:
    monitor: MonitorView
    control: str  # who is in control and since when
    guidance: Guidance
    conditions: frozenset[Condition]  # what the alarms sound for
    estop_latched: bool
    may_reset: bool  # the bedside's own latch is set (a station may reset only that one)
    path_ok: bool  # the e-stop button reaches the bedside


class StationModel(MonitorModel):
    """The monitor's model plus control, e-stop latches, the station's own control connection and guidance."""

    def __init__(self, identity: str = "station", timeout_s: float | None = None) -> None:
        super().__init__() if timeout_s is None else super().__init__(timeout_s)
        self.identity = identity
        self.controller: str | None = None
        self.controller_since_ns: int | None = None  # local clock
        self.previous_controller: str | None = None
        self.control_epoch = 0  # the session whose controller this station knows (sent in its pings)
        self._adopt_epoch = False
        self._state: OperatingState | None = None
        self._state_since_ns: int | None = None  # when telemetry last changed operating state (local clock)
        self.local_latch: bool | None = None  # None: not seen an e-stop event since this station started
        self.console_latch: bool | None = None
        self._seq = 0
        self._last_answer_ns: int | None = None
        self._last_ping_ns: int | None = None
        self._pending: dict[int, str] = {}  # seq of our ESTOP -> what it asked for

    # ------------------------------------------------------------------ telemetry stream
    def receive(self, data: bytes, now_ns: int) -> list[LogLine]:
        """As the monitor's, with the bedside's events worded for the team (`station_event_line`)."""
        lines = super().receive(data, now_ns)
        t = self.telemetry
        if t is not None and self.telemetry_rx_ns == now_ns:
            if t.operating_state is not self._state:
                self._state, self._state_since_ns = t.operating_state, now_ns
            if t.epoch == 0:  # no session: nothing to learn (control changes only with a new epoch)
                self.control_epoch = 0
            elif self._adopt_epoch:  # the grant seen: this is its session
                self.control_epoch, self._adopt_epoch = t.epoch, False
        if not lines:
            return lines
        ev = self.events[-1]
        self._learn(ev, now_ns)
        return [LogLine(*station_event_line(ev))]

    def _learn(self, ev: Event, now_ns: int) -> None:
        text = ev.text
        if ev.kind is EventKind.INFO and ev.reason is Reason.HANDOVER:
            if (m := _GRANTED.match(text)) is not None:
                self._adopt_epoch = True
                self.previous_controller = self.controller
                self.controller = m.group(1)
                self.controller_since_ns = ev.send_ns - self.offset_ns
            elif (m := _RELEASED.match(text)) is not None and m.group(1) == self.controller:
                self.controller, self.controller_since_ns = None, ev.send_ns - self.offset_ns
            elif (m := _JOINED.match(text)) is not None:  # a station asked: the bedside says who controls
                self.control_epoch = ev.epoch
                if m.group(1) is None:
                    self.controller = None
                elif m.group(1) != self.controller:
                    self.previous_controller = self.controller
                    self.controller = m.group(1)
                    self.controller_since_ns = ev.send_ns - self.offset_ns - int(float(m.group(2)) * 1e9)
        elif (m := _RAISED.match(text)) is not None:
            if m.group(1) == "console":
                self.console_latch = True
            else:
                self.local_latch = True
        elif ev.reason is Reason.RESET and (m := _RESET.match(text)) is not None:
            if m.group(1) == "console":
                self.console_latch = False
            else:
                self.local_latch = False

    def alarms_for(self, now_ns: int, video: VideoStatus) -> list[Alarm]:
        """The monitor's alarms, without ARMS HELD beside E-STOP (the e-stop is why they are held)."""
        alarms = super().alarms_for(now_ns, video)
        if any(a.key == "estop" for a in alarms):
            alarms = [a for a in alarms if a.key != "paused"]
        return alarms

    # ------------------------------------------------------------------ the station's control connection
    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def ping_due(self, now_ns: int) -> bytes | None:
        """A PING to send now (every PING_S), or None. Its header epoch is that of the last "who is in control"
        answer: the bedside answers again when the session changed since (bedside/agent.py `_station_joined`)."""
        if self._last_ping_ns is not None and now_ns - self._last_ping_ns < PING_S * 1e9:
            return None
        self._last_ping_ns = now_ns
        return codec.encode(Ping(self.control_epoch, self._next(), now_ns))

    def estop(self, now_ns: int) -> bytes:
        seq = self._next()
        self._pending[seq] = "e-stop"
        return codec.encode(EStop(0, seq, now_ns, True))

    def reset(self, now_ns: int, reason: str) -> bytes:
        """The reset request; ValueError (the message says what to enter) if the reason will not do."""
        problem = reset_reason_problem(reason)
        if problem is not None:
            raise ValueError(problem)
        seq = self._next()
        self._pending[seq] = "reset"
        return codec.encode(EStop(0, seq, now_ns, False, reason.strip()))

    def on_answer(self, data: bytes, now_ns: int) -> list[tuple[str, Severity]]:
        """An ACK on the station's control connection; returns log lines for the answers to our requests."""
        try:
            msg = codec.decode(data)
        except codec.ProtocolError as exc:
            self.decode_errors += 1
            self.last_error = f"malformed answer from the bedside: {exc}"
            return []
        if not isinstance(msg, Ack):
            return []
        self._last_answer_ns = now_ns
        asked = self._pending.pop(msg.echo_seq, None)
        if asked is None:
            return []
        st = msg.status
        if asked == "e-stop":
            if st is AckStatus.ESTOP_LATCHED:
                self.local_latch = True
                return [("E-STOP latched at the bedside: every arm held", Severity.CRITICAL)]
            return [(f"E-STOP NOT ACCEPTED by the bedside ({_refusal(st)})", Severity.CRITICAL)]
        if st is AckStatus.DISABLED:
            self.local_latch = False
            return [("e-stop reset at the bedside: the surgeon may engage again", Severity.WARNING)]
        if st is AckStatus.ESTOP_LATCHED:
            self.local_latch = False
            return [("bedside e-stop reset; the surgeon's console e-stop is still latched: the surgeon resets it",
                     Severity.WARNING)]
        return [(f"e-stop reset refused by the bedside ({_refusal(st)})", Severity.WARNING)]

    def path_ok(self, now_ns: int) -> bool:
        return self._last_answer_ns is not None and now_ns - self._last_answer_ns <= PATH_TIMEOUT_S * 1e9

    # ------------------------------------------------------------------ out
    def control_text(self, now_ns: int, wall_now_s: float) -> str:
        """"surgeon-2 since 14:03:27 (12 min)", "nobody", or what is known when the grant came before we started."""
        t = self.telemetry
        if t is None:
            return "unknown (no contact with the bedside)"
        if self.controller is None:
            if t.operating_state is OperatingState.DISABLED:
                return "nobody: no surgeon has control"
            return "a surgeon (who: not known here, control was granted before this station started)"
        name = self.controller.partition(":")[2] or self.controller
        if t.operating_state is not OperatingState.ENABLED and self._state_since_ns is not None:
            return f"nobody is driving: arms held {_since(now_ns, self._state_since_ns, wall_now_s)}; " \
                   f"last in control: {name}"
        since = self.controller_since_ns
        return name if since is None else f"{name} {_since(now_ns, since, wall_now_s)}"

    def refresh_station(self, now_ns: int, video: VideoStatus, wall_now_s: float,
                        voice_lost: bool = False) -> StationView:
        view = self.refresh(now_ns, video)
        t = self.telemetry
        estop = t is not None and t.estop and "telemetry" not in {a.key for a in view.alarms}
        g = self.guidance(now_ns, view, wall_now_s)
        conds = set()
        keys = {a.key for a in view.alarms}
        for key, cond in (("estop", Condition.ESTOP), ("link", Condition.LINK_LOST), ("fault", Condition.DEVICE_FAULT),
                          ("video", Condition.VIDEO_STALE), ("telemetry", Condition.NO_TELEMETRY)):
            if key in keys:
                conds.add(cond)
        if "paused" in keys and t is not None:
            conds.add(Condition.LATENCY_HOLD if t.reason is Reason.LATENCY else Condition.ARMS_HELD)
        if voice_lost:
            conds.add(Condition.VOICE_LOST)
        # the station resets only the bedside's own latch: offered when that one is set, or when it may be (this
        # station started after the e-stop) and the surgeon's is not known to be the one
        may_reset = estop and (self.local_latch is True or (self.local_latch is None and not self.console_latch))
        if t is not None:
            view.fields["session"] = _session_words(t)
        return StationView(view, self.control_text(now_ns, wall_now_s), g, frozenset(conds), estop, may_reset,
                           self.path_ok(now_ns))

    def guidance(self, now_ns: int, view: MonitorView, wall_now_s: float) -> Guidance:
        t = self.telemetry
        keys = {a.key for a in view.alarms}
        if t is None or "telemetry" in keys:
            return Guidance("NO CONTACT WITH THE BEDSIDE",
                            "This station does not show the current state of the arms. The bedside holds the arms on "
                            "its own if the surgeon's link fails. Check the bedside computer and this station's "
                            "network; the e-stop on the cart works without this station.", Severity.CRITICAL)
        if t.estop:
            if self.console_latch and not self.local_latch:
                return Guidance("E-STOP — ARMS HELD",
                                "The surgeon pressed E-STOP at their console: every arm is held and nobody can engage. "
                                "Only the surgeon resets it, from their console; then they engage again.",
                                Severity.CRITICAL)
            return Guidance("E-STOP — ARMS HELD",
                            "The emergency stop is latched at the bedside: every arm is held and no surgeon can "
                            "engage. Make the patient and the instruments safe. When it is safe to go on, press "
                            "Reset e-stop, enter why, and confirm; the surgeon then engages again.", Severity.CRITICAL)
        st, reason = t.operating_state, t.reason
        if st is OperatingState.FAULT:
            return Guidance("BEDSIDE FAULT — ARMS HELD",
                            "A device fault stopped every arm. Nobody can engage until the bedside is restarted. "
                            "Read the bedside's message in the event log; if the instruments must come out now, "
                            "follow the conversion procedure (docs/operations.md).", Severity.CRITICAL)
        if st is OperatingState.PAUSED and reason in (Reason.LINK_LOST, Reason.STALE_COMMAND):
            return Guidance("LINK TO THE SURGEON LOST — ARMS HELD",
                            "Every arm is held where it is; nothing moves.\n"
                            "1. Keep clear; do not move the instruments by hand.\n"
                            "2. Call the remote surgeon.\n"
                            "3. If the link is not back within the agreed time, the bedside surgeon takes over: at "
                            "the bedside console press Present, then Engage — control passes to them and is "
                            "recorded.\n"
                            "4. If the patient is at risk, hold E-STOP.",
                            Severity.CRITICAL)
        if st is OperatingState.PAUSED:
            return Guidance("ARMS HELD",
                            f"Every arm is held: {REASON_WORDS.get(reason, reason.name.lower())}. Motion resumes only "
                            "when the surgeon engages again. Hold E-STOP if the patient is at risk.", Severity.WARNING)
        if st is OperatingState.ENABLED:
            took_over = self.previous_controller is not None and self.previous_controller != self.controller
            title = "TAKEN OVER — " if took_over else ""
            return Guidance(f"{title}SURGEON IN CONTROL",
                            (f"{(self.controller or '').partition(':')[2]} took over from "
                             f"{(self.previous_controller or '').partition(':')[2]} (recorded in the audit). "
                             if took_over else "")
                            + "The arms follow the surgeon's hands. To stop every arm at once, press and hold "
                            f"E-STOP for {ESTOP_HOLD_S:g} s.", Severity.INFO)
        return Guidance("NO SURGEON IN CONTROL",
                        "The arms are not under anyone's control and do not move. A surgeon takes control by engaging "
                        "at a console.", Severity.INFO)


def station_event_line(ev: Event) -> tuple[str, Severity]:
    """A bedside event for the station's log, in the team's words: what happened, then the bedside's sentence."""
    if ev.kind is EventKind.INFO and ev.reason is Reason.HANDOVER:  # "control granted to …": it says itself
        return ev.text, event_severity(ev.reason)
    if ev.kind is EventKind.STATE_CHANGE:
        head = {OperatingState.ENABLED: "surgeon engaged", OperatingState.DISABLED: "control released",
                OperatingState.PAUSED: "ARMS HELD", OperatingState.FAULT: "BEDSIDE FAULT"}[ev.to_state]
        if ev.to_state in (OperatingState.PAUSED, OperatingState.FAULT):
            head += f" ({REASON_WORDS.get(ev.reason, ev.reason.name.lower())})"
    elif ev.kind is EventKind.REJECTION:
        m = _REFUSED.match(ev.text)
        if m is not None:  # "ServoCp seq 6603 from surgeon:x refused: REJECTED_ESTOP"
            why = _REFUSAL_WORDS.get(m.group(3), m.group(3).removeprefix("REJECTED_").replace("_", " ").lower())
            return f"bedside refused a command from {m.group(2)} ({why})", event_severity(ev.reason)
        head = "bedside refused"
    else:
        head = "bedside"
    return f"{head}: {ev.text}", event_severity(ev.reason)


def _session_words(t) -> str:
    """The HUD's bedside field in the team's words (the monitor's shows the wire's names)."""
    st = t.operating_state
    text = {OperatingState.ENABLED: "bedside: following the surgeon",
            OperatingState.DISABLED: "bedside: no surgeon in control",
            OperatingState.FAULT: "bedside: FAULT, arms held"}.get(st)
    if text is None:
        text = f"bedside: arms held ({REASON_WORDS.get(t.reason, t.reason.name.lower())})"
    return text + (" · E-STOP latched" if t.estop else "")


def _refusal(st: AckStatus) -> str:
    return {AckStatus.REJECTED_ROLE: "this station's key may not do that: it needs the role 'station' "
                                     "(teleop keys add NAME --role station)",
            AckStatus.REJECTED_NO_REASON: "a reason is required"}.get(st, st.name.lower().replace("_", " "))


def _since(now_ns: int, since_ns: int, wall_now_s: float) -> str:
    """"since 14:03:27 (12 min)": a local monotonic time as wall-clock time (the wall time is passed in)."""
    ago = max(0.0, (now_ns - since_ns) / 1e9)
    return f"since {time.strftime('%H:%M:%S', time.localtime(wall_now_s - ago))} ({_duration(ago)})"


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min"
    return f"{s // 3600:.0f} h {s % 3600 // 60:.0f} min"
