"""`teleop monitor`: the read-only view for the on-site team (video, bedside state, alarms, events)."""

from __future__ import annotations

import argparse

from teleop.args import positive_seconds, require_display


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive_seconds, default=None, help="close after this long")
    p.add_argument("--settings-dir", metavar="DIR", help="keep this monitor's preferences here")
    p.add_argument("--title", default="", help="window title suffix (e.g. 'scrub nurse')")
    p.add_argument("--stats", metavar="FILE", help="on exit, write frames painted, fps and picture age (JSON)")


def run(args: argparse.Namespace) -> int:
    require_display("monitor")
    from console.ui.monitor import run_monitor  # the UI only inside the command that opens a window

    return run_monitor(args)
