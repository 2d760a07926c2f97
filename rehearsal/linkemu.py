"""User-space link emulation (this kernel has no netem): one-way delay, jitter, rate caps, ramps, outages.

`DelayLine` is pure: fed each chunk's arrival time and size, it says when the chunk may leave (or that it
is lost). It never reorders (a TCP stream cannot be reordered: jitter only ever delays a chunk behind its
predecessor) and applies a bandwidth cap as serialisation time. Outages (`Outage`, scheduled in the
profile or added at run time) come in three kinds, the three ways a real link dies:

* ``stall``: silent, then everything is delivered at once — TCP retransmitting over a repaired cable,
  i.e. the delivered-backlog hazard;
* ``blackhole``: silent, and what was sent is lost; connections that lost data are reset when it ends
  (a cut long enough for the peers' keepalives to give up);
* ``reset``: every connection is reset at once and new ones are refused until it ends.

`LinkEmulator` wraps lines around TCP connections (two threads per direction per connection, one
scheduler thread), for several endpoints sharing one schedule, and records what it did with monotonic
timestamps (`report()`), so a test can line up the system's reaction with the fault that caused it.
Same host: the timestamps are on the same CLOCK_MONOTONIC as the roles' own.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("linkemu")

MODES = ("stall", "blackhole", "reset")
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_MIN_BUFFER = 256 * 1024
"""Bytes a direction may hold before the proxy stops reading (TCP back-pressure at the bottleneck)."""


@dataclass(frozen=True)
class Outage:
    """The link goes down `start_s` after the emulator starts, for `duration_s` (inf = for good)."""

    start_s: float
    duration_s: float
    mode: str = "stall"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"outage mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.start_s < 0 or not self.duration_s > 0:
            raise ValueError(f"outage needs start ≥ 0 and duration > 0, got {self.start_s}, {self.duration_s}")


def flapping(start_s: float, down_s: float, up_s: float, count: int, mode: str = "stall") -> tuple[Outage, ...]:
    """A link that flaps: `count` outages of `down_s`, `up_s` apart, from `start_s`."""
    return tuple(Outage(start_s + i * (down_s + up_s), down_s, mode) for i in range(count))


@dataclass(frozen=True)
class LinkProfile:
    """One direction of a link. Times in ms; rate in Mbit/s (0 = unlimited)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # standard deviation of a half-normal extra delay
    rate_mbps: float = 0.0
    ramp_to_ms: float | None = None  # delay grows linearly from delay_ms to this …
    ramp_s: float = 0.0  # … over this many seconds from the start
    stalls: tuple[tuple[float, float], ...] = ()  # (start_s, duration_s): shorthand for stall outages
    cut_at_s: float | None = None  # shorthand for a reset outage that never ends
    outages: tuple[Outage, ...] = ()

    def all_outages(self) -> tuple[Outage, ...]:
        out = [*self.outages, *(Outage(s, d, "stall") for s, d in self.stalls)]
        if self.cut_at_s is not None:
            out.append(Outage(self.cut_at_s, math.inf, "reset"))
        return tuple(sorted(out, key=lambda o: o.start_s))


SCENARIOS: dict[str, LinkProfile] = {
    # One-way figures: half the published round trips (GUIDE §1).
    "lan": LinkProfile(delay_ms=0.1),
    "london-gibraltar": LinkProfile(delay_ms=27.5, jitter_ms=1.0),
    "edge-5g": LinkProfile(delay_ms=19.0, jitter_ms=1.5),
    "strasbourg-hangzhou": LinkProfile(delay_ms=100.0, jitter_ms=2.5),
    "satellite": LinkProfile(delay_ms=315.0, jitter_ms=5.0, rate_mbps=3.5),
}

PATH_SCENARIOS: dict[str, tuple[LinkProfile, ...]] = {
    # Several paths (link.paths), each emulated on its own: `path_links` names them path0/…, path1/….
    # fibre: 2,400 km of fibre at 4.9 µs/km (12 ms one-way) with little jitter; 5G edge: the MP1000 trials'
    # 38 ms RTT with up to 3 ms of jitter (GUIDE §1).
    "fibre+5g-edge": (LinkProfile(delay_ms=12.0, jitter_ms=0.3), LinkProfile(delay_ms=19.0, jitter_ms=1.5)),
    "lan+lan": (LinkProfile(delay_ms=0.1), LinkProfile(delay_ms=0.1)),
    "fibre+fibre+5g-edge": (LinkProfile(delay_ms=12.0, jitter_ms=0.3), LinkProfile(delay_ms=14.0, jitter_ms=0.5),
                            LinkProfile(delay_ms=19.0, jitter_ms=1.5)),
}
"""Two (or three) carriers, one profile per path in both directions."""

PATH_ENDPOINTS = ("control", "telemetry", "video")


def path_links(targets: list[tuple[str, tuple[int, int, int]]], profiles: tuple[LinkProfile, ...]
               ) -> dict[str, tuple[int, tuple[str, int], LinkProfile, LinkProfile]]:
    """LinkEmulator links for several paths: `targets[k]` = (host, (control, telemetry, video port)) of path k at
    the bedside, emulated with `profiles[k]` both ways, as `path<k>/control`, `path<k>/telemetry`, `path<k>/video`
    (so `add_outage(..., links=links_of_path(k))` cuts one path)."""
    out = {}
    for k, (host, ports) in enumerate(targets):
        for kind, port in zip(PATH_ENDPOINTS, ports, strict=True):
            out[f"path{k}/{kind}"] = (0, (host, port), profiles[k], profiles[k])
    return out


def links_of_path(k: int) -> tuple[str, ...]:
    return tuple(f"path{k}/{kind}" for kind in PATH_ENDPOINTS)


@dataclass(frozen=True)
class Window:
    """An outage in absolute monotonic time."""

    id: int
    start_ns: int
    end_ns: float  # inf for good
    mode: str

    def covers(self, t_ns: float) -> bool:
        return self.start_ns <= t_ns < self.end_ns


_window_ids = itertools.count(1)


def window_of(o: Outage, start_ns: int) -> Window:
    end = math.inf if math.isinf(o.duration_s) else start_ns + int((o.start_s + o.duration_s) * 1e9)
    return Window(next(_window_ids), start_ns + int(o.start_s * 1e9), end, o.mode)


@dataclass
class DelayLine:
    profile: LinkProfile
    start_ns: int
    seed: int = 1
    windows: list[Window] | None = None
    """Outage windows (absolute); default: the profile's own, from `start_ns`."""
    last_release_ns: int = 0
    wire_free_ns: int = 0
    delays_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    held: Counter = field(default_factory=Counter)
    """Chunks a stall window kept back (then delivered at its end), by window id."""
    dropped: Counter = field(default_factory=Counter)
    """Chunks lost in a blackhole/reset window, by window id."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if self.windows is None:
            self.windows = [window_of(o, self.start_ns) for o in self.profile.all_outages()]

    def add_window(self, w: Window) -> None:
        assert self.windows is not None
        self.windows.append(w)
        self.windows.sort(key=lambda x: x.start_ns)

    def base_delay_ns(self, now_ns: int) -> float:
        p = self.profile
        d = p.delay_ms
        if p.ramp_to_ms is not None and p.ramp_s > 0:
            frac = min(1.0, max(0.0, (now_ns - self.start_ns) / 1e9 / p.ramp_s))
            d = p.delay_ms + (p.ramp_to_ms - p.delay_ms) * frac
        return d * 1e6

    def release_ns(self, arrival_ns: int, nbytes: int) -> int | None:
        """When a chunk that arrived at `arrival_ns` may be delivered (never before its predecessor), or None
        if an outage loses it."""
        p = self.profile
        t = arrival_ns + self.base_delay_ns(arrival_ns)
        if p.jitter_ms > 0:
            t += abs(self._rng.gauss(0.0, p.jitter_ms)) * 1e6
        if p.rate_mbps > 0:
            send_start = max(arrival_ns, self.wire_free_ns)
            self.wire_free_ns = int(send_start + nbytes * 8 / (p.rate_mbps * 1e6) * 1e9)
            t = max(t, self.wire_free_ns + self.base_delay_ns(arrival_ns))
        t = max(t, self.last_release_ns)
        for w in self.windows or ():  # sorted by start; t only grows, so one pass
            if w.mode == "stall":
                if w.covers(t) or w.covers(arrival_ns):
                    t = max(t, w.end_ns)
                    self.held[w.id] += 1
            elif w.covers(arrival_ns) or w.covers(t):
                self.dropped[w.id] += 1
                return None
        if math.isinf(t):
            self.dropped[-1] += 1
            return None
        rel = int(t)
        self.last_release_ns = rel
        self.delays_ms.append((rel - arrival_ns) / 1e6)
        return rel

    def active(self, now_ns: int, mode: str) -> Window | None:
        return next((w for w in self.windows or () if w.mode == mode and w.covers(now_ns)), None)

    def cut_due(self, now_ns: int) -> bool:
        return self.active(now_ns, "reset") is not None


class _Pipe:
    """One direction of one TCP connection through a DelayLine."""

    def __init__(self, src: socket.socket, dst: socket.socket, line: DelayLine, stats: Counter,
                 on_close) -> None:
        self.src, self.dst, self.line, self.stats, self.on_close = src, dst, line, stats, on_close
        self.queue: list[tuple[int, int, bytes]] = []
        self.qbytes = 0
        self.cap = max(_MIN_BUFFER, int(2 * line.profile.rate_mbps * 1e6 / 8 * (line.profile.delay_ms / 1e3 + 0.1)))
        self.cv = threading.Condition()
        self.closed = False
        self.broken: Window | None = None  # lost data in this window: the stream has a hole
        self.n = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := self.src.recv(65536):
                now = time.monotonic_ns()
                with self.cv:
                    rel = self.line.release_ns(now, len(data))
                    if rel is None or self.broken is not None:
                        if self.broken is None:
                            self.broken = max((w for w in self.line.windows or () if w.mode != "stall"
                                               and w.start_ns <= now), key=lambda w: w.start_ns, default=None)
                        self.stats["dropped_bytes"] += len(data)
                        continue
                    self.n += 1
                    heapq.heappush(self.queue, (rel, self.n, data))
                    self.qbytes += len(data)
                    self.cv.notify_all()
                    while self.qbytes > self.cap and not self.closed:
                        self.cv.wait(0.05)
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def _write(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.queue and not self.closed:
                        self.cv.wait(0.05)
                        if self.broken is not None and time.monotonic_ns() >= self.broken.end_ns:
                            raise OSError("stream broken by an outage")
                    if not self.queue and self.closed:
                        break
                    rel, _, data = self.queue[0]
                    now = time.monotonic_ns()
                    if rel > now:
                        self.cv.wait((rel - now) / 1e9)
                        continue
                    heapq.heappop(self.queue)
                    self.qbytes -= len(data)
                    self.cv.notify_all()
                if self.line.cut_due(time.monotonic_ns()):
                    break
                self.dst.sendall(data)
                self.stats["bytes"] += len(data)
                self.stats["chunks"] += 1
        except OSError:
            pass
        self.on_close()


class _Connection:
    """One proxied TCP connection: two pipes; reset() sends RST both ways."""

    def __init__(self, cid: int, client: socket.socket, server: socket.socket, up: DelayLine, down: DelayLine,
                 stats: dict[str, Counter], on_end) -> None:
        self.id, self.client, self.server, self.on_end = cid, client, server, on_end
        self.lock = threading.Lock()
        self.alive = 2
        self.up = _Pipe(client, server, up, stats["up"], self._pipe_done)
        self.down = _Pipe(server, client, down, stats["down"], self._pipe_done)

    def broken(self) -> bool:
        return self.up.broken is not None or self.down.broken is not None

    def reset(self) -> None:
        """Wake both readers (SHUT_RD sends nothing); the last pipe to finish closes with RST."""
        for s in (self.client, self.server):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                s.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        for p in (self.up, self.down):
            with p.cv:
                p.closed = True
                p.queue.clear()
                p.cv.notify_all()

    def _pipe_done(self) -> None:
        with self.lock:
            self.alive -= 1
            last = self.alive == 0
        if not last:
            # One direction ended (EOF or a dead peer): the other delivers what it already holds, as TCP
            # would, and stops reading (SHUT_RD wakes a reader blocked in recv and sends nothing).
            for p in (self.up, self.down):
                with contextlib.suppress(OSError):
                    p.src.shutdown(socket.SHUT_RD)
                with p.cv:
                    p.closed = True
                    p.cv.notify_all()
            return
        for s in (self.client, self.server):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                s.close()
            except OSError:
                pass
        self.on_end(self)


class LinkEmulator:
    """Proxies for several endpoints (e.g. control, telemetry, video) with one outage schedule and one log.

    `links`: name → (listen_port (0 = any), target (host, port), up profile, down profile). "up" is
    client → server, i.e. console → bedside. Outages of each profile apply to that direction of that link;
    `add_outage` (run time) applies to every link and direction.
    """

    def __init__(self, links: dict[str, tuple[int, tuple[str, int], LinkProfile, LinkProfile]],
                 host: str = "127.0.0.1", seed: int = 1) -> None:
        self.start_ns = time.monotonic_ns()
        self.seed = seed
        self.lock = threading.RLock()
        self.events: list[dict[str, Any]] = []
        self.windows: dict[int, tuple[Window, set[str]]] = {}
        self.runtime_windows: list[Window] = []
        self.links: dict[str, dict[str, Any]] = {}
        self.conns: dict[str, set[_Connection]] = {}
        self._cids = itertools.count(1)
        self._wake = threading.Event()
        self._closed = False
        shared: dict[Outage, Window] = {}  # one outage in several profiles is one window (one report line)
        for name, (port, target, up, down) in links.items():
            listener = socket.create_server((host, port))
            lines = {d: [shared.setdefault(o, window_of(o, self.start_ns)) for o in p.all_outages()]
                     for d, p in (("up", up), ("down", down))}
            for d in lines:
                for w in lines[d]:
                    self.windows.setdefault(w.id, (w, set()))[1].add(f"{name}/{d}")
            self.links[name] = {"listener": listener, "port": listener.getsockname()[1], "target": target,
                                "up": up, "down": down, "windows": lines, "lines": [],
                                "stats": {"connections": 0, "refused": 0, "resets": 0,
                                          "up": Counter(), "down": Counter()}}
            self.conns[name] = set()
            threading.Thread(target=self._accept, args=(name,), daemon=True).start()
        threading.Thread(target=self._schedule, daemon=True).start()

    # ------------------------------------------------------------------ schedule

    def port(self, name: str) -> int:
        return self.links[name]["port"]

    def t_s(self, t_ns: int) -> float:
        return round((t_ns - self.start_ns) / 1e9, 4)

    def _event(self, t_ns: int, event: str, **fields: Any) -> None:
        rec = {"t_ns": t_ns, "t_s": self.t_s(t_ns), "event": event, **fields}
        with self.lock:
            self.events.append(rec)
        log.info("%s", rec)

    def add_outage(self, duration_s: float, mode: str = "stall", in_s: float = 0.0,
                   links: tuple[str, ...] | None = None) -> Window:
        """From now (+ `in_s`), every direction of `links` (None: every link; one path: `links_of_path(k)`),
        existing connections and new ones."""
        now = time.monotonic_ns()
        w = window_of(Outage((now - self.start_ns) / 1e9 + in_s, duration_s, mode), self.start_ns)
        names = list(self.links) if links is None else list(links)
        with self.lock:
            self.runtime_windows.append(w)
            self.windows[w.id] = (w, {f"{n}/{d}" for n in names for d in ("up", "down")})
            for link in (self.links[n] for n in names):
                for d in ("up", "down"):
                    link["windows"][d].append(w)
                for line in link["lines"]:
                    line.add_window(w)
        self._wake.set()
        return w

    def add_flapping(self, down_s: float, up_s: float, count: int, mode: str = "stall") -> list[Window]:
        return [self.add_outage(down_s, mode, in_s=i * (down_s + up_s)) for i in range(count)]

    def _boundaries(self) -> list[tuple[float, str, Window]]:
        with self.lock:
            ws = [w for w, _ in self.windows.values()]
        return sorted([(w.start_ns, "start", w) for w in ws] + [(w.end_ns, "end", w) for w in ws],
                      key=lambda b: b[0])

    def _schedule(self) -> None:
        """Log each outage's start and end when it happens; reset connections where the mode says so."""
        done: set[tuple[int, str]] = set()
        while not self._closed:
            now = time.monotonic_ns()
            due = [b for b in self._boundaries() if (b[2].id, b[1]) not in done]
            for t, kind, w in due:
                if t > now:
                    break
                done.add((w.id, kind))
                self._boundary(now, kind, w)
            nxt = next((t for t, kind, w in due if (w.id, kind) not in done), math.inf)
            self._wake.wait(None if math.isinf(nxt) else max(0.0, (nxt - time.monotonic_ns()) / 1e9))
            self._wake.clear()

    def _boundary(self, now: int, kind: str, w: Window) -> None:
        links = sorted(self.windows[w.id][1])
        names = sorted({lk.rsplit("/", 1)[0] for lk in links})
        fields: dict[str, Any] = {"outage": w.id, "mode": w.mode, "links": links,
                                  "planned_ns": w.start_ns if kind == "start" else w.end_ns}
        if kind == "start" and w.mode == "reset":
            fields["connections_reset"] = self._reset(names, lambda c: True)
        if kind == "end":
            with self.lock:
                lines = [ln for n in names for ln in self.links[n]["lines"]]
            fields["chunks_held_then_delivered"] = sum(ln.held[w.id] for ln in lines)
            fields["chunks_lost"] = sum(ln.dropped[w.id] for ln in lines)
            if w.mode == "blackhole":
                fields["connections_reset"] = self._reset(names, lambda c: c.broken())
        self._event(now, f"outage_{kind}", **fields)

    def _reset(self, names: list[str], which) -> int:
        n = 0
        for name in names:
            with self.lock:
                conns = [c for c in self.conns[name] if which(c)]
            for c in conns:
                c.reset()
                self.links[name]["stats"]["resets"] += 1
                n += 1
        return n

    # ------------------------------------------------------------------ connections

    def _accept(self, name: str) -> None:
        link = self.links[name]
        while True:
            try:
                client, _ = link["listener"].accept()
            except OSError:
                return
            now = time.monotonic_ns()
            with self.lock:
                cutting = any(w.mode == "reset" and w.covers(now) for d in ("up", "down") for w in link["windows"][d])
            if cutting:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                client.close()
                link["stats"]["refused"] += 1
                continue
            try:
                server = socket.create_connection(link["target"], timeout=2.0)
                server.settimeout(None)
            except OSError as exc:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                client.close()
                link["stats"]["refused"] += 1
                self._event(now, "connect_failed", link=name, error=str(exc))
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cid = next(self._cids)
            with self.lock:
                link["stats"]["connections"] += 1
                up = DelayLine(link["up"], self.start_ns, self.seed + 2 * cid, windows=list(link["windows"]["up"]))
                down = DelayLine(link["down"], self.start_ns, self.seed + 2 * cid + 1,
                                 windows=list(link["windows"]["down"]))
                for ln in (up, down):
                    ln.windows.sort(key=lambda w: w.start_ns)
                link["lines"] += [up, down]
                conn = _Connection(cid, client, server, up, down, link["stats"], lambda c, n=name: self._ended(n, c))
                self.conns[name].add(conn)
            self._event(now, "connected", link=name, connection=cid)

    def _ended(self, name: str, conn: _Connection) -> None:
        with self.lock:
            self.conns[name].discard(conn)
        self._event(time.monotonic_ns(), "closed", link=name, connection=conn.id)

    # ------------------------------------------------------------------ report

    def report(self) -> dict[str, Any]:
        """What was done: per link the traffic and one-way delays applied, every outage, every event."""
        links = {}
        with self.lock:
            for name, link in self.links.items():
                delays = sorted(d for ln in link["lines"] for d in ln.delays_ms)
                st = link["stats"]
                links[name] = {
                    "listen_port": link["port"], "target": list(link["target"]),
                    "connections": st["connections"], "refused": st["refused"], "resets": st["resets"],
                    "up": dict(st["up"]), "down": dict(st["down"]),
                    "one_way_delay_ms": _pct(delays),
                    "profile": {"up": _profile_dict(link["up"]), "down": _profile_dict(link["down"])},
                }
            outages = [{"outage": w.id, "mode": w.mode, "start_ns": w.start_ns, "start_s": self.t_s(w.start_ns),
                        "end_ns": None if math.isinf(w.end_ns) else int(w.end_ns),
                        "duration_s": None if math.isinf(w.end_ns) else round((w.end_ns - w.start_ns) / 1e9, 4),
                        "links": sorted(lk)} for w, lk in sorted(self.windows.values(), key=lambda x: x[0].start_ns)]
            events = list(self.events)
        return {"start_ns": self.start_ns, "links": links, "outages": outages, "events": events}

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        for name, link in self.links.items():
            link["listener"].close()
            for c in list(self.conns[name]):
                c.reset()


def _pct(delays: list[float]) -> dict[str, float | None]:
    if not delays:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    def q(x: float) -> float:
        return round(delays[min(len(delays) - 1, int(x * len(delays)))], 2)
    return {"p50": q(0.5), "p99": q(0.99), "max": round(delays[-1], 2), "n": len(delays)}


def _profile_dict(p: LinkProfile) -> dict[str, Any]:
    d = asdict(p)
    d["outages"] = [asdict(o) for o in p.all_outages()]
    for o in d["outages"]:
        if math.isinf(o["duration_s"]):
            o["duration_s"] = None
    d.pop("stalls")
    d.pop("cut_at_s")
    return d


class LinkProxy:
    """One endpoint: listens on `listen_port`, forwards to `target`, applying `up` (client→server) and `down`."""

    def __init__(self, listen_port: int, target: tuple[str, int], up: LinkProfile, down: LinkProfile,
                 host: str = "127.0.0.1", seed: int = 1) -> None:
        self.emu = LinkEmulator({"link": (listen_port, target, up, down)}, host, seed)
        self.port = self.emu.port("link")
        self.start_ns = self.emu.start_ns

    def report(self) -> dict:
        r = self.emu.report()
        link = r["links"]["link"]
        return {"connections": link["connections"], "up": link["up"], "down": link["down"],
                "one_way_delay_ms": link["one_way_delay_ms"], "outages": r["outages"], "events": r["events"]}

    def close(self) -> None:
        self.emu.close()
