"""Raw voice peers for the voice socket's key tests (tests/test_voice_link.py, tests/test_voice_paths.py)."""

from __future__ import annotations

import contextlib
import time

import zmq


def curve_client(ctx: zmq.Context, port: int, public: bytes, secret: bytes, server_public: bytes) -> zmq.Socket:
    """A DEALER with the given CURVE keys, connected to the voice port on this host."""
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = public, secret, server_public
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def until_refused(station, socks: list[zmq.Socket], n: int, packet: bytes, timeout_s: float = 10.0) -> dict:
    """Send `packet` on every socket until the station's ZAP handler has refused `n` handshakes (or the time is
    up); returns the station's snapshot for the test to judge."""
    deadline = time.monotonic() + timeout_s
    while station.snapshot().get("refused_handshakes", 0) < n and time.monotonic() < deadline:
        for s in socks:
            with contextlib.suppress(zmq.Again):
                s.send(packet, zmq.NOBLOCK)
        time.sleep(0.05)
    return station.snapshot()
