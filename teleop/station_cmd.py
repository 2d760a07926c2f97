"""`teleop station`: the on-site team's station at the bedside (video, state, who is in control, alarms you
hear, guidance, the bedside e-stop and its reset with a reason, voice). Needs a key with the role `station`
(`teleop keys add NAME --role station`); `teleop monitor` stays the read-only view for anyone else."""

from __future__ import annotations

import argparse

from teleop.args import positive_seconds, require_display


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive_seconds, default=None, help="close after this long")
    p.add_argument("--settings-dir", metavar="DIR", help="keep this station's preferences here")
    p.add_argument("--title", default="", help="window title suffix (e.g. 'theatre 3')")
    p.add_argument("--no-sound", action="store_true", help="alarms visual only (the schedule still runs)")
    p.add_argument("--stats", metavar="FILE", help="on exit, write the alarms, guidance and alarm bursts (JSON)")


def run(args: argparse.Namespace) -> int:
    require_display("station")
    from console.ui.station import run_station  # the UI only inside the command that opens a window

    return run_station(args)
