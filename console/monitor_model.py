"""The on-site team's monitor without widgets: the bedside's telemetry bytes and the time in; what the
monitor shows out (HUD fields, one line per arm, alarms raised and cleared, event-log lines).

Pure in the style of h11: no Qt, no sockets, no clock of its own. The Qt monitor (console/ui/monitor.py)
passes every frame of its telemetry SUB to `receive` with `time.monotonic_ns()` and paints what `refresh`
returns; the on-site station builds on the same model, and tests drive it with encoded bytes and a fake now.

What it shows comes from the bedside itself: operating state and reason, e-stop, each arm's mode and limit
flag, the bedside's events and counters. It has no command round trip, so instead of RTT it shows the
telemetry delay beyond the best recently seen (transport.clock.DelayBaseline), and it estimates the clock
offset from telemetry send times, biased by the best one-way delay, which makes picture ages read slightly
old, never young. The picture's state comes from the video receiver, outside (`VideoStatus`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from console.indicators import Alarm, ArmLine, Severity, alarm_changes, loop_figures, loop_indicator
from safety.loop_health import RECENT_NS
from transport import codec
from transport.clock import DelayBaseline
from transport.messages import (
    ARM_NAMES,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    Counters,
    Event,
    OperatingState,
    Reason,
    Telemetry,
)

TELEMETRY_TIMEOUT_S = 0.25
"""No telemetry for this long (the bedside publishes at 200 Hz): NO TELEMETRY, the monitor is not current."""
RATE_SILENCE_S = 1.0
"""The telemetry rate reads 0 Hz once nothing arrived for this long."""
RATE_SAMPLES = 400
EVENTS_KEPT = 2000
"""Bedside events kept for a reader (the event log widget keeps as many lines)."""
INFO_REASONS = frozenset({Reason.NONE, Reason.CONSOLE_REQUEST, Reason.STARTUP})
CRITICAL_REASONS = frozenset({Reason.LINK_LOST, Reason.ESTOP, Reason.FAULT})
REASON_WORDS: dict[Reason, str] = {
    Reason.NONE: "no reason given",
    Reason.LINK_LOST: "the link to the surgeon was lost",
    Reason.OPERATOR_ABSENT: "the surgeon left the console",
    Reason.ESTOP: "emergency stop",
    Reason.FAULT: "a device fault",
    Reason.LIMIT: "an instrument reached a limit",
    Reason.VIDEO_STALE: "the surgeon's picture froze",
    Reason.LATENCY: "the network delay is too high",
    Reason.CONSOLE_REQUEST: "the surgeon released control",
    Reason.STARTUP: "starting up",
    Reason.STALE_COMMAND: "the surgeon's commands arrive too late",
    Reason.GUI_LOST: "the surgeon's window stopped responding",
    Reason.HANDOVER: "control changing hands",
    Reason.RESET: "e-stop reset",
    Reason.SECURITY: "a security refusal",
    Reason.LOOP_OVERRUN: "a control loop stalled",
}
"""Every reason in the team's words (never the wire's names)."""


@dataclass(frozen=True, slots=True)
class VideoStatus:
    """The picture on this monitor's screen, as its video receiver judges it (the model has no video)."""

    stale: bool = True
    reason: str = ""
    age_ms: float | None = None
    fps: float = 0.0


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line for the event log."""

    text: str
    severity: Severity = Severity.INFO


@dataclass(frozen=True, slots=True)
class MonitorView:
    """Everything the monitor paints at one refresh."""

    alarms: tuple[Alarm, ...]  # most severe first
    raised: tuple[Alarm, ...]  # since the previous refresh: new, or more severe
    cleared: tuple[Alarm, ...]
    fields: dict[str, str]  # HUD field key -> text
    warn: dict[str, Severity]  # HUD field key -> colour grade
    arms: tuple[ArmLine, ...]

    @property
    def log(self) -> list[LogLine]:
        """The alarm changes as event-log lines, raised first."""
        return [LogLine(f"ALARM {a.title}: {a.text}", a.severity) for a in self.raised] + \
               [LogLine(f"cleared: {a.title}") for a in self.cleared]


def event_severity(reason: Reason) -> Severity:
    """How a bedside event is graded in the log: routine reasons are information, the ones that hold every
    arm (link lost, e-stop, fault) critical, any other hold or refusal a warning."""
    if reason in CRITICAL_REASONS:
        return Severity.CRITICAL
    return Severity.INFO if reason in INFO_REASONS else Severity.WARNING


def event_line(ev: Event) -> LogLine:
    return LogLine(f"bedside {ev.kind.name}: {ev.from_state.name} → {ev.to_state.name} ({ev.reason.name}) {ev.text}",
                   event_severity(ev.reason))


def monitor_alarms(telemetry: Telemetry | None, silence_s: float, timeout_s: float, picture_stale: bool,
                   picture_reason: str = "") -> list[Alarm]:
    """Alarms for the on-site team, most severe first, from the bedside's newest telemetry, how long ago it
    arrived, and the picture's state."""
    out: list[Alarm] = []
    if telemetry is None or silence_s > timeout_s:
        out.append(Alarm("telemetry", Severity.CRITICAL, "NO TELEMETRY",
                         "nothing from the bedside" + ("" if telemetry is None else f" for {silence_s:.1f} s")
                         + ": this monitor does not show the current state"))
    else:
        if telemetry.estop:
            out.append(Alarm("estop", Severity.CRITICAL, "E-STOP", "emergency stop latched at the bedside"))
        st, reason = telemetry.operating_state, telemetry.reason
        if st is OperatingState.FAULT:
            out.append(Alarm("fault", Severity.CRITICAL, "BEDSIDE FAULT", f"bedside fault: {reason.name}"))
        elif st is OperatingState.PAUSED and reason is Reason.LINK_LOST:
            out.append(Alarm("link", Severity.CRITICAL, "LINK LOST",
                             "the surgeon's console went silent: the bedside holds every arm"))
        elif st is OperatingState.PAUSED:
            out.append(Alarm("paused", Severity.WARNING, "ARMS HELD",
                             f"every arm held: {REASON_WORDS.get(reason, reason.name.lower())}"))
    if picture_stale:
        out.append(Alarm("video", Severity.CRITICAL, "VIDEO STALE", picture_reason or "the picture is not live"))
    out.sort(key=lambda a: -a.severity)
    return out


def monitor_arm_lines(telemetry: Telemetry | None) -> list[ArmLine]:
    """One line per arm in wire order: the bedside's mode, its limit flag, and the reason it holds."""
    if telemetry is None:
        return []
    out = []
    for name, arm in zip(ARM_NAMES, telemetry.arms, strict=False):
        mode = arm.mode.name
        text = mode.lower()
        sev = Severity.INFO
        if arm.flags & ArmFlags.LIMIT:
            text += " · at a limit"
            sev = Severity.WARNING
        if arm.mode is ArmMode.HOLDING and telemetry.operating_state is OperatingState.PAUSED:
            text = f"held: {REASON_WORDS.get(telemetry.reason, telemetry.reason.name.lower())}"
            sev = Severity.CRITICAL
        out.append(ArmLine(name, mode, text, sev))
    return out


class MonitorModel:
    """The bedside as the monitor knows it. `receive` each telemetry frame, `refresh` to paint.

    A frame that does not decode is counted (`decode_errors`, `last_error` names the cause) and otherwise
    ignored: the monitor keeps showing the last good state, and NO TELEMETRY follows if nothing good comes.
    Decodable messages that do not belong on the telemetry stream are ignored.
    """

    def __init__(self, timeout_s: float = TELEMETRY_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.telemetry: Telemetry | None = None
        self.telemetry_rx_ns: int | None = None  # local time the newest telemetry arrived
        self.counters: dict[str, int] = {}
        self.events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.offset_ns = 0  # bedside clock − this clock, less the best one-way delay
        self.excess_ms: float | None = None  # the newest telemetry's delay beyond the best recent one
        self.decode_errors = 0
        self.last_error = ""
        self.alarms: tuple[Alarm, ...] = ()
        self._baseline = DelayBaseline()
        self._sent_ns: deque[int] = deque(maxlen=RATE_SAMPLES)  # the bedside's clock: drains come in batches
        self._loop_over_ns: int | None = None  # when the bedside's loop_over_bound last rose (local clock)

    # ------------------------------------------------------------------ in
    def receive(self, data: bytes, now_ns: int) -> list[LogLine]:
        """One frame from the telemetry stream, received at `now_ns`; returns lines for the event log."""
        try:
            msg = codec.decode(data)
        except codec.ProtocolError as exc:
            self.decode_errors += 1
            self.last_error = f"malformed telemetry frame ({len(data)} bytes): {exc}"
            return []
        if isinstance(msg, Telemetry):
            excess = self._baseline.excess_ns(now_ns, msg.send_ns)
            self.offset_ns = -((now_ns - msg.send_ns) - excess)
            self.excess_ms = excess / 1e6
            self.telemetry = msg
            self.telemetry_rx_ns = now_ns
            self._sent_ns.append(msg.send_ns)
        elif isinstance(msg, Event):
            self.events.append(msg)
            return [event_line(msg)]
        elif isinstance(msg, Counters):
            if msg.values.get("loop_over_bound", 0) != self.counters.get("loop_over_bound", 0):
                self._loop_over_ns = now_ns
            self.counters = dict(msg.values)
        return []

    # ------------------------------------------------------------------ out
    def silence_s(self, now_ns: int) -> float:
        """Seconds since the newest telemetry arrived (infinite before the first)."""
        return float("inf") if self.telemetry_rx_ns is None else (now_ns - self.telemetry_rx_ns) / 1e9

    def telemetry_hz(self, now_ns: int) -> float:
        """The bedside's publishing rate over the recent frames, by its own send times; 0 when silent."""
        s = self._sent_ns
        if len(s) < 2 or self.silence_s(now_ns) > RATE_SILENCE_S:
            return 0.0
        return (len(s) - 1) * 1e9 / (s[-1] - s[0]) if s[-1] > s[0] else 0.0

    def arm(self, name: str) -> ArmTelemetry | None:
        """One arm's newest telemetry (mode, flags, measured and setpoint pose, joints) by name."""
        t = self.telemetry
        if t is None or name not in ARM_NAMES or ARM_NAMES.index(name) >= len(t.arms):
            return None
        return t.arms[ARM_NAMES.index(name)]

    def alarms_for(self, now_ns: int, video: VideoStatus) -> list[Alarm]:
        """The alarms now, most severe first (`monitor_alarms`; the station words some of them its own way)."""
        return monitor_alarms(self.telemetry, self.silence_s(now_ns), self.timeout_s, video.stale, video.reason)

    def refresh(self, now_ns: int, video: VideoStatus) -> MonitorView:
        """What to paint now; alarms raised and cleared are relative to the previous refresh."""
        t = self.telemetry
        alarms = self.alarms_for(now_ns, video)
        raised, cleared = alarm_changes(self.alarms, alarms)
        self.alarms = tuple(alarms)
        crit = {a.key for a in alarms if a.severity is Severity.CRITICAL}
        if t is None:
            fields = {"link": "TELEMETRY: none yet", "rtt": "", "offset": "", "session": "", "limits": ""}
        else:
            limited = [name for name, arm in zip(ARM_NAMES, t.arms, strict=False) if arm.flags & ArmFlags.LIMIT]
            fields = {
                "link": f"TELEMETRY {'LOST' if 'telemetry' in crit else 'OK'} · {self.telemetry_hz(now_ns):.0f} Hz",
                "rtt": "" if self.excess_ms is None else f"telemetry delay +{self.excess_ms:.2f} ms",
                "offset": f"offset ≈ {self.offset_ns / 1e6:+.3f} ms",
                "session": f"bedside {t.operating_state.name} ({t.reason.name}) · epoch {t.epoch}"
                           + (" · E-STOP" if t.estop else ""),
                "limits": "limits: " + (", ".join(limited) or "none active"),
            }
        fields["video"] = "video age " + ("—" if video.age_ms is None else f"{video.age_ms:.0f} ms") + \
            f" · {video.fps:.0f} fps"
        fields["scale"] = ""
        fields["presence"] = ""
        recent = self._loop_over_ns is not None and now_ns - self._loop_over_ns < RECENT_NS
        fields["loop"], loop_sev = loop_indicator({"bedside": loop_figures(self.counters, recent)})
        warn = {"link": Severity.CRITICAL if "telemetry" in crit else Severity.INFO,
                "video": Severity.CRITICAL if "video" in crit else Severity.INFO,
                "session": Severity.CRITICAL if crit & {"estop", "link", "fault"} else Severity.INFO,
                "loop": loop_sev}
        return MonitorView(self.alarms, tuple(raised), tuple(cleared), fields, warn, tuple(monitor_arm_lines(t)))
