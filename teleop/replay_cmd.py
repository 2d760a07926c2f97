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
    p.add_argument("--at", metavar="SECONDS", type=float, default=None,
                   help="window: open at this session time (seconds from the start)")
    a = p.add_argument_group("voice (voice-<side>-*.mcap files among FILE)")
    a.add_argument("--audio-out", metavar="WAV", help="write the recorded voice of a time range to a WAV file and exit")
    a.add_argument("--play-audio", action="store_true", help="play the recorded voice of the time range and exit")
    a.add_argument("--from", dest="audio_from", type=float, default=0.0, metavar="S",
                   help="start, seconds on the replay timeline (default 0)")
    a.add_argument("--to", dest="audio_to", type=float, default=None, metavar="S", help="end (default: the end)")
    a.add_argument("--voice", choices=("console-rx", "console-tx", "station-rx", "station-tx"), default=None,
                   help="which end and direction (default: what the console heard)")


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


def _voice(args: argparse.Namespace) -> int:
    """--audio-out / --play-audio: the recorded voice of a time range, on the replay window's timeline."""
    from base.errors import UserError
    from qa.voice import export, write_wav

    side, direction = args.voice.split("-") if args.voice else (None, "rx")
    try:
        pcm, what = export(args.files, args.audio_from, args.audio_to, direction, side)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.audio_out:
        write_wav(args.audio_out, pcm)
        print(f"{what} -> {args.audio_out}")
    if args.play_audio:
        import time

        from voice.audio_io import RATE, open_output

        out = open_output(args.cfg.voice.output)
        out.play(pcm)
        print(f"playing {what}", flush=True)
        time.sleep(pcm.size / RATE + 0.3)
        out.close()
    return 0


def run(args: argparse.Namespace) -> int:
    from qa.session import Session, check_files

    check_files(args.files)  # before the display: a bad file is named even where no window could open
    if args.audio_out or args.play_audio:
        return _voice(args)
    if args.screenshot and not has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a picture needs no screen
    if not args.to_bedside and not args.screenshot:
        require_display("replay", instead="teleop replay FILE --screenshot PNG")
    if args.to_bedside:
        session = Session(args.files, progress=progress_bar("loading "))
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

    from qa.replay_window import ReplayWindow, load_session

    app = QApplication.instance() or QApplication(sys.argv[:1])
    session = load_session(args.files, also=progress_bar("loading "))  # a progress dialog while a long file loads
    w = ReplayWindow(session)
    w.show()
    if args.at is not None:
        w.seek(session.t0_ns + int(args.at * 1e9))
    if args.screenshot:
        app.processEvents()
        w.grab().save(args.screenshot)
        return 0
    return int(app.exec())
