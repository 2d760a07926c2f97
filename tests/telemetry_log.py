"""Log one arm's measured_cf from the bedside's telemetry, in its own process (the haptic tests read 1 kHz
CURVE telemetry; keeping that out of the pytest process keeps its sockets and threads the same as every other
test's). Usage: python tests/telemetry_log.py HOST PORT KEYS_DIR SECONDS OUT.json; prints READY, then writes
[[send_ns, fx, fy, fz], ...] sampled every 20 ms."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import zmq

from transport import codec
from transport.messages import Telemetry
from transport.security import client_security
from transport.zmqlink import tcp, telemetry_subscriber


def main() -> None:
    host, port, keys, seconds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
    sock = telemetry_subscriber(zmq.Context.instance(), tcp(host, port), client_security(keys, "monitor"))
    print("READY", flush=True)
    seen: list[list[float]] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            last = None
            while sock.poll(0):
                msg = codec.decode(sock.recv())
                if isinstance(msg, Telemetry):
                    last = msg
            if last is not None:
                seen.append([last.send_ns, *last.arms[0].measured_cf])
            time.sleep(0.02)
    finally:
        Path(out).write_text(json.dumps(seen))
        sock.close(0)


if __name__ == "__main__":
    main()
