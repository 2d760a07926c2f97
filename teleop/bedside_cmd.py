"""`teleop bedside`: the bedside agent (simulated arms, watchdog, telemetry, video child)."""

from __future__ import annotations

import argparse

from base.runtime import StopFlag, write_json
from bedside.server import serve, summary
from teleop.args import positive_seconds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-video", action="store_true", help="do not start the stereo video sender")
    p.add_argument("--seconds", type=positive_seconds, default=None,
                   help="stop after this long (default: run until killed)")
    p.add_argument("--event-log", metavar="FILE", help="append every event and freeze as JSON lines")
    p.add_argument("--summary", metavar="FILE", help="write counters and freezes as JSON on exit")


def run(args: argparse.Namespace) -> int:
    agent = serve(args.cfg, StopFlag(), args.seconds, args.event_log, video=not args.no_video)
    if args.summary:
        write_json(args.summary, summary(agent))
    return 0
