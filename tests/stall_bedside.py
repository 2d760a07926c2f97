"""A real bedside (BedsideServer, its recorder, no video) whose arms step blocks once for 300 ms on purpose, once
the console's commands are being applied: the stall tests/test_loop_stall.py explains. Run as a program:

    python tests/stall_bedside.py --event-log F --summary F [--after-applied N] [--set section.key=value ...]

Prints READY like `teleop bedside`; SIGTERM ends it and writes the summary.
"""

from __future__ import annotations

import argparse
import time

from base.config import load_config
from base.runtime import StopFlag, write_json
from bedside.server import BedsideServer
from recording.recorder import start_recorder
from teleop.cli import setup_logging

STALL_S = 0.3


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--event-log", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--after-applied", type=int, default=300, help="stall once this many commands were applied")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    cfg = load_config(None, args.set)
    setup_logging(cfg.logging.level, "bedside")
    stalled = False
    server: BedsideServer | None = None

    def stuck_arm_driver(now_ns: int) -> None:
        """Stands for an arm driver call that does not return: the call a stall report must name."""
        nonlocal stalled
        assert server is not None
        if not stalled and server.agent.counters["applied"] >= args.after_applied:
            stalled = True
            time.sleep(STALL_S)

    recorder = start_recorder(cfg, "bedside")
    server = BedsideServer(cfg, recorder, args.event_log, video=False, step_hook=stuck_arm_driver)
    try:
        server.run(StopFlag())
    finally:
        server.finish()
        if recorder is not None:
            recorder.close()
    write_json(args.summary, server.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
