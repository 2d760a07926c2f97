"""`teleop screenshot`: a bedside and the console window offscreen, driven until following, saved as PNG."""

from __future__ import annotations

import argparse

from teleop.args import positive_seconds
from video.compositor import DisplayMode


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="docs/img/console.png", help="PNG to write (default %(default)s)")
    p.add_argument("--attach", action="store_true", help="use the running bedside named by --set link.*")
    p.add_argument("--seconds", type=positive_seconds, default=2.0,
                   help="keep driving this long once following (default 2)")
    p.add_argument("--summary", metavar="FILE", help="write the console engine's run summary (JSON)")
    p.add_argument("--stats", metavar="FILE", help="write the window's figures: frames painted, fps, age (JSON)")
    p.add_argument("--mode", choices=[m.value for m in DisplayMode], default=DisplayMode.SIDE_BY_SIDE.value,
                   help="display mode (default %(default)s)")
    p.add_argument("--size", default="1600x1000", help="window size WxH (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up waiting for following after this long")
    p.add_argument("--swap", action="store_true",
                   help="once following, press the arm-swap pedal and wait until the swapped hand follows again")
    p.add_argument("--station", metavar="DIR", help="instead: the bedside station (`teleop station`) in each main "
                   "state (surgeon in control, link lost, taken over, e-stop, reset), as DIR/station-*.png")


def run(args: argparse.Namespace) -> int:
    if args.station:
        from console.ui.station_shots import take_station_screenshots

        return take_station_screenshots(args)
    from console.ui.screenshot import take_screenshot  # the UI only inside the command that opens a window

    return take_screenshot(args)
