"""`teleop replay`: replay recorded sessions for QA: a window with the video, an event timeline and plots, or,
with `--to-bedside HOST[:PORT]`, re-drive a (simulated) bedside with the recorded command stream and compare
its arm trajectory with the recorded one (exit 0 when it reproduces within the tolerance, 1 when not).

Give a console and a bedside recording of the same session together: they are aligned by the console's
measured clock offset. Re-driving needs a surgeon key (`security.identity`), like a console.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from qa.redrive import DEFAULT_TOLERANCE_MM
from teleop.args import has_display, require_display


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="MCAP recordings (console and/or bedside)")
    p.add_argument("--to-bedside", metavar="HOST[:PORT]", default=None,
                   help="re-drive this bedside (control port; default link.control_port) instead of opening a window")
    p.add_argument("--telemetry-port", type=int, default=None,
                   help="bedside telemetry port (default link.telemetry_port)")
    p.add_argument("--tolerance-mm", type=float, default=DEFAULT_TOLERANCE_MM,
                   help=f"largest position error that still counts as reproduced (default {DEFAULT_TOLERANCE_MM})")
    p.add_argument("--json", metavar="FILE", default=None, help="re-drive: also write the result as JSON")
    p.add_argument("--screenshot", metavar="PNG", default=None, help="window: save a picture after opening and exit")


def progress_bar(prefix: str = ""):
    """A one-line progress bar on stderr (only when stderr is a terminal or forced by the caller)."""
    last = [-1]

    def show(frac: float, what: str) -> None:
        pct = int(frac * 100)
        if pct == last[0]:
            return
        last[0] = pct
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\r{prefix}[{bar:<25}] {pct:3d}% {what[:40]:<40}")
        if pct >= 100:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def split_address(addr: str, default_port: int) -> tuple[str, int]:
    host, _, port = addr.rpartition(":") if ":" in addr else (addr, "", "")
    return (host or addr), (int(port) if port else default_port)


def run(args: argparse.Namespace) -> int:
    from qa.session import Session, check_files

    check_files(args.files)  # before the display: a bad file is named even where no window could open
    if args.screenshot and not has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a picture needs no screen
    if not args.to_bedside and not args.screenshot:
        require_display("replay", instead="teleop replay FILE --screenshot PNG")
    session = Session(args.files, progress=progress_bar("loading "))
    if args.to_bedside:
        from qa.redrive import plan, run_redrive

        cfg = args.cfg
        host, port = split_address(args.to_bedside, cfg.link.control_port)
        tport = args.telemetry_port or cfg.link.telemetry_port
        pl = plan(session)
        print(f"re-driving {host}:{port} with {len(pl.commands)} recorded commands from the {pl.role} record "
              f"({session.duration_s:.1f} s)", flush=True)
        res = run_redrive(cfg, host, port, tport, pl, args.tolerance_mm, progress=progress_bar("re-drive "))
        for line in res.lines():
            print(line)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ok": res.ok, "lag_ms": res.comparison.lag_ms, "tolerance_mm": args.tolerance_mm,
                           "per_arm": res.comparison.per_arm, "acks": dict(res.acks), "freezes": res.freezes,
                           "recorded_freezes": res.recorded_freezes, "problems": res.problems,
                           "samples": res.comparison.samples, "max_late_ms": res.max_late_ms}, f, indent=1)
        return 0 if res.ok else 1
    from PySide6.QtWidgets import QApplication

    from qa.replay_window import ReplayWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    w = ReplayWindow(session)
    w.show()
    if args.screenshot:
        app.processEvents()
        w.grab().save(args.screenshot)
        return 0
    return int(app.exec())
