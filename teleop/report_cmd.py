"""`teleop report`: QA HTML report with plots and a summary table from recordings."""

from __future__ import annotations

import argparse
import sys
import time

from qa.report import make_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="MCAP recordings (console and/or bedside)")
    p.add_argument("-o", "--out", metavar="DIR", required=True, help="directory for report.html and the PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    from teleop.replay_cmd import progress_bar

    t = time.monotonic()
    path = make_report(args.files, args.out, None if args.no_progress else progress_bar("report "))
    print(f"{path} ({time.monotonic() - t:.1f} s)", file=sys.stderr)
    print(path)
    return 0
