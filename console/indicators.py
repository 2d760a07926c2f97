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


def loop_figures(counters: dict[str, int], recent: bool) -> dict[str, float | int | bool] | None:
    """One loop's health for an indicator, from its `loop_*` counters (safety/loop_health.py, µs): tick p99.9
    and max in ms, ticks over the bound, the bound, and whether one was over it lately. None without figures."""
    if "loop_ticks" not in counters:
        return None
    return {"p999_ms": counters.get("loop_tick_p999_us", 0) / 1e3, "max_ms": counters.get("loop_tick_max_us", 0) / 1e3,
            "over_bound": counters.get("loop_over_bound", 0), "bound_ms": counters.get("loop_bound_us", 0) / 1e3,
            "recent": recent}


def loop_indicator(loops: dict[str, dict | None]) -> tuple[str, Severity]:
    """The HUD's loop field, e.g. "tick p99.9 engine 1.1 ms · bedside 1.0 ms · over 10 ms: bedside 2", a warning
    while a loop was over its bound in the last seconds (`recent`); ("", INFO) without figures."""
    parts, over = [], []
    recent = False
    for name, f in loops.items():
        if not f:
            continue
        parts.append(f"{name} {f['p999_ms']:.1f} ms")
        if f.get("over_bound"):
            over.append(f"{name} {f['over_bound']} (over {f['bound_ms']:g} ms, max {f['max_ms']:.0f} ms)")
        recent = recent or bool(f.get("recent"))
    if not parts:
        return "", Severity.INFO
    text = "tick p99.9 " + " · ".join(parts) + (f" · ticks over bound: {', '.join(over)}" if over else "")
    return text, Severity.WARNING if recent else Severity.INFO
