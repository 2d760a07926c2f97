"""Command-path latency against the raw floor, in one run, in separate processes on loopback.

1. raw floor: plain pyzmq DEALER/ROUTER ping-pong, same payload size as a servo_cp, paced at the console
   rate (teleop.bench.raw);
2. the project: a real `teleop bedside` and a real `teleop console --headless` following a scripted master,
   over CURVE with throw-away keys; command->ack RTT is timed by the console on ack arrival, and the gaps
   between successive servo_cp sends show how steady the 1 kHz stream is;
3. the same path without encryption (`security.insecure`), so the cost of CURVE itself is reported.

--with-gui replaces the headless console by the console window (offscreen, `teleop screenshot --attach`,
driven by a scripted operator) painting the bedside's 720p60 stereo video, its engine in `--ui` mode;
--monitors N attaches N read-only `teleop monitor` windows (offscreen) as well. The figures are the
engine's, as in the headless run (the unencrypted comparison is skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from base.runtime import hold_cpu_wake_latency
from base.stats import percentiles
from teleop.args import positive_seconds
from teleop.bench.raw import ping_pong
from transport.codec import SERVO_CP_SIZE
from transport.security import throwaway_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive_seconds, default=10.0, help="measurement time of each part (default 10)")
    p.add_argument("--no-plain", action="store_true", help="skip the unencrypted comparison run")
    p.add_argument("--with-gui", action="store_true",
                   help="measure with the console window (offscreen) painting stereo 720p60 video")
    p.add_argument("--monitors", type=int, default=0, metavar="N",
                   help="also attach N read-only monitor windows (offscreen)")
    p.add_argument("--paths", type=int, default=1, choices=(1, 2, 3, 4),
                   help="network paths (link.paths, all on loopback); above 1 the same run also measures one path, "
                        "for the send-gap comparison")
    p.add_argument("--pairs", type=int, choices=range(1, 21), default=1, metavar="N",
                   help="with --paths above 1: N alternating one-path/several-path run pairs, 1-20 (default 1); the "
                        "send-gap ratio is the median of the pairs' ratios (a 10-s p99.9 is one run's 10th-worst gap)")


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release()}


def raw_floor(rate_hz: int, seconds: float, echo_priority: int = 0, ping_priority: int = 0) -> list[int]:
    """The raw ping-pong, each side under the scheduling policy of the role it stands in for (the echo: the
    bedside's, the ping: the console's), so the ratio stays honest when the roles run SCHED_FIFO."""
    (port,) = free_ports(1)
    srv = subprocess.Popen([sys.executable, "-m", "teleop.bench.raw", str(port), str(echo_priority)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        srv.stdout.readline()
        return ping_pong(port, SERVO_CP_SIZE, rate_hz, seconds, priority=ping_priority)
    finally:
        try:
            srv.wait(2)
        except subprocess.TimeoutExpired:
            srv.kill()


def project_path(args: argparse.Namespace, seconds: float, extra: list[str] | None = None,
                 insecure: bool = False, paths: int = 1) -> dict:
    ctrl, telem, video, *more = free_ports(3 * paths)
    with tempfile.TemporaryDirectory() as tmp:
        if insecure or args.cfg.security.insecure:
            keys = ["security.insecure=true"]
        else:
            keys = throwaway_keys(Path(tmp) / "keys")
        multi = ["link.paths=" + ",".join(f"127.0.0.1:{more[i]}:{more[i + 1]}:{more[i + 2]}"
                                          for i in range(0, len(more), 3))] if more else []
        sets = [a for o in port_overrides(ctrl, telem, video) + keys + multi + list(args.overrides or [])
                for a in ("--set", o)]
        summary = Path(tmp) / "console.json"
        bedside = start_role("bedside", ["bedside", "--no-video", *sets])
        try:
            console = start_role(
                "console", ["console", "--headless", "--seconds", str(seconds + 0.5), "--summary", str(summary),
                            *sets, *(extra or [])]
            )
            console.proc.wait(seconds + 30)
            if not summary.exists():
                raise RuntimeError(f"console wrote no summary:\n{console.stderr_text()}")
            return json.loads(summary.read_text())
        finally:
            bedside.stop()


def gui_path(args: argparse.Namespace, seconds: float, monitors: int) -> tuple[dict, dict]:
    """The console window (or the headless console) and `monitors` monitors, against a bedside with video.
    Returns the engine's summary and the window's own figures."""
    ctrl, telem, video, m_port, s_port, i_port = free_ports(6)
    offscreen = {"QT_QPA_PLATFORM": "offscreen"}
    with tempfile.TemporaryDirectory() as tmp:
        keys = ["security.insecure=true"] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        base = port_overrides(ctrl, telem, video) + keys + [
            f"console.master_port={m_port}", f"console.ui_state_port={s_port}", f"console.ui_intent_port={i_port}"]
        sets = [a for o in base + list(args.overrides or []) for a in ("--set", o)]
        summary, stats = Path(tmp) / "console.json", Path(tmp) / "window.json"
        roles = [start_role("bedside", ["bedside", *sets])]
        try:
            for k in range(monitors):
                roles.append(start_role(f"monitor-{k}", ["monitor", "--settings-dir", str(Path(tmp) / f"mon{k}"),
                                                         "--stats", str(Path(tmp) / f"mon{k}.json"), *sets,
                                                         "--set", "security.identity=monitor"], env=offscreen))
            if args.with_gui:
                console = start_role("console-window", [
                    "screenshot", "--attach", "--seconds", str(seconds + 0.5), "--timeout", "60", "--summary",
                    str(summary), "--stats", str(stats), "-o", str(Path(tmp) / "window.png"), *sets], env=offscreen)
            else:
                console = start_role("console", ["console", "--headless", "--seconds", str(seconds + 0.5),
                                                 "--summary", str(summary), *sets])
            roles.append(console)
            console.proc.wait(seconds + 120)
            if not summary.exists():
                raise RuntimeError(f"console wrote no summary:\n{console.stderr_text()}")
            win = json.loads(stats.read_text()) if stats.exists() else {}
            if args.with_gui and not win.get("ok"):
                raise RuntimeError(f"the window never followed with a live picture: {win}\n{console.stderr_text()}")
            con = json.loads(summary.read_text())
        finally:
            for r in reversed(roles):
                r.stop()
        mons = [Path(tmp) / f"mon{k}.json" for k in range(monitors)]
        win["monitors"] = [json.loads(m.read_text()) for m in mons if m.exists()]
        return con, win


def run(args: argparse.Namespace) -> int:
    rate = args.cfg.console.rate_hz
    t0 = time.monotonic()
    # A role's PM QoS request (bedside/console.cpu_wake_latency_us) changes every CPU's idle policy: held here for
    # the whole run, so the raw floor is measured on the same machine as the product.
    held = [v for v in (args.cfg.bedside.cpu_wake_latency_us, args.cfg.console.cpu_wake_latency_us) if v >= 0]
    cpu_wake = hold_cpu_wake_latency(min(held), "bench") if held else "default"
    raw = raw_floor(rate, args.seconds, args.cfg.bedside.realtime_priority, args.cfg.console.realtime_priority)
    window: dict = {}
    if args.with_gui or args.monitors:
        cmd, window = gui_path(args, args.seconds, args.monitors)
    else:
        cmd = project_path(args, args.seconds, paths=args.paths)
    raw_p = percentiles([r / 1e3 for r in raw])
    result = {
        "machine": machine(),
        "seconds": args.seconds,
        "rate_hz": rate,
        "payload_bytes": SERVO_CP_SIZE,
        "security": "plain (--insecure)" if args.cfg.security.insecure else "CURVE",
        "realtime_priority": {"console": args.cfg.console.realtime_priority,
                              "bedside": args.cfg.bedside.realtime_priority},
        "cpu_wake_latency": cpu_wake,
        "raw_rtt_us": raw_p,
        "cmd_rtt_us": cmd["rtt_us"],
        "ratio_p50": _ratio(cmd["rtt_us"]["p50"], raw_p["p50"]),
        "bedside_dwell_us": cmd.get("bedside_dwell_us"),
        "send_gap_us": cmd["send_gap_us"],
        "commands_sent": cmd["commands_sent"],
        "commands_applied": cmd["commands_applied"],
        "commands_rejected": cmd["commands_rejected"],
        "lost": cmd["lost"],
        "commands_not_sent": cmd.get("commands_not_sent"),
    }
    if args.with_gui or args.monitors:
        rx = window.get("receiver") or {}
        win = {"painted_fps": window.get("painted_fps"), "video_fps": rx.get("fps"), "frame_age_ms": rx.get("age_ms"),
               "dropped_display": rx.get("dropped_display"), "engages": window.get("engages")}
        result.update(with_gui=bool(args.with_gui), monitors=args.monitors, window=win if window.get("ok") else None,
                      monitor_fps=[m.get("painted_fps") for m in window.get("monitors", [])])
    elif args.paths > 1:
        # One path in the same run: what sending every command on every path costs the 1 kHz stream. Pairs
        # alternate (one path, then several) so that each ratio compares runs on the same machine state.
        pairs = [(project_path(args, args.seconds), cmd)]
        for _ in range(args.pairs - 1):
            pairs.append((project_path(args, args.seconds), project_path(args, args.seconds, paths=args.paths)))
        one = pairs[0][0]
        ratio, ratios = median_ratio([(m["send_gap_us"]["p999"], o["send_gap_us"]["p999"]) for o, m in pairs])
        result.update(paths=args.paths, per_path=cmd.get("paths"), one_path_cmd_rtt_us=one["rtt_us"],
                      one_path_send_gap_us=one["send_gap_us"], send_gap_p999_vs_one_path=ratio,
                      send_gap_p999_ratios=ratios,
                      send_gap_p999_pairs=[[o["send_gap_us"]["p999"], m["send_gap_us"]["p999"]] for o, m in pairs],
                      lost_pairs=[m["lost"] for _, m in pairs])
    elif not args.cfg.security.insecure and not args.no_plain:
        # Same path without encryption, in the same run: what CURVE itself costs.
        plain = project_path(args, args.seconds, insecure=True)
        result["plain_cmd_rtt_us"] = plain["rtt_us"]
        result["curve_vs_plain_p50"] = _ratio(cmd["rtt_us"]["p50"], plain["rtt_us"]["p50"])
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"raw pyzmq ping-pong RTT  p50 {raw_p['p50']} us  p99 {raw_p['p99']} us  p99.9 {raw_p['p999']} us")
        c = cmd["rtt_us"]
        print(f"servo_cp -> ack RTT      p50 {c['p50']} us  p99 {c['p99']} us  p99.9 {c['p999']} us"
              f"  (ratio p50 {result['ratio_p50']}, {result['security']})")
        d = result["bedside_dwell_us"] or {}
        print(f"  of which at the bedside p50 {d.get('p50')} us  p99 {d.get('p99')} us (command received -> ack sent)")
        if "plain_cmd_rtt_us" in result:
            pc = result["plain_cmd_rtt_us"]
            print(f"same, without CURVE      p50 {pc['p50']} us  p99 {pc['p99']} us  p99.9 {pc['p999']} us"
                  f"  (CURVE/plain p50 {result['curve_vs_plain_p50']})")
        if "one_path_send_gap_us" in result:
            o = result["one_path_send_gap_us"]
            print(f"{args.paths} paths; one path in the same run: send gaps p99.9 {o['p999']} us "
                  f"(ratio {result['send_gap_p999_vs_one_path']}), RTT p50 {result['one_path_cmd_rtt_us']['p50']} us")
        g = cmd["send_gap_us"]
        print(f"1 kHz send gaps          p50 {g['p50']} us  p99 {g['p99']} us  p99.9 {g['p999']} us  max {g['max']} us")
        print(f"sent {cmd['commands_sent']}  applied {cmd['commands_applied']}  rejected {cmd['commands_rejected']}"
              f"  lost {cmd['lost']}")
        if result.get("window"):
            w = result["window"]
            print(f"window painted {w['painted_fps']} fps of {w['video_fps']} fps received, picture age "
                  f"{w['frame_age_ms']} ms; {args.monitors} monitors painted {result['monitor_fps']} fps")
    return 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def median_ratio(pairs: list[tuple[float | None, float | None]]) -> tuple[float | None, list[float]]:
    """(with, without) figures of adjacent runs → the median of their ratios, and the ratios. Why: a tail
    figure such as a 10–20 s run's p99.9 moves by 15 % between two identical runs; the median of paired
    ratios compares like with like and drops an odd pair."""
    ratios = [r for a, b in pairs if (r := _ratio(a, b)) is not None]
    return (statistics.median(ratios) if ratios else None), ratios
