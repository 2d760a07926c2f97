"""Cross-process video link faults: the sender is a real spawned process (video.sender.run_sender), the
receiver and the stale-video guard run here. Killing or freezing the sender must hold the arms with
Reason.VIDEO_STALE and mark the picture stale; a restarted sender, garbage on the socket and a slow
viewer must neither crash the receiver nor build latency."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from base.config import load_config, with_overrides
from safety.video_guard import VideoState
from transport import security
from transport import video_wire as wire
from transport.messages import Reason
from transport.zmqlink import video_client
from video.codecs import JpegEncoder
from video.framecode import mark_stale
from video.receiver import VideoReceiver
from video.sender import VideoSender, run_sender
from video.sources import open_source

pytestmark = pytest.mark.fault

W, H, FPS = 320, 240, 30


@pytest.fixture
def lcfg(key_overrides):
    return load_config(None, [*key_overrides, f"video.width={W}", f"video.height={H}", f"video.fps={FPS}",
                              "video.bitrate_kbps=2000", "video.min_bitrate_kbps=500", "video.stale_ms=200"])


class HoldAdapter:
    """The console engine's use of the guard, reduced to its rule: check every tick, hold on any reason,
    resume only when the surgeon re-engages with good video."""

    def __init__(self) -> None:
        self.following = False
        self.reason: Reason | None = None
        self.text = ""

    def tick(self, rx: VideoReceiver) -> None:
        s = rx.status()
        if self.following and s.hold_reason is not None:
            self.following, self.reason, self.text = False, s.hold_reason, s.reason

    def engage(self, rx: VideoReceiver) -> bool:
        if rx.status().ok:
            self.following, self.reason = True, None
        return self.following


def start_sender(cfg, endpoint: str = "tcp://127.0.0.1:0"):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_sender, args=(cfg, None, "synthetic"),
                    kwargs={"endpoint": endpoint, "report": q}, daemon=True)
    p.start()
    kind, info = q.get(timeout=60)
    assert kind == "ready", info
    return p, info


def wait_ok(rx: VideoReceiver, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rx.wait_frame(0, 0.5) is not None and rx.status().ok:
            return
        time.sleep(0.02)
    raise AssertionError(f"video never became OK: {rx.status()} {rx.stats()}")


def tick_until_hold(hold: HoldAdapter, rx: VideoReceiver, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while hold.following and time.monotonic() < deadline:
        hold.tick(rx)
        time.sleep(0.001)  # the console engine ticks at 1 kHz


def test_killed_sender_holds_the_arms_and_marks_the_picture_stale(lcfg):
    proc, endpoint = start_sender(lcfg)
    rx = VideoReceiver(lcfg, endpoint=endpoint)
    try:
        wait_ok(rx)
        hold = HoldAdapter()
        assert hold.engage(rx)
        before = rx.latest()
        assert before is not None and not before.stale
        os.kill(proc.pid, signal.SIGKILL)
        tick_until_hold(hold, rx)
        assert not hold.following and hold.reason is Reason.VIDEO_STALE
        assert "video stale" in hold.text
        view = rx.latest()
        assert view is not None and view.stale and view.status.state is VideoState.STALE
        assert view.age_ms >= 200
        marked = mark_stale(view.image, view.status.reason, view.layout)
        assert marked.shape == view.image.shape and not np.array_equal(marked, view.image)
        assert not hold.engage(rx)  # no picture, no following
    finally:
        rx.close()
        proc.join(5)


def test_frozen_sender_holds_then_video_returns_but_hold_stays_latched(lcfg):
    proc, endpoint = start_sender(lcfg)
    rx = VideoReceiver(lcfg, endpoint=endpoint)
    try:
        wait_ok(rx)
        hold = HoldAdapter()
        assert hold.engage(rx)
        os.kill(proc.pid, signal.SIGSTOP)
        tick_until_hold(hold, rx)
        assert hold.reason is Reason.VIDEO_STALE and rx.latest().stale
        os.kill(proc.pid, signal.SIGCONT)
        wait_ok(rx)
        for _ in range(20):
            hold.tick(rx)
        assert not hold.following  # video is back, the arms stay held until the surgeon re-engages
        assert hold.engage(rx)
        assert rx.stats()["decode_errors"] == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.join(5)
        rx.close()


def test_restarted_sender_is_a_new_stream_and_the_receiver_recovers(lcfg):
    proc, endpoint = start_sender(lcfg)
    rx = VideoReceiver(lcfg, endpoint=endpoint)
    try:
        wait_ok(rx)
        first_stream = rx.latest().stream_id
        proc.terminate()  # SIGTERM: clean stop
        proc.join(10)
        assert proc.exitcode == 0
        proc, _ = start_sender(lcfg, endpoint)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            f = rx.wait_frame(0, 0.5)
            if f is not None and f.stream_id != first_stream and not f.stale:
                break
        else:
            raise AssertionError(f"no frame from the new stream: {rx.stats()}")
        assert rx.stats()["resets"] >= 2 and rx.stats()["decode_errors"] == 0
    finally:
        proc.terminate()
        proc.join(5)
        rx.close()


def test_receiver_survives_malformed_messages(lcfg):
    ctx = zmq.Context.instance()
    rogue = ctx.socket(zmq.ROUTER)
    rogue.linger = 0
    security.for_server(lcfg, ctx).apply(rogue, "monitoring")  # a sender holding the bedside's key, gone bad
    port = rogue.bind_to_random_port("tcp://127.0.0.1")
    rx = VideoReceiver(lcfg, endpoint=f"tcp://127.0.0.1:{port}")
    try:
        assert rogue.poll(5000)
        ident, hello = rogue.recv_multipart()
        assert isinstance(wire.decode(hello), wire.Report)
        img = np.zeros((H, 2 * W, 3), np.uint8)
        jpeg = JpegEncoder(2 * W, H).encode(img).data
        h = wire.FrameHeader(wire.Codec.JPEG, True, wire.Layout.SIDE_BY_SIDE, 9, 1, time.monotonic_ns(),
                             time.monotonic_ns(), 1, 1, 2 * W, H, 0)
        good = wire.encode_frame(h, jpeg)
        bad_codec = good[:6] + b"\x09" + good[7:]
        h264_garbage = wire.encode_frame(
            wire.FrameHeader(wire.Codec.H264, True, wire.Layout.SIDE_BY_SIDE, 9, 2, 0, 0, 2, 2, 2 * W, H, 0),
            b"\x00\x00\x00\x01\x65" + os.urandom(500),
        )
        for msg in (b"", b"garbage", good[:40], bad_codec, good + b"x", h264_garbage, os.urandom(300)):
            rogue.send_multipart([ident, msg])
        time.sleep(0.3)
        st = rx.stats()
        assert st["bad_messages"] >= 6 and st["decode_errors"] >= 1, st
        assert st["last_error"]  # the newest problem, in words
        assert rx.latest() is None and not rx.status().ok
        h3 = wire.FrameHeader(wire.Codec.JPEG, True, wire.Layout.SIDE_BY_SIDE, 9, 3, time.monotonic_ns(),
                              time.monotonic_ns(), 3, 3, 2 * W, H, 0)
        rogue.send_multipart([ident, wire.encode_frame(h3, jpeg)])
        f = rx.wait_frame(0, 5.0)
        assert f is not None and f.frame_id == 3  # still alive and decoding
    finally:
        rx.close()
        rogue.close(0)


def test_slow_viewer_makes_the_sender_step_down_instead_of_queueing(lcfg):
    cfg = with_overrides(lcfg, ["video.max_queue_ms=40"])
    sender = VideoSender(cfg, open_source("synthetic", cfg.video), endpoint="tcp://127.0.0.1:0")
    stop = threading.Event()
    t = threading.Thread(target=sender.run, args=(stop.is_set,), daemon=True)
    t.start()
    rx = VideoReceiver(cfg, endpoint=sender.endpoint, on_new_frame=lambda: time.sleep(0.06))  # ~16 fps viewer
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sender.level.index < 2:
            time.sleep(0.1)
        assert sender.level.index >= 2, sender.summary()  # bitrate lowered, repeatedly
        assert sender.session.skipped_congested > 0  # pictures dropped before the encoder ...
        assert rx.stats()["lost"] == 0 and rx.stats()["decode_errors"] == 0  # ... never encoded packets
    finally:
        rx.close()
        stop.set()
        t.join(5)
        sender.close()


def test_sender_with_a_missing_camera_reports_the_error_and_returns(lcfg):
    import queue

    q: queue.Queue = queue.Queue()
    t = threading.Thread(target=run_sender, args=(lcfg, None, "usb:57"),
                         kwargs={"endpoint": "tcp://127.0.0.1:0", "report": q})
    t.start()
    t.join(10)
    assert not t.is_alive()
    kind, text = q.get_nowait()
    assert kind == "error" and "no USB camera at index 57" in text


def test_a_probe_is_echoed_on_its_connection_and_makes_no_viewer(lcfg):
    """Several paths (video/failover.py): the viewer probes every path; the sender sends each probe back unchanged
    while it waits for its next frame slot, and a probe alone gets no video (it would double the stream)."""
    cfg = with_overrides(lcfg, ["security.insecure=true"])  # the echo is under test here, not the keys
    sender = VideoSender(cfg, open_source("synthetic", cfg.video), endpoint="tcp://127.0.0.1:0")
    stop = threading.Event()
    t = threading.Thread(target=sender.run, args=(stop.is_set,), daemon=True)
    t.start()
    dealer = video_client(zmq.Context.instance(), sender.endpoint, None)
    try:
        echoed = 0
        for i in range(20):  # an echo may meet a full queue (SNDHWM 2): dropped, like a path not answering
            probe = wire.encode_report(wire.Report(wire.ReportFlags.PROBE, 0, 0, 0, 1000 + i, 0, 0, 0))
            dealer.send(probe)
            if dealer.poll(1000):
                assert dealer.recv() == probe  # the echo, not a frame
                echoed += 1
        assert echoed >= 10, sender.summary()
        assert not sender.session.peers and sender.stats["frames_sent"] == 0
    finally:
        dealer.close(0)
        stop.set()
        t.join(5)
        sender.close()
