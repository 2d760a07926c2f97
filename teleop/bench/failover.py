"""Failover: two (or three) paths, one of them cut and restored on a schedule (the Wakasa protocol).

Runs a real `teleop bedside` (video sender included) listening on every path, a real headless `teleop console`
following a scripted surgeon on all paths (link.paths), and a video viewer (rehearsal/videowatch.py, a process of
its own) that moves the stream between paths as the window does (video/receiver.py, video/failover.py). The paths
(`--net`):

* `netns` (the default when root): real kernel paths. The bedside in one network namespace, the console and the
  viewer in another, one veth pair per path (rehearsal/netns.py NetnsPaths); each path's delay and jitter from
  `--scenario` (rehearsal/linkemu.py PATH_SCENARIOS) as `tc qdisc ... netem` on both ends of its veth
  (rehearsal/netns.py netem_args; reported as `netem`), where the kernel has netem; a cut is `ip link set ... down`
  for --cut-for seconds: silent, TCP retransmitting or ZMTP heartbeats closing the connection, as on a real cable.
  Nothing of the bench forwards a byte: the machine's load is the roles' own.
* `proxy`: the Python link emulator (rehearsal/linkemu.py) in a process of the bench, each path emulated on its
  own; a cut is a blackhole (silent, what was sent is lost, its connections reset when it comes back). It forwards
  both 1 kHz streams and the video of every path, and loads a 2-core machine heavily (docs/reliability.md).

Every --cut-every seconds the next path is cut for --cut-for seconds, one path at a time.
Wakasa et al. 2024 (J Robot Surg): three fibre carriers cut and restored every 3 minutes for 30 minutes, no
change in task performance. The figure of record: `--minutes 30` (default --cut-every 180).
Reports `holds` (bedside freezes + console link losses), `lost` (commands sent, never answered), `cuts`,
`video_gap_ms_max` (longest time between two decoded pictures), `video_stale_holds` and `stale_limit_ms`
(video.stale_ms), `applied_per_path` (servo_cp each path delivered first), `refusals` (the bedside's, by reason),
`net` and the load average at start and end. Target: holds = 0, lost = 0, video_gap_ms_max < stale_limit_ms.
To explain a hold or a gap: `video_long_gaps` (each gap over 120 ms: its start, length, frame ids apart, whether a
keyframe followed, the path), `video_move_ms`, and the bedside's own log lines `video_first_keys`,
`video_sender_stalls`, `bedside_stalls` and `video_mode_changes`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from base.config import load_config
from base.errors import UserError
from base.procs import free_ports, port_overrides, start_role
from rehearsal.linkemu import PATH_SCENARIOS, LinkEmulator, LinkProfile, links_of_path, path_links
from rehearsal.netns import NetnsPaths, netem_args, netem_available, netns_available
from teleop.args import positive_minutes
from teleop.bench.link import machine
from transport.security import throwaway_keys

VIDEO = ["video.width=640", "video.height=360", "video.fps=30"]
NETS = ("netns", "proxy")


class FailoverError(UserError):
    label = "bench failover"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=positive_minutes, default=30.0, help="how long (default 30, the figure of record)")
    p.add_argument("--cut-every", type=float, default=180.0, metavar="S",
                   help="a cut every S seconds, the paths in turn (default 180: Wakasa's 3 minutes)")
    p.add_argument("--cut-for", type=float, default=None, metavar="S",
                   help="each cut lasts S seconds (default 0.4 of --cut-every)")
    p.add_argument("--scenario", choices=sorted(PATH_SCENARIOS), default="fibre+5g-edge",
                   help="the paths and their delays (default fibre+5g-edge)")
    p.add_argument("--net", choices=NETS, default=None,
                   help="netns: real kernel paths (veth pairs, netem, `ip link set down`; root; the default when "
                        "available); proxy: the Python link emulator")


def choose_net(requested: str | None) -> tuple[str, str]:
    """The paths to use, and a one-line note when the default had to fall back (printed on stderr)."""
    ok, why = netns_available()
    if requested == "netns" and not ok:
        raise FailoverError(f"--net netns: {why}; run as root, or use --net proxy (the Python link emulator)")
    if requested is None:
        return ("netns", "") if ok else ("proxy", f"--net proxy: {why}")
    return requested, ""


def netem_plan(profiles: tuple[LinkProfile, ...]) -> dict[str, str]:
    """What each path's scenario profile is as netem, one direction (both ends of its veth get it)."""
    return {f"path{k}": " ".join(netem_args(prof)) for k, prof in enumerate(profiles)}


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _emulator(targets: list[tuple[str, tuple[int, int, int]]], scenario: str, conn) -> None:
    """The link emulator in a process of its own (its proxy threads must not share a GIL with the bench): sends
    its ports, then cuts a path on ("cut", k, seconds), and answers "stop" with its report."""
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


class ProxyPaths:
    """`--net proxy`: the emulator's ports on loopback; a cut is a blackhole it times itself."""

    def __init__(self, scenario: str, n: int) -> None:
        self.scenario, self.n = scenario, n
        self.bed_prefix: list[str] | None = None
        self.con_prefix: list[str] | None = None
        self.report: dict = {}

    @contextlib.contextmanager
    def up(self, base: list[str]) -> Iterator[ProxyPaths]:
        ports = free_ports(3 * self.n)
        bed_ports = [tuple(ports[3 * k:3 * k + 3]) for k in range(self.n)]
        self.bed_sets = [*base, *port_overrides(*bed_ports[0]),
                         "link.paths=" + ",".join(f"127.0.0.1:{c}:{t}:{v}" for c, t, v in bed_ports[1:])]
        self._here, there = multiprocessing.Pipe()
        self._emu = multiprocessing.get_context("spawn").Process(
            target=_emulator, args=([("127.0.0.1", p) for p in bed_ports], self.scenario, there), daemon=True)
        self._emu.start()
        try:
            emu_ports = self._here.recv()
            self.con_sets = [*base, *port_overrides(*emu_ports[0]),
                             "link.paths=" + ",".join(f"127.0.0.1:{c}:{t}:{v}" for c, t, v in emu_ports[1:])]
            yield self
        finally:
            with contextlib.suppress(OSError, EOFError):
                self._here.send(("stop",))
                self.report = self._here.recv() if self._here.poll(10) else {}
            self._emu.join(5)
            if self._emu.is_alive():
                self._emu.kill()

    def cut(self, k: int, seconds: float) -> None:
        self._here.send(("cut", k, seconds))

    def tick(self, now: float) -> None:
        pass


class KernelPaths:
    """`--net netns`: namespaces and veth pairs (rehearsal/netns.py), netem where the kernel has it, cuts by
    `ip link set down` restored by `tick`. Leaving `up` (an error, Ctrl-C, SIGTERM) deletes the namespaces."""

    def __init__(self, profiles: tuple[LinkProfile, ...]) -> None:
        self.profiles = profiles
        self.ns = NetnsPaths(prefix="tlf", subnets=tuple(f"10.231.{94 + k}" for k in range(len(profiles))))
        self.bed_prefix = self.ns.exec_prefix(self.ns.bed)
        self.con_prefix = self.ns.exec_prefix(self.ns.con)
        self.netem = netem_plan(profiles)
        self.netem_applied, self.netem_why = netem_available()
        self._restore: dict[int, float] = {}

    @contextlib.contextmanager
    def up(self, base: list[str]) -> Iterator[KernelPaths]:
        ports = port_overrides(*free_ports(3))
        self.bed_sets = [*base, *ports, *self.ns.link_sets("bedside")]
        self.con_sets = [*base, *ports, *self.ns.link_sets("console")]
        with self.ns:
            if self.netem_applied:
                for k, prof in enumerate(self.profiles):
                    self.ns.shape(k, netem_args(prof))
            try:
                yield self
            finally:
                for k in list(self._restore):
                    with contextlib.suppress(subprocess.CalledProcessError):
                        self.ns.restore(k)

    def cut(self, k: int, seconds: float) -> None:
        self.ns.cut(k)
        self._restore[k] = time.monotonic() + seconds

    def tick(self, now: float) -> None:
        for k, t in list(self._restore.items()):
            if now >= t:
                self.ns.restore(k)
                del self._restore[k]


def failover(args: argparse.Namespace, tmp: Path, net: str) -> dict[str, Any]:
    profiles = PATH_SCENARIOS[args.scenario]
    n = len(profiles)
    seconds = args.minutes * 60
    cut_every = args.cut_every
    cut_for = args.cut_for if args.cut_for is not None else 0.4 * cut_every
    if not 0 < cut_for < cut_every:
        raise FailoverError(f"--cut-for {cut_for:g} must be above 0 and below --cut-every {cut_every:g}")
    keys = throwaway_keys(tmp / "keys")
    base = [*keys, f"recording.dir={tmp / 'rec'}", *VIDEO, *(getattr(args, "overrides", None) or [])]
    paths: ProxyPaths | KernelPaths = ProxyPaths(args.scenario, n) if net == "proxy" else KernelPaths(profiles)
    if isinstance(paths, KernelPaths) and not paths.netem_applied:
        print(f"teleop bench failover: --net netns without delays ({paths.netem_why}); --net proxy emulates them",
              file=sys.stderr, flush=True)
    bed_summary, con_summary = tmp / "bedside.json", tmp / "console.json"
    roles = {}
    viewer = None
    cuts = 0
    cut_log: list[tuple[float, int]] = []  # (s from the start, path)
    start = time.monotonic()
    video: dict = {}
    load_start = os.getloadavg()
    with paths.up(base):
        con_sets = [*paths.con_sets, "console.engage_at_s=0.5"]
        try:
            roles["bedside"] = start_role("bedside", ["bedside", "--summary", str(bed_summary),
                                                      *_sets(paths.bed_sets)], timeout=90, prefix=paths.bed_prefix)
            roles["console"] = start_role("console", ["console", "--headless", "--summary", str(con_summary),
                                                      *_sets(con_sets)], timeout=90, prefix=paths.con_prefix)
            viewer = subprocess.Popen([*(paths.con_prefix or []), sys.executable, "-m", "rehearsal.videowatch",
                                       str(seconds), "--progress", "60", *con_sets],
                                      stdout=subprocess.PIPE, text=True)
            assert viewer.stdout is not None
            ready = viewer.stdout.readline()
            if not ready.startswith("READY"):
                raise RuntimeError(f"the video viewer did not start: {ready.strip() or viewer.wait(30)}")
            start = time.monotonic()
            next_cut = start + cut_every - cut_for
            while (now := time.monotonic()) < start + seconds:
                paths.tick(now)
                if now >= next_cut and now + cut_for < start + seconds:
                    paths.cut(cuts % n, cut_for)
                    cut_log.append((round(now - start, 3), cuts % n))
                    cuts += 1
                    next_cut += cut_every
                time.sleep(0.01)
            lines = viewer.communicate(timeout=90)[0].splitlines()
            video = json.loads(lines[-1]) if lines else {}
        finally:
            if viewer is not None and viewer.poll() is None:
                viewer.kill()
                viewer.wait()
            for name in ("console", "bedside"):
                if name in roles:
                    roles[name].stop(timeout=15)
    bed_log = (roles["bedside"].stderr_text() if "bedside" in roles else "").splitlines()

    def lines(needle: str, last: int) -> list[str]:
        return [line.strip() for line in bed_log if needle in line][-last:]
    sequence_log = lines("REJECTED_SEQUENCE", 10)  # the path and why no copy (one a second at most)
    first_keys = lines("first keyframe sent", 20)  # the sender's side of each video move
    sender_stalls = lines("video-sender loop:", 20)  # the sender stood still, and why (video/sender.py)
    bedside_stalls = lines("bedside loop: a tick", 20)  # the control loop stood still: the call it was in
    mode_changes = lines("video mode ", 40)  # the sender fitting the picture (a new encoder, a keyframe)
    con = json.loads(con_summary.read_text()) if con_summary.exists() else {}
    bed = json.loads(bed_summary.read_text()) if bed_summary.exists() else {}
    bc = bed.get("counters") or {}
    link_losses = [e for e in con.get("events", []) if e.get("source") == "link" and e.get("name") == "LOST"]
    emulated = {"net": net}
    if isinstance(paths, KernelPaths):
        emulated |= {"netem": paths.netem, "netem_applied": paths.netem_applied,
                     **({} if paths.netem_applied else {"netem_why": paths.netem_why})}
    else:
        emulated |= {"link_outages": len(paths.report.get("outages", []))}
    return {
        "minutes": args.minutes, "cut_every_s": cut_every, "cut_for_s": cut_for, "scenario": args.scenario,
        **emulated, "paths": n, "holds": len(bed.get("freezes") or []) + len(link_losses), "lost": con.get("lost"),
        "cuts": cuts, "video_gap_ms_max": video.get("gap_ms_max"), "video_stale_holds": video.get("stale_holds"),
        "stale_limit_ms": load_config(None, con_sets).video.stale_ms,
        "applied_per_path": {f"path{k}": bc.get(f"applied_path{k}", 0) for k in range(n)},
        "duplicates_per_path": {f"path{k}": bc.get(f"duplicates_path{k}", 0) for k in range(n)},
        "commands_sent": con.get("commands_sent"), "commands_applied": con.get("commands_applied"),
        "commands_rejected": con.get("commands_rejected"), "bedside_freezes": bed.get("freezes"),
        "video_path_switches": video.get("switches"), "video_fps": video.get("fps"),
        "cut_log": cut_log,
        "video_long_gaps": [(round(g[0] / 1e9 - start, 3), *g[1:]) for g in video.get("long_gaps") or []],
        "video_move_ms": video.get("move_ms"), "video_first_keys": first_keys,
        "video_sender_stalls": sender_stalls, "bedside_stalls": bedside_stalls, "video_mode_changes": mode_changes,
        "console_paths": con.get("paths"), "rtt_us": con.get("rtt_us"),
        "refusals": {k: v for k, v in bc.items() if k.startswith("rejected_")}, "sequence_refusals": sequence_log,
        "stale_copies_per_path": {f"path{k}": bc.get(f"stale_copies_path{k}", 0) for k in range(n)},
        "superseded_per_path": {f"path{k}": bc.get(f"superseded_path{k}", 0) for k in range(n)},
        "commands_superseded": con.get("commands_superseded", 0),
        "load_avg": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    net, note = choose_net(getattr(args, "net", None))
    if note:
        print(f"teleop bench failover: {note}", file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: the namespaces go
    try:
        with tempfile.TemporaryDirectory(prefix="teleop-failover-") as tmp:
            result = {"machine": machine(), **failover(args, Path(tmp), net)}
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    gap = result["video_gap_ms_max"]
    ok = (result["holds"] == 0 and result["lost"] == 0 and gap is not None and gap < result["stale_limit_ms"])
    return 0 if ok else 1
