"""Voice over every network path (link.paths), I/O-free: which copy of a packet is played, and each path's state.

Each end sends every voice packet on every path (SRT's "broadcast" groups): voice is ~32 kbit/s, so the copies
cost little, and a path that dies costs no gap at all, which switching paths (as video does) could not give.
`VoicePaths` sits before the jitter buffer (voice/intercom.py): the first copy of each packet wins; later
copies are counted on the path that brought them and dropped, never seen by the jitter buffer as late or lost.

A packet is identified by (lane, seq, sent_ns): the lane is the sender (the station's peer's CURVE key
`role:name`, or the station as the console's only peer), so a packet from another key is never taken for a
copy of one already played; a true copy is the same bytes, so it carries the same `sent_ns` too, and a packet
whose seq was seen with another `sent_ns` (or that is further behind than RING packets) comes from a restarted
sender: its lane starts again. Per path: when it was last heard (any valid message, keepalives included),
the first copies it won and the copies it brought late; a path is LOST after `lost_ns` without a message, but
the voice link (voice/intercom.py) is judged on the union of paths.
"""

from __future__ import annotations

from dataclasses import dataclass

RING = 4096
"""Packets remembered per lane (41 s of 10 ms frames): a copy delayed longer (a path stalled that long, then
delivering its backlog) is taken for a restarted sender's; no copy is ever played twice within it."""
MAX_LANES = 8
"""Senders remembered at once; the one heard longest ago is forgotten first (a peer cannot grow this)."""
_M = 0xFFFFFFFF


@dataclass
class PathState:
    heard_ns: int | None = None
    messages: int = 0   # valid messages (audio and keepalives, copies included)
    first: int = 0      # audio packets this path delivered first (played)
    copies: int = 0     # audio packets another path had delivered already (dropped)
    up: bool = False


class _Lane:
    __slots__ = ("highest", "ring", "start", "used_ns")

    def __init__(self, seq: int, now_ns: int) -> None:
        self.ring: list[tuple[int, int] | None] = [None] * RING
        self.highest = seq
        self.start = seq
        self.used_ns = now_ns


class VoicePaths:
    """Duplicate suppression and per-path liveness for one voice end with `n_paths` paths (index 0 first)."""

    def __init__(self, n_paths: int = 1, lost_ns: int = 500_000_000) -> None:
        if n_paths < 1:
            raise ValueError(f"voice needs at least one path, got {n_paths}")
        self.lost_ns = lost_ns
        self.paths = [PathState() for _ in range(n_paths)]
        self._lanes: dict[str, _Lane] = {}
        self.counters = {"duplicates": 0, "gaps": 0, "filled": 0, "restarts": 0}

    @property
    def lost(self) -> int:
        """Packets skipped by every path so far (a gap in the first copies that no later copy filled)."""
        return max(0, self.counters["gaps"] - self.counters["filled"])

    def heard(self, path: int, now_ns: int) -> list[tuple[int, bool]]:
        """Any valid message on `path`: it is alive. Returns [(path, True)] if it was not."""
        p = self.paths[path]
        p.heard_ns = now_ns
        p.messages += 1
        if not p.up:
            p.up = True
            return [(path, True)]
        return []

    def tick(self, now_ns: int) -> list[tuple[int, bool]]:
        """[(path, False)] for each path silent for lost_ns since it was last heard."""
        out = []
        for k, p in enumerate(self.paths):
            if p.up and p.heard_ns is not None and now_ns - p.heard_ns > self.lost_ns:
                p.up = False
                out.append((k, False))
        return out

    def first_copy(self, lane: str, path: int, seq: int, sent_ns: int, now_ns: int) -> bool:
        """Whether this audio packet is the first copy of its (lane, seq): True → play it; False → a copy another
        path delivered first (counted on `path`, dropped)."""
        ln = self._lanes.get(lane)
        if ln is None:
            ln = self._new_lane(lane, seq, now_ns)
        ln.used_ns = now_ns
        ahead = (seq - ln.highest) & _M
        if ln.ring[seq % RING] is None and seq == ln.start:
            pass  # the lane's first packet
        elif ahead and ahead < 0x80000000:
            if ahead > RING:  # a jump of more than the ring: a restarted sender (or 41 s unheard); start again
                ln = self._restart(lane, seq, now_ns)
            else:
                self.counters["gaps"] += ahead - 1
                ln.highest = seq
        else:
            back = (ln.highest - seq) & _M
            slot = ln.ring[seq % RING]
            if back >= RING or (slot is not None and slot[0] == seq and slot[1] != sent_ns):
                ln = self._restart(lane, seq, now_ns)
            elif slot == (seq, sent_ns):
                self.paths[path].copies += 1
                self.counters["duplicates"] += 1
                return False
            elif (seq - ln.start) & _M < 0x80000000:  # behind the newest, after the first: fills a gap
                self.counters["filled"] += 1
        ln.ring[seq % RING] = (seq, sent_ns)
        self.paths[path].first += 1
        return True

    def _new_lane(self, lane: str, seq: int, now_ns: int) -> _Lane:
        if len(self._lanes) >= MAX_LANES:
            del self._lanes[min(self._lanes, key=lambda k: self._lanes[k].used_ns)]
        ln = self._lanes[lane] = _Lane(seq, now_ns)
        return ln

    def _restart(self, lane: str, seq: int, now_ns: int) -> _Lane:
        self.counters["restarts"] += 1
        ln = self._lanes[lane] = _Lane(seq, now_ns)
        return ln

    def snapshot(self, now_ns: int) -> list[dict]:
        """Per path, for a window: state (UP/LOST, '-' before the first message), ms since last heard, counts."""
        return [{"path": k, "state": ("UP" if p.up else "LOST") if p.heard_ns is not None else "-",
                 "heard_ms_ago": None if p.heard_ns is None else round((now_ns - p.heard_ns) / 1e6, 1),
                 "first": p.first, "copies": p.copies, "messages": p.messages} for k, p in enumerate(self.paths)]
