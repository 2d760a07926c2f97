"""Start a simulated bedside and a console on this machine, as separate processes on loopback, let the
scripted master follow a trajectory for --seconds, and report what happened.

--headless runs the console engine without a window (the summary is printed; --json for one JSON object).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from teleop.args import has_display, positive_seconds
from transport.security import throwaway_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no window: run the console engine and print a summary")
    p.add_argument("--seconds", type=positive_seconds, default=10.0, help="how long to run (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--master", choices=("circle", "figure8", "still"), default=None,
                   help="scripted master trajectory (default: console.master)")


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
    """A bedside with synthetic stereo video and the console window, on free loopback ports, until the window
    is closed: drive both arms with the keyboard and mouse (docs/user-guide.md)."""
    from console.ui.app import run_window, tied_to_us

    ctrl, telem, video, master, state, intent = free_ports(6)
    with tempfile.TemporaryDirectory() as tmp:
        keys = [] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        sets = ["link.bedside_host=127.0.0.1", *port_overrides(ctrl, telem, video), *keys,
                f"console.master_port={master}", f"console.ui_state_port={state}",
                f"console.ui_intent_port={intent}", *list(args.overrides or [])]
        bedside = start_role("bedside", ["bedside", *[a for o in sets for a in ("--set", o)]], prefix=tied_to_us())
        print("teleop demo: bedside with synthetic stereo video started; opening the console window "
              "(Space: presence, Enter: engage, A: align, drag: move; close the window to stop)", file=sys.stderr)
        try:
            win_args = argparse.Namespace(**{**vars(args), "overrides": sets, "seconds": None, "summary": None})
            return run_window(win_args, use_saved_connection=False)
        finally:
            bedside.stop()


def run(args: argparse.Namespace) -> int:
    if not args.headless:
        if has_display():
            return run_window_demo(args)
        print("teleop demo: no display found: running the headless demo (DISPLAY and WAYLAND_DISPLAY are unset)",
              file=sys.stderr)
    s = run_headless(args)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print_summary(s)
    return 1 if s["errors"] else 0
