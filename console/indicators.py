"""What the surgeon's window and the on-site team's monitor show, as plain data: severities, alarms, one
line per arm, and the one rule for which alarms were raised or cleared between two looks.

Pure and free of Qt, so the monitor's headless model (console/monitor_model.py) and the window's wording
(console/ui/status.py) share it, and the Qt banner (console/ui/hud.py) only paints what it says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True, slots=True)
class Alarm:
    key: str  # stable id: "link", "video", "latency", "estop", "engine", "gui", "fault", "telemetry", "paused"
    severity: Severity
    title: str  # short, upper case, for the banner
    text: str  # one sentence: what it means and what to do


@dataclass(frozen=True, slots=True)
class ArmLine:
    name: str
    state: str  # FOLLOWING / CLUTCHED / CAMERA / ALIGNING / HELD / DISABLED (monitor: bedside modes)
    text: str  # what the surgeon reads
    severity: Severity


def alarm_changes(before: Iterable[Alarm], now: Iterable[Alarm]) -> tuple[list[Alarm], list[Alarm]]:
    """(raised, cleared) from `before` to `now`: raised is a new key or a key whose severity rose (it must be
    announced again), cleared a key that is gone. Keys, not texts: an alarm whose text counts seconds is the
    same alarm."""
    old = {a.key: a for a in before}
    new = {a.key: a for a in now}
    raised = [a for k, a in new.items() if k not in old or old[k].severity < a.severity]
    cleared = [a for k, a in old.items() if k not in new]
    return raised, cleared
