"""Start a simulated bedside and a console on this machine, as separate processes on loopback, let the
scripted master follow a trajectory for --seconds, and report what happened.

--headless runs the console engine without a window (the summary is printed; --json for one JSON object).
--window runs the real console window (offscreen where there is no display) driven by a scripted operator
(console/ui/drive.py) for --seconds of following, and reports how it held up: `video_stale_holds` (times the
stale-video guard held arms that were engaged), `video_mode` (the picture it settled on, video/adapt.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from qa.figures import hold_log, holds_by_reason, stale_holds
from teleop.args import has_display, positive_seconds
from transport.security import throwaway_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no window: run the console engine and print a summary")
    p.add_argument("--seconds", type=positive_seconds, default=10.0, help="how long to run (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--master", choices=("circle", "figure8", "still"), default=None,
                   help="scripted master trajectory (default: console.master)")
    p.add_argument("--window", action="store_true",
                   help="the console window (offscreen without a display) driven by a scripted operator for "
                        "--seconds of following; prints a summary (--json: one JSON object)")


def run_headless(args: argparse.Namespace) -> dict:
    ctrl, telem, video = free_ports(3)
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Throw-away keys: the demo runs encrypted and authenticated like a deployment.
        keys = [] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        sets = port_overrides(ctrl, telem, video) + keys + list(args.overrides or [])
        if args.master:
            sets.append(f"console.master={args.master}")
        argv_sets = [a for o in sets for a in ("--set", o)]
        bed_sum, con_sum = Path(tmp) / "bedside.json", Path(tmp) / "console.json"
        bedside = start_role("bedside", ["bedside", "--no-video", "--summary", str(bed_sum), *argv_sets])
        try:
            console = start_role("console", ["console", "--headless", "--seconds", str(args.seconds),
                                             "--summary", str(con_sum), *argv_sets])
            rc = console.proc.wait(args.seconds + 60)
            if rc != 0:
                errors.append(f"console exited {rc}: {console.stderr_text()[-2000:]}")
        finally:
            rc = bedside.stop()
        if rc not in (0, -15):
            errors.append(f"bedside exited {rc}: {bedside.stderr_text()[-2000:]}")
        recordings = [f for f in (_ready_field(r.ready, "recording") for r in (bedside, console))
                      if f not in ("", "off")]
        con = json.loads(con_sum.read_text()) if con_sum.exists() else {}
        bed = json.loads(bed_sum.read_text()) if bed_sum.exists() else {}
        for role in (console, bedside):
            errors += [line.strip() for line in role.stderr_text().splitlines() if " ERROR " in line]
    if not con:
        errors.append("console wrote no summary")
    if con.get("counters", {}).get("decode_errors"):
        errors.append(f"console dropped {con['counters']['decode_errors']} malformed frames")
    if bed.get("counters", {}).get("decode_errors"):
        errors.append(f"bedside dropped {bed['counters']['decode_errors']} malformed frames")
    return {
        "seconds": args.seconds,
        "commands_sent": con.get("commands_sent", 0),
        "commands_applied": con.get("commands_applied", 0),
        "commands_rejected": con.get("commands_rejected", 0),
        "lost": con.get("lost"),
        "rtt_us": con.get("rtt_us"),
        "send_gap_us": con.get("send_gap_us"),
        "clock_offset_us": con.get("clock_offset_us"),
        "freezes": [{"reason": f["reason"], "latency_ms": round(f["latency_ms"], 2)} for f in bed.get("freezes", [])],
        "bedside_counters": bed.get("counters", {}),
        "console_events": [f"{e['source']} {e['name']} ({e['reason']}): {e['text']}" for e in con.get("events", [])],
        "recordings": recordings,
        "errors": errors,
    }


def _ready_field(line: str, key: str) -> str:
    return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f).get(key, "")


def print_summary(s: dict) -> None:
    r = s["rtt_us"] or {}
    print(f"demo: {s['seconds']} s, scripted master following at 1 kHz")
    print(f"  servo_cp sent {s['commands_sent']}, applied {s['commands_applied']}, rejected "
          f"{s['commands_rejected']}, lost {s['lost']}")
    print(f"  command->ack RTT p50 {r.get('p50')} us, p99 {r.get('p99')} us, p99.9 {r.get('p999')} us")
    print(f"  clock offset bedside-console {s['clock_offset_us']} us")
    for e in s["console_events"]:
        print(f"  event: {e}")
    for f in s["freezes"]:
        print(f"  freeze: {f['reason']} after {f['latency_ms']} ms")
    for f in s["recordings"]:
        print(f"  recording (MCAP, docs/recording.md): {f}")
    if not s["recordings"]:
        print("  recording: off")
    for e in s["errors"]:
        print(f"  ERROR: {e}")


def run_window_demo(args: argparse.Namespace) -> int:
    """A bedside with the rendered endoscope (video/rendered.py) and the console window, on free loopback ports,
    until the window is closed: drive both arms with the keyboard and mouse (docs/user-guide.md)."""
    from console.ui.app import run_window, tied_to_us

    ctrl, telem, video, master, state, intent = free_ports(6)
    with tempfile.TemporaryDirectory() as tmp:
        keys = [] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        sets = ["link.bedside_host=127.0.0.1", *port_overrides(ctrl, telem, video), *keys,
                f"console.master_port={master}", f"console.ui_state_port={state}",
                f"console.ui_intent_port={intent}", *list(args.overrides or [])]
        bedside = start_role("bedside", ["bedside", *[a for o in sets for a in ("--set", o)]], prefix=tied_to_us())
        print("teleop demo: bedside with the rendered stereo endoscope started; opening the console window "
              "(Space: presence, Enter: engage, A: align, drag: move; close the window to stop)", file=sys.stderr)
        try:
            win_args = argparse.Namespace(**{**vars(args), "overrides": sets, "seconds": None, "summary": None})
            return run_window(win_args, use_saved_connection=False)
        finally:
            bedside.stop()




def run_scripted_window(args: argparse.Namespace) -> dict:
    """Bedside with video + console engine + the window, driven like the screenshot (console/ui/screenshot.py) for
    --seconds once following; the engine's summary and the window's figures, reduced to what a person asks."""
    from console.ui.screenshot import take_screenshot  # the UI only inside the command that opens a window

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="teleop-demo-") as tmp:
        t = Path(tmp)
        shot = argparse.Namespace(**{**vars(args), "output": str(t / "window.png"), "attach": False,
                                     "summary": str(t / "engine.json"), "stats": str(t / "window.json"),
                                     "mode": "side-by-side", "size": "1600x1000", "timeout": 60.0, "swap": False,
                                     "on_screen": has_display()})
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the summary (one JSON object with --json)
            rc = take_screenshot(shot)
        eng = json.loads((t / "engine.json").read_text()) if (t / "engine.json").exists() else {}
        win = json.loads((t / "window.json").read_text()) if (t / "window.json").exists() else {}
    events = eng.get("events", [])
    rx = win.get("receiver") or {}
    holds = holds_by_reason(events)  # the rule the QA report counts with (qa/figures.py)
    errors = [] if rc == 0 else [f"the window was not following with a live picture at the end (alarms: "
                                 f"{win.get('alarms')})"]
    return {
        "seconds": args.seconds,
        "window": "on screen" if has_display() else "offscreen",
        "followed_s": win.get("driven_s"),
        "seconds_to_follow": win.get("seconds_to_follow"),
        "video_stale_holds": stale_holds(events),
        "video_stale_episodes": (eng.get("ui_counters") or {}).get("video_stale_episodes", 0),
        "video_mode": win.get("picture"),
        "video_mode_changes": win.get("picture_changes", []),
        "engages": win.get("engages"),
        "arm_holds_by_reason": holds,
        "holds": hold_log(events),
        "painted_fps": win.get("painted_fps"),
        "received_fps": rx.get("fps"),
        "frame_age_ms": rx.get("age_ms"),
        "decode_ms": rx.get("decode_ms"),
        "paint_ms": rx.get("paint_ms"),
        "commands_sent": eng.get("commands_sent"),
        "rtt_us": eng.get("rtt_us"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load0],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "errors": errors,
    }


def print_window_summary(s: dict) -> None:
    m = s["video_mode"] or {}
    print(f"demo --window: {s['window']}, followed {s['followed_s']} s (after {s['seconds_to_follow']} s to engage)")
    print(f"  video stale holds {s['video_stale_holds']} (stale episodes {s['video_stale_episodes']}), "
          f"engages {s['engages']}, arm holds by reason {s['arm_holds_by_reason']}")
    print(f"  picture settled at {m.get('width')}x{m.get('height')} @ {m.get('fps')} fps ({m.get('reason')}); "
          f"painted {s['painted_fps']} fps, frame age {s['frame_age_ms']}")
    print(f"  machine: {s['machine']['cpus']} CPUs, load average {s['machine']['loadavg_start']} -> "
          f"{s['machine']['loadavg_end']}")
    for e in s["errors"]:
        print(f"  ERROR: {e}")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "window", False):
        s, show = run_scripted_window(args), print_window_summary
    else:
        if not args.headless:
            if has_display():
                return run_window_demo(args)
            print("teleop demo: no display found: running the headless demo (DISPLAY and WAYLAND_DISPLAY are "
                  "unset)", file=sys.stderr)
        s, show = run_headless(args), print_summary
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        show(s)
    return 1 if s["errors"] else 0
