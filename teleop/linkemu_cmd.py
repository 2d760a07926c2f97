"""Rehearse a long-distance link on one machine: a proxy between console and bedside that delays, jitters,
rate-limits, stalls, blackholes and resets (rehearsal/linkemu.py; this kernel has no netem).

It listens on --listen-port (control), +1 (telemetry) and +2 (video) on 127.0.0.1 and forwards to the
bedside's ports from the configuration. Point the console at it:
  teleop linkemu --scenario london-gibraltar --listen-port 6571
  teleop console --set link.control_port=6571 --set link.telemetry_port=6572 --set link.video_port=6573
Scenarios (one-way figures = half the published RTT): lan, london-gibraltar (RTT ≈ 55 ms), edge-5g
(38 ms, jitter ≤ 3 ms), strasbourg-hangzhou (≈ 200 ms), satellite (≈ 630 ms, 3.5 Mbit/s).

Outages (whole link, every endpoint, both directions), MODE = stall | blackhole | reset:
  --outage 5:0.5:stall            at 5 s for 0.5 s the link is silent, then delivers everything
  --flap 10:0.2:0.3:6:blackhole   from 10 s, six times: 0.2 s down (data lost, connections reset), 0.3 s up
--scenario-file FILE (TOML) sets all of it, per direction and per endpoint (format in docs/reliability.md).
--commands reads commands from stdin while it runs, for QA and tests to fault the link *now*:
  stall 1.5 | blackhole 2 | reset 0.5 | flap DOWN UP COUNT [MODE]    (each answered `OK outage=ID ...`)
On exit (SIGTERM, SIGINT, --seconds, end of stdin with --commands) it prints what it did — traffic, the
one-way delays applied, every outage and connection event with monotonic timestamps — as JSON, also to
--report FILE.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from base.runtime import StopFlag, announce_ready, write_json
from rehearsal.linkemu import MODES, SCENARIOS, LinkEmulator, LinkProfile, Outage, flapping
from teleop.args import positive_seconds

LINKS = ("control", "telemetry", "video")
PROFILE_KEYS = ("delay_ms", "jitter_ms", "rate_mbps", "ramp_to_ms", "ramp_s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default=None, help="built-in scenario (default lan)")
    p.add_argument("--scenario-file", metavar="FILE", help="TOML scenario (docs/reliability.md)")
    p.add_argument("--listen-port", type=int, default=6571,
                   help="control; telemetry and video follow (+1, +2); 0 = any free ports (see READY)")
    p.add_argument("--delay-ms", type=float, help="one-way delay (overrides the scenario)")
    p.add_argument("--jitter-ms", type=float, help="half-normal extra delay, standard deviation")
    p.add_argument("--rate-mbps", type=float, help="bandwidth cap per direction")
    p.add_argument("--stall-at", type=float, help="seconds after start: the link goes silent …")
    p.add_argument("--stall-for", type=float, default=2.0, help="… for this long, then delivers everything")
    p.add_argument("--cut-at", type=float, help="seconds after start: connections are reset, for good")
    p.add_argument("--outage", action="append", default=[], metavar="START:DURATION[:MODE]",
                   help="scheduled outage (repeatable); MODE stall (default), blackhole or reset")
    p.add_argument("--flap", action="append", default=[], metavar="START:DOWN:UP:COUNT[:MODE]",
                   help="a flapping link (repeatable)")
    p.add_argument("--commands", action="store_true", help="read outage commands from stdin (see above)")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report here on exit")
    p.add_argument("--seconds", type=positive_seconds, help="stop after this long")


def _fail(msg: str) -> SystemExit:
    return SystemExit(f"teleop linkemu: {msg}")


def parse_outage(text: str) -> Outage:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise _fail(f"--outage {text!r}: expected START:DURATION[:MODE]")
    try:
        return Outage(float(parts[0]), float(parts[1]), parts[2] if len(parts) == 3 else "stall")
    except ValueError as exc:
        raise _fail(f"--outage {text!r}: {exc}") from None


def parse_flap(text: str) -> tuple[Outage, ...]:
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise _fail(f"--flap {text!r}: expected START:DOWN:UP:COUNT[:MODE]")
    try:
        return flapping(float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3]),
                        parts[4] if len(parts) == 5 else "stall")
    except ValueError as exc:
        raise _fail(f"--flap {text!r}: {exc}") from None


def _profile_changes(table: dict[str, Any], where: str) -> dict[str, float]:
    out = {}
    for k, v in table.items():
        if k not in PROFILE_KEYS:
            raise _fail(f"{where}: unknown key {k!r} (known: {', '.join(PROFILE_KEYS)})")
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise _fail(f"{where}.{k}: must be a number ≥ 0, got {v!r}")
        out[k] = float(v)
    return out


def _outages_from_file(data: dict[str, Any], path: str) -> list[Outage]:
    out: list[Outage] = []
    for kind in ("outage", "flap"):
        for i, o in enumerate(data.get(kind, [])):
            try:
                if kind == "outage":
                    out.append(Outage(float(o["start_s"]), float(o["duration_s"]), str(o.get("mode", "stall"))))
                else:
                    out += flapping(float(o["start_s"]), float(o["down_s"]), float(o["up_s"]), int(o["count"]),
                                    str(o.get("mode", "stall")))
            except (KeyError, TypeError, ValueError) as exc:
                raise _fail(f"{path}: [[{kind}]] #{i + 1}: {exc!r}") from None
    return out


def profiles_from(args: argparse.Namespace) -> tuple[str, dict[tuple[str, str], LinkProfile]]:
    """(scenario name, profile per (link, direction)): built-in → file (all, [up]/[down], [link]/[link.dir])
    → command-line flags (all links and directions)."""
    data: dict[str, Any] = {}
    if args.scenario_file:
        try:
            data = tomllib.loads(Path(args.scenario_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise _fail(f"--scenario-file {args.scenario_file}: {exc}") from None
    base = args.scenario or data.pop("base", None) or "lan"
    data.pop("base", None)
    if base not in SCENARIOS:
        raise _fail(f"unknown scenario {base!r} (known: {', '.join(sorted(SCENARIOS))})")
    name = Path(args.scenario_file).stem if args.scenario_file else base
    where = args.scenario_file or ""
    outages = _outages_from_file(data, where)
    data.pop("outage", None)
    data.pop("flap", None)
    sections = {k: data.pop(k) for k in ("up", "down", *LINKS) if k in data}
    top = _profile_changes(data, where)
    for s, table in sections.items():
        if not isinstance(table, dict):
            raise _fail(f"{where}: [{s}] must be a table")
    flags = {k: v for k, v in (("delay_ms", args.delay_ms), ("jitter_ms", args.jitter_ms),
                               ("rate_mbps", args.rate_mbps)) if v is not None}
    for k, v in flags.items():
        if v < 0:
            raise _fail(f"--{k.replace('_', '-')} must not be negative")
    if args.stall_at is not None:
        outages.append(Outage(args.stall_at, args.stall_for, "stall"))
    if args.cut_at is not None:
        outages.append(Outage(args.cut_at, float("inf"), "reset"))
    outages += [parse_outage(o) for o in args.outage]
    for f in args.flap:
        outages += parse_flap(f)
    out = {}
    for link in LINKS:
        per_link = dict(sections.get(link, {}))
        for d in ("up", "down"):
            changes = {**top, **_profile_changes(sections.get(d, {}), f"{where}[{d}]")}
            link_dir = per_link.pop(d, {}) if d in per_link else {}
            flat = {k: v for k, v in per_link.items() if not isinstance(v, dict)}
            changes.update(_profile_changes(flat, f"{where}[{link}]"))
            changes.update(_profile_changes(link_dir, f"{where}[{link}.{d}]"))
            changes.update(flags)
            out[(link, d)] = dataclasses.replace(SCENARIOS[base], **changes, outages=tuple(outages))
    return name, out


def _command(emu: LinkEmulator, line: str) -> str:
    words = line.split()
    try:
        if words[0] in MODES and len(words) == 2:
            w = emu.add_outage(float(words[1]), words[0])
            return f"OK outage={w.id} mode={w.mode} start_ns={w.start_ns} end_ns={int(w.end_ns)}"
        if words[0] == "flap" and len(words) in (4, 5):
            ws = emu.add_flapping(float(words[1]), float(words[2]), int(words[3]),
                                  words[4] if len(words) == 5 else "stall")
            return f"OK outages={','.join(str(w.id) for w in ws)} start_ns={ws[0].start_ns} end_ns={int(ws[-1].end_ns)}"
    except (ValueError, IndexError) as exc:
        return f"ERROR {exc}"
    return f"ERROR unknown command {line.strip()!r}: stall|blackhole|reset SECONDS, flap DOWN UP COUNT [MODE]"


def run(args: argparse.Namespace) -> int:
    name, profiles = profiles_from(args)
    link = args.cfg.link
    targets = dict(zip(LINKS, (link.control_port, link.telemetry_port, link.video_port), strict=True))
    port0 = args.listen_port
    emu = LinkEmulator({ln: (port0 + i if port0 else 0, (link.bedside_host, targets[ln]), profiles[(ln, "up")],
                             profiles[(ln, "down")]) for i, ln in enumerate(LINKS)})
    stop = StopFlag()
    if args.commands:
        def read_commands() -> None:
            for line in sys.stdin:
                if line.strip():
                    print(_command(emu, line), flush=True)
            stop.set()

        threading.Thread(target=read_commands, daemon=True).start()
    up = profiles[("control", "up")]
    announce_ready(scenario=name, control=emu.port("control"), telemetry=emu.port("telemetry"),
                   video=emu.port("video"), one_way_ms=up.delay_ms, start_ns=emu.start_ns)
    end = None if args.seconds is None else time.monotonic() + args.seconds
    while not stop and (end is None or time.monotonic() < end):
        time.sleep(0.05)
    report = {"scenario": name, **emu.report()}
    emu.close()
    if args.report:
        write_json(args.report, report)
    print(json.dumps(report, indent=2), flush=True)
    return 0
