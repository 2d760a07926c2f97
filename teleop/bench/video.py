"""Stereo video, capture -> decoded and ready to paint, in separate processes on loopback.

The bedside half (synthetic stereo capture + encode + send, `video.sender.run_sender`) runs in its own
process, the console half (receive + decode + newest-frame slot, `video.receiver.VideoReceiver`) in this
one, consuming every frame as a display would. Sizes are per eye: the encoded picture is both eyes side
by side. The raw floor (one frame's encode and decode, colour conversions included, no network, no
processes) is measured in the same run, before the link starts.

Reports fps_achieved, age_ms {p50, p95, max} (capture -> decoded BGR ready to paint; both processes read
the same CLOCK_MONOTONIC), mbps (encoded payload), dropped_display, lost_packets, raw_encode_ms,
raw_decode_ms, and whether the two eyes' in-pixel frame counters agreed on every frame.

With the rendered endoscope (`--source rendered`, the default), also `render_ms` {p50, p95, max}: one stereo
frame drawn in this process, instruments moving and jaws opening under a still camera (the endoscope holds while
the hands work), `render_ms_camera_moving` (camera mode: every frame warps the tissue again) and
`render_ms_fitted` (still camera, each eye drawn at the picture fitting's smaller sizes, per eye size); the sender's
summary carries the render times inside the video process, next to the encoder. The bench plays the bedside:
it writes a scripted arm state to a state block (transport/bedside_state.py) at 250 Hz.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from base.config import Config, with_overrides
from base.geometry import ZERO_V
from base.procs import free_ports
from base.stats import percentiles
from bedside.arm import ArmModel, arm_models, home_setpoint
from safety.tissue import Tissue, tissue_from_config
from teleop.args import positive_seconds
from teleop.bench.link import machine
from transport.bedside_state import ArmState, BedsideState, StateWriter
from transport.messages import N_ARMS, ArmMode, CartesianSetpoint
from transport.security import throwaway_keys
from video.codecs import H264Decoder, H264Encoder, JpegDecoder, JpegEncoder
from video.framecode import read_eye_codes
from video.receiver import VideoReceiver
from video.rendered import renderer_from_config
from video.sender import run_sender
from video.synthetic import SyntheticStereo

WARMUP_S = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=1280, help="per-eye width (default 1280)")
    p.add_argument("--height", type=int, default=720, help="per-eye height (default 720)")
    p.add_argument("--fps", type=int, default=60, help="capture rate (default 60)")
    p.add_argument("--codec", choices=("h264", "jpeg"), default="h264")
    p.add_argument("--seconds", type=positive_seconds, default=10.0, help="measurement time after 1 s warm-up")
    p.add_argument("--source", default="rendered", help="video.source for the sender (default rendered)")


def raw_floor(cfg: Config, n: int = 40) -> dict[str, float]:
    """Median encode and decode time of one stereo frame, same code path as the link, no I/O."""
    vc = cfg.video
    src = SyntheticStereo(vc.width, vc.height, vc.fps, paced=False)
    frames = [src.read().image for _ in range(n)]
    h, w = frames[0].shape[:2]
    if vc.codec == "h264":
        enc: Any = H264Encoder(w, h, vc.fps, vc.bitrate_kbps, vc.vbv_ms, vc.refresh_frames,
                               vc.encoder_threads)
        dec: Any = H264Decoder()
    else:
        enc, dec = JpegEncoder(w, h, vc.jpeg_quality), JpegDecoder()
    te, td = [], []
    for img in frames:
        t0 = time.perf_counter_ns()
        pkt = enc.encode(img)
        t1 = time.perf_counter_ns()
        dec.decode(pkt.data)
        t2 = time.perf_counter_ns()
        te.append((t1 - t0) / 1e6)
        td.append((t2 - t1) / 1e6)
    skip = n // 4  # the first frames include the IDR and warm-up
    return {"raw_encode_ms": round(statistics.median(te[skip:]), 2),
            "raw_decode_ms": round(statistics.median(td[skip:]), 2)}


def scripted_state(models: tuple[ArmModel, ...], tissue: Tissue, t_s: float, seq: int,
                   camera_moves: bool = False) -> BedsideState:
    """The arms as a surgeon's hands might move them: each instrument circles 8 mm about its home, its jaw opens and
    closes once a second; the endoscope holds (or pans 6 mm, `camera_moves`)."""
    arms = []
    for k, m in enumerate(models):
        home = home_setpoint(m)
        x, y, z = home.position
        if m.has_jaw:
            a = 2 * math.pi * (t_s / 2.0 + k / 3)
            sp = CartesianSetpoint((x + 0.008 * math.cos(a), y + 0.008 * math.sin(a), z - 0.004 * math.sin(a)),
                                   home.orientation, 0.6 + 0.5 * math.sin(2 * math.pi * t_s + k))
        else:
            dx = 0.006 * math.sin(2 * math.pi * t_s / 3.0) if camera_moves else 0.0
            sp = CartesianSetpoint((x + dx, y, z), home.orientation, 0.0)
        arms.append(ArmState(ArmMode.FOLLOWING, sp, tissue.force(sp.position, ZERO_V)))
    return BedsideState(seq, 0, seq, 1, seq, 0, 0, tuple(arms))


def render_floor(cfg: Config, n: int = 300) -> dict[str, Any]:
    """render_ms of one stereo frame, no I/O: still camera, then a panning one."""
    r = renderer_from_config(cfg)
    models, tissue = arm_models(cfg.bedside), tissue_from_config(cfg.bedside)
    out: dict[str, Any] = {}
    for key, moves in (("render_ms", False), ("render_ms_camera_moving", True)):
        times, cpu = [], []
        for k in range(n):
            st = scripted_state(models, tissue, k / cfg.video.fps, k + 1, moves)
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            r.render(st, k, 0)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        out[key] = percentiles(times[n // 10:], True, ("p50", "p95"), 2)
        # CPU time of the rendering thread: what the frame costs, whatever else this shared machine runs meanwhile
        out[key.replace("_ms", "_cpu_ms")] = percentiles(cpu[n // 10:], True, ("p50", "p95"), 2)
    # drawn at the picture fitting's smaller sizes (video/adapt.py), still camera: what a fitted mode's frame costs
    by_scale: dict[str, Any] = {}
    for scale in (0.75, 0.5):
        r = renderer_from_config(cfg, scale)
        times = []
        for k in range(n // 2):
            st = scripted_state(models, tissue, k / cfg.video.fps, k + 1, False)
            t0 = time.perf_counter_ns()
            r.render(st, k, 0)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        eye = f"{r.camera.width}x{r.camera.height}"
        by_scale[eye] = percentiles(times[n // 20:], True, ("p50", "p95"), 2)
    out["render_ms_fitted"] = by_scale
    return out


class ScriptedBedside:
    """Plays the bedside for the video process: a state block written at 250 Hz from a thread."""

    def __init__(self, cfg: Config) -> None:
        self.writer = StateWriter(N_ARMS)
        self.models, self.tissue = arm_models(cfg.bedside), tissue_from_config(cfg.bedside)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scripted-bedside", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0, seq = time.monotonic_ns(), 0
        while not self._stop.wait(0.004):
            now = time.monotonic_ns()
            seq += 1
            st = scripted_state(self.models, self.tissue, (now - t0) / 1e9, seq)
            self.writer.write(now, seq, 1, seq, now, now, [(a.mode, a.measured_cp, a.measured_cf) for a in st.arms])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.writer.close()


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    s = sorted(values)
    n = len(s)
    return {"p50": round(s[n // 2], 1), "p95": round(s[min(n - 1, int(0.95 * n))], 1), "max": round(s[-1], 1)}


def measure(cfg: Config, seconds: float, source: str) -> dict[str, Any]:
    (port,) = free_ports(1)
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = mp.get_context("spawn")
    stop, q = ctx.Event(), ctx.Queue()
    bedside = ScriptedBedside(cfg) if source.partition(":")[0] == "rendered" else None
    proc = ctx.Process(target=run_sender, args=(cfg, stop, source),
                       kwargs={"endpoint": endpoint, "report": q,
                               "state": bedside.writer.path if bedside is not None else None}, name="video-sender")
    proc.start()
    sender_summary: dict[str, Any] = {}
    try:
        kind, info = q.get(timeout=30)
        if kind != "ready":
            raise RuntimeError(f"video sender failed: {info}")
        rx = VideoReceiver(cfg, endpoint=endpoint)
        try:
            seq = 0
            t_end = time.monotonic() + WARMUP_S
            while time.monotonic() < t_end:
                f = rx.wait_frame(seq, 1.0)
                seq = f.seq if f else seq
            base = rx.stats()
            ages: list[float] = []
            nbytes = 0
            sync_errors = 0
            t0 = time.monotonic_ns()
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                f = rx.wait_frame(seq, 1.0)
                if f is None:
                    continue
                seq = f.seq
                ages.append(f.decoded_age_ms)
                nbytes += f.size_bytes
                left, right = read_eye_codes(f.image, f.layout)
                sync_errors += int(left is None or left != right)
            span = (time.monotonic_ns() - t0) / 1e9
            end = rx.stats()
        finally:
            rx.close()
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        if bedside is not None:
            bedside.close()
        try:
            while True:
                kind, info = q.get(timeout=1)
                if kind == "summary":
                    sender_summary = info
        except queue.Empty:
            pass
    return {
        "fps_achieved": round(len(ages) / span, 1),
        "age_ms": _pct(ages),
        "mbps": round(nbytes * 8 / span / 1e6, 2),
        "dropped_display": end["dropped_display"] - base["dropped_display"],
        "lost_packets": end["lost"] - base["lost"],
        "frames": len(ages),
        "eye_code_mismatch": sync_errors,
        "decode_errors": end["decode_errors"] - base["decode_errors"],
        "sender": sender_summary,
    }


def run(args: argparse.Namespace) -> int:
    overrides = [f"video.width={args.width}", f"video.height={args.height}", f"video.fps={args.fps}",
                 f"video.codec={args.codec}", f"video.source={args.source}",
                 "video.fit_machine=false"]  # the figures are for the size asked for, not one fitted to a busy machine
    with tempfile.TemporaryDirectory() as tmp:
        keys = [] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
        return _run(args, with_overrides(args.cfg, overrides + keys))


def _run(args: argparse.Namespace, cfg: Config) -> int:
    floor = raw_floor(cfg)
    if args.source.partition(":")[0] == "rendered":
        floor.update(render_floor(cfg))
    res = measure(cfg, args.seconds, args.source)
    out = {
        "bench": "video", "codec": args.codec, "eye": f"{args.width}x{args.height}",
        "picture": f"{2 * args.width}x{args.height}", "fps_target": args.fps, "seconds": args.seconds,
        "bitrate_kbps": cfg.video.bitrate_kbps if args.codec == "h264" else None,
        "jpeg_quality": cfg.video.jpeg_quality if args.codec == "jpeg" else None,
        **{k: v for k, v in res.items() if k != "sender"}, **floor, "sender": res["sender"],
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    a = out["age_ms"]
    print(f"video {args.codec} {out['picture']} @ {args.fps} fps for {args.seconds:g} s")
    print(f"  fps_achieved    {out['fps_achieved']}")
    print(f"  age_ms          p50 {a['p50']}  p95 {a['p95']}  max {a['max']}  (capture -> ready to paint)")
    print(f"  mbps            {out['mbps']}")
    print(f"  dropped_display {out['dropped_display']}   lost_packets {out['lost_packets']}")
    print(f"  raw floor       encode {out['raw_encode_ms']} ms, decode {out['raw_decode_ms']} ms "
          "per stereo frame")
    if "render_ms" in out:
        r, m = out["render_ms"], out["render_ms_camera_moving"]
        print(f"  render_ms       p50 {r['p50']}  p95 {r['p95']}  (camera still; moving: p50 {m['p50']} "
              f"p95 {m['p95']})")
        print("  render_ms fitted " + ", ".join(f"{eye}: p50 {v['p50']} p95 {v['p95']}"
                                               for eye, v in out["render_ms_fitted"].items()))
    print(f"  sender          {json.dumps(res['sender'])}")
    return 0
