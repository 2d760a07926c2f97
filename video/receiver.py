"""Console video receiver: a worker thread takes every frame off the socket, decodes it, and keeps only
the newest decoded picture for display, so a slow display never builds latency.

Every H.264 packet reaches the decoder in order (none is dropped here); display drops happen at the
single newest-frame slot and are counted (`dropped_display`). Each decoded frame feeds a VideoGuard
(safety/video_guard.py); `latest()` hands out the picture with its age and a `stale` flag the pane must
honour (draw it with video.framecode.mark_stale), `status()` gives the guard's verdict for the hold
logic. Reports (acks, keyframe requests, hellos) go back on the same DEALER connection.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from base.config import Config, link_paths
from base.stats import percentiles
from safety.video_guard import VideoGuard, VideoStatus
from transport import security
from transport.video_wire import (
    NO_STAMP,
    Codec,
    Frame,
    FrameHeader,
    Layout,
    ModeReason,
    Report,
    ReportFlags,
    SceneStamp,
    VideoWireError,
    decode,
    encode_frame,
    encode_report,
)
from transport.zmqlink import video_client
from video.adapt import eye_size
from video.codecs import CodecError, Decoder, budget, make_decoder
from video.failover import PathFailover
from video.framecode import eye_views
from video.session import ReceiverSession

log = logging.getLogger("video.receiver")


@dataclass(frozen=True, slots=True)
class FrameView:
    """The newest decoded picture as the pane should show it, judged at the time `latest()` was called."""

    image: np.ndarray  # packed BGR (read-only); keep a reference while a QImage shares it
    layout: Layout
    codec: Codec
    seq: int  # receiver's count of decoded frames: changes with every new picture
    stream_id: int
    frame_id: int
    source_seq: int
    keyframe: bool
    degraded: bool  # decoded after a missing frame, before the next keyframe: may smear
    capture_ns: int  # bedside clock
    received_ns: int  # console clock
    decoded_ns: int  # console clock: ready to paint
    offset_ns: int  # bedside − console clock offset used for the ages
    size_bytes: int  # encoded payload
    decoded_age_ms: float  # capture -> ready to paint
    age_ms: float  # capture -> the latest() call
    status: VideoStatus
    stale: bool  # the pane must show the picture as not live
    stamp: SceneStamp = NO_STAMP  # what a rendered frame shows: the bedside state and last command it was drawn from
    fps: int = 0  # the sender's frame rate in its current mode (0: not stated)
    mode_reason: ModeReason = ModeReason.NONE  # why the picture is below the configured one (video/adapt.py)
    send_ns: int = 0  # bedside clock: encoding finished (the header's send time)

    def picture(self) -> dict[str, Any]:
        """The picture's mode for the HUD (console/ui/status.py `picture_text`): per-eye size, frame rate, reason."""
        w, h = eye_size(self.image.shape[1], self.image.shape[0], self.layout)
        return {"width": w, "height": h, "fps": self.fps, "reason": self.mode_reason.name.lower()}

    @property
    def left(self) -> np.ndarray:
        return eye_views(self.image, self.layout)[0]

    @property
    def right(self) -> np.ndarray:
        return eye_views(self.image, self.layout)[1]


@dataclass(frozen=True, slots=True)
class _Decoded:
    image: np.ndarray
    header: FrameHeader
    seq: int
    received_ns: int
    decoded_ns: int
    offset_ns: int
    degraded: bool
    size_bytes: int


class VideoReceiver:
    """Subscribe, decode and keep the newest frame, in a worker thread; thread-safe accessors."""

    def __init__(self, cfg: Config, clock_offset_ns_fn: Callable[[], int] | None = None,
                 endpoint: str | None = None, on_new_frame: Callable[[], None] | None = None,
                 ctx: zmq.Context | None = None, recorder: str | None = None) -> None:
        self.cfg = cfg
        self._recorder = recorder  # the console recorder's video endpoint: frames recorded as received
        self._tap: Any = None
        self.endpoints = [endpoint] if endpoint else [f"tcp://{p.host}:{p.video_port}"
                                                      for p in link_paths(cfg.link, "console")]
        """One per path (link.paths); the stream flows on one at a time (video/failover.py)."""
        self.endpoint = self.endpoints[0]
        self.failover = PathFailover(len(self.endpoints), cfg.video.failover_ms)
        self.offset_fn = clock_offset_ns_fn
        self.on_new_frame = on_new_frame
        self.guard = VideoGuard(cfg.video.stale_ms, cfg.video.stuck_ms)
        self.session = ReceiverSession()
        self._ctx = ctx or zmq.Context.instance()
        self._sec = security.for_client(cfg)  # key errors surface here, in the caller, not in the worker
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._latest: _Decoded | None = None
        self._consumed = True
        self._closed = threading.Event()
        self._seq = 0
        self._decoder: Decoder | None = None
        self._ages: deque[float] = deque(maxlen=600)
        self._arrivals: deque[tuple[int, int]] = deque(maxlen=600)  # (decoded_ns, bytes)
        self._decode_ms: deque[float] = deque(maxlen=600)
        self._paint_ms: deque[float] = deque(maxlen=600)
        # what painting costs this viewer (note_painted), for the reports: the newest painted picture's paint time
        # and lag, and since when a decoded picture has been waiting for the painter
        self._paint_ns = 0
        self._paint_lag_ns = 0
        self._unpainted_since: int | None = None
        self.counters: dict[str, int] = {"received": 0, "decoded": 0, "bad_messages": 0, "decode_errors": 0,
                                         "dropped_display": 0, "key_requests": 0, "resets": 0}
        if len(self.endpoints) > 1:
            self.counters.update(path_switches=0, off_path_frames=0, active_path=0, probes_sent=0, shown_off_path=0)
        self._move_ms: deque[float] = deque(maxlen=600)  # per move: its start to the new path's first frame
        self._hellos_since_move = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="video-receiver", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------- worker
    def _socket(self, endpoint: str | None = None) -> zmq.Socket:
        return video_client(self._ctx, endpoint or self.endpoint, self._sec)

    def _send(self, sock: zmq.Socket, r: Report) -> None:
        with contextlib.suppress(zmq.Again):  # reports are idempotent; the next carries the same facts
            sock.send(encode_report(r), zmq.NOBLOCK)

    def _run(self) -> None:
        socks = [self._socket(e) for e in self.endpoints]
        sock = socks[0]
        if self._recorder:
            from recording.tap import VideoTap  # made in this thread: sockets stay in one thread

            self._tap = VideoTap(self._recorder, self.cfg.recording.video_queue, ctx=self._ctx, name="console-video")
        try:
            while not self._closed.is_set():
                try:
                    if len(socks) > 1:
                        self._step_paths(socks)
                    else:
                        self._step(sock)
                except Exception as exc:  # never let one bad frame kill the video
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("video receiver error")
                    time.sleep(0.01)
        finally:
            for s in socks:
                s.close(0)
            if self._tap is not None:
                self._tap.close()

    def _step_paths(self, socks: list[zmq.Socket]) -> None:
        """Several paths: probe every path (video/failover.py), take every path's messages (echoes and frames are
        signs of life; a starved thread finds them all), one step on the active path; if the active path has been
        silent for `video.failover_ms` while another answered, and nothing waits on it, move to that one with a
        HELLO and a keyframe request there at once."""
        fo = self.failover
        now = time.monotonic_ns()
        for k in fo.probes_due(now):
            with contextlib.suppress(zmq.Again):  # a cut path's queue is full: it does not answer, which is the point
                socks[k].send(encode_report(Report(ReportFlags.PROBE, 0, 0, 0, now, 0, 0, 0)), zmq.NOBLOCK)
                self.counters["probes_sent"] += 1
        for k, other in enumerate(socks):
            if k != fo.active:
                self._drain_other(other, k, socks[fo.active])
        self._step(socks[fo.active], 5)
        now = time.monotonic_ns()
        if not socks[fo.active].poll(0):
            was = fo.active
            k = fo.due(now)
            if k is not None:
                self.counters["path_switches"] += 1
                self.counters["active_path"] = k
                log.warning("video: path%d silent for %.0f ms while path%d answers: moved there", was,
                            (now - fo.heard_ns(was)) / 1e6, k)
                # HELLO with a keyframe request on the new path, now (an idle viewer's would wait 250 ms). Only
                # once: a HELLO that arrives after the keyframe asks for another, which the sender holds back for
                # video.key_min_interval, and the picture would stop again.
                self.session.last_rx_ns = self.session.last_report_ns = None  # so `idle` says HELLO now
                hello = self.session.idle(now)
                self._hellos_since_move = 0
                if hello is not None:
                    self._send(socks[fo.active], hello)
                    self._hellos_since_move = 1

    def _drain_other(self, sock: zmq.Socket, path: int, active: zmq.Socket) -> None:
        """Everything waiting on a path the stream does not flow on: echoes, and frames that straggle in after a
        move. Until the new path shows its first frame, a straggler newer than the last picture is shown (make
        before break; not acknowledged, so the sender stops sending there); others are dropped."""
        fo = self.failover
        while True:
            try:
                data = sock.recv(zmq.NOBLOCK, copy=False).buffer
            except zmq.Again:
                return
            rx = time.monotonic_ns()
            msg = self._frame_of(data, rx, path)
            if msg is None:
                continue
            fo.on_frame(rx, path)
            if fo.awaiting_first() and self.session.is_new(msg.header):
                self.counters["received"] += 1
                self.counters["shown_off_path"] += 1
                self._handle(active, msg, rx, ack=False)
            else:
                self.counters["off_path_frames"] += 1

    def _frame_of(self, data: memoryview, rx: int, path: int) -> Frame | None:
        """The frame in `data`, or None: a bad message (counted) or a probe's echo (fed to the failover)."""
        try:
            msg = decode(data)
        except VideoWireError as exc:
            self._bad(f"bad video message: {exc}")
            return None
        if isinstance(msg, Report):
            self._on_report(msg, rx, path)
            return None
        return msg

    def _on_report(self, msg: Report, rx: int, path: int) -> None:
        if msg.flags != ReportFlags.PROBE or self.failover.n < 2:  # one path: no probe was sent
            self._bad("unexpected report on the video socket")
            return
        self.counters["echoes"] = self.counters.get("echoes", 0) + 1
        self.failover.on_echo(rx, path)

    def _step(self, sock: zmq.Socket, wait_ms: int = 50) -> None:
        hello = self.session.idle(time.monotonic_ns())
        if hello is not None:
            self._send(sock, hello)
            self._hellos_since_move += 1
        if not sock.poll(wait_ms):
            return
        data = sock.recv(zmq.NOBLOCK, copy=False).buffer
        rx = time.monotonic_ns()
        self.counters["received"] += 1
        msg = self._frame_of(data, rx, self.failover.active)
        if msg is None:
            return
        if self.failover.n > 1:
            if self.failover.awaiting_first():
                self._first_after_move(rx, msg.header)
            self.failover.on_frame(rx, self.failover.active)
            if not self.session.is_new(msg.header):  # already shown: its copy came first on the other path
                self.counters["duplicate_frames"] = self.counters.get("duplicate_frames", 0) + 1
                return
        self._handle(sock, msg, rx)

    def _first_after_move(self, rx: int, h: FrameHeader) -> None:
        """The new path's first frame after a move: how long the move took, logged per move (the figure the failover
        bench bounds; a slow one says which side waited)."""
        fo = self.failover
        waited_ms = (rx - fo.moved_ns) / 1e6
        self._move_ms.append(waited_ms)
        log.warning("video: first frame on path%d %.0f ms after the move (%s, frame %d, %d hellos on that path)",
                    fo.active, waited_ms, "keyframe" if h.keyframe else "not a keyframe", h.frame_id,
                    self._hellos_since_move)

    def _bad(self, text: str) -> None:
        self.counters["bad_messages"] += 1
        self.last_error = text
        log.debug(text)

    def _handle(self, sock: zmq.Socket, msg: Frame, rx: int, ack: bool = True) -> None:
        h = msg.header
        admit = self.session.on_frame(rx, h)
        pixels = budget(h.width, h.height)  # a payload that declares a bigger picture is refused undecoded
        if (admit.reset_decoder or self._decoder is None or self._decoder.codec != h.codec
                or self._decoder.max_pixels != pixels):
            self._decoder = make_decoder(h.codec, pixels)
            self.counters["resets"] += 1
        if admit.request_key:
            self.counters["key_requests"] += 1
            self._send(sock, self.session.report(rx, h, rx, decoded=False, key_request=True))
        t_dec = time.monotonic_ns()
        try:
            img = self._decoder.decode(msg.payload)
            if img.shape[0] != h.height or img.shape[1] != h.width:
                raise CodecError(f"decoded {img.shape[1]}x{img.shape[0]}, header says {h.width}x{h.height}")
        except CodecError as exc:
            self.counters["decode_errors"] += 1
            self.last_error = str(exc)
            now = time.monotonic_ns()
            want = self.session.decode_failed(now)
            self.counters["key_requests"] += int(want)
            self._send(sock, self.session.report(now, h, rx, decoded=False, key_request=want))
            if self._tap is not None:
                self._tap.frame(rx, encode_frame(h, msg.payload), (rx, -1, 0, admit.degraded, True))
            return
        img.flags.writeable = False
        decoded = time.monotonic_ns()
        offset = int(self.offset_fn()) if self.offset_fn is not None else 0
        with self._cond:
            self._seq += 1
            if not self._consumed:
                self.counters["dropped_display"] += 1
            self._latest = _Decoded(img, h, self._seq, rx, decoded, offset, admit.degraded, len(msg.payload))
            self._consumed = False
            self.counters["decoded"] += 1
            self.guard.on_frame(decoded, h.frame_id, h.capture_ns, offset, h.content_sig, h.source_seq)
            self._ages.append((decoded - (h.capture_ns - offset)) / 1e6)
            self._arrivals.append((decoded, len(msg.payload)))
            self._decode_ms.append((decoded - t_dec) / 1e6)
            paint_ns = self._paint_ns
            if paint_ns and self._unpainted_since is None:
                self._unpainted_since = decoded
            waiting = 0 if self._unpainted_since is None else decoded - self._unpainted_since
            lag_ns = max(self._paint_lag_ns, waiting) if paint_ns else 0
            self._cond.notify_all()
        if ack:
            self._send(sock, self.session.report(time.monotonic_ns(), h, rx, decoded=True, key_request=False,
                                                 decode_ns=decoded - t_dec, paint_ns=paint_ns, paint_lag_ns=lag_ns))
        if self._tap is not None:  # as received, with what became of it
            with self._lock:
                stale = self.guard.peek(decoded).stale
            self._tap.frame(rx, encode_frame(h, msg.payload), (rx, decoded, offset, admit.degraded, stale))
        if self.on_new_frame is not None:
            self.on_new_frame()

    # ------------------------------------------------------------------------------------- public
    def _view(self, d: _Decoded, now: int) -> FrameView:
        status = self.guard.peek(now)
        h = d.header
        local_capture = h.capture_ns - d.offset_ns
        return FrameView(d.image, h.layout, h.codec, d.seq, h.stream_id, h.frame_id, h.source_seq,
                         h.keyframe, d.degraded, h.capture_ns, d.received_ns, d.decoded_ns, d.offset_ns,
                         d.size_bytes,
                         (d.decoded_ns - local_capture) / 1e6, (now - local_capture) / 1e6, status,
                         status.stale, h.stamp, h.fps, h.mode_reason, h.send_ns)

    def latest(self, now_ns: int | None = None) -> FrameView | None:
        """The newest decoded picture, judged now; None before the first one."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            d = self._latest
            if d is None:
                return None
            self._consumed = True
            return self._view(d, now)

    def latest_header(self) -> FrameHeader | None:
        """The newest decoded frame's header (bitrate, picture mode), without taking the picture from the painter
        (`teleop linkcheck` reads what bitrate the sender settled at on a path)."""
        with self._lock:
            return None if self._latest is None else self._latest.header

    def wait_frame(self, after_seq: int = 0, timeout_s: float = 1.0) -> FrameView | None:
        """Block until a picture newer than `after_seq` is decoded (None on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None or self._latest.seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed.is_set():
                    return None
                self._cond.wait(left)
            self._consumed = True
            return self._view(self._latest, time.monotonic_ns())

    def note_painted(self, view: FrameView, paint_ns: int, painted_ns: int) -> None:
        """A pane painted `view` (any thread): what it took and how long the picture waited for it. The next reports
        carry both, so the sender can fit the picture to this machine (video/adapt.py)."""
        with self._lock:
            self._paint_ns = max(1, paint_ns)
            self._paint_lag_ns = max(0, painted_ns - view.decoded_ns)
            self._paint_ms.append(paint_ns / 1e6)
            latest = self._latest
            self._unpainted_since = None if latest is None or latest.seq <= view.seq else latest.decoded_ns

    def status(self, now_ns: int | None = None) -> VideoStatus:
        """The stale-video guard's verdict now: feed `hold_reason` to the hold logic every tick. This is
        the one call that records transitions (`changed`); `latest()` only peeks."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            return self.guard.check(now)

    def stats(self) -> dict[str, Any]:
        """Counters, plus age percentiles, fps and Mbit/s over the last ~600 frames."""
        with self._lock:
            ages = sorted(self._ages)
            arr = list(self._arrivals)
            out: dict[str, Any] = dict(self.counters)
            out.update(lost=self.session.lost, stream_id=self.session.stream_id, last_error=self.last_error)
            if self._move_ms:  # several paths: each move's start to the new path's first frame
                out["move_ms"] = [round(x, 1) for x in self._move_ms]
            for key, times in (("decode_ms", self._decode_ms), ("paint_ms", self._paint_ms)):
                if times:
                    out[key] = percentiles(list(times), True, ("p50", "p95"), 2)
            if self._latest is not None:
                lh = self._latest.header
                w, h = eye_size(lh.width, lh.height, lh.layout)
                out["picture"] = {"width": w, "height": h, "fps": lh.fps, "reason": lh.mode_reason.name.lower()}
        if ages:
            n = len(ages)
            out["age_ms"] = {"p50": round(ages[n // 2], 1), "p95": round(ages[min(n - 1, int(0.95 * n))], 1),
                             "max": round(ages[-1], 1)}
        if len(arr) >= 2 and arr[-1][0] > arr[0][0]:
            span = (arr[-1][0] - arr[0][0]) / 1e9
            out["fps"] = round((len(arr) - 1) / span, 1)
            out["mbps"] = round(sum(b for _, b in arr[1:]) * 8 / span / 1e6, 2)
        return out

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(2.0)

    def __enter__(self) -> VideoReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
