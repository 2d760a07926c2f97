"""Rehearse a long-distance link on one machine: a proxy between console and bedside that delays, jitters,
rate-limits, stalls and cuts (transport/linkemu.py; this kernel has no netem).

It listens on --listen-port (control), +1 (telemetry) and +2 (video) on 127.0.0.1 and forwards to the
bedside's ports from the configuration. Point the console at it:
  teleop linkemu --scenario london-gibraltar --listen-port 6571
  teleop console --set link.control_port=6571 --set link.telemetry_port=6572 --set link.video_port=6573
Scenarios (one-way figures = half the published RTT): lan, london-gibraltar (RTT ≈ 55 ms), edge-5g
(38 ms, jitter ≤ 3 ms), strasbourg-hangzhou (≈ 200 ms), satellite (≈ 630 ms, 3.5 Mbit/s).
On exit it prints what it did (connections, bytes, one-way delays applied) as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from teleop.runtime import StopFlag, announce_ready
from transport.linkemu import SCENARIOS, LinkProfile, LinkProxy


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="lan")
    p.add_argument("--listen-port", type=int, default=6571, help="control; telemetry and video follow (+1, +2)")
    p.add_argument("--delay-ms", type=float, help="one-way delay (overrides the scenario)")
    p.add_argument("--jitter-ms", type=float, help="half-normal extra delay, standard deviation")
    p.add_argument("--rate-mbps", type=float, help="bandwidth cap per direction")
    p.add_argument("--stall-at", type=float, help="seconds after start: the link goes silent …")
    p.add_argument("--stall-for", type=float, default=2.0, help="… for this long, then delivers everything")
    p.add_argument("--cut-at", type=float, help="seconds after start: connections are reset")
    p.add_argument("--seconds", type=float, help="stop after this long")


def profile_from(args: argparse.Namespace) -> LinkProfile:
    p = SCENARIOS[args.scenario]
    changes = {k: v for k, v in (("delay_ms", args.delay_ms), ("jitter_ms", args.jitter_ms),
                                 ("rate_mbps", args.rate_mbps), ("cut_at_s", args.cut_at)) if v is not None}
    if args.stall_at is not None:
        changes["stalls"] = ((args.stall_at, args.stall_for),)
    for k, v in changes.items():
        if isinstance(v, float) and v < 0:
            raise SystemExit(f"teleop linkemu: --{k.replace('_', '-')} must not be negative")
    return dataclasses.replace(p, **changes)


def run(args: argparse.Namespace) -> int:
    prof = profile_from(args)
    link = args.cfg.link
    targets = (link.control_port, link.telemetry_port, link.video_port)
    proxies = [LinkProxy(args.listen_port + i, (link.bedside_host, port), prof, prof) for i, port in enumerate(targets)]
    announce_ready(scenario=args.scenario, listen=args.listen_port, one_way_ms=prof.delay_ms)
    stop = StopFlag()
    end = None if args.seconds is None else time.monotonic() + args.seconds
    while not stop and (end is None or time.monotonic() < end):
        time.sleep(0.05)
    report = {"scenario": args.scenario, "profile": dataclasses.asdict(prof),
              "links": {name: p.report() for name, p in zip(("control", "telemetry", "video"), proxies, strict=True)}}
    for p in proxies:
        p.close()
    print(json.dumps(report, indent=2))
    return 0
