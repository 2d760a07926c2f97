"""The `teleop` command. Each subcommand is a module with `add_arguments(parser)` and `run(args) -> int`.

To add one, add a line to COMMANDS; nothing else here changes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from base.config import Config, load_config
from base.errors import UserError
from base.runtime import queued_logging
from teleop.args import OneLineParser

COMMANDS: dict[str, tuple[str, str]] = {
    "bedside": ("teleop.bedside_cmd", "run the bedside agent: simulated arms, watchdog, telemetry"),
    "console": ("teleop.console_cmd", "run the surgeon console engine (1 kHz servo_cp stream)"),
    "demo": ("teleop.demo", "start a bedside and a console on this machine and report"),
    "bench": ("teleop.bench", "measure latency, freeze time and throughput against the raw floor"),
    "config": ("teleop.config_cmd", "print the effective configuration as commented TOML"),
    "diagrams": ("teleop.diagrams_cmd", "print, regenerate (--write) or check (--check) docs/state-machines.md"),
    "linkemu": ("teleop.linkemu_cmd", "emulate a long-distance link (delay, jitter, rate, stalls, cuts) on loopback"),
    "linkcheck": ("teleop.linkcheck_cmd", "qualify every network path to a live bedside before surgery: go/no-go"),
    "keys": ("teleop.keys_cmd", "create, list and revoke CurveZMQ keys by role (surgeon, station, monitor, qa)"),
    "monitor": ("teleop.monitor_cmd", "read-only view for the on-site team: video, bedside state, alarms, events"),
    "station": ("teleop.station_cmd", "the on-site team's station: video, who is in control, alarms, bedside e-stop"),
    "screenshot": ("teleop.screenshot_cmd", "run a bedside and the console window offscreen, driven, and save a PNG"),
    "replay": ("teleop.replay_cmd", "QA: replay recordings (video, events, plots) or re-drive a bedside with one"),
    "report": ("teleop.report_cmd", "QA: HTML report with plots and a summary table from recordings"),
    "voice": ("teleop.voice_cmd", "voice intercom, one end: the station's (binds) or the console's (--side console)"),
}


def common_options(nested: bool = False) -> argparse.ArgumentParser:
    """--config/--set/--log-level/--insecure. `nested` parsers (e.g. `bench link`) must not reset what the
    level above already parsed, so their defaults are suppressed."""
    none = argparse.SUPPRESS if nested else None
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", default=none, help="TOML configuration file (see `teleop config`)")
    g.add_argument(
        "--set",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=argparse.SUPPRESS if nested else [],
        help="override one configuration value; repeatable, validated like the file",
    )
    g.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=none, help="log verbosity")
    g.add_argument("--insecure", action="store_true", default=argparse.SUPPRESS if nested else False,
                   help="DEBUG ONLY: turn off encryption and authentication (a warning is printed at every start)")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = OneLineParser(
        prog="teleop",
        description="Surgeon-console teleoperation: console, bedside agent, safety watchdogs, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name, help=help_text, description=(mod.__doc__ or help_text).strip(), parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated configuration for this invocation: file, then --set overrides, then --log-level."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "log_level", None):
        overrides.append(f"logging.level={args.log_level}")
    if getattr(args, "insecure", False):
        overrides.append("security.insecure=true")
    return load_config(getattr(args, "config", None), overrides)


def setup_logging(level: str, role: str) -> None:
    """Every role logs through a queue to one writer thread: no thread, above all no control loop, ever waits
    for stderr (base/runtime.py `queued_logging`, issue #19)."""
    queued_logging(getattr(logging, level), f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s", sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.cfg = config_from_args(args)
        setup_logging(args.cfg.logging.level, args.command)
        if args.cfg.security.insecure:
            logging.getLogger("security").warning(
                "INSECURE MODE: links are neither encrypted nor authenticated. For debugging only, never with a "
                "patient.")
        return int(args._module.run(args) or 0)
    except UserError as exc:
        for line in str(exc).splitlines():  # several problems (a configuration file): one line each
            print(f"teleop: {exc.label}: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`teleop config | head`): nothing is wrong and nothing more can be said.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
