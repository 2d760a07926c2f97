"""The raw floor: plain pyzmq DEALER->ROUTER ping-pong between two processes, nothing of ours in the path.

Paced like the command path (one message per period, same payload size) because a paced ping-pong pays a
wake-up per message that a back-to-back one does not; comparing against the back-to-back figure would
flatter the floor and make our overhead look worse than it is, or hide it.

Scheduled like the command path too: each side runs under the scheduling policy of the role it stands in
for (`realtime_priority`: SCHED_FIFO for the calling thread and zmq's I/O thread, base.runtime), so the
ratio compares code with code, not a real-time process with a time-shared one.

Run the echo side as `python -m teleop.bench.raw PORT [PRIORITY]` (it prints READY when bound).
"""

from __future__ import annotations

import sys
import time

import zmq

from base.runtime import normal_scheduling, realtime_scheduling
from transport.zmqlink import bare, tcp


def echo_server(port: int, priority: int = 0) -> None:
    ctx = zmq.Context.instance()
    s = bare(ctx, zmq.ROUTER, tcp("127.0.0.1", port), bind=True)
    realtime_scheduling(priority, "raw echo")
    print("READY raw-echo", flush=True)
    while True:
        ident, data = s.recv_multipart()
        if data == b"stop":
            break
        s.send_multipart([ident, data])


def ping_pong(port: int, payload_size: int, rate_hz: int, seconds: float, warmup: int = 200,
              priority: int = 0) -> list[int]:
    """RTTs in ns of `rate_hz`-paced round trips of `payload_size`-byte messages, the calling thread at
    SCHED_FIFO `priority` (0: unchanged) for the duration, then back to normal scheduling."""
    ctx = zmq.Context.instance()
    s = bare(ctx, zmq.DEALER, tcp("127.0.0.1", port), bind=False)
    if priority > 0:
        realtime_scheduling(priority, "raw ping")
    try:
        return _ping_pong(s, payload_size, rate_hz, seconds, warmup)
    finally:
        if priority > 0:
            normal_scheduling()


def _ping_pong(s: zmq.Socket, payload_size: int, rate_hz: int, seconds: float, warmup: int) -> list[int]:
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
    echo_server(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
