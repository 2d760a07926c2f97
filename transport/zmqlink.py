"""ZeroMQ sockets for the control and telemetry links, configured for a link where only fresh data matters.

Why these patterns and options (docs/architecture.md has the long version):
* control: console DEALER <-> bedside ROUTER. One two-way connection that reconnects by itself; acks
  come back on it, so the console measures RTT on the very path commands take. PAIR does not reconnect,
  PUSH blocks at HWM, PUB has no way back.
* Short queues everywhere (HWM 16 on commands, small kernel buffers, IMMEDIATE, LINGER 0): a stalled link
  must not bank commands to deliver later as a burst. The bedside still age-checks every command.
* telemetry: bedside PUB -> console and monitors SUB. PUB drops per subscriber, so a slow monitor can
  never stall the bedside or the surgeon's console.
* CURVE on every socket (transport/security.py): the bedside's sockets are CURVE servers in a ZAP domain
  (`control` or `monitoring`), consoles and monitors are clients pinned to the bedside's public key.
* ZMTP heartbeats close dead TCP connections for hygiene; the application watchdogs, not these, freeze
  the arms (tens of ms, not seconds).

`wait_readable` waits on several sockets with microsecond resolution: zmq_poll's timeout is whole
milliseconds, too coarse to pace a 1 kHz loop, so it selects on the sockets' ZMQ_FD (edge-triggered:
always check ZMQ_EVENTS before sleeping, which this does).
"""

from __future__ import annotations

import select

import zmq

from transport.security import ClientSecurity, ServerSecurity

CONTROL_HWM = 16
TELEMETRY_HWM = 256
SOCKET_BUFFER_BYTES = 32 * 1024


def _common(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 200)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 600)
    sock.setsockopt(zmq.RECONNECT_IVL, 20)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 200)
    return sock


def control_server(ctx: zmq.Context, endpoint: str, sec: ServerSecurity | None) -> zmq.Socket:
    """Bedside end of the command link (ROUTER). Replies to a vanished console are dropped, not queued."""
    s = _common(ctx.socket(zmq.ROUTER))
    if sec is not None:
        sec.apply(s, "control")
    s.setsockopt(zmq.SNDHWM, CONTROL_HWM * 4)
    s.setsockopt(zmq.RCVHWM, CONTROL_HWM * 4)
    s.setsockopt(zmq.SNDBUF, SOCKET_BUFFER_BYTES)
    s.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
    s.bind(endpoint)
    return s


def control_client(ctx: zmq.Context, endpoint: str, sec: ClientSecurity | None) -> zmq.Socket:
    """Console end of the command link (DEALER). IMMEDIATE: no queueing while disconnected."""
    s = _common(ctx.socket(zmq.DEALER))
    if sec is not None:
        sec.apply(s)
    s.setsockopt(zmq.SNDHWM, CONTROL_HWM)
    s.setsockopt(zmq.RCVHWM, CONTROL_HWM * 4)
    s.setsockopt(zmq.IMMEDIATE, 1)
    s.setsockopt(zmq.SNDBUF, SOCKET_BUFFER_BYTES)
    s.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
    s.connect(endpoint)
    return s


def telemetry_publisher(ctx: zmq.Context, endpoint: str, sec: ServerSecurity | None) -> zmq.Socket:
    s = _common(ctx.socket(zmq.PUB))
    if sec is not None:
        sec.apply(s, "monitoring")
    s.setsockopt(zmq.SNDHWM, TELEMETRY_HWM)
    s.bind(endpoint)
    return s


def telemetry_subscriber(ctx: zmq.Context, endpoint: str, sec: ClientSecurity | None) -> zmq.Socket:
    s = _common(ctx.socket(zmq.SUB))
    if sec is not None:
        sec.apply(s)
    s.setsockopt(zmq.RCVHWM, TELEMETRY_HWM * 4)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(endpoint)
    return s


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
