"""Session index over many synthetic sessions: how long `teleop report DIR -o OUT` takes to build
OUT/sessions.parquet, and a re-run that finds every session already indexed.

Synthesises --sessions sessions (qa/synth.py: console + bedside files, --seconds each, no video; with
--seconds 10 or more every other one has the story of stale-video episodes, a grace hold and an e-stop)
with wall-clock starts an hour apart, then times, in this process:

  index_s        the cold index: group the files, read each session, compute its figures, write Parquet
  per_session_ms index_s / sessions
  reindex_s      the same command again: nothing is read (the floor: listing, grouping, reading the index)
  rows           rows in sessions.parquet (must equal --sessions)

The floor to compare with is `reindex_s` (what the index costs when there is nothing new). Synthesis time
is reported but not part of the figure. docs/benchmarks.md records the figures and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

from teleop.args import positive_seconds
from teleop.bench.link import machine

HOUR_NS = 3_600_000_000_000


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of sessions (e.g. --sessions 200)") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text}: give at least one session (e.g. --sessions 200)")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=_positive_int, default=200, help="how many sessions (default 200)")
    p.add_argument("--seconds", type=positive_seconds, default=3.0,
                   help="length of each session (default 3; from 10 on, every other one has the story)")
    p.add_argument("--dir", default=None, help="keep the recordings and the index here (default: a temporary "
                                               "directory, removed)")


def run(args: argparse.Namespace) -> int:
    from qa.index import build_index
    from qa.synth import synthesize

    logging.getLogger("bedside").setLevel(logging.ERROR)  # the synthetic bedside's freezes are scripted
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="teleop-bench-index-") as tmp:
        base = args.dir or tmp
        rec, out = os.path.join(base, "recordings"), os.path.join(base, "index")
        t = time.perf_counter()
        for i in range(args.sessions):
            synthesize(rec, seconds=args.seconds, video=None, story=i % 2 == 0 and args.seconds > 9,
                       wall_ns=1_700_000_000_000_000_000 + i * HOUR_NS, host=f"or-{i % 7}")
        synth_s = time.perf_counter() - t
        t = time.perf_counter()
        res = build_index([rec], out)
        index_s = time.perf_counter() - t
        t = time.perf_counter()
        again = build_index([rec], out)
        reindex_s = time.perf_counter() - t
    r = {"sessions": args.sessions, "seconds_each": args.seconds, "synth_s": round(synth_s, 2),
         "index_s": round(index_s, 2), "per_session_ms": round(1000 * index_s / args.sessions, 1),
         "reindex_s": round(reindex_s, 2), "rows": len(again.rows), "read_again": again.indexed,
         "failed": res.failed, "machine": {**machine(), "loadavg_start": [round(x, 2) for x in load0],
                                           "loadavg_end": [round(x, 2) for x in os.getloadavg()]}}
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"index of {r['sessions']} sessions ({args.seconds:g} s each): {r['index_s']} s "
              f"({r['per_session_ms']} ms/session); re-run {r['reindex_s']} s ({r['read_again']} read again); "
              f"rows {r['rows']}; synthesis {r['synth_s']} s; load {r['machine']['loadavg_start']} -> "
              f"{r['machine']['loadavg_end']}")
    return 0 if r["rows"] == args.sessions and not r["read_again"] else 1
