"""User-space link emulation (this kernel has no netem): one-way delay, jitter, rate caps, ramps, stalls.

`DelayLine` is pure: fed each chunk's arrival time and size, it says when the chunk may leave. It never
reorders (a TCP stream cannot be reordered: jitter only ever delays a chunk behind its predecessor), it
applies a bandwidth cap as serialisation time, and during a stall it releases nothing until the stall
ends — then everything at once, which is the delivered-backlog hazard. `LinkProxy` wraps it around TCP
connections with two threads per direction.
"""

from __future__ import annotations

import heapq
import logging
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger("linkemu")


@dataclass(frozen=True)
class LinkProfile:
    """One direction of a link. Times in ms; rate in Mbit/s (0 = unlimited)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # standard deviation of a half-normal extra delay
    rate_mbps: float = 0.0
    ramp_to_ms: float | None = None  # delay grows linearly from delay_ms to this …
    ramp_s: float = 0.0  # … over this many seconds from the start
    stalls: tuple[tuple[float, float], ...] = ()  # (start_s, duration_s): silent, then deliver everything
    cut_at_s: float | None = None  # connections are reset at this time


SCENARIOS: dict[str, LinkProfile] = {
    # One-way figures: half the published round trips (GUIDE §1).
    "lan": LinkProfile(delay_ms=0.1),
    "london-gibraltar": LinkProfile(delay_ms=27.5, jitter_ms=1.0),
    "edge-5g": LinkProfile(delay_ms=19.0, jitter_ms=1.5),
    "strasbourg-hangzhou": LinkProfile(delay_ms=100.0, jitter_ms=2.5),
    "satellite": LinkProfile(delay_ms=315.0, jitter_ms=5.0, rate_mbps=3.5),
}


@dataclass
class DelayLine:
    profile: LinkProfile
    start_ns: int
    seed: int = 1
    last_release_ns: int = 0
    wire_free_ns: int = 0
    delays_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def base_delay_ns(self, now_ns: int) -> float:
        p = self.profile
        d = p.delay_ms
        if p.ramp_to_ms is not None and p.ramp_s > 0:
            frac = min(1.0, max(0.0, (now_ns - self.start_ns) / 1e9 / p.ramp_s))
            d = p.delay_ms + (p.ramp_to_ms - p.delay_ms) * frac
        return d * 1e6

    def release_ns(self, arrival_ns: int, nbytes: int) -> int:
        """When a chunk that arrived at `arrival_ns` may be delivered; never before its predecessor."""
        p = self.profile
        t = arrival_ns + self.base_delay_ns(arrival_ns)
        if p.jitter_ms > 0:
            t += abs(self._rng.gauss(0.0, p.jitter_ms)) * 1e6
        if p.rate_mbps > 0:
            send_start = max(arrival_ns, self.wire_free_ns)
            self.wire_free_ns = int(send_start + nbytes * 8 / (p.rate_mbps * 1e6) * 1e9)
            t = max(t, self.wire_free_ns + self.base_delay_ns(arrival_ns))
        for start_s, dur_s in p.stalls:
            s0 = self.start_ns + start_s * 1e9
            s1 = s0 + dur_s * 1e9
            if s0 <= t < s1:
                t = s1
        rel = int(max(t, self.last_release_ns))
        self.last_release_ns = rel
        self.delays_ms.append((rel - arrival_ns) / 1e6)
        return rel

    def cut_due(self, now_ns: int) -> bool:
        c = self.profile.cut_at_s
        return c is not None and now_ns >= self.start_ns + c * 1e9


class _Pipe:
    """One direction of one TCP connection through a DelayLine."""

    def __init__(self, src: socket.socket, dst: socket.socket, line: DelayLine, stats: dict) -> None:
        self.src, self.dst, self.line, self.stats = src, dst, line, stats
        self.queue: list[tuple[int, int, bytes]] = []
        self.cv = threading.Condition()
        self.closed = False
        self.n = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := self.src.recv(65536):
                now = time.monotonic_ns()
                with self.cv:
                    self.n += 1
                    heapq.heappush(self.queue, (self.line.release_ns(now, len(data)), self.n, data))
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.queue and not self.closed:
                        self.cv.wait(0.05)
                    if not self.queue and self.closed:
                        break
                    rel, _, data = self.queue[0]
                    now = time.monotonic_ns()
                    if rel > now:
                        self.cv.wait((rel - now) / 1e9)
                        continue
                    heapq.heappop(self.queue)
                if self.line.cut_due(time.monotonic_ns()):
                    break
                self.dst.sendall(data)
                self.stats["bytes"] += len(data)
                self.stats["chunks"] += 1
        except OSError:
            pass
        for s in (self.src, self.dst):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                s.close()
            except OSError:
                pass


class LinkProxy:
    """Listens on `listen_port`, forwards to `target`, applying `up` (client→server) and `down` profiles."""

    def __init__(self, listen_port: int, target: tuple[str, int], up: LinkProfile, down: LinkProfile,
                 host: str = "127.0.0.1", seed: int = 1) -> None:
        self.target, self.up, self.down, self.seed = target, up, down, seed
        self.start_ns = time.monotonic_ns()
        self.listener = socket.create_server((host, listen_port))
        self.port = self.listener.getsockname()[1]
        self.stats = {"connections": 0, "up": {"bytes": 0, "chunks": 0}, "down": {"bytes": 0, "chunks": 0}}
        self.lines: list[DelayLine] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["connections"] += 1
            up = DelayLine(self.up, self.start_ns, self.seed)
            down = DelayLine(self.down, self.start_ns, self.seed + 1)
            self.lines += [up, down]
            _Pipe(client, server, up, self.stats["up"])
            _Pipe(server, client, down, self.stats["down"])

    def report(self) -> dict:
        delays = sorted(d for line in self.lines for d in line.delays_ms)
        pct = (lambda q: round(delays[min(len(delays) - 1, int(q * len(delays)))], 2)) if delays else (lambda q: None)
        return {**self.stats, "one_way_delay_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}

    def close(self) -> None:
        self.listener.close()
