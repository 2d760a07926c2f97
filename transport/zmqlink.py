"""Every ZeroMQ socket of the project is made here: one factory per kind of socket, which owns its options.

Why one module: a socket's options are its behaviour on a bad link (what queues, what drops, what blocks),
so they are stated once, side by side, and a reader compares them at a glance. Callers pick a factory by
what the socket is for and never set an option themselves. Tests may still build a raw socket when they act
as a foreign peer on purpose.

Why these patterns (docs/architecture.md, "Socket patterns and options, and why", has the long version):
* control: console DEALER <-> bedside ROUTER. One two-way connection that reconnects by itself; acks
  come back on it, so the console measures RTT on the very path commands take. PAIR does not reconnect,
  PUSH blocks at HWM, PUB has no way back.
* Short queues everywhere (HWM 16 on commands, small kernel buffers, IMMEDIATE, LINGER 0): a stalled link
  must not bank commands to deliver later as a burst. The bedside still age-checks every command.
* telemetry: bedside PUB -> console and monitors SUB. PUB drops per subscriber, so a slow monitor can
  never stall the bedside or the surgeon's console.
* video: bedside ROUTER -> viewers' DEALER, reports back on the same connection. ROUTER_MANDATORY makes a
  full per-viewer queue visible (EAGAIN) instead of a silent drop; SNDHWM 2 and the viewer's own acks
  (video/session.py) keep frames from queueing.
* No receive limit on the connecting end of a link with heartbeats (`CONNECTED_RCVHWM`): a limit plus a stalled
  reader aborts the process in libzmq 4.3.5 (issue #3937).
* CURVE on every network socket (transport/security.py): the bedside's sockets are CURVE servers in a ZAP
  domain (`control` or `monitoring`), consoles and monitors are clients pinned to the bedside's public key.
* ZMTP heartbeats close dead TCP connections for hygiene; the application watchdogs, not these, freeze
  the arms (tens of ms, not seconds).
* loopback and ipc sockets (window <-> engine, master bridge, recorder taps) carry no key: they never leave
  the host.
* MAXMSGSIZE on every socket: the largest frame a legitimate peer sends it (the receiving decoder's own cap),
  plus CURVE's 33 bytes where CURVE is on, never below the 1 KiB handshake floor (constants below). libzmq
  checks it as each frame comes off the wire, before CURVE decrypts it or Python sees it; an oversized frame
  is a protocol error that closes that one peer's connection (docs/architecture.md, "Bounded frames").

Every socket, its pattern and its options (the factories below are the truth; tests/test_zmqlink.py reads
them back):

factory                 type    end      options
control_server          ROUTER  bind     link*, CURVE `control`, SNDHWM/RCVHWM 64, SNDBUF/RCVBUF 32 KiB, max CONTROL
control_client          DEALER  connect  link*, CURVE, SNDHWM 16, RCVHWM none, IMMEDIATE, SNDBUF/RCVBUF 32 KiB,
                                         max CONTROL
telemetry_publisher     PUB     bind     link*, CURVE `monitoring`, SNDHWM 256, max floor (subscriptions only)
telemetry_subscriber    SUB     connect  link*, CURVE, RCVHWM none, subscribe all, max TELEMETRY
video_server            ROUTER  bind     video*, CURVE `monitoring`, ROUTER_MANDATORY, SNDHWM 2, RCVHWM 256,
                                         SNDBUF 128 KiB, max VIDEO_REPORT
video_client            DEALER  connect  video*, CURVE, RCVHWM none, SNDHWM 16, RCVBUF 128 KiB, max VIDEO_FRAME
ui_intent_server        PULL    bind     LINGER 0, RCVHWM 1000, max UI_INTENT (engine: the window's intents)
ui_state_publisher      PUB     bind     LINGER 0, SNDHWM 100, max floor (engine: state and events to the windows)
ui_intent_client        PUSH    connect  LINGER 0, SNDHWM 200, max floor (window)
ui_state_subscriber     SUB     connect  LINGER 0, RCVHWM 200, subscribe all, max UI_STATE (window)
master_publisher        PUB     connect  LINGER 0, SNDHWM 4, max floor (the window's keyboard/mouse master, bridges)
master_subscriber       SUB     either   CONFLATE (newest sample wins), LINGER 0, subscribe all, max MASTER
force_publisher         PUB     either   LINGER 0, SNDHWM 4, max floor (the console's force feedback to a bridge)
force_subscriber        SUB     connect  CONFLATE (newest force wins), LINGER 0, subscribe all, max FORCE (bridges)
recording_tap           PUSH    connect  SNDHWM from config, LINGER 2 s (what was handed over reaches the file),
                                         max floor
recording_control_sink  PULL    bind     RCVHWM from config, LINGER 0, max RECORDING_CONTROL (the recorder)
recording_video_sink    PULL    bind     RCVHWM from config, LINGER 0, max RECORDING_VIDEO (the recorder)
bare                    any     either   LINGER 0 only (the benchmarks' raw floor)

link*: LINGER 0, HEARTBEAT_IVL 200 ms, HEARTBEAT_TIMEOUT 600 ms, RECONNECT_IVL 20 ms, RECONNECT_IVL_MAX 200 ms.
video*: LINGER 0, HEARTBEAT_IVL 500 ms, HEARTBEAT_TIMEOUT 1500 ms.
max X: MAXMSGSIZE = `max_msg_size(X_MAX_BYTES, curve)`; max floor: `HANDSHAKE_FLOOR_BYTES` (1 KiB).

`wait_readable` waits on several sockets with microsecond resolution: zmq_poll's timeout is whole
milliseconds, too coarse to pace a 1 kHz loop, so it selects on the sockets' ZMQ_FD (edge-triggered:
always check ZMQ_EVENTS before sleeping, which this does).
"""

from __future__ import annotations

import errno
import select

import zmq

from base.errors import UserError
from transport import codec, video_wire
from transport.security import ClientSecurity, ServerSecurity

CONTROL_HWM = 16
TELEMETRY_HWM = 256
SOCKET_BUFFER_BYTES = 32 * 1024
VIDEO_BUFFER_BYTES = 128 * 1024
UI_INTENT_HWM = 1000
UI_STATE_HWM = 100
UI_WINDOW_HWM = 200
MASTER_HWM = 4
ZMQ_DEFAULT_HWM = 1000
"""libzmq's own high-water mark, for a caller that wants zmq's default stated rather than implied."""
RECORDING_LINGER_MS = 2000

# ----------------------------------------------------------------------------------- bounded frames
# Each *_MAX_BYTES is the largest frame a legitimate peer sends that socket (docs/protocol.md, "Sockets", has
# the table with the figures): at most this much is ever allocated for one frame, and nothing larger is
# decrypted or copied into Python. The limit is per frame (libzmq checks each frame of a multipart message
# on its own), so the recorder's batches are bounded by their largest part, not by their length.

CURVE_FRAME_OVERHEAD = 33
"""What CURVE adds to each frame on the wire (the MESSAGE command: name 8, nonce 8, MAC 16, flags 1 bytes).
libzmq compares MAXMSGSIZE with the frame as it arrives, still encrypted, so a CURVE socket's limit adds it."""
HANDSHAKE_FLOOR_BYTES = 1024
"""No limit is set below this: libzmq applies MAXMSGSIZE to the handshake's commands too (a limit under 292
bytes fails every CURVE handshake of a DEALER). The largest command a peer sends is CURVE INITIATE: 292 bytes
from our DEALERs, 547 from a peer that sets the longest routing id (255 bytes). Margin: 1.9x that."""
CONTROL_MAX_BYTES = codec.MAX_MESSAGE_BYTES
"""4096, the control codec's own cap (`decode` refuses more). Largest frames: servo_cp 292 (to the bedside),
ack 60 (to the console); the largest the codec defines is COUNTERS, 3104. The margin up to the codec's cap
keeps a message sent the wrong way a counted refusal (docs/protocol.md) instead of a dropped connection."""
TELEMETRY_MAX_BYTES = codec.MAX_MESSAGE_BYTES
"""4096, the codec's cap: COUNTERS ≤ 3104 (its JSON ≤ codec.MAX_COUNTERS_BYTES), EVENT ≤ 1062, TELEMETRY
892 (four arms with measured_cf). Margin 992 bytes (32 %) over COUNTERS."""
VIDEO_FRAME_MAX_BYTES = video_wire.FRAME_HEADER_SIZE + video_wire.MAX_PAYLOAD_BYTES
"""64 + 96 MiB, the video wire's own cap: the raw size of the largest stereo picture the configuration allows
(its margin over the largest encoded frame: `video_wire.MAX_PAYLOAD_BYTES`)."""
VIDEO_REPORT_MAX_BYTES = video_wire.REPORT_SIZE
"""64 (every report): the socket's limit is the handshake floor, 1024."""
UI_INTENT_MAX_BYTES = 4096
"""The window's JSON messages: console.uilink.MAX_UI_BYTES, which both ends enforce (transport may not import
console; tests/test_bounded_frames.py holds the two equal). Heartbeats and reports are under 150 bytes."""
UI_STATE_MAX_BYTES = 64 * 1024
"""The engine's JSON state and events: the state measured 1.7 KiB (90 RTT samples, the counters, three arms),
events under 1.2 KiB (a bedside event's text is at most 1 KiB). Margin 38x the measured state: it grows with
counters, never with time."""
MASTER_SAMPLE_BYTES = 200
"""console.masters.network.SIZE (every sample; held equal by a test): the socket's limit is the handshake
floor, 1024."""
FORCE_MAX_BYTES = 88
"""console.masters.network.FORCE_SIZE (held equal by a test): the socket's limit is the handshake floor."""
RECORDING_CONTROL_MAX_BYTES = 64 * 1024
"""The largest part of a control tap's batch: a codec frame (≤ 4096), a head (9 bytes + a peer or topic name)
or a JSON record (link status 1-2 KiB, events and freezes < 1 KiB). ControlTap refuses a bigger JSON record as
a counted drop, so a real producer never sends more. Margin: 16x the codec's cap."""
RECORDING_VIDEO_MAX_BYTES = VIDEO_FRAME_MAX_BYTES
"""A video tap's parts: the FRAME as sent or received (≤ VIDEO_FRAME_MAX_BYTES) and a 35-byte head."""


def max_msg_size(largest: int, curve: bool) -> int:
    """MAXMSGSIZE for a socket whose peers send frames of at most `largest` bytes (plaintext)."""
    return max(HANDSHAKE_FLOOR_BYTES, largest + (CURVE_FRAME_OVERHEAD if curve else 0))


def _bound(sock: zmq.Socket, largest: int, curve: bool) -> None:
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg_size(largest, curve))


class AddressInUse(UserError):
    """A port another process holds: the message names the configuration key that moves ours."""

    label = "port in use"


def _open(sock: zmq.Socket, endpoint: str, bind: bool, key: str = "") -> zmq.Socket:
    """Bind or connect; a socket that cannot is closed before the error reaches the caller. `key` names the
    configuration key of a bound port, so that a port in use is one line saying which key to change."""
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        if bind and exc.errno == errno.EADDRINUSE:
            fix = f"set another port with --set {key}=PORT" if key else "choose another port"
            raise AddressInUse(f"{endpoint} is already in use (another bedside or console on this host?): stop "
                               f"that process, or {fix}") from None
        raise
    return sock


# ------------------------------------------------------------------------------ control and telemetry


CONNECTED_RCVHWM = 0
"""No receive limit on the connecting end of a link with heartbeats (the console's control DEALER, every telemetry
SUB, every video DEALER). With a limit, a receiver that stops reading (a stalled loop, a starved window) fills its
pipe, libzmq stops reading that connection, the heartbeats it no longer reads time out, the connection is
replaced, and resuming the reads aborts the process in libzmq 4.3.5 (`Assertion failed: _input_stopped`, libzmq
issue #3937; fixed upstream by commit 63c5fab1 of 2026-07-02, in no release pyzmq bundles yet). A pipe that never
fills never stops reading. What bounds the queue instead: the control DEALER hears only answers to the commands it
sent (SNDHWM 16) and rate-limited events; a viewer's frames are paced by its own acks (video/session.py, a viewer
with a frame unacknowledged past RTT + `video.max_queue_ms` gets none); telemetry arrives at `bedside.telemetry_hz`
for as long as the reader stalls. tests/test_zmqlink.py::test_a_stalled_receiver_resumes_without_an_abort."""


def _common(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 200)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 600)
    sock.setsockopt(zmq.RECONNECT_IVL, 20)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 200)
    return sock


def control_server(ctx: zmq.Context, endpoint: str, sec: ServerSecurity | None, key: str = "") -> zmq.Socket:
    """Bedside end of the command link (ROUTER). Replies to a vanished console are dropped, not queued."""
    s = _common(ctx.socket(zmq.ROUTER))
    if sec is not None:
        sec.apply(s, "control")
    _bound(s, CONTROL_MAX_BYTES, sec is not None)
    s.setsockopt(zmq.SNDHWM, CONTROL_HWM * 4)
    s.setsockopt(zmq.RCVHWM, CONTROL_HWM * 4)
    s.setsockopt(zmq.SNDBUF, SOCKET_BUFFER_BYTES)
    s.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
    return _open(s, endpoint, bind=True, key=key)


def control_client(ctx: zmq.Context, endpoint: str, sec: ClientSecurity | None,
                   routing_id: bytes | None = None) -> zmq.Socket:
    """Console end of the command link (DEALER). IMMEDIATE: no queueing while disconnected. `routing_id`: with
    several paths, the console's one random identity on every path's connection, so the bedside knows them for
    one controller (docs/protocol.md, "Check order at the bedside"); None (one path) = the bedside's own."""
    s = _common(ctx.socket(zmq.DEALER))
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    if sec is not None:
        sec.apply(s)
    _bound(s, CONTROL_MAX_BYTES, sec is not None)
    s.setsockopt(zmq.SNDHWM, CONTROL_HWM)
    s.setsockopt(zmq.RCVHWM, CONNECTED_RCVHWM)
    s.setsockopt(zmq.IMMEDIATE, 1)
    s.setsockopt(zmq.SNDBUF, SOCKET_BUFFER_BYTES)
    s.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
    return _open(s, endpoint, bind=False)


def telemetry_publisher(ctx: zmq.Context, endpoint: str, sec: ServerSecurity | None, key: str = "") -> zmq.Socket:
    """Bedside telemetry and events (PUB): drops per subscriber, never waits for one."""
    s = _common(ctx.socket(zmq.PUB))
    if sec is not None:
        sec.apply(s, "monitoring")
    _bound(s, 0, sec is not None)  # it hears only subscriptions (one byte: everything)
    s.setsockopt(zmq.SNDHWM, TELEMETRY_HWM)
    return _open(s, endpoint, bind=True, key=key)


def telemetry_subscriber(ctx: zmq.Context, endpoint: str, sec: ClientSecurity | None) -> zmq.Socket:
    """Console's or monitor's view of the bedside telemetry (SUB, everything); no receive limit (`CONNECTED_RCVHWM`:
    a reader that stalls must not abort when it reads again)."""
    s = _common(ctx.socket(zmq.SUB))
    if sec is not None:
        sec.apply(s)
    _bound(s, TELEMETRY_MAX_BYTES, sec is not None)
    s.setsockopt(zmq.RCVHWM, CONNECTED_RCVHWM)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    return _open(s, endpoint, bind=False)


# ------------------------------------------------------------------------------------------- video


def _video_common(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 500)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 1500)
    return sock


def video_server(ctx: zmq.Context, endpoint: str, sec: ServerSecurity | None, key: str = "") -> zmq.Socket:
    """Bedside video sender (ROUTER, `monitoring` domain): a full viewer queue is EAGAIN, not a silent drop;
    SNDHWM 2 and a small SNDBUF keep frames from queueing ahead of the picture."""
    s = ctx.socket(zmq.ROUTER)
    if sec is not None:
        sec.apply(s, "monitoring")
    _bound(s, VIDEO_REPORT_MAX_BYTES, sec is not None)
    s.setsockopt(zmq.ROUTER_MANDATORY, 1)
    s.setsockopt(zmq.SNDHWM, 2)
    s.setsockopt(zmq.RCVHWM, 256)
    s.setsockopt(zmq.SNDBUF, VIDEO_BUFFER_BYTES)
    return _open(_video_common(s), endpoint, bind=True, key=key)


def video_client(ctx: zmq.Context, endpoint: str, sec: ClientSecurity | None) -> zmq.Socket:
    """A viewer's video socket (DEALER): frames in, reports (acks) back on the same path. No receive limit
    (`CONNECTED_RCVHWM`): the sender's ack pacing keeps frames from queueing, the receiver keeps the newest."""
    s = ctx.socket(zmq.DEALER)
    if sec is not None:
        sec.apply(s)
    _bound(s, VIDEO_FRAME_MAX_BYTES, sec is not None)
    s.setsockopt(zmq.RCVHWM, CONNECTED_RCVHWM)
    s.setsockopt(zmq.SNDHWM, 16)
    s.setsockopt(zmq.RCVBUF, VIDEO_BUFFER_BYTES)
    return _open(_video_common(s), endpoint, bind=False)


# ------------------------------------------------------------------ console engine <-> window (loopback)


def ui_intent_server(ctx: zmq.Context, endpoint: str, key: str = "") -> zmq.Socket:
    """Engine end of the window's intents, heartbeats and video reports (PULL, console/uilink.py)."""
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, UI_INTENT_HWM)
    _bound(s, UI_INTENT_MAX_BYTES, curve=False)
    return _open(s, endpoint, bind=True, key=key)


def ui_state_publisher(ctx: zmq.Context, endpoint: str, key: str = "") -> zmq.Socket:
    """Engine state and events for the window(s) (PUB): a slow window drops, the engine never waits."""
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, UI_STATE_HWM)
    _bound(s, 0, curve=False)
    return _open(s, endpoint, bind=True, key=key)


def ui_intent_client(ctx: zmq.Context, endpoint: str, hwm: int = UI_WINDOW_HWM) -> zmq.Socket:
    """Window end of the intents (PUSH)."""
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    _bound(s, 0, curve=False)
    return _open(s, endpoint, bind=False)


def ui_state_subscriber(ctx: zmq.Context, endpoint: str, hwm: int = UI_WINDOW_HWM) -> zmq.Socket:
    """Window end of the engine's state and events (SUB, everything)."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, hwm)
    _bound(s, UI_STATE_MAX_BYTES, curve=False)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    return _open(s, endpoint, bind=False)


# --------------------------------------------------------------------- master samples (network master)


def master_publisher(ctx: zmq.Context, endpoint: str, hwm: int = MASTER_HWM) -> zmq.Socket:
    """A master bridge's sample stream (PUB): a short queue, a stalled engine never gets a backlog of poses."""
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    _bound(s, 0, curve=False)
    return _open(s, endpoint, bind=False)


def master_subscriber(ctx: zmq.Context, endpoint: str, bind: bool = True, key: str = "") -> zmq.Socket:
    """The engine's network master (SUB, CONFLATE): newest sample wins, a late burst is never replayed."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.CONFLATE, 1)
    s.setsockopt(zmq.LINGER, 0)
    _bound(s, MASTER_SAMPLE_BYTES, curve=False)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    return _open(s, endpoint, bind, key)


def force_publisher(ctx: zmq.Context, endpoint: str, bind: bool = True, hwm: int = MASTER_HWM,
                    key: str = "") -> zmq.Socket:
    """The console's force feedback to a master bridge (PUB): a bridge that stops reading never stalls the engine."""
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    _bound(s, 0, curve=False)
    return _open(s, endpoint, bind, key)


def force_subscriber(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A bridge's end of the force feedback (SUB, CONFLATE): the newest force wins, a late burst never plays."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.CONFLATE, 1)
    s.setsockopt(zmq.LINGER, 0)
    _bound(s, FORCE_MAX_BYTES, curve=False)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    return _open(s, endpoint, bind=False)


# ------------------------------------------------------------------------------ recorder (ipc, per role)


def recording_tap(ctx: zmq.Context, endpoint: str, hwm: int) -> zmq.Socket:
    """A producer's tap into its recorder (PUSH, sent NOBLOCK). LINGER 2 s: what was handed over before a
    clean exit still reaches the file."""
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.setsockopt(zmq.LINGER, RECORDING_LINGER_MS)
    _bound(s, 0, curve=False)
    return _open(s, endpoint, bind=False)


def _recording_sink(ctx: zmq.Context, endpoint: str, hwm: int, largest: int) -> zmq.Socket:
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.RCVHWM, hwm)
    s.setsockopt(zmq.LINGER, 0)
    _bound(s, largest, curve=False)
    return _open(s, endpoint, bind=True)


def recording_control_sink(ctx: zmq.Context, endpoint: str, hwm: int) -> zmq.Socket:
    """The recorder's end of the control taps (PULL): batches of codec frames, heads and JSON records."""
    return _recording_sink(ctx, endpoint, hwm, RECORDING_CONTROL_MAX_BYTES)


def recording_video_sink(ctx: zmq.Context, endpoint: str, hwm: int) -> zmq.Socket:
    """The recorder's end of the video taps (PULL): one encoded frame per message."""
    return _recording_sink(ctx, endpoint, hwm, RECORDING_VIDEO_MAX_BYTES)


# ------------------------------------------------------------------------------------------------ misc


def bare(ctx: zmq.Context, kind: int, endpoint: str, bind: bool) -> zmq.Socket:
    """zmq's defaults but LINGER 0: the benchmarks' raw floor, which must carry nothing of ours."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    return _open(s, endpoint, bind)


def start_io_thread(ctx: zmq.Context | None = None) -> None:
    """Start the context's I/O thread now (libzmq starts it with the first socket), e.g. so that the
    process's real-time scheduling, set next, covers it too."""
    (ctx or zmq.Context.instance()).socket(zmq.PUSH).close(0)


def also_bind(sock: zmq.Socket, endpoint: str, key: str = "") -> zmq.Socket:
    """Bind a socket the factories made to one more endpoint (another path, link.paths): the same options,
    the same one-line error for a port in use (and the socket closed)."""
    return _open(sock, endpoint, bind=True, key=key)


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def wait_readable(sockets: list[zmq.Socket], timeout_s: float) -> bool:
    """Block until any socket has a message or `timeout_s` passes; True if one is readable."""
    for s in sockets:
        if s.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return True
    if timeout_s <= 0:
        return False
    select.select([s.getsockopt(zmq.FD) for s in sockets], [], [], timeout_s)
    return any(s.getsockopt(zmq.EVENTS) & zmq.POLLIN for s in sockets)
