"""What black-box recording costs the control stream: the same session with recording off, then on.

Each run: a real bedside with stereo video (default: 1280x720 per eye, 60 fps, H.264), a headless console
streaming servo_cp at 1 kHz, and a console-side video receiver (the window's VideoReceiver, without Qt)
that decodes every frame and, when recording, records it as received. The console's send_gap_us
percentiles are compared (issue #6: p99.9 with recording ≤ 1.1 × without; with --repeat, the medians of
the runs, which alternate which condition goes first). Also reported: the recording
size per role, drops, and the raw pyzmq floor measured in the same run for reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mcap.reader import make_reader

from base.config import Config, load_config
from base.procs import free_ports, port_overrides, start_role
from base.stats import percentiles
from teleop.args import positive_seconds
from teleop.bench.link import machine, raw_floor
from transport.security import throwaway_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive_seconds, default=60.0, help="length of each run (default 60)")
    p.add_argument("--no-raw", action="store_true", help="skip the raw floor")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="N off/on pairs, alternating which goes first; the ratio compares the medians (default 1)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="copy the last recording-on run's MCAP files here (e.g. to time `teleop report` on them)")


def _ready(line: str, key: str) -> str:
    return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f).get(key, "")


def _last_status(path: Path, role: str) -> dict:
    with open(path, "rb") as f:
        last: dict = {}
        for _s, _c, m in make_reader(f).iter_messages(topics=[f"/{role}/recording"], log_time_order=False):
            last = json.loads(m.data)
        return last


def session(cfg: Config, overrides: list[str], seconds: float, recording: bool, keep: Path | None = None) -> dict:
    """One bedside+video, headless console and video receiver run; the console summary plus recording facts."""
    from video.receiver import VideoReceiver

    ctrl, telem, video = free_ports(3)
    with tempfile.TemporaryDirectory() as tmp:
        keys = ["security.insecure=true"] if cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        rec_dir = Path(tmp) / "recordings"
        sets_list = [*port_overrides(ctrl, telem, video), *keys, f"recording.enabled={str(recording).lower()}",
                     f"recording.dir={rec_dir}", *overrides]
        sets = [a for o in sets_list for a in ("--set", o)]
        summary = Path(tmp) / "console.json"
        bedside = start_role("bedside", ["bedside", *sets])
        rx = None
        try:
            console = start_role("console", ["console", "--headless", "--seconds", str(seconds + 0.5),
                                             "--summary", str(summary), *sets])
            ep = _ready(console.ready, "recorder_video")
            rx = VideoReceiver(load_config(None, sets_list), recorder=ep if ep.startswith("ipc://") else None)
            console.proc.wait(seconds + 60)
            video_stats = rx.stats()
            rx.close()
            rx = None
        finally:
            if rx is not None:
                rx.close()
            bedside.stop(15)
        if not summary.exists():
            raise RuntimeError(f"console wrote no summary:\n{console.stderr_text()[-3000:]}")
        con = json.loads(summary.read_text())
        out = {"send_gap_us": con["send_gap_us"], "rtt_us": con["rtt_us"], "commands_sent": con["commands_sent"],
               "lost": con["lost"], "video": {k: video_stats.get(k) for k in ("decoded", "fps", "mbps", "age_ms")}}
        if recording:
            files = sorted(rec_dir.glob("*.mcap"))
            out["recording"] = {
                "files": [p.name for p in files],
                "mb": round(sum(p.stat().st_size for p in files) / 1e6, 1),
                "mb_per_role": {role: round(sum(p.stat().st_size for p in files if p.name.startswith(role)) / 1e6, 1)
                                for role in ("bedside", "console")},
                "dropped": {role: _last_status(p, role).get("dropped")
                            for p in files for role in ("bedside", "console") if p.name.startswith(role)},
            }
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for p in files:
                    shutil.copy2(p, keep / p.name)
        return out


def run(args: argparse.Namespace) -> int:
    cfg: Config = args.cfg
    overrides = list(args.overrides or [])
    t0 = time.time()
    result: dict = {"machine": machine(), "seconds": args.seconds,
                    "video": f"{cfg.video.width}x{cfg.video.height} per eye, {cfg.video.fps} fps, {cfg.video.codec}",
                    "compression": cfg.recording.compression, "chunk_ms": cfg.recording.chunk_ms}
    if not args.no_raw:
        gaps = raw_floor(cfg.console.rate_hz, min(args.seconds, 10.0),
                         getattr(cfg.bedside, "realtime_priority", 0), getattr(cfg.console, "realtime_priority", 0))
        result["raw_rtt_us"] = percentiles([g / 1e3 for g in gaps])
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for i in range(max(1, args.repeat)):
        for rec in ((False, True) if i % 2 == 0 else (True, False)):  # alternate: no order effect in the medians
            runs["on" if rec else "off"].append(session(cfg, overrides, args.seconds, recording=rec,
                                                        keep=args.keep if rec else None))
    result["off"], result["on"] = runs["off"][-1], runs["on"][-1]
    if args.repeat > 1:
        result["runs"] = runs
    for q in ("p999", "p99"):
        med = {k: statistics.median(r["send_gap_us"][q] for r in v) if all(r["send_gap_us"].get(q) for r in v)
               else None for k, v in runs.items()}
        result[f"send_gap_{q}_median"] = med
        result[f"ratio_send_gap_{q}"] = round(med["on"] / med["off"], 3) if med["off"] and med["on"] else None
    with contextlib.suppress(OSError):
        result["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    result["wall_s"] = round(time.time() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"recording cost, {args.seconds:.0f} s per run, video {result['video']}, {result['compression']}")
    if "raw_rtt_us" in result:
        r = result["raw_rtt_us"]
        print(f"  raw pyzmq floor RTT p50/p99/p99.9 us: {r.get('p50')} / {r.get('p99')} / {r.get('p999')}")
    for k in ("off", "on"):
        g = result[k]["send_gap_us"]
        print(f"  recording {k:3}: send_gap_us p50 {g.get('p50')} p99 {g.get('p99')} p99.9 {g.get('p999')} "
              f"max {g.get('max')}; lost {result[k]['lost']}; video {result[k]['video']}")
    if "recording" in result["on"]:
        rec = result["on"]["recording"]
        print(f"  recorded {rec['mb']} MB {rec['mb_per_role']}, dropped {rec['dropped']}")
    print(f"  ratio p99.9 (on/off): {result['ratio_send_gap_p999']} (target <= 1.10); "
          f"p99: {result['ratio_send_gap_p99']}")
    return 0
