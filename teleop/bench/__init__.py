"""Benchmarks. Each compares the project's path with the raw floor measured in the same run.

`teleop bench NAME --json` prints one JSON object; docs/benchmarks.md records the figures and the machine.
To add a benchmark, add a line to BENCHES: a module with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib

from teleop.cli import common_options

BENCHES: dict[str, tuple[str, str]] = {
    "link": ("teleop.bench.link", "command->ack RTT vs raw pyzmq ping-pong; 1 kHz send gaps"),
    "watchdog": ("teleop.bench.watchdog", "freeze latency after console kill/stop and a cut link"),
    "estop": ("teleop.bench.estop", "console e-stop press -> bedside latched, quiet or --stress, over --presses"),
    "video": ("teleop.bench.video", "stereo capture->decoded age, fps, Mbit/s vs the raw codec floor"),
    "frames": ("teleop.bench.frames", "per-frame CPU and wall of each video stage (signature, colour conversions, "
                                      "x264 by thread count, decode, compose, draw) on rendered frames, no I/O"),
    "filter": ("teleop.bench.filter", "tremor filter: attenuation at 8-12 Hz, added delay at 1 Hz"),
    "hotpath": ("teleop.bench.hotpath", "bedside per-servo_cp Python: decode, receive->ack, arm integration"),
    "soak": ("teleop.bench.soak", "bedside+console+video+recording for N minutes: lost, freezes, RSS/fd growth"),
    "stall": ("teleop.bench.stall", "both 1 kHz loops under issue #19's stress for N minutes: tick max, stalls "
                                    "with their stacks, unexplained freezes"),
    "recording": ("teleop.bench.recording", "send gaps with black-box MCAP recording off vs on (stereo video)"),
    "index": ("teleop.bench.index", "session index (teleop report DIR) over N synthetic sessions; the re-run "
                                    "that reads nothing"),
    "haptics": ("teleop.bench.haptics", "force loop with the simulated haptic device in contact: passivity energy, "
                                        "force rate and age; --scenario, --no-passivity"),
    "m2p": ("teleop.bench.m2p", "motion-to-photon: command sent -> first painted frame showing it, breakdown, "
                                "RTT, optical check; --scenario through the link emulator"),
    "failover": ("teleop.bench.failover", "two or three emulated paths, one cut and restored on a schedule (Wakasa): "
                                          "holds, lost commands, video gap vs the stale limit, applied per path"),
    "voice": ("teleop.bench.voice", "voice intercom: mouth-to-ear vs one-way delay over --scenario; 1 kHz send "
                                    "gaps with voice on/off"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (module, help_text) in BENCHES.items():
        mod = importlib.import_module(module)
        bp = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                            parents=[common_options(nested=True)],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        bp.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        mod.add_arguments(bp)
        bp.set_defaults(_bench=mod)


def run(args: argparse.Namespace) -> int:
    return int(args._bench.run(args) or 0)
