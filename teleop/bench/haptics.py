"""Haptics: the force loop with the simulated haptic device in contact with the tissue, over a link scenario.

Runs a real `teleop bedside` (telemetry at 1 kHz: the force's source rate), with --scenario a `teleop linkemu`
in between, a real headless `teleop console` with `console.master = bridge`, and the simulated haptic device
(rehearsal/haptic.py, its own process, the two-way bridge protocol). The device's hand presses the right
instrument ~5 mm into the simulated tissue, then moves in and out (±3 mm at the tool, 1.5 Hz) while staying in
contact, for --seconds; it presses engage every second throughout (ignored while following; after a hold it
re-engages, through ALIGNING, as a surgeon would), and `holds` lists what held it.

Reports (JSON with --json):
* `energy_min_j`: the lowest energy the console's passivity observer saw at either hand's port over the run
  (console/force.py: energy put in by the hand minus energy given back; < 0 = the loop created energy). With
  passivity (the default) it is ≥ 0 by construction; `--no-passivity` shows what the controller prevents.
  `device_energy_min_j` is the same integral as the device measured it, with its own velocity and the force it
  actually applied (the two differ by the loopback hop between them).
* `force_rate_hz`: new force samples (new bedside measurements) per second reaching the device in contact;
  floor: `bedside.telemetry_hz` (1000 here).
* `force_age_ms` {p50, p95}: bedside measurement → arrival at the device (one host, one CLOCK_MONOTONIC, the
  console's offset estimate in between); floor: the scenario's one-way delay (`floor.one_way_ms`).
* `force_playout`: the console's force playout (console/force_playout.py): the delay it settled on, samples
  released, skipped as late, dropped as old;
* `passivity_ticks`: control ticks on which the passivity controller changed a force; RTT; holds.

Targets (issue #17): energy_min_j ≥ 0 with passivity, force_rate_hz ≥ 500. A 200 ms RTT link is the
`strasbourg-hangzhou` scenario (100 ms each way). Timing figures need a quiet machine: state its load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from base.procs import free_ports, port_overrides, start_role
from teleop.args import positive_seconds
from teleop.bench.emulated import EmulatedLink
from teleop.bench.link import machine
from transport.security import throwaway_keys

TARGETS = {"energy_min_j": 0.0, "force_rate_hz": 500.0}
START_S = 4.0
"""The device rests this long (engage pulses every second) before it presses."""
RAMP_S = 1.0
PRESS_MM = 40.0
"""Hand travel: × motion scale 0.5 − 15 mm standoff ≈ 5 mm into the tissue (the wiggle: 2 to 8 mm; the bedside
refuses beyond 10)."""
SCALE, STANDOFF_MM = 0.5, 15.0
WIGGLE_MM, WIGGLE_HZ = 6.0, 1.5
SETS = ["bedside.telemetry_hz=1000", f"teleop.motion_scale={SCALE}", "console.master_timeout_ms=250",
        "teleop.latency_warn_ms=300", "teleop.latency_hard_ms=500", "bedside.max_command_age_ms=300"]
"""The device is a Python process on a shared machine: 250 ms of bridge silence before a FAULT (as `teleop bench
soak` allows its Python bridge), so a scheduling hiccup of the simulation does not end the contact. The latency
policy is widened (warn 300 ms, hold 500 ms RTT) so the 200 ms RTT link keeps following at full scale: this bench
measures the force loop, not the latency policy (docs/teleoperation.md has that)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rehearsal.linkemu import SCENARIOS

    p.add_argument("--scenario", choices=sorted(SCENARIOS),
                   help="through `teleop linkemu --scenario S` (strasbourg-hangzhou = 200 ms RTT); default: direct")
    p.add_argument("--seconds", type=positive_seconds, default=10.0, help="time in contact, measured (default 10)")
    p.add_argument("--no-passivity", action="store_true",
                   help="console.force_passivity=false: the same run without the passivity controller")


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def haptics(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from rehearsal.linkemu import SCENARIOS

    ctrl, telem, video, bport, fport = free_ports(5)
    keys = ["security.insecure=true"] if args.cfg.security.insecure else throwaway_keys(tmp / "keys")
    base = [*SETS, *port_overrides(ctrl, telem, video), *keys, f"recording.dir={tmp / 'recordings'}",
            *(args.overrides or [])]
    bridge, force = f"tcp://127.0.0.1:{bport}", f"tcp://127.0.0.1:{fport}"
    con = [*base, "console.master=bridge", f"console.bridge_endpoint={bridge}",
           f"console.bridge_force_endpoint={force}"]
    if args.no_passivity:
        con.append("console.force_passivity=false")
    wiggle_at = START_S + RAMP_S + 0.5
    roles = []
    linkemu = None
    link_report: dict[str, Any] = {}
    report = tmp / "device.json"
    try:
        bedside = start_role("bedside", ["bedside", "--no-video", "--summary", str(tmp / "bedside.json"),
                                         *_sets(base)], timeout=60)
        roles.append(bedside)
        if args.scenario:
            linkemu = EmulatedLink(args.scenario, tmp, _sets(base))
            con = linkemu.console_sets(con)
        console = start_role("console", ["console", "--headless", "--summary", str(tmp / "console.json"),
                                         *_sets(con)], timeout=60)
        roles.append(console)
        device = start_role("device", [], command=[
            sys.executable, "-m", "rehearsal.haptic", "--bridge", bridge, "--force", force, "--report", str(report),
            "--start-s", str(START_S), "--press-mm", str(PRESS_MM), "--ramp-s", str(RAMP_S),
            "--wiggle-mm", str(WIGGLE_MM), "--wiggle-hz", str(WIGGLE_HZ), "--wiggle-at-s", str(wiggle_at),
            "--contact-from-s", str(wiggle_at), "--seconds", str(wiggle_at + args.seconds),
            "--engage-until-s", str(wiggle_at + args.seconds)])
        roles.append(device)
        device.proc.wait(wiggle_at + args.seconds + 30)
    finally:
        for r in reversed(roles):
            r.stop(timeout=15)
        if linkemu is not None:
            link_report = linkemu.stop()
    if not report.exists():
        raise RuntimeError(f"the simulated device wrote no report: {roles[-1].stderr_text()[-2000:]}")
    dev = json.loads(report.read_text())
    c = json.loads((tmp / "console.json").read_text())
    f = c.get("master", {}).get("force", {})
    holds = [e for e in c.get("events", []) if str(e.get("name", "")).endswith("->HELD")]
    pressed = [t for t in dev["trace"] if t[0] >= wiggle_at]
    profile = SCENARIOS[args.scenario] if args.scenario else None
    # the tool's depth in the tissue, from the hand's (motion scale, standoff): > 0 throughout = in contact
    depth = [t[1] * SCALE - STANDOFF_MM for t in pressed]
    # the share of the measured time the device felt a force (with passivity, the controller may take it to 0)
    on = round(sum(1 for t in pressed if t[2] > 0.0) / len(pressed), 3) if pressed else None
    return {
        "scenario": args.scenario or "direct", "passivity": not args.no_passivity,
        "energy_min_j": f.get("energy_min_j"), "device_energy_min_j": dev["device_energy_min_j"],
        "force_rate_hz": dev["force_rate_hz"], "force_age_ms": dev["force_age_ms"],
        "console_force_age_us": f.get("age_us"), "force_playout": f.get("playout"),
        "passivity_ticks": f.get("passivity_ticks"),
        "passivity_dissipated_j": f.get("passivity_dissipated_j"),
        "force_on_fraction": on,
        "tool_depth_mm": {"min": round(min(depth), 2), "max": round(max(depth), 2)} if depth else None,
        "in_contact": bool(depth) and min(depth) > 0.0,
        "force_n": {"min": min((t[2] for t in pressed), default=None), "max": max((t[2] for t in pressed),
                                                                                   default=None)},
        "rtt_ms": {k: (None if v is None else round(v / 1000, 3)) for k, v in (c.get("rtt_us") or {}).items()
                   if k in ("p50", "p99", "max")},
        "holds": [f"{e.get('name')} ({e.get('reason')})" for e in holds],
        "floor": {"telemetry_hz": 1000, "one_way_ms": profile.delay_ms if profile else 0.0},
        "link": link_report.get("links") if link_report else None,
    }


def run(args: argparse.Namespace) -> int:
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teleop-haptics-") as tmp:
        r = {"machine": machine(), **haptics(args, Path(tmp))}
    r["loadavg_start"], r["loadavg_end"] = load0, [round(x, 2) for x in os.getloadavg()]
    r["wall_s"] = round(time.monotonic() - t0, 1)
    r["targets"] = {"energy_min_j>=0": (r["energy_min_j"] or 0.0) >= TARGETS["energy_min_j"],
                    "force_rate_hz>=500": (r["force_rate_hz"] or 0.0) >= TARGETS["force_rate_hz"],
                    "in_contact": r["in_contact"]}
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        age = r["force_age_ms"] or {}
        print(f"haptics {r['scenario']}, passivity {'on' if r['passivity'] else 'off'}: energy min "
              f"{r['energy_min_j']:.6f} J (device {r['device_energy_min_j']:.6f} J), force rate "
              f"{r['force_rate_hz']} Hz, force age p50 {age.get('p50')} ms p95 {age.get('p95')} ms, passivity "
              f"acted on {r['passivity_ticks']} ticks; RTT p50 {r['rtt_ms'].get('p50')} ms; holds {len(r['holds'])}")
    return 0 if (not r["passivity"] or all(r["targets"].values())) else 1
