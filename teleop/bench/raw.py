"""The raw floor: plain pyzmq DEALER->ROUTER ping-pong between two processes, nothing of ours in the path.

Paced like the command path (one message per period, same payload size) because a paced ping-pong pays a
wake-up per message that a back-to-back one does not; comparing against the back-to-back figure would
flatter the floor and make our overhead look worse than it is, or hide it.

Run the echo side as `python -m teleop.bench.raw PORT` (it prints READY when bound).
"""

from __future__ import annotations

import sys
import time

import zmq


def echo_server(port: int) -> None:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.bind(f"tcp://127.0.0.1:{port}")
    print("READY raw-echo", flush=True)
    while True:
        ident, data = s.recv_multipart()
        if data == b"stop":
            break
        s.send_multipart([ident, data])


def ping_pong(port: int, payload_size: int, rate_hz: int, seconds: float, warmup: int = 200) -> list[int]:
    """RTTs in ns of `rate_hz`-paced round trips of `payload_size`-byte messages."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    payload = bytes(payload_size)
    period = 1_000_000_000 // rate_hz
    rtts: list[int] = []
    n = warmup + int(seconds * rate_hz)
    next_t = time.monotonic_ns()
    for i in range(n):
        t1 = time.monotonic_ns()
        s.send(payload)
        s.recv()
        t4 = time.monotonic_ns()
        if i >= warmup:
            rtts.append(t4 - t1)
        next_t += period
        delay = next_t - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        else:
            next_t = time.monotonic_ns()
    s.send(b"stop")
    time.sleep(0.05)
    s.close(0)
    return rtts


if __name__ == "__main__":
    echo_server(int(sys.argv[1]))
