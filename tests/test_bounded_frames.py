"""Every receiving socket bounds its frames (transport/zmqlink.py, ZMQ_MAXMSGSIZE).

For each kind of receiving socket, a real peer sends an oversized frame over a real socket (CURVE with throw-away
keys where the real link uses CURVE): libzmq drops it before it is decrypted or copied into Python (the real
receiver's counters and decoder never see it), the offender loses its connection, and every other peer's session
goes on. The largest frame each limit admits still passes, and every limit covers the largest legitimate message.
What libzmq does with the offender, exactly: docs/architecture.md, "Bounded frames". Waits are bounded polls,
never timing assertions.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import fields

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from base.config import VideoConfig, load_config
from bedside.agent import BedsideAgent
from console import uilink
from console.master import MasterButtons, MasterHand
from console.masters.network import FORCE_SIZE, NetworkMaster, encode_master_message
from console.masters.network import SIZE as MASTER_SIZE
from recording.convert import DROPS, K_COMMAND, K_DROPS, K_JSON, K_VIDEO, split_items
from recording.tap import ControlTap, VideoTap
from transport import codec, security
from transport import video_wire as wire
from transport import zmqlink as z
from transport.messages import (
    Ack,
    AckStatus,
    Counters,
    Enable,
    EStop,
    Event,
    EventKind,
    OperatingState,
    Ping,
    Reason,
)
from video.codecs import JpegEncoder
from video.receiver import VideoReceiver

WAIT_S = 10.0
"""Every wait is a poll bounded by this: generous for a loaded 2-core machine; nothing asserts how long it took."""
NO_RECONNECT_S = 1.0
"""How long a connecting socket is watched for a reconnection that libzmq never makes (5x RECONNECT_IVL_MAX)."""
ANY = "tcp://127.0.0.1:*"


# ------------------------------------------------------------------------------------------ harness


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def server_sec(cfg, ctx):
    """The bedside's keys and ZAP handler in this test's context (stopped before the context goes)."""
    sec = security.for_server(cfg, ctx)
    yield sec
    security.stop_server_security(sec)


def client_sec(cfg, identity: str) -> security.ClientSecurity:
    return security.client_security(cfg.security.keys_dir, identity)


def endpoint(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def wait_until(done: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """For conditions a socket poll cannot express (another thread's counters, a ROUTER's peer table)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


def receive(sock: zmq.Socket, done: Callable[[list], bool], timeout: float = WAIT_S) -> list[list[zmq.Frame]]:
    """Every message `sock` yields until `done(messages)` or the timeout; each message as its frames."""
    got: list[list[zmq.Frame]] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        if sock.poll(20):
            got.append(sock.recv_multipart(copy=False))
    return got


def send_until_received(sender: zmq.Socket, parts: list, receiver: zmq.Socket,
                        match: Callable[[list[zmq.Frame]], bool], collected: list | None = None) -> bool:
    """Send `parts` again and again until `receiver` yields a message `match` accepts: what a reconnecting or
    not-yet-subscribed peer needs (a PUB drops before the subscription, IMMEDIATE refuses before the connection)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(zmq.Again):
            sender.send_multipart(parts, zmq.NOBLOCK)
        for msg in receive(receiver, lambda got: bool(got) and match(got[-1]), timeout=0.05):
            if collected is not None:
                collected.append(msg)
            if match(msg):
                return True
    return False


def send_when_connected(sender: zmq.Socket, parts: list) -> None:
    """Send once, as soon as the socket takes it (a control DEALER refuses while it has no connection:
    IMMEDIATE): for a message that must arrive exactly once."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            sender.send_multipart(parts, zmq.NOBLOCK)
            return
        except zmq.Again:
            assert time.monotonic() < deadline, "the socket never connected"
            sender.poll(20, zmq.POLLOUT)


class Events:
    """A socket's libzmq monitor: connection events as they happen."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.mon = sock.get_monitor_socket()
        self.seen: list[int] = []

    def _pump(self, timeout_ms: int) -> None:
        if self.mon.poll(timeout_ms):
            self.seen.append(recv_monitor_message(self.mon)["event"])

    def wait(self, event: int, timeout: float = WAIT_S) -> bool:
        """True once `event` has happened since the monitor started (or since `clear`)."""
        deadline = time.monotonic() + timeout
        while event not in self.seen and time.monotonic() < deadline:
            self._pump(20)
        return event in self.seen

    def clear(self) -> None:
        self.seen = []

    def close(self) -> None:
        self.sock.disable_monitor()
        self.mon.close(0)


def oversized(limit_plaintext: int) -> bytes:
    return bytes(limit_plaintext + 1)


def plaintext_limit(sock: zmq.Socket, curve: bool) -> int:
    """The largest frame the socket admits, before CURVE's overhead is added on the wire."""
    return sock.getsockopt(zmq.MAXMSGSIZE) - (z.CURVE_FRAME_OVERHEAD if curve else 0)


def user(frame: zmq.Frame) -> str:
    return security.user_of(frame, True)


# ------------------------------------------------------------------------------- the limits themselves


def test_every_limit_covers_the_largest_legitimate_message(cfg) -> None:
    """The figures docs/protocol.md ("Maximum message size") states, from the code that makes the messages."""
    agent = BedsideAgent(cfg.bedside, 0, teleop=cfg.teleop)
    off = OperatingState.DISABLED
    biggest_counters = codec.encode(Counters(0, 1, 1, {"k" * (codec.MAX_COUNTERS_BYTES - 6): 0}))
    with pytest.raises(codec.InvalidField):
        codec.encode(Counters(0, 1, 1, {"k" * (codec.MAX_COUNTERS_BYTES - 5): 0}))
    sizes = {"servo_cp": codec.SERVO_CP_SIZE,
             "ack": len(codec.encode_ack(1, 1, 1, 1, 1, 1, AckStatus.PONG, off, Reason.NONE)),
             "estop": len(codec.encode(EStop(0, 1, 1, True))),
             "telemetry": len(agent.telemetry(0)),
             "event": len(codec.encode(Event(0, 1, 1, EventKind.INFO, Reason.NONE, off, off, "x" * 5000))),
             "counters": len(biggest_counters)}
    assert sizes == {"servo_cp": 292, "ack": 60, "estop": 36, "telemetry": 892, "event": 1062, "counters": 3104}
    assert max(sizes.values()) <= z.CONTROL_MAX_BYTES == z.TELEMETRY_MAX_BYTES == codec.MAX_MESSAGE_BYTES
    assert z.VIDEO_REPORT_MAX_BYTES == wire.REPORT_SIZE
    assert z.VIDEO_FRAME_MAX_BYTES == wire.FRAME_HEADER_SIZE + wire.MAX_PAYLOAD_BYTES
    assert z.UI_INTENT_MAX_BYTES == uilink.MAX_UI_BYTES
    assert z.MASTER_SAMPLE_BYTES == MASTER_SIZE
    assert z.FORCE_MAX_BYTES == FORCE_SIZE
    assert z.RECORDING_CONTROL_MAX_BYTES >= codec.MAX_MESSAGE_BYTES
    assert z.RECORDING_VIDEO_MAX_BYTES == z.VIDEO_FRAME_MAX_BYTES
    # the handshake floor: CURVE INITIATE from a DEALER with the longest routing id (257 + metadata)
    assert z.HANDSHAKE_FLOOR_BYTES >= 547
    for largest in (z.CONTROL_MAX_BYTES, z.VIDEO_REPORT_MAX_BYTES, z.VIDEO_FRAME_MAX_BYTES):
        assert z.max_msg_size(largest, curve=True) >= largest + z.CURVE_FRAME_OVERHEAD


def _config_max(name: str) -> float:
    meta = {f.name: f.metadata for f in fields(VideoConfig)}
    return meta[name]["max"]


def test_the_video_wire_carries_the_largest_frame_the_configuration_allows() -> None:
    """The worst case: JPEG at quality 100 of binary noise (the costliest content found: 2.3 bytes a pixel) at the
    largest stereo picture, two eyes of the largest configured size; H.264 is capped by its VBV buffer."""
    w, h = int(_config_max("width")) * 2, int(_config_max("height"))  # side by side; top-bottom has as many pixels
    assert w <= wire.MAX_DIMENSION and h <= wire.MAX_DIMENSION
    assert _config_max("jpeg_quality") == 100
    noise = (np.random.default_rng(0).integers(0, 2, (h, w, 3), dtype=np.uint8) * 255)
    jpeg = JpegEncoder(w, h, quality=100).encode(noise).data
    assert len(jpeg) <= wire.MAX_PAYLOAD_BYTES == w * h * 3  # the raw picture: 31 % above the worst JPEG
    vbv_bits = _config_max("bitrate_kbps") * 1000 * _config_max("vbv_ms") / 1000
    assert vbv_bits / 8 <= wire.MAX_PAYLOAD_BYTES  # 12.5 MB: libx264's VBV cap on one frame


# ------------------------------------------------------------------ bedside side: many peers, one socket


def test_control_server_drops_a_monitor_s_oversized_frame_and_the_surgeon_s_session_goes_on(cfg, ctx, server_sec):
    bed = z.control_server(ctx, ANY, server_sec)
    surgeon = z.control_client(ctx, endpoint(bed), client_sec(cfg, "surgeon"))
    monitor = z.control_client(ctx, endpoint(bed), client_sec(cfg, "monitor"))
    monitor_events = Events(monitor)
    agent = BedsideAgent(cfg.bedside, time.monotonic_ns(), teleop=cfg.teleop)
    frames: list[list[zmq.Frame]] = []

    def serve(msgs: list[list[zmq.Frame]]) -> None:
        """What bedside/server.py does with each message: the agent decides, the acks go back."""
        for peer, frame in msgs:
            frames.append([peer, frame])
            for out in agent.on_message(time.monotonic_ns(), peer.bytes, frame.bytes, user(frame)):
                bed.send_multipart([out.peer, out.data])

    seq = iter(range(1, 10_000))
    send_when_connected(surgeon, [codec.encode(Enable(0, next(seq), 1))])
    send_when_connected(monitor, [codec.encode(Ping(0, 1, 1))])
    serve(receive(bed, lambda got: {user(m[1]) for m in got} == {"surgeon:surgeon", "monitor:monitor"}))
    frames.sort(key=lambda m: user(m[1]) != "surgeon:surgeon")
    surgeon_peer, monitor_peer = frames[0][0].bytes, frames[1][0].bytes
    assert agent.state is OperatingState.ENABLED and agent.controller == surgeon_peer

    monitor.send(oversized(plaintext_limit(bed, curve=True)))
    pings = [next(seq) for _ in range(20)]
    for s in pings:
        surgeon.send(codec.encode(Ping(0, s, 1)))
    serve(receive(bed, lambda got: sum(user(m[1]) == "surgeon:surgeon" for m in got) == len(pings)))
    assert monitor_events.wait(zmq.EVENT_DISCONNECTED)  # the offender lost its connection ...
    got = []
    assert send_until_received(monitor, [codec.encode(Ping(0, 2, 1))], bed,  # ... and is back on a new one
                               lambda m: user(m[1]) == "monitor:monitor", got)
    serve(got)
    assert frames[-1][0].bytes != monitor_peer

    assert max(len(f.bytes) for _, f in frames) <= z.CONTROL_MAX_BYTES
    assert agent.counters["decode_errors"] == 0 and agent.counters["received"] == len(frames)
    assert agent.state is OperatingState.ENABLED and agent.controller == surgeon_peer  # the surgeon's session
    acks = [codec.decode(m[0].bytes) for m in receive(surgeon, lambda got: len(got) == 1 + len(pings))]
    assert all(isinstance(a, Ack) for a in acks)
    assert [a.echo_seq for a in acks[1:]] == pings and {a.status for a in acks[1:]} == {AckStatus.PONG}
    monitor_events.close()


def test_telemetry_publisher_cuts_off_a_subscriber_with_an_oversized_subscription(cfg, ctx, server_sec):
    """The bedside's PUB hears only subscriptions (one byte: everything); a 2 KiB one is a hostile peer."""
    bed = z.telemetry_publisher(ctx, ANY, server_sec)
    bed_events = Events(bed)
    console = z.telemetry_subscriber(ctx, endpoint(bed), client_sec(cfg, "surgeon"))
    agent = BedsideAgent(cfg.bedside, time.monotonic_ns(), teleop=cfg.teleop)
    assert send_until_received(bed, [agent.telemetry(time.monotonic_ns())], console, lambda m: True)
    hostile = ctx.socket(zmq.SUB)  # a foreign peer on purpose: our factory subscribes to everything
    client_sec(cfg, "monitor").apply(hostile)
    hostile.setsockopt(zmq.LINGER, 0)
    hostile.setsockopt(zmq.SUBSCRIBE, bytes(2 * z.HANDSHAKE_FLOOR_BYTES))
    hostile.connect(endpoint(bed))
    assert bed_events.wait(zmq.EVENT_DISCONNECTED)
    sent = [agent.telemetry(time.monotonic_ns()) for _ in range(20)]
    for data in sent:
        bed.send(data)
    got = receive(console, lambda got: len(got) == len(sent))
    assert [m[0].bytes for m in got] == sent
    bed_events.close()
    hostile.close(0)


def test_video_server_drops_a_monitor_s_oversized_report_and_the_surgeon_s_reports_go_on(cfg, ctx, server_sec):
    bed = z.video_server(ctx, ANY, server_sec)
    surgeon = z.video_client(ctx, endpoint(bed), client_sec(cfg, "surgeon"))
    monitor = z.video_client(ctx, endpoint(bed), client_sec(cfg, "monitor"))
    monitor_events = Events(monitor)

    def report(frame_id: int) -> bytes:
        return wire.encode_report(wire.Report(wire.ReportFlags(0), 1, frame_id, 0, 0, 0, 0, frame_id))

    monitor.send(report(0))  # a DEALER without IMMEDIATE queues until connected: each report is sent once
    got = receive(bed, lambda got: bool(got))
    monitor_peer = got[-1][0].bytes
    monitor.send(oversized(plaintext_limit(bed, curve=True)))
    for i in range(1, 21):
        surgeon.send(report(i))
    got += receive(bed, lambda got: sum(user(m[1]) == "surgeon:surgeon" for m in got) == 20)
    assert monitor_events.wait(zmq.EVENT_DISCONNECTED)
    monitor.send(report(1))  # queued while it reconnects
    got += receive(bed, lambda got: any(user(m[1]) == "monitor:monitor" for m in got))
    assert got[-1][0].bytes != monitor_peer  # reconnected

    decoded = [(user(m[1]), wire.decode(m[1].bytes)) for m in got]  # raises if anything but a report came through
    assert [r.frame_id for u, r in decoded if u == "surgeon:surgeon"] == list(range(1, 21))
    assert [r.frame_id for u, r in decoded if u == "monitor:monitor"] == [0, 1]
    monitor_events.close()


def test_ui_intent_server_drops_an_oversized_message_and_the_window_s_heartbeats_go_on(ctx):
    engine = z.ui_intent_server(ctx, ANY)
    window = z.ui_intent_client(ctx, endpoint(engine))
    stranger = z.ui_intent_client(ctx, endpoint(engine))
    stranger_events = Events(stranger)
    supervisor = uilink.UiSupervisor(None, gui_timeout_ms=250, stale_ms=200, stuck_ms=500)

    def heartbeat(n: int) -> bytes:
        return uilink.encode({"type": "heartbeat", "seq": n})

    got: list = []
    assert send_until_received(stranger, [heartbeat(0)], engine, lambda m: True, got)
    stranger.send(oversized(plaintext_limit(engine, curve=False)))
    for n in range(1, 21):
        window.send(heartbeat(n))
    got += receive(engine, lambda got: sum(json.loads(m[0].bytes)["seq"] > 0 for m in got) == 20)
    assert stranger_events.wait(zmq.EVENT_DISCONNECTED)
    assert send_until_received(stranger, [heartbeat(-1)], engine, lambda m: json.loads(m[0].bytes)["seq"] == -1, got)
    for m in got:
        supervisor.on_bytes(time.monotonic_ns(), m[0].bytes, 0)
    assert supervisor.counters["ui_errors"] == 0
    assert supervisor.counters["ui_heartbeat"] == len(got) >= 22
    assert supervisor.window.state is uilink.WindowState.ATTACHED
    stranger_events.close()


def test_master_subscriber_drops_an_oversized_sample_and_the_bridge_s_stream_goes_on(ctx):
    master = NetworkMaster(ANY, bind=True, ctx=ctx)
    bridge = z.master_publisher(ctx, master.endpoint)
    stranger = z.master_publisher(ctx, master.endpoint)
    stranger_events = Events(stranger)
    hands = (MasterHand(), MasterHand())
    seq = iter(range(1, 1_000_000))
    big = oversized(plaintext_limit(master.sock, curve=False))

    def stream(until: Callable[[], bool]) -> None:
        """The bridge streams samples (CONFLATE: the engine reads the newest) until `until()`."""
        deadline = time.monotonic() + WAIT_S
        while not until():
            assert time.monotonic() < deadline, "the bridge's samples stopped arriving"
            bridge.send(encode_master_message(next(seq), 0, hands, MasterButtons()))
            if master.sock.poll(20):
                master.read(time.monotonic_ns())

    def newest() -> int:
        return master.state.last.seq if master.state.last is not None else 0

    stream(lambda: newest() > 0)

    def cut_off() -> bool:  # a PUB drops what it sends before the SUB's subscription reaches it: send until cut off
        with contextlib.suppress(zmq.Again):
            stranger.send(big, zmq.NOBLOCK)
        return stranger_events.wait(zmq.EVENT_DISCONNECTED, timeout=0.01)

    stream(cut_off)
    stranger_events.clear()
    assert stranger_events.wait(zmq.EVENT_CONNECTED)  # the offender reconnects
    target = newest() + 50
    stream(lambda: newest() >= target)
    assert master.state.dropped == 0  # the decoder never saw a frame it would refuse
    assert master.state.received > 2
    stranger_events.close()
    master.close()


def test_recording_sinks_drop_an_oversized_part_and_the_taps_go_on(ctx, tmp_path):
    """ipc, as the recorder binds them. libzmq's limit is per frame: a batch of many parts passes, one oversized
    part costs its sender the connection (it reconnects)."""
    control = z.recording_control_sink(ctx, f"ipc://{tmp_path}/control", 400)
    video = z.recording_video_sink(ctx, f"ipc://{tmp_path}/video", 120)
    tap = ControlTap(endpoint(control), ctx=ctx, name="loop")
    vtap = VideoTap(endpoint(video), ctx=ctx, name="sender")
    ping = b"stranger"
    for sink, largest in ((control, z.RECORDING_CONTROL_MAX_BYTES), (video, z.RECORDING_VIDEO_MAX_BYTES)):
        stranger = z.recording_tap(ctx, endpoint(sink), 10)
        stranger_events = Events(stranger)
        assert send_until_received(stranger, [ping, ping], sink, lambda m: True)
        assert plaintext_limit(sink, curve=False) == largest
        stranger.send_multipart([ping, oversized(largest)], copy=False)
        assert stranger_events.wait(zmq.EVENT_DISCONNECTED)
        assert send_until_received(stranger, [ping, ping], sink, lambda m: True)  # reconnected
        stranger_events.close()
        stranger.close(0)

    frame = wire.encode_frame(wire.FrameHeader(wire.Codec.JPEG, True, wire.Layout.SIDE_BY_SIDE, 1, 1, 0, 0, 1, 0,
                                               8, 8, 0), b"\xff\xd8")
    for i in range(50):  # ten 1 kHz ticks per batch, as a loop does
        tap.add(K_COMMAND, i, codec.encode(Ping(0, i + 1, i)), b"surgeon:surgeon")
        if i % 10 == 9:
            tap.add_json("link", i, {"counters": {f"c{k}": k for k in range(100)}})
            tap.flush()
        vtap.frame(i, frame)

    def from_taps(sink: zmq.Socket, n: int) -> list:
        """The taps' messages (the stranger's retried probes may still trail in), split into items."""
        msgs = receive(sink, lambda got: sum(m[0].bytes != ping for m in got) == n)
        return [it for m in msgs if m[0].bytes != ping for it in split_items([f.bytes for f in m])]

    items = from_taps(control, 5)
    assert [it.kind for it in items].count(K_COMMAND) == 50 and [it.kind for it in items].count(K_JSON) == 5
    frames = from_taps(video, 50)
    assert [it.kind for it in frames] == [K_VIDEO] * 50 and {it.payload for it in frames} == {frame}
    assert tap.dropped == vtap.dropped == 0
    tap.close()
    vtap.close()


def test_a_control_tap_refuses_a_json_record_over_the_recorder_s_limit_as_a_counted_drop(ctx, tmp_path):
    sink = z.recording_control_sink(ctx, f"ipc://{tmp_path}/control", 400)
    tap = ControlTap(endpoint(sink), ctx=ctx, name="loop")
    tap.add_json("link", 1, {"text": "x" * z.RECORDING_CONTROL_MAX_BYTES})
    tap.add_json("link", 2, {"ok": True})
    tap.flush()
    items = [it for m in receive(sink, lambda got: len(got) == 1) for it in split_items([f.bytes for f in m])]
    assert tap.dropped == 1
    assert [json.loads(it.payload) for it in items if it.kind == K_JSON] == [{"ok": True}]
    assert [DROPS.unpack(it.payload) for it in items if it.kind == K_DROPS] == [(1, 0)]  # and the drop is recorded
    tap.close()


# -------------------------------------------------------- console side: one peer (the bedside), connecting


def test_control_client_drops_an_oversized_ack_and_the_other_console_s_session_goes_on(cfg, ctx, server_sec):
    """A connecting socket that receives an oversized frame loses its connection for good: libzmq does not
    reconnect after a protocol error (the console then declares the link LOST and holds). Only its own."""
    bed = z.control_server(ctx, ANY, server_sec)
    first = z.control_client(ctx, endpoint(bed), client_sec(cfg, "surgeon"))
    second = z.control_client(ctx, endpoint(bed), client_sec(cfg, "surgeon-2"))
    first_events = Events(first)
    peers: dict[str, bytes] = {}
    for name, sock in (("surgeon:surgeon", first), ("surgeon:surgeon-2", second)):
        got: list = []
        assert send_until_received(sock, [codec.encode(Ping(0, 1, 1))], bed, lambda m, n=name: user(m[1]) == n, got)
        peers[name] = got[-1][0].bytes

    def ack(seq: int) -> bytes:
        return codec.encode_ack(1, seq, 1, seq, 1, 1, AckStatus.PONG, OperatingState.DISABLED, Reason.NONE)

    bed.send_multipart([peers["surgeon:surgeon"], ack(1)])
    bed.send_multipart([peers["surgeon:surgeon"], oversized(plaintext_limit(first, curve=True))])
    bed.send_multipart([peers["surgeon:surgeon"], ack(2)])
    for seq in range(1, 21):
        bed.send_multipart([peers["surgeon:surgeon-2"], ack(seq)])
    acks = receive(second, lambda got: len(got) == 20)
    assert [codec.decode(m[0].bytes).echo_seq for m in acks] == list(range(1, 21))
    assert first_events.wait(zmq.EVENT_DISCONNECTED)
    got = receive(first, lambda got: False, timeout=0.2)
    assert [codec.decode(m[0].bytes).echo_seq for m in got] == [1]  # what came before it; never the frame
    first_events.clear()
    assert not first_events.wait(zmq.EVENT_CONNECTED, timeout=NO_RECONNECT_S)
    assert zmq.EVENT_CONNECT_RETRIED not in first_events.seen
    first_events.close()


def test_telemetry_subscriber_drops_an_oversized_frame_and_the_console_s_control_link_goes_on(cfg, ctx, server_sec):
    bed_pub = z.telemetry_publisher(ctx, ANY, server_sec)
    bed_ctrl = z.control_server(ctx, ANY, server_sec)
    sub = z.telemetry_subscriber(ctx, endpoint(bed_pub), client_sec(cfg, "surgeon"))
    ctrl = z.control_client(ctx, endpoint(bed_ctrl), client_sec(cfg, "surgeon"))
    sub_events = Events(sub)
    agent = BedsideAgent(cfg.bedside, time.monotonic_ns(), teleop=cfg.teleop)
    first = agent.telemetry(time.monotonic_ns())
    got = []
    assert send_until_received(bed_pub, [first], sub, lambda m: True, got)
    bed_pub.send(oversized(plaintext_limit(sub, curve=True)))
    bed_pub.send(agent.telemetry(time.monotonic_ns()))
    assert sub_events.wait(zmq.EVENT_DISCONNECTED)
    got += receive(sub, lambda got: False, timeout=0.2)
    assert {m[0].bytes for m in got} == {first}  # the probes before it, never the frame
    for seq in range(1, 11):  # the same console's control link: another connection, untouched
        assert send_until_received(ctrl, [codec.encode(Ping(0, seq, 1))], bed_ctrl, lambda m: True)
    sub_events.close()


def test_video_client_drops_an_oversized_frame_and_the_other_viewer_s_video_goes_on(cfg, key_overrides, ctx,
                                                                                    server_sec):
    """The real VideoReceiver of a monitor and of a surgeon; the bedside sends the monitor one oversized frame."""
    bed = z.video_server(ctx, ANY, server_sec)
    viewers = {name: VideoReceiver(load_config(None, [*key_overrides, f"security.identity={name}"]),
                                   endpoint=endpoint(bed), ctx=ctx) for name in ("surgeon", "monitor")}
    try:
        peers: dict[str, bytes] = {}
        for m in receive(bed, lambda got: len({user(m[1]) for m in got}) == 2):  # their hellos
            peers[user(m[1]).partition(":")[2]] = m[0].bytes
        picture = JpegEncoder(64, 32, 80).encode(np.zeros((32, 64, 3), np.uint8)).data

        def frame(fid: int) -> bytes:
            h = wire.FrameHeader(wire.Codec.JPEG, True, wire.Layout.SIDE_BY_SIDE, 7, fid, time.monotonic_ns(),
                                 time.monotonic_ns(), fid, fid, 64, 32, 0)
            return wire.encode_frame(h, picture)

        monitor, surgeon = viewers["monitor"], viewers["surgeon"]
        bed.send_multipart([peers["monitor"], frame(1)])
        assert monitor.wait_frame(0, WAIT_S) is not None
        bed.send_multipart([peers["monitor"], oversized(z.VIDEO_FRAME_MAX_BYTES)], copy=False)

        def monitor_gone() -> bool:
            """ROUTER_MANDATORY: a peer without a connection is EHOSTUNREACH, once the ROUTER has read what was
            left of it (as the sender does, draining reports at every frame)."""
            receive(bed, lambda got: False, timeout=0.01)
            try:
                bed.send_multipart([peers["monitor"], frame(2)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                return exc.errno == zmq.EHOSTUNREACH
            return False

        assert wait_until(monitor_gone)
        for fid in range(1, 11):
            bed.send_multipart([peers["surgeon"], frame(fid)])
            assert surgeon.wait_frame(fid - 1, WAIT_S) is not None
        assert surgeon.counters["decoded"] == 10 and surgeon.counters["bad_messages"] == 0
        assert monitor.counters["received"] == monitor.counters["decoded"] == 1  # never the oversized frame
        assert monitor.counters["bad_messages"] == 0
    finally:
        for v in viewers.values():
            v.close()


def test_ui_state_subscriber_drops_an_oversized_message_and_the_window_s_heartbeats_go_on(ctx):
    engine_pub = z.ui_state_publisher(ctx, ANY)
    engine_pull = z.ui_intent_server(ctx, ANY)
    window_sub = z.ui_state_subscriber(ctx, endpoint(engine_pub))
    window_push = z.ui_intent_client(ctx, endpoint(engine_pull))
    sub_events = Events(window_sub)
    state = uilink.encode({"type": "state", "t_ns": 1})
    got: list = []
    assert send_until_received(engine_pub, [state], window_sub, lambda m: True, got)
    engine_pub.send(oversized(plaintext_limit(window_sub, curve=False)))
    engine_pub.send(state)
    assert sub_events.wait(zmq.EVENT_DISCONNECTED)
    got += receive(window_sub, lambda got: False, timeout=0.2)
    assert {m[0].bytes for m in got} == {state}
    for n in range(1, 11):  # the window's other link to the engine: untouched
        window_push.send(uilink.encode({"type": "heartbeat", "seq": n}))
    assert len(receive(engine_pull, lambda got: len(got) == 10)) == 10
    sub_events.close()


# ----------------------------------------------------------------- the largest frame each limit admits


def _pair_control(cfg, ctx, sec):
    bed = z.control_server(ctx, ANY, sec)
    return z.control_client(ctx, endpoint(bed), client_sec(cfg, "surgeon")), bed, True


def _pair_ack(cfg, ctx, sec):
    bed = z.control_server(ctx, ANY, sec)
    console = z.control_client(ctx, endpoint(bed), client_sec(cfg, "surgeon"))
    return bed, console, True


def _pair_telemetry(cfg, ctx, sec):
    pub = z.telemetry_publisher(ctx, ANY, sec)
    return pub, z.telemetry_subscriber(ctx, endpoint(pub), client_sec(cfg, "monitor")), True


def _pair_report(cfg, ctx, sec):
    bed = z.video_server(ctx, ANY, sec)
    return z.video_client(ctx, endpoint(bed), client_sec(cfg, "monitor")), bed, True


def _pair_frame(cfg, ctx, sec):
    bed = z.video_server(ctx, ANY, sec)
    return bed, z.video_client(ctx, endpoint(bed), client_sec(cfg, "monitor")), True


def _pair_intent(cfg, ctx, sec):
    pull = z.ui_intent_server(ctx, ANY)
    return z.ui_intent_client(ctx, endpoint(pull)), pull, False


def _pair_state(cfg, ctx, sec):
    pub = z.ui_state_publisher(ctx, ANY)
    return pub, z.ui_state_subscriber(ctx, endpoint(pub)), False


def _pair_master(cfg, ctx, sec):
    sub = z.master_subscriber(ctx, ANY)
    return z.master_publisher(ctx, endpoint(sub)), sub, False


def _pair_recording(sink_factory):
    def make(cfg, ctx, sec, tmp_path):
        sink = sink_factory(ctx, f"ipc://{tmp_path}/sink", 10)
        return z.recording_tap(ctx, endpoint(sink), 10), sink, False
    return make


PAIRS = {
    "control_server": (_pair_control, z.CONTROL_MAX_BYTES),
    "control_client": (_pair_ack, z.CONTROL_MAX_BYTES),
    "telemetry_subscriber": (_pair_telemetry, z.TELEMETRY_MAX_BYTES),
    "video_server": (_pair_report, z.VIDEO_REPORT_MAX_BYTES),
    "video_client": (_pair_frame, z.VIDEO_FRAME_MAX_BYTES),
    "ui_intent_server": (_pair_intent, z.UI_INTENT_MAX_BYTES),
    "ui_state_subscriber": (_pair_state, z.UI_STATE_MAX_BYTES),
    "master_subscriber": (_pair_master, z.MASTER_SAMPLE_BYTES),
    "recording_control_sink": (_pair_recording(z.recording_control_sink), z.RECORDING_CONTROL_MAX_BYTES),
    "recording_video_sink": (_pair_recording(z.recording_video_sink), z.RECORDING_VIDEO_MAX_BYTES),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_the_largest_frame_the_limit_admits_passes_through_each_factory_pair(cfg, ctx, server_sec, tmp_path,
                                                                             name: str) -> None:
    """Exactly the limit (at least the legitimate maximum, checked here too) arrives whole, through the pair the
    product uses; the handshake itself fits under every limit (no frame could pass otherwise)."""
    make, legit = PAIRS[name]
    sender, receiver, curve = make(cfg, ctx, server_sec, tmp_path) if name.startswith("recording") \
        else make(cfg, ctx, server_sec)
    largest = plaintext_limit(receiver, curve)
    assert largest >= legit
    routed = sender.type == zmq.ROUTER
    peer = b""
    if routed:  # the ROUTER learns its peer from a first message
        hello: list = []
        assert send_until_received(receiver, [b"hello"], sender, lambda m: True, hello)
        peer = hello[-1][0].bytes
    probe = [peer, b"probe"] if routed else [b"probe"]
    assert send_until_received(sender, probe, receiver, lambda m: m[-1].bytes == b"probe")
    big = bytes(largest)
    sender.send_multipart([peer, big] if routed else [big], copy=False)
    got = receive(receiver, lambda got: any(len(m[-1]) == largest for m in got))
    assert any(len(m[-1]) == largest and m[-1].bytes == big for m in got)
