"""Qualify the network before surgery: every configured path to a live bedside, measured for --minutes and
judged against go/no-go thresholds from the literature (qa/linkcheck.py; docs/operations.md, "Qualifying the
link before surgery").

  teleop linkcheck --minutes 5 --report linkcheck.html       (the console's configuration: link.paths)

Per path: RTT p50/p99/max, jitter, loss, reordering (PINGs at --rate-hz, which change nothing at the bedside),
and the stereo video received on that path against video.bitrate_kbps (--no-video skips it). A verdict per
path and overall (GO only if every path qualifies), an HTML report with plots, progress every 10 s on stderr.
Exit 0 on GO, 1 on NO-GO; a bedside that does not answer is one line with the cause and the fix (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from teleop.args import positive_seconds


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=float, default=None, help="how long to measure (default 5)")
    g.add_argument("--seconds", type=positive_seconds, default=None, help="how long, in seconds")
    p.add_argument("--rate-hz", type=float, default=100.0, help="pings per second on each path (default 100)")
    p.add_argument("--no-video", action="store_true", help="measure the control link only")
    p.add_argument("--report", metavar="FILE", default="linkcheck.html", help="HTML report (default linkcheck.html)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from qa.linkcheck import LinkcheckError, render_html, run_linkcheck

    if args.minutes is not None and not 0 < args.minutes < 24 * 60:
        raise LinkcheckError(f"--minutes {args.minutes:g}: give a positive number of minutes (e.g. --minutes 5)")
    if not 1 <= args.rate_hz <= 1000:
        raise LinkcheckError(f"--rate-hz {args.rate_hz:g}: give 1 to 1000 pings per second")
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 5)
    report = Path(args.report)
    if not report.parent.exists():
        raise LinkcheckError(f"--report {report}: the directory {report.parent} does not exist; create it or "
                             "choose another file")
    result = run_linkcheck(args.cfg, seconds, args.rate_hz, video=not args.no_video,
                           progress=lambda text: print(text, file=sys.stderr, flush=True))
    report.write_text(render_html(result), encoding="utf-8")
    result["report"] = str(report)
    if args.json:
        print(json.dumps({k: v for k, v in result.items()} | {
            "paths": [{k: v for k, v in p.items() if k != "series"} for p in result["paths"]]}))
    else:
        for p in result["paths"]:
            r = p["rtt_ms"]
            print(f"{p['name']:6} {p['verdict']:5} RTT p50 {r['p50']} p99 {r['p99']} max {r['max']} ms, jitter "
                  f"{p['jitter_ms']} ms, loss {p['loss_pct']} %, reordered {p['reordered']}"
                  + (f" — {'; '.join(p['why'])}" if p["why"] else ""))
        print(f"overall {result['verdict']}: {result['why']}; report {report}")
    return 0 if result["verdict"] == "GO" else 1
