"""Per-frame cost of each video stage between the renderer and the screen, on rendered endoscope frames, no I/O.

Stages, each timed per call on the same frames (the rendered scene, instruments moving, at the fitted sizes the
sender uses: `--scales`, default 0.75 and 1.0 of 2x`video.width`x`video.height`, i.e. 1920x540 and 2560x720):

    render      the scene drawn (video/render.py, the `rendered` source's work, incl. the copy the sender keeps)
    signature   video.framecode.content_signature (the sender's stuck-camera check)
    to_i420     BGR -> I420 (OpenCV)
    wrap        the I420 array as a PyAV frame: `from_numpy_buffer` (now) vs `from_ndarray` (before: two copies)
    x264        libx264 alone, per `--x264-threads` (0 = x264's choice: as many slices as 1.5x the cores)
    encode      H264Encoder.encode: the three above, as the sender calls it
    h264        the FFmpeg decoder alone (slice threads, `H264Decoder`'s)
    to_bgr      4:2:0 -> BGR: from the decoder's planes (now, video/codecs.py `to_bgr`) vs `to_ndarray` + I420
                conversion (before)
    decode      H264Decoder.decode, as the console's receiver calls it
    compose     video.compositor.compose into the pane (`--pane`, the m2p window's picture area): resize + BGRA
    draw        QPainter.drawImage of the composed picture into a window-sized RGB32 image (offscreen Qt)

`cpu_ms` is this process's CPU time per call (time.process_time: every thread's, so x264's slice threads and
OpenCV's pool count), the figure that depends little on what else the machine runs; `wall_ms` is per call too, and
does. Variants of a stage (before/now, x264 threads) run in turn on each frame, so load hits them alike. Each x264
variant also reports its kB per frame and the PSNR of its decoded pictures, so a cheaper setting is not a worse
picture in disguise, and what decoding its stream costs (a stream cut in more slices costs more to decode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import av
import cv2
import numpy as np

from base.config import Config
from base.stats import percentiles
from bedside.arm import arm_models
from safety.tissue import tissue_from_config
from teleop.args import number_list, one_number, size_wh
from teleop.bench.link import machine
from teleop.bench.video import scripted_state
from transport.video_wire import Layout
from video.adapt import mode_ladder
from video.codecs import H264Decoder, H264Encoder, to_bgr
from video.compositor import DisplayMode, compose
from video.framecode import content_signature
from video.rendered import renderer_from_config

SKIP = 5  # first calls: caches, pools, the encoder's first IDR


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=one_number(int, 2, 100_000, "--frames 60"), default=60, metavar="N",
                   help="rendered frames per size (default %(default)s)")
    p.add_argument("--scales", type=number_list(float, 0.05, 1.0, "--scales 0.75,1.0"), default=[0.75, 1.0],
                   help="picture scales of the configured size (default 0.75,1.0)")
    p.add_argument("--x264-threads", type=number_list(int, 0, 16, "--x264-threads 0,1,2"), default=[0, 1, 2],
                   help="libx264 thread counts to compare (default 0,1,2)")
    p.add_argument("--opencv-threads", type=one_number(int, 1, 64, "--opencv-threads 1"), default=None,
                   help="cv2.setNumThreads for the run (default: OpenCV's own, one per core)")
    p.add_argument("--pane", type=size_wh, default=(1600, 800), help="the video pane's size WxH that compose fits the "
                                                                 "picture into (default 1600x800: the m2p bench's "
                                                                 "1600x1000 window)")


def _timed(variants: dict[str, Callable[[Any], Any]], items: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Each variant on each item in turn; cpu and wall per call (ms), first SKIP calls left out."""
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for it in items:
        for k, fn in variants.items():
            t0, c0 = time.perf_counter_ns(), time.process_time_ns()
            fn(it)
            cpu[k].append((time.process_time_ns() - c0) / 1e6)
            wall[k].append((time.perf_counter_ns() - t0) / 1e6)
    return {k: {"cpu_ms": percentiles(cpu[k][SKIP:], False, ("p50", "p95"), 3),
                "wall_ms": percentiles(wall[k][SKIP:], False, ("p50", "p95"), 3)} for k in variants}


def _x264(w: int, h: int, fps: int, kbps: int, threads: int) -> av.CodecContext:
    """libx264 as H264Encoder opens it, with `threads`."""
    return H264Encoder(w, h, fps, kbps, threads=threads).cc


def rendered_frames(cfg: Config, scale: float, n: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """`n` frames of the scene drawn at `scale` (instruments moving, camera still), and what drawing one cost."""
    r = renderer_from_config(cfg, scale)
    models, tissue = arm_models(cfg.bedside), tissue_from_config(cfg.bedside)
    states = [scripted_state(models, tissue, k / cfg.video.fps, k + 1) for k in range(n)]
    frames: list[np.ndarray] = []
    cost = _timed({"now": lambda k: frames.append(r.render(states[k], k, 0).copy())}, range(n))["now"]
    return frames, cost


def measure_size(cfg: Config, frames: list[np.ndarray], fps: int, kbps: int, x264_threads: list[int],
                 pane: tuple[int, int]) -> dict[str, Any]:
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QImage, QPainter

    h, w = frames[0].shape[:2]
    out: dict[str, Any] = {"picture": f"{w}x{h}", "fps": fps, "kbps": kbps}
    out["signature"] = _timed({"now": content_signature}, frames)["now"]
    out["to_i420"] = _timed({"now": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420)}, frames)["now"]
    i420 = [cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420) for f in frames]
    out["wrap"] = _timed({"now": lambda a: av.VideoFrame.from_numpy_buffer(a, format="yuv420p"),
                          "before": lambda a: av.VideoFrame.from_ndarray(a, format="yuv420p")}, i420)
    # x264 per thread count: each context sees every frame, in turn with the others
    ctxs = {f"threads={t}": _x264(w, h, fps, kbps, t) for t in x264_threads}
    packets: dict[str, list[bytes]] = {k: [] for k in ctxs}

    def x264(k: str) -> Callable[[np.ndarray], None]:
        def call(a: np.ndarray) -> None:
            frame = av.VideoFrame.from_numpy_buffer(a, format="yuv420p")
            frame.pts = len(packets[k])
            packets[k].append(bytes(ctxs[k].encode(frame)[0]))
        return call

    out["x264"] = _timed({k: x264(k) for k in ctxs}, i420)
    for k, pk in packets.items():
        dec = H264Decoder()
        psnr = [cv2.PSNR(f, dec.decode(p)) for f, p in zip(frames, pk, strict=True)]
        out["x264"][k].update(kb_per_frame=round(statistics.mean(map(len, pk[SKIP:])) / 1e3, 1),
                              psnr_db=round(statistics.mean(psnr[SKIP:]), 2))
        out["x264"][k]["decode_cpu_ms"] = _timed({"d": H264Decoder().decode}, pk)["d"]["cpu_ms"]
    enc = H264Encoder(w, h, fps, kbps)
    stream = [enc.encode(f) for f in frames]
    out["encode"] = _timed({"now": H264Encoder(w, h, fps, kbps).encode}, frames)["now"]
    ctx = H264Decoder().cc
    decoded = [ctx.decode(av.Packet(p.data))[-1] for p in stream]
    out["h264"] = _timed({"now": H264Decoder().cc.decode}, [av.Packet(p.data) for p in stream])["now"]
    out["to_bgr"] = _timed({"now": to_bgr,
                            "before": lambda f: cv2.cvtColor(f.to_ndarray(format="yuv420p"),
                                                             cv2.COLOR_YUV2BGR_I420)}, decoded)
    dec = H264Decoder()
    out["decode"] = _timed({"now": lambda p: dec.decode(p.data)}, stream)["now"]
    bgr = [to_bgr(f) for f in decoded]
    composed = [compose(b, Layout.SIDE_BY_SIDE, DisplayMode.SIDE_BY_SIDE, pane) for b in bgr]
    out["compose"] = _timed({"now": lambda b: compose(b, Layout.SIDE_BY_SIDE, DisplayMode.SIDE_BY_SIDE, pane)},
                            bgr)["now"]
    out["compose"]["to"] = f"{composed[0].shape[1]}x{composed[0].shape[0]}"
    window = QImage(pane[0], pane[1] + 200, QImage.Format.Format_RGB32)

    def draw(c: np.ndarray) -> None:
        img = QImage(c.data, c.shape[1], c.shape[0], c.strides[0], QImage.Format.Format_RGB32)
        p = QPainter(window)
        p.drawImage(QPoint(0, 100), img)
        p.end()

    out["draw"] = _timed({"now": draw}, composed)["now"]
    return out


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - QPainter wants one
    cfg: Config = args.cfg
    vc = cfg.video
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)
    pane = args.pane
    threads = args.x264_threads
    ladder = {m.scale: m for m in mode_ladder(vc.fps, vc.bitrate_kbps, min(vc.min_bitrate_kbps, vc.bitrate_kbps),
                                              vc.min_fps)}  # the last mode at each scale wins: its slowest
    sizes = []
    for scale in args.scales:
        mode = ladder.get(scale)  # the slowest mode at that scale: its rate and bitrate, as the sender would run it
        fps, kbps = (mode.fps, mode.kbps) if mode is not None else (vc.fps, vc.bitrate_kbps)
        frames, render = rendered_frames(cfg, scale, args.frames)
        sizes.append({**measure_size(cfg, frames, fps, kbps, threads, pane),  # type: ignore[arg-type]
                      "render": render})
    out = {"bench": "frames", "frames": args.frames, "opencv_threads": cv2.getNumThreads(), "sizes": sizes,
           "loadavg": os.getloadavg(), "machine": machine()}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"per-frame cost of each video stage, {args.frames} rendered frames, load {os.getloadavg()[0]:.1f} "
          "(cpu: this process's CPU time per call; wall: per call)")
    for s in sizes:
        print(f"{s['picture']} @ {s['fps']} fps, {s['kbps']} kbit/s")
        for stage in ("render", "signature", "to_i420", "wrap", "x264", "encode", "h264", "to_bgr", "decode", "compose",
                      "draw"):
            v = s[stage]
            rows = v.items() if "cpu_ms" not in v else [("", v)]
            for name, r in rows:
                extra = "  ".join(f"{k} {r[k]}" for k in ("kb_per_frame", "psnr_db", "to") if k in r)
                dec = f"  decode cpu p50 {r['decode_cpu_ms']['p50']}" if "decode_cpu_ms" in r else ""
                print(f"  {stage:9s} {name:10s} cpu p50 {r['cpu_ms']['p50']:6.3f} p95 {r['cpu_ms']['p95']:6.3f}   "
                      f"wall p50 {r['wall_ms']['p50']:6.3f} p95 {r['wall_ms']['p95']:6.3f}  {extra}{dec}")
    return 0
