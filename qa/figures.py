"""The numbers of one recorded session, counted the way the console and the bedside count them: one place for
the report's tables (qa/report.py), the session index (qa/index.py) and `teleop demo`'s summary.

Why one place: a QA figure is only worth reading if it equals what the system itself counted. So each rule
here is the rule of the code that counts live, cited beside it, and tests check the figures against a
synthetic session whose truth is known (qa/synth.py, story) and against a real demo's own summary.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qa.session import Session
from recording.catalog import BEDSIDE, CONSOLE

ENGAGED_TO_HELD = re.compile(r"^\S+ (FOLLOWING|CLUTCHED|CAMERA|ALIGNING)->HELD$")
"""An arm that was engaged and is now held (console/controller.py `_fire`): one hold per arm."""
WATCHDOG_REASONS = ("LINK_LOST", "STALE_COMMAND", "LIMIT")
"""Freeze reasons of the bedside's session watchdog (bedside/agent.py `check_watchdog`)."""
HOLD_COLUMNS = ("VIDEO_STALE", "LINK_LOST", "ESTOP", "FAULT", "OPERATOR_ABSENT", "LATENCY", "GUI_LOST")
"""Hold reasons with a column of their own in the session index; the rest add up in holds_other."""


def _name(e: dict) -> str:
    """An event's name as text: a recording read from disk may hold anything there (tests/test_fuzz_receivers.py)."""
    return str(e.get("name", ""))


def stale_holds(events: list[dict]) -> int:
    """Times the stale-video guard held arms that were engaged (one hold holds every arm at the same instant)."""
    return len({e["t_ns"] for e in events if e.get("reason") == "VIDEO_STALE" and ENGAGED_TO_HELD.match(_name(e))})


def hold_log(events: list[dict]) -> list[dict]:
    """Each hold of engaged arms once (arms held at the same instant are one hold): when (monotonic s, the clock
    of the picture's mode log), why, and the first held arm's text. Says whether a hold came with a mode change."""
    out: dict[int, dict] = {}
    for e in events:
        if ENGAGED_TO_HELD.match(_name(e)) and e.get("t_ns") not in out:
            out[e["t_ns"]] = {"t_s": round(e["t_ns"] / 1e9, 3), "reason": str(e.get("reason", "")),
                              "text": str(e.get("text", ""))[:200]}
    return [out[t] for t in sorted(out)]


def holds_by_reason(events: list[dict]) -> dict[str, int]:
    """Arm transitions from an engaged state to HELD, by reason (one per arm, as `teleop demo` counts them)."""
    c = Counter(str(e.get("reason", "")) for e in events if ENGAGED_TO_HELD.match(_name(e)))
    return dict(c.most_common())


@dataclass
class Episode:
    """A stretch of not-live video after the picture had been live (console/uilink.py counts these in
    `video_stale_episodes`: each change of the guard to a non-OK state once a live picture was seen)."""

    t_ns: int
    state: str
    duration_ms: float
    text: str
    open: bool = False  # still stale when the recording ends


def stale_episodes(s: Session) -> tuple[list[Episode] | None, int | None]:
    """(episodes from the console's `video` events or None if it recorded none, the console's own counter)."""
    rows = [(t, e) for t, e in s.json_rows("console", CONSOLE.event) if e.get("source") == "video"]
    counter = None
    for _t, body in reversed(s.json_rows("console", CONSOLE.link)):
        c = body.get("counters") or {}
        if "video_stale_episodes" in c or "video_live" in c:  # the window's guard counts from 1 up: absent = 0
            counter = int(c.get("video_stale_episodes", 0))
            break
    if not rows:
        return None, counter
    out: list[Episode] = []
    live = False
    for i, (t, e) in enumerate(rows):
        state = str(e.get("name", ""))
        if state == "ok":
            live = True
        elif live:
            end = rows[i + 1][0] if i + 1 < len(rows) else s.t1_ns
            out.append(Episode(t, state, (end - t) / 1e6, str(e.get("text", "")), i + 1 >= len(rows)))
    return out, counter


@dataclass
class Freeze:
    t_ns: int
    reason: str
    latency_ms: float
    text: str
    kind: str  # "watchdog", "grace" (no command in the first-command grace after a grant), "estop", "other"


def freezes(s: Session) -> list[Freeze]:
    """The bedside's own freeze records, each classed. A watchdog freeze with no command applied since the last
    grant is a hold in the first-command grace (bedside.first_command_ms), not a link that went quiet while
    the surgeon was operating."""
    fz = s.freezes()
    role = "bedside" if s.has("bedside", BEDSIDE.ack) else "console"
    acks = s.acks(role) if s.has(role, CONSOLE.ack if role == "console" else BEDSIDE.ack) else None
    out = []
    for i in range(len(fz)):
        t, reason = int(fz["t"][i]), str(fz["reason"][i])
        kind = "estop" if reason == "ESTOP" else "watchdog" if reason in WATCHDOG_REASONS else "other"
        if kind == "watchdog" and acks is not None and len(acks):
            upto = acks["status"][: acks.at(t) + 1]
            granted = np.flatnonzero(upto == "ENABLED")
            if granted.size and not (upto[granted[-1] + 1:] == "APPLIED").any():
                kind = "grace"
        out.append(Freeze(t, reason, float(fz["latency_ms"][i]), str(fz["text"][i]), kind))
    return out


def _pct(a: np.ndarray, q: float) -> float | None:
    a = a[np.isfinite(a)]
    return round(float(np.percentile(a, q)), 4) if a.size else None


def wall_start_ns(s: Session) -> int | None:
    """Wall-clock ns of the session's first instant, from the timeline role's `mono_to_wall_ns` metadata."""
    for f in s.files:
        if f.role == s.clock and f.metadata.get("mono_to_wall_ns", "").lstrip("-").isdigit():
            return s.t0_ns + int(f.metadata["mono_to_wall_ns"])
    return None


def clock(s: Session, t_ns: int, with_date: bool = False) -> str:
    """The wall-clock time (UTC) of a timeline instant, as the console's log writes it; "" when unknown."""
    w0 = wall_start_ns(s)
    if w0 is None:
        return ""
    w = w0 + (t_ns - s.t0_ns)
    ms = (w // 1_000_000) % 1000
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.gmtime(w // 1_000_000_000)) + \
        f".{ms:03d}"


def _named(s: Session, source: str, words: tuple[str, ...]) -> int | None:
    """Console events from `source` whose name holds one of `words`; None when the session has no such source
    (a recording from before path redundancy or voice: absent, not zero)."""
    rows = [e for _t, e in s.json_rows("console", CONSOLE.event) if e.get("source") == source]
    if not rows:
        return None
    return sum(1 for e in rows if any(w in str(e.get("name", "")).lower() for w in words))


def m2p_ms(s: Session) -> np.ndarray:
    """Motion to photon per painted-ready frame that says which command it shows (`drawn_from`): console send
    of the command → frame ready at the console, both on the console clock (docs/protocol.md, Video link)."""
    out = []
    for _t, r in s.json_rows("console", CONSOLE.video_frame):
        d = r.get("drawn_from") or {}
        sent, ready = d.get("applied_send_ns"), r.get("decoded_ns")
        if isinstance(sent, int) and sent > 0 and isinstance(ready, int) and ready > sent:
            out.append((ready - sent) / 1e6)
    return np.asarray(out, float)


@dataclass
class Figures:
    """Every number the report prints and the index stores."""

    row: dict[str, Any] = field(default_factory=dict)
    episodes: list[Episode] | None = None
    freezes: list[Freeze] = field(default_factory=list)
    holds: dict[str, int] = field(default_factory=dict)
    alarms: dict[str, int] = field(default_factory=dict)


def figures(s: Session) -> Figures:
    """The key figures of one session (flat `row` for the index; lists for the report)."""
    from qa.session import classify_console

    f = Figures()
    r = f.row
    w0 = wall_start_ns(s)
    r["start_wall_ns"] = w0
    r["start_utc"] = clock(s, s.t0_ns, with_date=True) if w0 is not None else ""
    r["duration_s"] = round(s.duration_s, 3)
    r["files"] = ";".join(str(p.path) for p in s.files)
    r["hosts"] = ";".join(sorted({p.metadata.get("host", "") for p in s.files} - {""}))
    r["software"] = ";".join(sorted({p.metadata.get("software_version", p.metadata.get("version", ""))
                                     for p in s.files} - {""}))
    surgeons = sorted({str(e.get("peer", "")) for _t, e in s.json_rows("bedside", BEDSIDE.command)[:2000]} - {""})
    r["surgeons"] = ";".join(surgeons)
    rtt = s.acks("console")["rtt_ms"] if s.has("console", CONSOLE.ack) else np.zeros(0)
    for q, name in ((50, "p50"), (95, "p95"), (99, "p99"), (99.9, "p999")):
        r[f"rtt_{name}_ms"] = _pct(rtt, q)
    ok = rtt[np.isfinite(rtt)]
    r["rtt_max_ms"] = round(float(ok.max()), 4) if ok.size else None
    r["acks_with_rtt"] = int(ok.size)
    f.freezes = freezes(s)
    kinds = Counter(z.kind for z in f.freezes)
    r["freezes"] = len(f.freezes)
    for k in ("watchdog", "grace", "estop", "other"):
        r[f"freezes_{k}"] = kinds.get(k, 0)
    r["freeze_latency_max_ms"] = max((z.latency_ms for z in f.freezes), default=None)
    events = [e for _t, e in s.json_rows("console", CONSOLE.event)]
    f.holds = holds_by_reason(events)
    r["holds"] = sum(f.holds.values())
    for k in HOLD_COLUMNS:
        r[f"holds_{k.lower()}"] = f.holds.get(k, 0)
    r["holds_other"] = r["holds"] - sum(f.holds.get(k, 0) for k in HOLD_COLUMNS)
    r["holds_by_reason"] = json.dumps(f.holds, sort_keys=True)
    r["video_stale_holds"] = stale_holds(events)
    f.episodes, counter = stale_episodes(s)
    r["stale_episodes"] = len(f.episodes) if f.episodes is not None else counter
    r["stale_episodes_console_counter"] = counter
    durs = [e.duration_ms for e in f.episodes or ()]
    r["stale_ms_total"] = round(sum(durs), 3) if f.episodes is not None else None
    r["stale_ms_max"] = round(max(durs), 3) if durs else (0.0 if f.episodes is not None else None)
    ev = s.events()
    f.alarms = dict(Counter(e.name for e in ev if e.kind == "alarm").most_common())
    r["alarms"] = sum(f.alarms.values())
    r["estops"] = kinds.get("estop", 0) if s.has("bedside", BEDSIDE.freeze) or "bedside" in s.roles else sum(
        1 for e in events if e.get("reason") == "ESTOP" and e.get("source") == "teleop" and e.get("name") == "estop")
    r["handovers"] = sum(1 for e in ev if e.role == "bedside" and e.reason == "HANDOVER") or sum(
        1 for e in events if e.get("source") == "bedside" and e.get("reason") == "HANDOVER")
    r["refusals"] = sum(1 for e in events if classify_console(e) == "refusal")
    r["limit_events"] = sum(1 for e in ev if e.kind == "limit")
    r["rejections"] = sum(1 for e in ev if e.kind == "rejection")
    r["failovers"] = _named(s, "path", ("lost",))  # a redundant path lost, the others carrying on (runner.py)
    r["voice_losses"] = _named(s, "voice", ("lost",))
    m2p = m2p_ms(s)
    r["m2p_p50_ms"], r["m2p_p99_ms"] = _pct(m2p, 50), _pct(m2p, 99)
    v = s.video_frames("console")
    r["frames_received"] = len(v)
    age = v["age_ms"] if len(v) else np.zeros(0)
    r["frame_age_p50_ms"], r["frame_age_p99_ms"] = _pct(age, 50), _pct(age, 99)
    return f
