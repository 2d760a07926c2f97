"""Which alarm sounds, when, and for how long it is silenced: the console's and the station's audible alarms.

Pure, like the rest of the windows' logic: fed the set of alarm conditions that hold and `now` (monotonic
ns), it returns the bursts to start (`Burst`: priority and time) and the log lines; a player
(console/alarm_audio.py) turns bursts into sound. Tests check the schedule, never a sound card.

Rules (IEC 60601-1-8's priority scheme, GUIDE §13):
* Each condition has one priority (`CONDITIONS`). The highest priority among the conditions that are not
  silenced sounds, with that priority's pattern (console/alarm_tones.py), from the moment it appears and
  again every `repeat_s` while it holds. A higher priority appearing interrupts a lower one at once.
* Silencing ("audio paused") covers the conditions that hold when it is pressed, for `pause_s`; then those
  still holding sound again. It is logged with who pressed it, and so is its end. A condition that appears
  during the pause was not silenced: it sounds (a new, higher-priority condition always does).
* A condition that clears and comes back is a new condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from console.alarm_tones import PATTERNS, Priority
from console.indicators import Severity


class Condition(StrEnum):
    """Everything that sounds. The windows map their visual alarms onto these (`conditions_of`)."""

    ESTOP = "e-stop"
    LINK_LOST = "link lost"
    DEVICE_FAULT = "device fault"
    VIDEO_STALE = "video stale"
    NO_TELEMETRY = "no contact with the bedside"
    LATENCY_HOLD = "latency hold"
    VOICE_LOST = "voice lost"
    ARMS_HELD = "arms held"
    LATENCY_WARN = "latency high"


CONDITIONS: dict[Condition, Priority] = {
    Condition.ESTOP: Priority.HIGH,
    Condition.LINK_LOST: Priority.HIGH,
    Condition.DEVICE_FAULT: Priority.HIGH,
    Condition.VIDEO_STALE: Priority.HIGH,  # the surgeon operates on what the picture shows
    Condition.NO_TELEMETRY: Priority.HIGH,  # the station no longer knows the state of the arms
    Condition.LATENCY_HOLD: Priority.MEDIUM,  # arms held, nothing moves; the surgeon must act soon
    Condition.VOICE_LOST: Priority.MEDIUM,  # the teams cannot talk; the operation can go on
    Condition.ARMS_HELD: Priority.LOW,  # held for another reason (presence, the window): awareness
    Condition.LATENCY_WARN: Priority.LOW,  # motion scaled down
}

ALARM_KEYS: dict[str, Condition] = {
    "estop": Condition.ESTOP, "link": Condition.LINK_LOST, "fault": Condition.DEVICE_FAULT,
    "video": Condition.VIDEO_STALE, "telemetry": Condition.NO_TELEMETRY, "voice": Condition.VOICE_LOST,
    "engine": Condition.DEVICE_FAULT, "paused": Condition.ARMS_HELD, "gui": Condition.ARMS_HELD,
}
"""The visual alarms' keys (console/indicators.py `Alarm.key`) and the condition each one sounds as; the
latency alarm is graded (`conditions_of`)."""


def conditions_of(alarms, critical_only_keys: frozenset[str] = frozenset({"engine", "link"})) -> set[Condition]:
    """The sounding conditions for a list of visual alarms (console/indicators.py `Alarm`): the latency alarm
    sounds as LATENCY_HOLD when critical (following stopped), LATENCY_WARN when only a warning; the keys in
    `critical_only_keys` sound only when critical ("CONNECTING" and "STARTING" are not alarms)."""
    out: set[Condition] = set()
    for a in alarms:
        if a.key == "latency":
            out.add(Condition.LATENCY_HOLD if a.severity is Severity.CRITICAL else Condition.LATENCY_WARN)
        elif a.key in ALARM_KEYS and (a.key not in critical_only_keys or a.severity is Severity.CRITICAL):
            out.add(ALARM_KEYS[a.key])
    return out


@dataclass(frozen=True, slots=True)
class Burst:
    """Start one burst of `priority`'s pattern at `at_ns` (stopping any burst still playing)."""

    priority: Priority
    at_ns: int
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class SoundLog:
    text: str
    at_ns: int


class AlarmSounder:
    """Feed `update(now, conditions)` at the windows' refresh rate; it returns the bursts to start now."""

    def __init__(self, pause_s: float = 120.0) -> None:
        if not 1.0 <= pause_s <= 600.0:
            raise ValueError(f"alarm pause {pause_s} s outside 1..600 s")
        self.pause_ns = int(pause_s * 1e9)
        self.active: set[Condition] = set()
        self.paused: set[Condition] = set()
        self.paused_until_ns: int | None = None
        self.sounding: Priority | None = None
        self._next_ns: int | None = None  # the next burst of `sounding`
        self.bursts: list[Burst] = []  # every burst scheduled (tests, statistics)
        self.log: list[SoundLog] = []

    def audible(self) -> set[Condition]:
        return self.active - self.paused

    def update(self, now_ns: int, conditions: set[Condition] | frozenset[Condition]) -> list[Burst]:
        conditions = set(conditions)
        self.paused &= conditions  # a condition that cleared is no longer silenced: if it returns, it is new
        self.active = conditions
        if self.paused_until_ns is not None and now_ns >= self.paused_until_ns:
            if self.paused:
                self.log.append(SoundLog(f"alarm sound resumed after the {self.pause_ns / 1e9:.0f} s pause: "
                                         + ", ".join(sorted(self.paused)), now_ns))
            self.paused.clear()
            self.paused_until_ns = None
        elif self.paused_until_ns is not None and not self.paused:
            self.paused_until_ns = None  # everything silenced has cleared
        audible = self.audible()
        top = max((CONDITIONS[c] for c in audible), default=None)
        out: list[Burst] = []
        if top is None:
            self.sounding = self._next_ns = None
        elif self.sounding is None or top > self.sounding or now_ns >= (self._next_ns or 0):
            self.sounding = top
            self._next_ns = now_ns + int(PATTERNS[top].repeat_s * 1e9)
            out.append(Burst(top, now_ns, tuple(sorted(c for c in audible if CONDITIONS[c] == top))))
        else:
            self.sounding = top  # a lower priority left: keep the rhythm, the next burst plays the new top
        self.bursts += out
        return out

    def silence(self, now_ns: int, who: str) -> str:
        """Audio paused by `who` for `pause_s`: the conditions holding now stay quiet until then. Returns the log
        line (also kept in `log`)."""
        if not self.active:
            text = f"alarm silence pressed by {who}: no alarm is sounding"
        else:
            self.paused = set(self.active)
            self.paused_until_ns = now_ns + self.pause_ns
            self.sounding = self._next_ns = None
            text = (f"alarm sound paused by {who} for {self.pause_ns / 1e9:.0f} s: " + ", ".join(sorted(self.paused))
                    + " (it sounds again then if still present; a new alarm sounds at once)")
        self.log.append(SoundLog(text, now_ns))
        return text

    def pause_left_s(self, now_ns: int) -> float | None:
        """Seconds of audio pause left, None when not paused."""
        if self.paused_until_ns is None or not self.paused:
            return None
        return max(0.0, (self.paused_until_ns - now_ns) / 1e9)

    def drain_log(self) -> list[SoundLog]:
        out, self.log = self.log, []
        return out
