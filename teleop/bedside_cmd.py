"""`teleop bedside`: the bedside agent (simulated arms, watchdog, telemetry, video child)."""

from __future__ import annotations

import argparse

import zmq

from base.runtime import write_json
from bedside.server import BedsideServer
from recording.recorder import start_recorder
from teleop.args import positive_seconds
from teleop.role_run import run_role
from transport import security


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-video", action="store_true", help="do not start the stereo video sender")
    p.add_argument("--seconds", type=positive_seconds, default=None,
                   help="stop after this long (default: run until killed)")
    p.add_argument("--event-log", metavar="FILE", help="append every event and freeze as JSON lines")
    p.add_argument("--summary", metavar="FILE", help="write counters and freezes as JSON on exit")


def run(args: argparse.Namespace) -> int:
    # The keys first: a key error is one line before any child process starts (BedsideServer gets the same
    # ZAP handler back). Then the recorder, before the server: its video child records too.
    security.for_server(args.cfg, zmq.Context.instance())
    recorder = start_recorder(args.cfg, "bedside")
    server = run_role(lambda: BedsideServer(args.cfg, recorder, args.event_log, video=not args.no_video), recorder,
                      args.seconds)
    if args.summary:
        write_json(args.summary, server.summary())
    return 0
