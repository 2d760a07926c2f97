"""The video link's bookkeeping on both ends, pure (fed reports, headers and the time; no sockets).

SenderSession (bedside): who is watching, what each viewer still needs, and whether a frame may be made.
- A viewer is a peer that sent a report in the last `viewer_timeout`; it starts needing a keyframe.
- A viewer gets a frame only if its decoder can use it: after a missed frame or on request it needs an IDR,
  and until one is made it gets nothing (a decoder never sees a broken reference chain).
- A viewer whose oldest unacknowledged frame is older than its best round trip + `max_queue` is congested.
  When no viewer can take a frame, the frame is not encoded at all: pictures are dropped *before* the
  encoder, never as encoded packets, so a backlog cannot build and the stream stays decodable.
- Every acknowledgement yields a queueing delay (round trip minus the best recent one), fed to the
  adaptive bitrate controller.

ReceiverSession (console): checks the sequence, decides decoder resets and keyframe requests, and builds
the reports (one per decoded frame, plus hellos while no video arrives).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from transport.clock import DelayBaseline
from transport.video_wire import FrameHeader, Report, ReportFlags
from video.abr import AdaptiveBitrate, Level

MS = 1_000_000


@dataclass
class Peer:
    ident: bytes
    last_seen_ns: int
    needs_key: bool = True
    unacked: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=1024))  # (frame_id, send_ns)
    baseline: DelayBaseline = field(default_factory=DelayBaseline)
    best_rtt_ns: int | None = None
    last_excess_ns: int = 0
    acked: int = 0
    missed: int = 0  # frames encoded while this viewer could not take them
    arrived_ns: int = 0
    """When it first spoke: its first keyframe's wait is counted from here (`SenderSession.first_key_ms`)."""
    fresh: bool = True
    """Has had no frame yet: its first keyframe is not held back by `key_min_interval_ms` (a viewer that moved
    its stream to another path, video/failover.py, must see a picture again within about a frame)."""


@dataclass(frozen=True, slots=True)
class FramePlan:
    frame_id: int
    force_key: bool
    targets: tuple[bytes, ...]


class SenderSession:
    def __init__(self, stream_id: int, viewer_timeout_ms: float = 1000.0, max_queue_ms: float = 50.0,
                 key_min_interval_ms: float = 100.0, abr: AdaptiveBitrate | None = None) -> None:
        self.stream_id = stream_id
        self.viewer_timeout_ns = int(viewer_timeout_ms * MS)
        self.max_queue_ns = int(max_queue_ms * MS)
        self.key_min_interval_ns = int(key_min_interval_ms * MS)
        self.abr = abr
        self.peers: dict[bytes, Peer] = {}
        self.next_frame_id = 1
        self.last_key_ns: int | None = None
        self.skipped_no_viewer = 0
        self.skipped_congested = 0
        self.key_requests = 0
        self.level_changes: list[tuple[int, Level]] = []
        self.first_key_ms: deque[float] = deque(maxlen=600)
        """Per new viewer (a start, or a move to another path): its first word to its first keyframe sent."""

    # --------------------------------------------------------------------------------------- reports
    def on_report(self, now_ns: int, ident: bytes, r: Report) -> Level | None:
        """A viewer spoke. Returns a new adaptive-bitrate level when the controller changes it."""
        peer = self.peers.get(ident)
        if peer is None:
            peer = self.peers[ident] = Peer(ident, now_ns, arrived_ns=now_ns)
        peer.last_seen_ns = max(peer.last_seen_ns, now_ns)
        if r.flags & ReportFlags.KEYFRAME_REQUEST or r.stream_id not in (0, self.stream_id):
            if not peer.needs_key:
                self.key_requests += 1
            peer.needs_key = True
        if r.flags & ReportFlags.HELLO:
            peer.unacked.clear()  # it has nothing in flight it waits for: let frames flow again
            return None
        if r.stream_id != self.stream_id:
            return None
        while peer.unacked and peer.unacked[0][0] <= r.frame_id:
            peer.unacked.popleft()
        rtt = now_ns - r.echo_send_ns - r.hold_ns
        if rtt < 0:
            return None
        peer.acked += 1
        peer.last_excess_ns = peer.baseline.excess_ns(now_ns, now_ns - rtt)
        peer.best_rtt_ns = rtt - peer.last_excess_ns
        if self.abr is None:
            return None
        lvl = self.abr.on_queue_delay(now_ns, peer.last_excess_ns)
        if lvl is not None:
            self.level_changes.append((now_ns, lvl))
        return lvl

    # ---------------------------------------------------------------------------------------- frames
    def _expire(self, now_ns: int) -> None:
        for ident in [i for i, p in self.peers.items() if now_ns - p.last_seen_ns > self.viewer_timeout_ns]:
            del self.peers[ident]

    def congested(self, now_ns: int, peer: Peer) -> bool:
        if not peer.unacked:
            return False
        allowance = (peer.best_rtt_ns if peer.best_rtt_ns is not None else 100 * MS) + self.max_queue_ns
        return now_ns - peer.unacked[0][1] > allowance

    def plan(self, now_ns: int, key_anyway: bool = False) -> FramePlan | None:
        """Whether to encode the picture just captured, as a keyframe or not, and for whom.
        `key_anyway`: the encoder will make an IDR regardless (it is new), so every ready viewer gets it."""
        self._expire(now_ns)
        if not self.peers:
            self.skipped_no_viewer += 1
            return None
        ready = [p for p in self.peers.values() if not self.congested(now_ns, p)]
        key_ok = (self.last_key_ns is None or now_ns - self.last_key_ns >= self.key_min_interval_ns
                  or any(p.fresh for p in ready))
        force_key = key_anyway or (key_ok and any(p.needs_key for p in ready))
        targets = tuple(p.ident for p in ready if force_key or not p.needs_key)
        if not targets:
            self.skipped_congested += 1
            return None
        fid = self.next_frame_id
        self.next_frame_id += 1
        return FramePlan(fid, force_key, targets)

    def sent(self, now_ns: int, plan: FramePlan, keyframe: bool, failed: tuple[bytes, ...] = ()) -> list[float]:
        """After the send: who got the frame, who missed it (and so needs an IDR next). Returns the waits (ms) of
        the viewers this keyframe was the first one for (also kept in `first_key_ms`)."""
        firsts: list[float] = []
        if keyframe:
            self.last_key_ns = now_ns
        for ident, peer in self.peers.items():
            if ident in plan.targets and ident not in failed:
                if keyframe:
                    if peer.fresh:
                        firsts.append((now_ns - peer.arrived_ns) / MS)
                    peer.needs_key = peer.fresh = False
                peer.unacked.append((plan.frame_id, now_ns))
            else:
                peer.missed += 1
                peer.needs_key = True
        self.first_key_ms.extend(firsts)
        return firsts

    def forget(self, ident: bytes) -> None:
        self.peers.pop(ident, None)


@dataclass(frozen=True, slots=True)
class Admit:
    reset_decoder: bool  # a new stream (sender restarted): fresh decoder
    gap: int  # frames missing before this one
    degraded: bool  # decoded on a broken reference chain until the next keyframe
    request_key: bool  # send a keyframe request now


class ReceiverSession:
    def __init__(self, hello_interval_ms: float = 250.0, key_request_interval_ms: float = 200.0) -> None:
        self.hello_interval_ns = int(hello_interval_ms * MS)
        self.key_request_interval_ns = int(key_request_interval_ms * MS)
        self.stream_id = 0
        self.last_frame_id = 0
        self.lost = 0
        self.decoded = 0
        self.degraded = False
        self.last_rx_ns: int | None = None
        self.last_report_ns: int | None = None
        self.last_key_request_ns: int | None = None
        self.want_key = True

    def _may_request(self, now_ns: int) -> bool:
        last = self.last_key_request_ns
        return last is None or now_ns - last >= self.key_request_interval_ns

    def on_frame(self, now_ns: int, h: FrameHeader) -> Admit:
        """A valid frame header arrived; every frame goes to the decoder (never dropped here)."""
        self.last_rx_ns = now_ns
        reset = h.stream_id != self.stream_id
        gap = 0
        if reset:
            self.stream_id = h.stream_id
            self.degraded = not h.keyframe
        else:
            gap = max(0, h.frame_id - self.last_frame_id - 1)
            self.lost += gap
            if h.keyframe:
                self.degraded = False
            elif gap:
                self.degraded = True
        self.last_frame_id = h.frame_id
        self.want_key = self.degraded
        request = self.degraded and self._may_request(now_ns)
        if request:
            self.last_key_request_ns = now_ns
        return Admit(reset, gap, self.degraded, request)

    def is_new(self, h: FrameHeader) -> bool:
        """Not a copy of a frame already taken (several paths: the same frame may come on two of them around a
        move, video/failover.py); a new stream is always new. Old frames must never reach the decoder twice."""
        return h.stream_id != self.stream_id or h.frame_id > self.last_frame_id

    def decode_failed(self, now_ns: int) -> bool:
        """The decoder rejected a packet: ask for a keyframe (rate-limited). True if a request is due."""
        self.degraded = self.want_key = True
        if self._may_request(now_ns):
            self.last_key_request_ns = now_ns
            return True
        return False

    def report(self, now_ns: int, h: FrameHeader, rx_ns: int, decoded: bool, key_request: bool,
               decode_ns: int = 0, paint_ns: int = 0, paint_lag_ns: int = 0) -> Report:
        """The ack of a frame; with what decoding it and painting the newest painted picture cost this viewer
        (the sender fits the picture to them, video/adapt.py)."""
        if decoded:
            self.decoded += 1
        self.last_report_ns = now_ns
        flags = ReportFlags.KEYFRAME_REQUEST if key_request else ReportFlags(0)

        def us(ns: int) -> int:
            return min(max(0, ns) // 1000, 2**32 - 1)

        return Report(flags, h.stream_id, h.frame_id, h.send_ns, rx_ns, max(0, now_ns - rx_ns),
                      min(self.lost, 2**32 - 1), min(self.decoded, 2**32 - 1), us(decode_ns), us(paint_ns),
                      us(paint_lag_ns))

    def idle(self, now_ns: int) -> Report | None:
        """A hello (with a keyframe request) when no video has arrived for a while: it (re)announces this
        viewer to a sender that just started or restarted."""
        quiet = self.last_rx_ns is None or now_ns - self.last_rx_ns >= self.hello_interval_ns
        due = self.last_report_ns is None or now_ns - self.last_report_ns >= self.hello_interval_ns
        if not (quiet and due):
            return None
        self.last_report_ns = now_ns
        return Report(ReportFlags.HELLO | ReportFlags.KEYFRAME_REQUEST, self.stream_id, self.last_frame_id,
                      0, now_ns, 0, min(self.lost, 2**32 - 1), min(self.decoded, 2**32 - 1))
