"""Bedside video sender: capture -> encode -> one ZeroMQ message per frame, in its own process.

`run_sender(cfg, stop, source_spec)` is the process entry the bedside agent starts (multiprocessing
'spawn'), so encoding never shares a GIL with the 1 kHz control loop. It runs until `stop` is set, or
SIGTERM/SIGINT arrives.

Socket: ROUTER bound on tcp://{link.bind_host}:{link.video_port}. Viewers connect a DEALER and report
back on the same connection (acks, keyframe requests, hellos), so no second port is needed and the sender
knows each viewer by identity. ROUTER_MANDATORY makes a full per-viewer queue visible (EAGAIN) instead
of a silent drop; SNDHWM 2 and a small SNDBUF keep frames from queueing ahead (transport/zmqlink.py
`video_server` sets them). The policy (who gets what,
when to skip a picture, when to make an IDR) lives in the pure video.session.SenderSession.
"""

from __future__ import annotations

import logging
import multiprocessing.synchronize
import os
import random
import time
from collections import deque
from typing import Any

import cv2
import zmq

from base.config import Config, link_paths
from base.errors import UserError
from base.runtime import StopFlag, die_with_parent
from safety.loop_watch import LoopWatch
from transport import security
from transport.video_wire import (
    Codec,
    FrameHeader,
    Layout,
    ModeReason,
    Report,
    ReportFlags,
    VideoWireError,
    decode,
    encode_frame,
)
from transport.zmqlink import also_bind, video_server
from video.abr import AdaptiveBitrate, Level
from video.adapt import MachinePolicy, Mode, eye_size, mode_ladder
from video.codecs import CODEC_NAMES, CodecError, Encoder, H264Encoder, JpegEncoder
from video.framecode import content_signature
from video.frames import StereoFrame, StereoSource, VideoSourceError, fitted_size
from video.session import SenderSession
from video.sources import open_source

log = logging.getLogger("video.sender")

SENDER_STEPS = ("draw", "wait", "hear", "encode", "send")
"""The sender loop's steps as loop health names them: drawing or reading a picture, waiting for its frame slot
(listening), reading the viewers' reports, resizing and encoding, sending and recording."""
_DRAW, _WAIT, _HEAR, _ENCODE, _SEND = range(len(SENDER_STEPS))


def video_endpoint(cfg: Config, bind: bool) -> str:
    host = cfg.link.bind_host if bind else cfg.link.bedside_host
    return f"tcp://{host}:{cfg.link.video_port}"


class VideoSender:
    """Thin I/O around SenderSession: the source, the encoder and the ROUTER socket."""

    def __init__(self, cfg: Config, source: StereoSource, endpoint: str | None = None,
                 ctx: zmq.Context | None = None) -> None:
        self.cfg, self.vc, self.source = cfg, cfg.video, source
        self.codec = CODEC_NAMES[self.vc.codec]
        min_kbps = min(self.vc.min_bitrate_kbps, self.vc.bitrate_kbps)
        self.abr = AdaptiveBitrate(self.vc.bitrate_kbps, min_kbps) if self.vc.adaptive else None
        self.level = Level(0, self.vc.bitrate_kbps, 1.0, 1.0)
        self.session = SenderSession(random.randrange(1, 2**32), self.vc.viewer_timeout_ms,
                                     self.vc.max_queue_ms, abr=self.abr)
        ladder = mode_ladder(self.vc.fps, self.vc.bitrate_kbps, min_kbps, self.vc.min_fps)
        self.policy = (MachinePolicy(ladder, self.vc.busy_high, self.vc.busy_low,
                                     start=min(self.vc.start_step, len(ladder) - 1)) if self.vc.fit_machine else None)
        # fitted to the machines (video/adapt.py), from a low start; the ABR level fits the link
        self.mode: Mode = self.policy.mode if self.policy is not None else ladder[0]
        if self.mode.index:
            source.set_fps(self.mode.fps)
        self._last_kept_ns: int | None = None  # frame-rate decimation for a source that cannot slow down
        self._drawn_scale: float | None = None  # the scale last asked of the source (`StereoSource.draw_at`)
        self.work_ms: deque[float] = deque(maxlen=600)
        self._layout = Layout.SIDE_BY_SIDE
        self.ctx = ctx or zmq.Context.instance()
        sec = security.for_server(cfg, self.ctx)  # ZAP handler up before the bind (transport/security.py)
        self.endpoint = endpoint or video_endpoint(cfg, bind=True)
        s = video_server(self.ctx, self.endpoint, sec, key="link.video_port")
        self.endpoint = s.getsockopt_string(zmq.LAST_ENDPOINT)
        if endpoint is None:  # several paths (link.paths): a viewer reaches the one ROUTER on any of them
            for p in link_paths(cfg.link, "bedside")[1:]:
                also_bind(s, f"tcp://{p.host}:{p.video_port}", key="link.paths")
        self.sock = s
        self.encoder: Encoder | None = None
        self._fresh = False
        self.stats: dict[str, Any] = {"frames_read": 0, "frames_sent": 0, "bytes_sent": 0, "keyframes": 0,
                                      "send_failed": 0, "bad_reports": 0}
        self.encode_ms: deque[float] = deque(maxlen=600)
        self.tap: Any = None  # recording.tap.VideoTap when recording
        self.last_error = ""
        self.watch: LoopWatch | None = None  # loop health while `run` runs
        self.stalls: deque[str] = deque(maxlen=20)  # the newest stall lines, for the summary
        pacer = getattr(source, "pacer", None)
        if pacer is not None:  # a paced source waits for its next slot here, hearing the viewers meanwhile
            pacer.sleep = self._wait_slot

    # ---------------------------------------------------------------------------------------- reports
    def _wait_slot(self, seconds: float) -> None:
        """The pacer's sleep until the next frame slot, spent listening: a probe is echoed at once (the viewer's
        path liveness, video/failover.py, then has the probe's resolution, not a frame interval's), and a viewer
        that just arrived (a move to another path) ends the wait, so its keyframe is the next picture, now."""
        deadline = time.monotonic_ns() + int(seconds * 1e9)
        if self.watch is not None:
            self.watch.lap(_DRAW, deadline - int(seconds * 1e9))
        try:
            while (left := deadline - time.monotonic_ns()) > 0:
                if self.sock.poll(-(-left // 1_000_000)) and self._drain_reports():
                    self.stats["slots_hurried"] = self.stats.get("slots_hurried", 0) + 1
                    return
        finally:
            if self.watch is not None:
                self.watch.lap(_WAIT, time.monotonic_ns())

    def _drain_reports(self) -> bool:
        """Every report waiting; True if a viewer new to the session spoke (it needs a keyframe without delay)."""
        known = set(self.session.peers)
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return any(p.fresh for i, p in self.session.peers.items() if i not in known)
            now = time.monotonic_ns()
            if len(parts) != 2:
                self.stats["bad_reports"] += 1
                continue
            try:
                msg = decode(parts[1])
            except VideoWireError as exc:
                self.stats["bad_reports"] += 1
                self.last_error = str(exc)
                continue
            if not isinstance(msg, Report):
                self.stats["bad_reports"] += 1
                continue
            if msg.flags & ReportFlags.PROBE:  # a path's liveness (video/failover.py): echoed, not a viewer
                self._echo(parts)
                continue
            lvl = self.session.on_report(now, parts[0], msg)
            if lvl is not None:
                log.info("adaptive bitrate: level %d, %d kbit/s, scale %.2f", lvl.index, lvl.bitrate_kbps,
                         lvl.scale)
                self.level = lvl
            if self.policy is not None and msg.decode_us and not msg.flags & ReportFlags.HELLO:
                self._set_mode(self.policy.on_viewer(now, parts[0], msg.decode_us * 1000, msg.paint_us * 1000,
                                                     msg.paint_lag_us * 1000))

    def _echo(self, parts: list[bytes]) -> None:
        """Back on the connection it came on, unchanged; a full queue or a gone peer is a path not answering."""
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK)
            self.stats["probes_echoed"] = self.stats.get("probes_echoed", 0) + 1
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise

    # ------------------------------------------------------------------------------------------- mode
    def _set_mode(self, mode: Mode | None) -> None:
        """The policy chose another size/frame rate: the source slows down (or speeds up) if it paces itself, and
        the next picture gets a new encoder (an IDR) at the new size and rate."""
        if mode is None or mode == self.mode:
            return
        self.mode = mode
        self.source.set_fps(mode.fps)
        reason = self.policy.reason.name.lower() if self.policy is not None else "none"
        log.info("video mode %d: scale %.2f, %d fps, %d kbit/s (%s)", mode.index, mode.scale, mode.fps, mode.kbps,
                 reason)

    def mode_reason(self) -> ModeReason:
        if self.mode.index > 0 and self.policy is not None:
            return self.policy.reason
        return ModeReason.LINK if self.level.index > 0 else ModeReason.NONE

    def _kbps(self) -> int:
        return min(self.level.bitrate_kbps, self.mode.kbps)

    def _keep(self, capture_ns: int) -> bool:
        """Drop pictures before the encoder when the source delivers faster than the mode's frame rate (a camera
        at its own rate); a paced source already delivers at it. Capture times stay the device's."""
        pacer = getattr(self.source, "pacer", None)
        if self.mode.fps >= self.vc.fps or getattr(pacer, "fps", None) == self.mode.fps:
            return True
        last = self._last_kept_ns
        if last is not None and capture_ns - last < 0.9e9 / self.mode.fps:
            return False
        self._last_kept_ns = capture_ns
        return True

    # ----------------------------------------------------------------------------------------- frames
    def _scale(self) -> float:
        return min(self.level.scale, self.mode.scale)

    def _draw_at_scale(self) -> None:
        """Before a read: a source that draws (the rendered endoscope) draws the next picture at the fitted size."""
        scale = self._scale()
        if scale != self._drawn_scale:
            self._drawn_scale = scale
            self.source.draw_at(scale)

    def _picture_size(self, frame: StereoFrame) -> tuple[int, int]:
        native = self.source.native_size
        if native is None:
            h, w = frame.image.shape[:2]
            native = (w, h)
        return fitted_size(*native, self._scale())

    def _ensure_encoder(self, w: int, h: int) -> bool:
        """Right-sized encoder at the current level; True when it is new (its first frame is an IDR)."""
        enc = self.encoder
        same_rate = getattr(enc, "fps", self.mode.fps) == self.mode.fps  # JPEG has no rate to keep
        if enc is not None and (enc.width, enc.height) == (w, h) and same_rate:
            if self.codec == Codec.H264 and enc.bitrate_kbps != self._kbps():  # type: ignore[attr-defined]
                enc.set_bitrate(self._kbps())
            elif isinstance(enc, JpegEncoder):
                enc.set_quality(int(self.vc.jpeg_quality * self.level.quality_factor))
            return False
        if enc is not None:
            enc.close()
        if self.codec == Codec.H264:
            # opened at the mode's rate (its VBV cap), then set to what the link allows; the intra refresh heals a
            # lost frame in the same time at any frame rate
            refresh = max(2, round(self.vc.refresh_frames * self.mode.fps / self.vc.fps))
            h264 = H264Encoder(w, h, self.mode.fps, self.mode.kbps, self.vc.vbv_ms, refresh, self.vc.encoder_threads)
            if self._kbps() != self.mode.kbps:
                h264.set_bitrate(self._kbps())
            self.encoder = h264
        else:
            jpeg = JpegEncoder(w, h, self.vc.jpeg_quality)
            jpeg.set_quality(int(self.vc.jpeg_quality * self.level.quality_factor))
            self.encoder = jpeg
        log.info("encoder %s %dx%d", self.codec.name, w, h)
        self._fresh = True
        return True

    def step(self) -> None:
        """One capture slot: read a picture, hear the viewers, and encode+send it if anyone can use it."""
        self._draw_at_scale()
        t_read = time.monotonic_ns()
        frame = self.source.read()
        self.stats["frames_read"] += 1
        watch = self.watch
        if watch is not None:
            watch.lap(_DRAW, time.monotonic_ns())
        self._drain_reports()
        if watch is not None:
            watch.lap(_HEAR, time.monotonic_ns())
        self._layout = frame.layout
        if not self._keep(frame.capture_ns):
            self.stats["frames_decimated"] = self.stats.get("frames_decimated", 0) + 1
            return
        now = time.monotonic_ns()
        w, h = self._picture_size(frame)
        self._ensure_encoder(w, h)
        plan = self.session.plan(now, key_anyway=self._fresh or self.codec == Codec.JPEG)
        if plan is None:
            return
        img = frame.image
        if (img.shape[1], img.shape[0]) != (w, h):  # a source that cannot draw smaller, or the mode just changed
            # area averaging is exact and cheap at 1/2 but ~5x dearer than bilinear at 3/4 (6.8 vs 1.4 ms from
            # 2560x720 here): as much as the encode it is meant to save
            interp = cv2.INTER_AREA if w * 2 <= img.shape[1] else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
        sig = content_signature(frame.image)
        t0 = time.perf_counter_ns()
        assert self.encoder is not None
        pkt = self.encoder.encode(img, force_key=plan.force_key)
        self._fresh = False
        self.encode_ms.append((time.perf_counter_ns() - t0) / 1e6)
        send_ns = time.monotonic_ns()
        if watch is not None:
            watch.lap(_ENCODE, send_ns)
        # this frame's work on this machine: drawing it (a rendered source stamps capture before drawing), resizing
        # and encoding; wall time, so a machine busy with other work shows as a slower one
        work_ns = send_ns - max(frame.capture_ns, t_read)
        self.work_ms.append(work_ns / 1e6)
        header = FrameHeader(self.codec, pkt.keyframe, frame.layout, self.session.stream_id, plan.frame_id,
                             frame.capture_ns, send_ns, frame.source_seq & (2**64 - 1), sig, w, h,
                             self._kbps() if self.codec == Codec.H264 else 0, frame.stamp,
                             self._send_fps(), self.mode_reason())
        data = encode_frame(header, pkt.data)
        failed = []
        for ident in plan.targets:
            try:
                self.sock.send_multipart([ident, data], zmq.NOBLOCK, copy=len(data) < 65536)
            except zmq.Again:
                failed.append(ident)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                failed.append(ident)
                self.session.forget(ident)
                if self.policy is not None:
                    self.policy.forget(ident)
        self.stats["send_failed"] += len(failed)
        for waited in self.session.sent(send_ns, plan, pkt.keyframe, tuple(failed)):
            # a viewer that just came (a start, a move to another path): its first keyframe
            log.log(logging.WARNING if waited > self.vc.failover_ms else logging.INFO,
                    "video: a new viewer's first keyframe sent %.1f ms after it spoke", waited)
        if len(failed) < len(plan.targets):
            if self.tap is not None:
                self.tap.frame(send_ns, data)  # as sent, after it left
            self.stats["frames_sent"] += 1
            self.stats["bytes_sent"] += len(data)
            self.stats["keyframes"] += int(pkt.keyframe)
        if self.policy is not None:
            self._set_mode(self.policy.on_sender(send_ns, work_ns))

    def _send_fps(self) -> int:
        """The rate pictures leave at: the mode's, or a slower source's own."""
        pacer = getattr(self.source, "pacer", None)
        native = getattr(pacer, "native_fps", self.mode.fps)
        return max(1, round(min(self.mode.fps, native)))

    def video_mode(self) -> dict[str, Any]:
        """The mode now: picture size per eye, frame rate, bitrate and why it is below the configured one."""
        enc = self.encoder
        w, h = (None, None) if enc is None else eye_size(enc.width, enc.height, self._layout)
        return {"width": w, "height": h, "fps": self._send_fps(),
                "kbps": self._kbps() if self.codec == Codec.H264 else None,
                "reason": self.mode_reason().name.lower(), "index": self.mode.index}

    def run(self, should_stop: Any) -> None:
        """Step until `should_stop()`, watching the loop (safety/loop_watch.py): a tick longer than half of
        `video.stale_ms` (half the surgeon's staleness budget gone in one frame: a gap that nearly made the picture
        stale names its cause too) is logged as a WARNING saying which step took the time and whether this thread
        was starved of CPU, working or blocked, with its stack in `logging.stall_dir`."""
        clock = time.monotonic_ns
        self.watch = watch = LoopWatch("video-sender", SENDER_STEPS, self.vc.stale_ms / 2, self.cfg.logging.stall_dir,
                                       log, sched=True)
        try:
            while not should_stop():
                stall = watch.tick(clock())
                self.step()
                watch.lap(_SEND, clock())  # whatever the step did after encoding (or after hearing, if it skipped)
                if stall is not None:
                    self.stalls.append(watch.report(stall, clock()).text)
        finally:
            self.watch = None
            watch.close()

    def summary(self) -> dict[str, Any]:
        enc = sorted(self.encode_ms)
        s = self.session
        return {**self.stats, "skipped_no_viewer": s.skipped_no_viewer,
                "skipped_congested": s.skipped_congested, "key_requests": s.key_requests,
                "level": self.level.index,
                "bitrate_kbps": self.level.bitrate_kbps if self.codec == Codec.H264 else None,
                "scale": self.level.scale, "level_changes": len(s.level_changes),
                "first_key_ms_max": round(max(s.first_key_ms), 1) if s.first_key_ms else None,
                "encode_ms_p50": enc[len(enc) // 2] if enc else None,
                "work_ms_p50": sorted(self.work_ms)[len(self.work_ms) // 2] if self.work_ms else None,
                "video_mode": self.video_mode(),
                "mode_changes": [(round(t / 1e9, 3), m.scale, m.fps, r.name.lower())
                                 for t, m, r in (self.policy.changes if self.policy is not None else [])],
                "source_skipped": getattr(getattr(self.source, "pacer", None), "skipped", 0),
                "stalls": list(self.stalls),
                **self.source.stats(),
                "last_error": self.last_error}

    def close(self) -> None:
        self.sock.close(0)
        if self.encoder is not None:
            self.encoder.close()
        self.source.close()


def run_sender(cfg: Config, stop: multiprocessing.synchronize.Event | None = None,
               source_spec: str | None = None, *, endpoint: str | None = None,
               report: Any | None = None, recorder: str | None = None, state: str | None = None) -> None:
    """Process entry: capture, encode and send until `stop` is set or SIGTERM/SIGINT.

    `source_spec` overrides cfg.video.source; `endpoint` overrides the bind address (tests, bench).
    `recorder`: the recorder's video endpoint (recording/), frames are recorded as sent. `state`: the bedside state
    block (transport/bedside_state.py) the `rendered` source draws from.
    `report` (a multiprocessing queue) receives ("ready", endpoint) once bound and ("summary", dict) at
    exit. A missing camera or bad spec logs the error, reports ("error", text) and returns.
    """
    logging.basicConfig(level=getattr(logging, cfg.logging.level),
                        format=f"%(asctime)s video-sender[{os.getpid()}] %(levelname)s %(message)s")
    if multiprocessing.parent_process() is not None:
        die_with_parent()
    if cfg.video.opencv_threads:  # before the source draws anything: OpenCV's pool is made on first use
        cv2.setNumThreads(cfg.video.opencv_threads)
    flag = StopFlag()  # signal-safe; installs nothing when run in a thread (tests, benches)
    spec = source_spec or cfg.video.source
    try:
        source = open_source(spec, cfg.video, config=cfg, state=state)
    except VideoSourceError as exc:
        log.error("video source %s: %s", spec, exc)
        if report is not None:
            report.put(("error", str(exc)))
        return
    sender = None
    try:
        sender = VideoSender(cfg, source, endpoint)
        if recorder:
            from recording.tap import VideoTap

            sender.tap = VideoTap(recorder, cfg.recording.video_queue, name="bedside-video-sender")
        log.info("video: %s -> %s (%s)", source.name, sender.endpoint, cfg.video.codec)
        if report is not None:
            report.put(("ready", sender.endpoint))
        sender.run(lambda: bool(flag) or (stop is not None and stop.is_set()))
    except (VideoSourceError, CodecError, zmq.ZMQError, UserError) as exc:
        log.error("video sender stopped: %s", exc)
        if report is not None:
            report.put(("error", str(exc)))
    finally:
        if sender is not None:
            if report is not None:
                report.put(("summary", sender.summary()))
            if sender.tap is not None:
                sender.tap.close()
            sender.close()
        else:
            source.close()
