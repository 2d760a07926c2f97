"""Failover: two (or three) emulated paths, one of them cut and restored on a schedule (the Wakasa protocol).

Runs a real `teleop bedside` (video sender included) listening on every path, a real headless `teleop console`
following a scripted surgeon on all paths (link.paths), and, in this process, the link emulator with each path
emulated on its own (`--scenario`, rehearsal/linkemu.py PATH_SCENARIOS: fibre + 5G edge by default) and a video
viewer that moves the stream between paths as the window does (video/receiver.py, video/failover.py).
Every --cut-every seconds the next path is cut for --cut-for seconds (blackhole: silent, what was sent is
lost, its connections reset when it comes back: a cable cut longer than the heartbeats), one path at a time.

Wakasa et al. 2024 (J Robot Surg): three fibre carriers cut and restored every 3 minutes for 30 minutes, no
change in task performance. The figure of record: `--minutes 30` (default --cut-every 180).
Reports `holds` (bedside freezes + console link losses), `lost` (commands sent, never answered), `cuts`,
`video_gap_ms_max` (longest time between two decoded pictures), `video_stale_holds` and `stale_limit_ms`
(video.stale_ms), `applied_per_path` (servo_cp each path delivered first). Target: holds = 0, lost = 0,
video_gap_ms_max < stale_limit_ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from base.config import load_config
from base.procs import free_ports, start_role
from rehearsal.linkemu import PATH_SCENARIOS, LinkEmulator, links_of_path, path_links
from teleop.args import positive_minutes
from teleop.bench.link import machine
from transport.security import throwaway_keys

VIDEO = ["video.width=640", "video.height=360", "video.fps=30"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=positive_minutes, default=30.0, help="how long (default 30, the figure of record)")
    p.add_argument("--cut-every", type=float, default=180.0, metavar="S",
                   help="a cut every S seconds, the paths in turn (default 180: Wakasa's 3 minutes)")
    p.add_argument("--cut-for", type=float, default=None, metavar="S",
                   help="each cut lasts S seconds (default 0.4 of --cut-every)")
    p.add_argument("--scenario", choices=sorted(PATH_SCENARIOS), default="fibre+5g-edge",
                   help="the paths and their delays (default fibre+5g-edge)")


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _emulator(targets: list[tuple[str, tuple[int, int, int]]], scenario: str, conn) -> None:
    """The link emulator in a process of its own (its proxy threads must not share a GIL with the viewer's
    decoder): sends its ports, then cuts a path on ("cut", k, seconds), and answers "stop" with its report."""
    emu = LinkEmulator(path_links(targets, PATH_SCENARIOS[scenario]))
    conn.send([tuple(emu.port(f"path{k}/{kind}") for kind in ("control", "telemetry", "video"))
               for k in range(len(targets))])
    while True:
        msg = conn.recv()
        if msg[0] == "cut":
            emu.add_outage(msg[2], "blackhole", links=links_of_path(msg[1]))
        else:
            conn.send(emu.report())
            emu.close()
            return


def failover(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from video.receiver import VideoReceiver

    profiles = PATH_SCENARIOS[args.scenario]
    n = len(profiles)
    seconds = args.minutes * 60
    cut_every = args.cut_every
    cut_for = args.cut_for if args.cut_for is not None else 0.4 * cut_every
    if not 0 < cut_for < cut_every:
        raise SystemExit("teleop bench failover: --cut-for must be above 0 and below --cut-every")
    ports = free_ports(3 * n)
    bed_ports = [tuple(ports[3 * k:3 * k + 3]) for k in range(n)]
    keys = throwaway_keys(tmp / "keys")
    base = [*keys, f"recording.dir={tmp / 'rec'}", *VIDEO, *(getattr(args, "overrides", None) or [])]
    c0, t0, v0 = bed_ports[0]
    bed_sets = [*base, f"link.control_port={c0}", f"link.telemetry_port={t0}", f"link.video_port={v0}",
                "link.paths=" + ",".join(f"127.0.0.1:{c}:{t}:{v}" for c, t, v in bed_ports[1:])]
    bed_summary, con_summary = tmp / "bedside.json", tmp / "console.json"
    here, there = multiprocessing.Pipe()
    emu = multiprocessing.get_context("spawn").Process(
        target=_emulator, args=([("127.0.0.1", p) for p in bed_ports], args.scenario, there), daemon=True)
    emu.start()
    emu_ports = here.recv()
    e0 = emu_ports[0]
    con_sets = [*base, f"link.control_port={e0[0]}", f"link.telemetry_port={e0[1]}", f"link.video_port={e0[2]}",
                "link.paths=" + ",".join(f"127.0.0.1:{c}:{t}:{v}" for c, t, v in emu_ports[1:]),
                "console.engage_at_s=0.5"]
    roles = {}
    viewer = None
    cuts = 0
    gaps_max = 0.0
    stale_holds = 0
    try:
        roles["bedside"] = start_role("bedside", ["bedside", "--summary", str(bed_summary), *_sets(bed_sets)],
                                      timeout=90)
        roles["console"] = start_role("console", ["console", "--headless", "--summary", str(con_summary),
                                                  *_sets(con_sets)], timeout=90)
        viewer = VideoReceiver(load_config(None, con_sets))
        first = viewer.wait_frame(0, 30.0)
        if first is None:
            raise RuntimeError("no video from the bedside within 30 s")
        last_seq, last_ns, was_stale = first.seq, time.monotonic_ns(), False
        start = time.monotonic()
        next_cut = start + cut_every - cut_for
        progress = start + 60
        while (now := time.monotonic()) < start + seconds:
            if now >= next_cut and now + cut_for < start + seconds:
                here.send(("cut", cuts % n, cut_for))
                cuts += 1
                next_cut += cut_every
            view = viewer.latest()
            t = time.monotonic_ns()
            if view is not None and view.seq != last_seq:
                last_seq, last_ns = view.seq, view.decoded_ns
            gaps_max = max(gaps_max, (t - last_ns) / 1e6)
            stale = viewer.status(t).stale
            stale_holds += int(stale and not was_stale)
            was_stale = stale
            if now >= progress:
                print(f"failover: {now - start:.0f}/{seconds:.0f} s, {cuts} cuts, video gap max {gaps_max:.0f} ms",
                      file=sys.stderr, flush=True)
                progress += 60
            time.sleep(0.005)
        vstats = viewer.stats()
    finally:
        if viewer is not None:
            viewer.close()
        for name in ("console", "bedside"):
            if name in roles:
                roles[name].stop(timeout=15)
        here.send(("stop",))
        link = here.recv() if here.poll(10) else {}
        emu.join(5)
    con = json.loads(con_summary.read_text()) if con_summary.exists() else {}
    bed = json.loads(bed_summary.read_text()) if bed_summary.exists() else {}
    bc = bed.get("counters") or {}
    link_losses = [e for e in con.get("events", []) if e.get("source") == "link" and e.get("name") == "LOST"]
    return {
        "minutes": args.minutes, "cut_every_s": cut_every, "cut_for_s": cut_for, "scenario": args.scenario,
        "paths": n, "holds": len(bed.get("freezes") or []) + len(link_losses), "lost": con.get("lost"),
        "cuts": cuts, "video_gap_ms_max": round(gaps_max, 1), "video_stale_holds": stale_holds,
        "stale_limit_ms": load_config(None, con_sets).video.stale_ms,
        "applied_per_path": {f"path{k}": bc.get(f"applied_path{k}", 0) for k in range(n)},
        "duplicates_per_path": {f"path{k}": bc.get(f"duplicates_path{k}", 0) for k in range(n)},
        "commands_sent": con.get("commands_sent"), "commands_applied": con.get("commands_applied"),
        "commands_rejected": con.get("commands_rejected"), "bedside_freezes": bed.get("freezes"),
        "video_path_switches": vstats.get("path_switches"), "video_fps": vstats.get("fps"),
        "console_paths": con.get("paths"), "rtt_us": con.get("rtt_us"),
        "link_outages": len(link.get("outages", [])),
        "refusals": {k: v for k, v in bc.items() if k.startswith("rejected_")},
    }


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="teleop-failover-") as tmp:
        result = {"machine": machine(), **failover(args, Path(tmp))}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    ok = result["holds"] == 0 and result["lost"] == 0 and result["video_gap_ms_max"] < result["stale_limit_ms"]
    return 0 if ok else 1
