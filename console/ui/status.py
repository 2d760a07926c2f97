"""What the console window's HUD and alarm banner say, from the engine's state. Pure: plain dicts and
numbers in, plain data out, so every wording and every alarm rule is unit-tested without Qt. The monitor's
equivalent, from the bedside's telemetry, is console/monitor_model.py; both speak console/indicators.py.

The window decides nothing about safety: every alarm here restates a verdict the engine or the bedside
already acted on (the engine holds the arms), or says that the window itself has no current information.
"""

from __future__ import annotations

from typing import Any

from console.indicators import Alarm, ArmLine, Severity, loop_indicator
from transport.messages import ARM_NAMES

ENGINE_SILENT_S = 0.5
"""No state from the engine for this long: the indicators are not current (the engine publishes at 30 Hz)."""
ENGINE_START_S = 3.0
"""Before the first state, this long is "starting" (a warning), not a dead engine (a critical alarm)."""
DEFAULT_HANDS = {"right": "PSM1", "left": "PSM2"}
"""The hand assignment before a swap (console/hands.py), for a state that does not carry one."""


def arm_hand(teleop: dict[str, Any], name: str) -> str | None:
    """"right" / "left" for the instrument that hand drives, "both" for the endoscope, None for the idle one."""
    if name == "ECM":
        return "both"
    a = (teleop.get("arms") or {}).get(name) or {}
    if "hand" in a:
        return a["hand"]
    hands = teleop.get("hands") or DEFAULT_HANDS
    return next((h for h, arm in hands.items() if arm == name), None)


def _fmt_ms(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f} ms"


def console_alarms(state: dict[str, Any] | None, state_age_s: float, picture_stale: bool,
                   picture_reason: str = "") -> list[Alarm]:
    """Alarms for the surgeon, most severe first. `state` is the engine's newest state message (None before
    the first), `state_age_s` how long ago it arrived (before the first: since the window opened),
    `picture_stale` the receiver's verdict on the frame on screen."""
    out: list[Alarm] = []
    if state is None and state_age_s <= ENGINE_START_S:
        return [Alarm("engine", Severity.WARNING, "STARTING", "waiting for the control process")]
    if state is None or state_age_s > ENGINE_SILENT_S:
        age = "never" if state is None else f"for {state_age_s:.1f} s"
        out.append(Alarm("engine", Severity.CRITICAL, "CONSOLE ENGINE NOT RESPONDING",
                         f"no state from the control process ({age}); indicators are not current. The bedside "
                         "holds the arms on its own when commands stop."))
        if picture_stale:
            out.append(Alarm("video", Severity.CRITICAL, "VIDEO STALE", picture_reason or "the picture is not live"))
        return out
    t = state.get("teleop") or {}
    bed = state.get("bedside") or {}
    if t.get("estop") or bed.get("estop"):
        where = " and ".join(w for w, on in (("console", t.get("estop")), ("bedside", bed.get("estop"))) if on)
        out.append(Alarm("estop", Severity.CRITICAL, "E-STOP",
                         f"emergency stop latched at the {where}: every arm holds. Reset when safe, then engage."))
    link = state.get("link")
    if link == "LOST":
        out.append(Alarm("link", Severity.CRITICAL, "LINK LOST",
                         "no answer from the bedside: arms held. Following resumes only after you engage again."))
    elif link != "UP":
        out.append(Alarm("link", Severity.WARNING, "CONNECTING", "waiting for the bedside to answer"))
    video = state.get("video") or {}
    if picture_stale or not video.get("ok", False):
        reason = video.get("reason") if not video.get("ok", False) else picture_reason
        out.append(Alarm("video", Severity.CRITICAL, "VIDEO STALE",
                         f"{reason or 'the picture is not live'}: arms held while the picture is not live"))
    lat = t.get("latency") or {}
    if lat.get("level") == "hard":
        out.append(Alarm("latency", Severity.CRITICAL, "LATENCY HIGH",
                         lat.get("text") or f"round trip {_fmt_ms(state.get('rtt_ms'))}: following stopped"))
    elif lat.get("level") == "warn":
        out.append(Alarm("latency", Severity.WARNING, "LATENCY HIGH",
                         lat.get("text") or f"round trip {_fmt_ms(state.get('rtt_ms'))}: motion scaled down"))
    if bed.get("state") == "FAULT":
        out.append(Alarm("fault", Severity.CRITICAL, "BEDSIDE FAULT", f"bedside reports {bed.get('reason')}"))
    inhibits = t.get("inhibits") or {}
    if "GUI_LOST" in inhibits:
        out.append(Alarm("gui", Severity.WARNING, "WINDOW WAS UNRESPONSIVE",
                         inhibits["GUI_LOST"] or "the console window stalled: arms held, engage to resume"))
    out.sort(key=lambda a: -a.severity)
    return out


def arm_lines(teleop: dict[str, Any] | None) -> list[ArmLine]:
    """Per-arm engagement, from the controller's snapshot: which hand drives the arm (or that it is idle),
    following / clutched / aligning with guidance / held with reason."""
    t = teleop or {}
    arms = t.get("arms") or {}
    out = []
    for name in ARM_NAMES:
        a = arms.get(name)
        if a is None:
            continue
        st = a.get("state", "?")
        limits = a.get("active_limits") or []
        hand = arm_hand(t, name)
        if hand is None and st != "HELD":  # the idle instrument: no hand drives it
            swap = t.get("swap_hand", "left")
            out.append(ArmLine(name, st, f"idle: holds; Swap arm (S) takes it with your {swap} hand", Severity.INFO))
            continue
        if st == "FOLLOWING":
            text, sev = f"tool follows your {hand} hand" if name != "ECM" else "endoscope follows your hands", \
                Severity.INFO
        elif st == "CLUTCHED" and name == "ECM":
            text, sev = "endoscope holds (camera pedal up)", Severity.INFO
        elif st == "CLUTCHED":
            text, sev = "clutched: tool holds, move your hand freely", Severity.INFO
        elif st == "CAMERA":
            text, sev = "camera mode: tool holds, hands drive the endoscope", Severity.INFO
        elif st == "ALIGNING":
            g = a.get("guidance") or "aligning"
            mis = a.get("misalignment_deg")
            text = g if mis is None else f"{g} ({mis:.0f}° off)"
            sev = Severity.WARNING
        elif st == "HELD":
            text, sev = f"held: {a.get('reason', '?')}" + (f" — {a['guidance']}" if a.get("guidance") else ""), \
                Severity.CRITICAL
        else:
            text, sev = a.get("guidance") or "not engaged", Severity.INFO
        if limits:
            text += f" · limit: {', '.join(limits)}"
            sev = max(sev, Severity.WARNING)
        if hand in ("right", "left") and st != "FOLLOWING":
            text = f"{hand} hand · {text}"
        out.append(ArmLine(name, st, text, sev))
    return out


def paths_text(paths: list[dict[str, Any]] | None) -> str:
    """The HUD's per-path part of the link field (several paths, link.paths): " · path0 UP 12.3 ms · path1 LOST";
    empty with one path."""
    if not paths:
        return ""
    return "".join(f" · {p['name']} {p['state']}" + (f" {_fmt_ms(p.get('rtt_ms'), 1)}" if p["state"] == "UP" else "")
                   + (f" {p['loss_pct']:.0f}% loss" if p.get("loss_pct") else "") for p in paths)


def console_fields(state: dict[str, Any] | None, frame_age_ms: float | None, fps: float | None,
                   bedside: str = "") -> dict[str, str]:
    """The HUD's text fields (key → text), from the engine's state and the picture on screen."""
    if state is None:
        return {"link": "ENGINE: no state", "rtt": "RTT —", "offset": "offset —",
                "video": f"video age {_fmt_ms(frame_age_ms, 0)} · {fps or 0:.0f} fps", "scale": "scale —",
                "session": "", "presence": "", "limits": "", "loop": ""}
    t = state.get("teleop") or {}
    lat = t.get("latency") or {}
    off = state.get("clock_offset_ns")
    scale = t.get("scale")
    eff = t.get("effective_scale")
    scale_text = "scale —" if scale is None else f"scale {scale:.2f}"
    if scale is not None and eff is not None and abs(eff - scale) > 1e-6:
        scale_text += f" → {eff:.2f} (latency)"
    limits = sorted({lim for a in (t.get("arms") or {}).values() for lim in (a.get("active_limits") or [])})
    video = state.get("video") or {}
    vid = f"video age {_fmt_ms(frame_age_ms, 0)} · {fps or 0:.0f} fps"
    if not video.get("ok", False):
        vid += f" · {video.get('state', '?')}"
    sess = state.get("session") or {}
    bed = state.get("bedside") or {}
    return {
        "link": f"LINK {state.get('link', '?')}" + (f" · {bedside}" if bedside else "")
                + paths_text(state.get("paths")),
        "rtt": f"RTT {_fmt_ms(state.get('rtt_ms'), 2)}" + (f" ({lat['level']})" if lat.get("level") not in
                                                          (None, "ok") else ""),
        "offset": "offset —" if off is None else f"offset {off / 1e6:+.3f} ms",
        "video": vid,
        "scale": scale_text,
        "session": f"bedside {bed.get('state', '?')} ({bed.get('reason', '?')})"
                   + (f" · epoch {sess.get('epoch')}" if sess.get("ready") else ""),
        "presence": "operator present" if t.get("operator_present") else "operator ABSENT",
        "limits": "limits: " + (", ".join(limits) if limits else "none active"),
        "loop": loop_indicator(state.get("loop") or {})[0],
    }


def sparkline_points(history: list[float | None], width: float, height: float,
                     floor_ms: float = 1.0) -> list[list[tuple[float, float]]]:
    """Polyline segments (gaps where there was no RTT) scaled into width × height, y down; the vertical
    scale is max(history, floor_ms) so a quiet link draws a low line instead of magnified noise."""
    vals = [v for v in history if v is not None]
    if len(history) < 2 or not vals:
        return []
    top = max(max(vals), floor_ms)
    dx = width / (len(history) - 1)
    segs: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    for i, v in enumerate(history):
        if v is None:
            if cur:
                segs.append(cur)
            cur = []
            continue
        cur.append((i * dx, height - (v / top) * height))
    if cur:
        segs.append(cur)
    return segs


PICTURE_WHY = {"bedside": "bedside machine busy", "console": "console machine busy", "link": "link congested",
               "starting": "starting low, raised while the machines keep up"}
"""Why the picture is below the configured one (transport/video_wire.py `ModeReason`, video/adapt.py)."""


def picture_text(picture: dict[str, Any] | None) -> str:
    """The HUD's picture field: empty at the configured picture; when the sender has lowered it, to what and why,
    e.g. "picture 960x540 @ 30 fps (console machine busy)". `picture` is the painted frame's `FrameView.picture()`."""
    if not picture or picture.get("reason", "none") == "none":
        return ""
    fps = picture.get("fps") or 0
    rate = f" @ {fps} fps" if fps else ""
    why = PICTURE_WHY.get(picture["reason"], picture["reason"])
    return f"picture {picture['width']}x{picture['height']}{rate} ({why})"
