"""`teleop report`: QA HTML report with plots and tables from one session's recordings; over a directory (or
with --index), the session index: OUT/sessions.parquet, one row per session, and OUT/index.html with trends."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from qa.index import build_index, write_trends
from qa.report import make_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE|DIR",
                   help="MCAP recordings of one session (console and/or bedside); or directories of recordings "
                        "to index (every session in them)")
    p.add_argument("-o", "--out", metavar="DIR", required=True,
                   help="directory for report.html and the PNGs (index: sessions.parquet, index.html, trends.png)")
    p.add_argument("--index", action="store_true",
                   help="index the given files as many sessions (implied when a directory is given)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--screenshot", metavar="PNG", default=None,
                   help="also save a picture of the report's first page (offscreen Qt; for the docs)")


def _screenshot(html: str, png: str) -> None:
    import os

    from teleop.args import has_display

    if not has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from qa.replay_window import grab_html  # the UI only inside the command that draws

    _app = QApplication.instance() or QApplication(sys.argv[:1])
    grab_html(html, png)


def run(args: argparse.Namespace) -> int:
    from teleop.replay_cmd import progress_bar

    t = time.monotonic()
    progress = None if args.no_progress else progress_bar("report ")
    if args.index or any(Path(f).is_dir() for f in args.files):
        res = build_index(args.files, args.out, progress)
        path = write_trends(res, args.out)
        print(f"{res.path}: {len(res.rows)} sessions ({res.indexed} read, {res.skipped} already indexed"
              f"{', ' + str(len(res.failed)) + ' not readable' if res.failed else ''}; "
              f"{time.monotonic() - t:.1f} s)", file=sys.stderr)
        for f in res.failed:
            print(f"teleop report: not indexed: {f}", file=sys.stderr)
        if args.screenshot:
            _screenshot(str(path), args.screenshot)
        print(path)
        return 0
    path = make_report(args.files, args.out, progress)
    print(f"{path} ({time.monotonic() - t:.1f} s)", file=sys.stderr)
    if args.screenshot:
        _screenshot(str(path), args.screenshot)
    print(path)
    return 0
