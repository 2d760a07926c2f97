"""Soak: bedside + console + stereo video + recording for N minutes; does anything leak, freeze or get lost?

Runs a real `teleop bedside` (with its video sender and recorder children), a real `teleop console --ui`
engine driven by a scripted surgeon at a headless window (rehearsal/surgeon.py: receives and decodes the
bedside's video, reports every picture, re-engages after any hold once link and picture are usable), and
with --scenario a `teleop linkemu` in between. Every --sample-s it reads /proc for every process of the run
(children included, and this one, which hosts the window's video decoder): RSS and open file descriptors.

Reports: commands sent/applied/rejected and `lost` (sent, never acknowledged); bedside freezes and console
holds, and `unexplained_freezes` (a freeze no emulated outage accounts for); per process the RSS and fd
counts after warm-up (the larger of 30 s and 10 % of the run) and at the end, the worst RSS growth as
`rss_growth_pct` and the worst fd growth as `fd_growth`; the recording's size on disk; any exception
(a traceback on a role's stderr, an unexpected exit, an error here).

Video defaults to 640×360 per eye at 30 fps (H.264) so a soak does not monopolise a shared 2-core machine;
`--set video.width=1280 --set video.height=720 --set video.fps=60` soaks the full picture.
Goal at N = 10 on lan: lost = 0, unexplained_freezes = 0, rss_growth_pct ≤ 5, fd_growth ≤ 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from base.config import Config, load_config
from base.procs import (
    Role,
    free_ports,
    pid_listening_on,
    port_overrides,
    start_role,
)
from teleop.args import positive_minutes
from teleop.bench.emulated import EmulatedLink
from teleop.bench.link import machine
from transport.security import throwaway_keys

SOAK_VIDEO = ["video.width=640", "video.height=360", "video.fps=30"]
EXPLAIN_MARGIN_NS = 500_000_000
"""A freeze within this long after an emulated outage ends (or 100 ms before it starts) is explained by it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=positive_minutes, default=10.0, help="how long (default 10)")
    p.add_argument("--scenario", help="run through `teleop linkemu --scenario S` (default: direct, i.e. lan)")
    p.add_argument("--sample-s", type=float, default=10.0, help="RSS/fd sampling period (default 10 s)")


# ---------------------------------------------------------------------------------------------- /proc


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def proc_sample(pid: int) -> dict[str, Any] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return {"rss_kb": rss, "fds": fds, "cmd": b" ".join(cmd)[:160].decode(errors="replace")}


def _label(role: str, pid: int, root: int, cmd: str, video_pid: int | None) -> str:
    if pid == root:
        return role
    if pid == video_pid:
        return f"{role}/video-sender"
    if "resource_tracker" in cmd:
        return f"{role}/resource-tracker"
    if "spawn_main" in cmd:
        return f"{role}/recorder"  # the only other spawned child of a role (docs/recording.md)
    return f"{role}/child-{pid}"


class ProcWatch:
    """RSS and fd count of every process of the run, sampled; labelled by role."""

    def __init__(self, roles: dict[str, int], video_port: int) -> None:
        self.roles = roles
        self.video_port = video_port
        self.series: dict[str, list[tuple[float, int, int]]] = {}
        self.t0 = time.monotonic()

    def sample(self) -> None:
        video_pid = pid_listening_on(self.video_port)
        t = round(time.monotonic() - self.t0, 1)
        seen: set[int] = set()
        for role, root in self.roles.items():  # roles first, this process last: each process counted once
            for pid in process_tree(root):
                if pid in seen:
                    continue
                seen.add(pid)
                s = proc_sample(pid)
                if s is None:
                    continue
                label = _label(role, pid, root, s["cmd"], video_pid)
                self.series.setdefault(label, []).append((t, s["rss_kb"], s["fds"]))

    def growth(self, warmup_s: float) -> dict[str, dict[str, Any]]:
        out = {}
        for label, pts in self.series.items():
            base = next((p for p in pts if p[0] >= warmup_s), pts[-1])
            last = pts[-1]
            out[label] = {
                "rss_mb_start": round(pts[0][1] / 1024, 1), "rss_mb_warm": round(base[1] / 1024, 1),
                "rss_mb_end": round(last[1] / 1024, 1), "rss_mb_max": round(max(p[1] for p in pts) / 1024, 1),
                "rss_growth_pct": round((last[1] - base[1]) / base[1] * 100, 2) if base[1] else None,
                "fds_warm": base[2], "fds_end": last[2], "fd_growth": last[2] - base[2], "samples": len(pts),
            }
        return out


# ---------------------------------------------------------------------------------------------- run


def _has_section(cfg: Config, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cfg))


def _tracebacks(role: Role) -> list[str]:
    text = role.stderr_text()
    return [chunk.strip()[-600:] for chunk in text.split("Traceback (most recent call last):")[1:]]


def explained(freeze_ns: int, outages: list[dict]) -> bool:
    for o in outages:
        end = o.get("end_ns") or float("inf")
        if o["start_ns"] - 100_000_000 <= freeze_ns <= end + EXPLAIN_MARGIN_NS:
            return True
    return False


def soak(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from rehearsal.surgeon import HeadlessWindow

    seconds = args.minutes * 60
    warmup_s = max(30.0, 0.1 * seconds)
    ctrl, telem, video, m_port, s_port, i_port = free_ports(6)
    keys = ["security.insecure=true"] if args.cfg.security.insecure else throwaway_keys(tmp / "keys")
    base = SOAK_VIDEO + port_overrides(ctrl, telem, video) + keys + list(args.overrides or [])
    rec_dir = tmp / "recordings"
    if _has_section(args.cfg, "recording"):
        base.append(f"recording.dir={rec_dir}")
    ui = [f"console.master_port={m_port}", f"console.ui_state_port={s_port}", f"console.ui_intent_port={i_port}",
          "console.master_timeout_ms=250", "console.gui_timeout_ms=1500"]  # the bridge is a Python thread here

    def sets(overrides: list[str]) -> list[str]:
        return [a for o in overrides for a in ("--set", o)]

    events_path, bed_summary, con_summary = tmp / "bedside-events.jsonl", tmp / "bedside.json", tmp / "console.json"
    roles: dict[str, Role] = {}
    linkemu: EmulatedLink | None = None
    link_report: dict[str, Any] = {}
    window = None
    exceptions: list[str] = []
    con_sets = base + ui
    watch: ProcWatch | None = None
    try:
        roles["bedside"] = start_role("bedside", ["bedside", "--event-log", str(events_path), "--summary",
                                                  str(bed_summary), *sets(base)], timeout=60)
        if args.scenario:
            linkemu = EmulatedLink(args.scenario, tmp, sets(base))
            con_sets = linkemu.console_sets(con_sets)
        roles["console"] = start_role("console", ["console", "--ui", "--summary", str(con_summary),
                                                  *sets(con_sets)], timeout=60)
        window = HeadlessWindow(load_config(None, con_sets), video=True, auto_engage_s=1.0)
        pids = {name: r.pid for name, r in roles.items()}
        if linkemu is not None:
            pids["linkemu"] = linkemu.pid
        pids["bench (window, video decode)"] = os.getpid()
        watch = ProcWatch(pids, video)
        t_end = time.monotonic() + seconds
        next_sample = time.monotonic()
        while time.monotonic() < t_end:
            if time.monotonic() >= next_sample:
                watch.sample()
                next_sample += args.sample_s
            for name, r in roles.items():
                if r.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early ({r.proc.returncode})")
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
        watch.sample()
        rec_before_stop = _dir_bytes(rec_dir)
    except Exception:  # a soak reports every failure instead of dying on the first
        exceptions.append(traceback.format_exc()[-1500:])
        rec_before_stop = None
    finally:
        holds = list(window.events) if window is not None else []
        engages = len(window.engages) if window is not None else 0
        frames = window.frames_reported if window is not None else 0
        if window is not None:
            window.close()
        for name in ("console", "bedside"):
            if name in roles:
                code = roles[name].stop(timeout=15)
                if code not in (0, None):
                    exceptions.append(f"{name} exited with {code}")
                exceptions += [f"{name}: {tb}" for tb in _tracebacks(roles[name])]
        if linkemu is not None:
            link_report = linkemu.stop()
    con = json.loads(con_summary.read_text()) if con_summary.exists() else {}
    bed = json.loads(bed_summary.read_text()) if bed_summary.exists() else {}
    freezes = [json.loads(line) for line in events_path.read_text().splitlines()
               if line and json.loads(line).get("type") == "freeze"] if events_path.exists() else []
    outages = link_report.get("outages", [])
    unexplained = [f for f in freezes if f["reason"] != "CONSOLE_REQUEST" and not explained(f["t_ns"], outages)]
    console_holds: dict[str, int] = {}
    for e in holds:
        if e.get("source") == "teleop" and e.get("name", "").endswith("->HELD"):
            console_holds[e["reason"]] = console_holds.get(e["reason"], 0) + 1
    procs = watch.growth(warmup_s) if watch is not None else {}
    rss = [p["rss_growth_pct"] for p in procs.values() if p["rss_growth_pct"] is not None]
    return {
        "minutes": args.minutes, "scenario": args.scenario or "lan (direct)", "warmup_s": warmup_s,
        "video": {k.split("=")[0]: k.split("=")[1] for k in base if k.startswith("video.")},
        "commands_sent": con.get("commands_sent"), "commands_applied": con.get("commands_applied"),
        "commands_rejected": con.get("commands_rejected"), "lost": con.get("lost"),
        "commands_not_sent": con.get("commands_not_sent"),  # the console's socket refused (queue full): not lost
        "console_counters": {k: v for k, v in (con.get("counters") or {}).items()
                             if k.startswith(("send_would_block", "servo_not_sent", "acks", "rejected", "applied"))},
        "rtt_us": con.get("rtt_us"), "send_gap_us": con.get("send_gap_us"),
        "freeze_events": len([f for f in freezes if f["reason"] != "CONSOLE_REQUEST"]),
        "freezes": [{"reason": f["reason"], "latency_ms": f["latency_ms"]} for f in freezes],
        "unexplained_freezes": len(unexplained),
        "console_holds_by_reason": console_holds, "surgeon_engages": engages, "pictures_painted": frames,
        "backlog_executed": (bed.get("counters") or {}).get("backlog_executed", 0),
        "bedside_counters": {k: v for k, v in (bed.get("counters") or {}).items()
                             if k.startswith(("rejected", "ack_dropped", "backlog", "freezes", "applied", "received"))},
        "rss_growth_pct": max(rss) if rss else None,
        "fd_growth": max((p["fd_growth"] for p in procs.values()), default=None),
        "processes": procs,
        "recording_bytes": _dir_bytes(rec_dir) if _has_section(args.cfg, "recording") else None,
        "recording_bytes_before_stop": rec_before_stop,
        "recording_files": sorted(str(p.relative_to(rec_dir)) for p in rec_dir.rglob("*") if p.is_file())
        if rec_dir.exists() else [],
        "link": {k: link_report.get(k) for k in ("links", "outages")} if link_report else None,
        "exceptions": exceptions,
    }


def _dir_bytes(d: Path) -> int | None:
    if not d.exists():
        return 0
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    load0 = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="teleop-soak-") as tmp:
        result = {"machine": machine(), **soak(args, Path(tmp))}
    result["loadavg_start"], result["loadavg_end"] = load0, [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.monotonic() - t0, 1)
    lan = not args.scenario or args.scenario == "lan"
    result["pass"] = bool(
        not result["exceptions"] and result["unexplained_freezes"] == 0
        and (result["lost"] == 0 or not lan) and result["rss_growth_pct"] is not None
        and result["rss_growth_pct"] <= 5.0 and (result["fd_growth"] or 0) <= 0
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r = result
        print(f"soak {r['minutes']} min, {r['scenario']}, video {r['video']}")
        print(f"commands sent {r['commands_sent']} applied {r['commands_applied']} rejected "
              f"{r['commands_rejected']} lost {r['lost']}")
        print(f"freezes {r['freeze_events']} (unexplained {r['unexplained_freezes']}), console holds "
              f"{r['console_holds_by_reason']}, engages {r['surgeon_engages']}")
        for label, p in r["processes"].items():
            print(f"  {label:32s} RSS {p['rss_mb_warm']:7.1f} -> {p['rss_mb_end']:7.1f} MB "
                  f"({p['rss_growth_pct']:+.2f} %)  fds {p['fds_warm']} -> {p['fds_end']}")
        print(f"worst RSS growth {r['rss_growth_pct']} %, fd growth {r['fd_growth']}, recording "
              f"{r['recording_bytes']} bytes, exceptions {len(r['exceptions'])}; pass = {r['pass']}")
        for e in r["exceptions"]:
            print(e, file=sys.stderr)
    return 0 if result["pass"] else 1
