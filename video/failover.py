"""Video over one path at a time, moved to the next path when the picture stops coming (pure, no sockets).

With several paths (`link.paths`) the stereo stream flows on one of them: sending it on every path would
double the heaviest traffic there is (10–40 Mbit/s against the control stream's ~1). The viewer keeps a DEALER
connected on every path but talks (hellos, acks, keyframe requests) only on the active one, so the sender
sends there only. When no frame has come on the active path for `video.failover_ms`, well inside the stale
limit `video.stale_ms`, the viewer moves to the next path: it says HELLO with a keyframe request there, and the
sender answers a new viewer with a keyframe at once (video/session.py `Peer.fresh`), so the picture resumes
within about one frame interval after the switch instead of going stale (tests/test_video_failover.py;
`teleop bench failover` measures the largest gap).
"""

from __future__ import annotations

from collections import deque

MS = 1_000_000
INTERVALS = 16
"""Frame intervals remembered: a stream the sender slowed down (video/adapt.py: 10 fps on a busy machine) is
not a cut path because 60 ms pass between two frames."""


SWITCH_GRACE = 2.0
"""A path just switched to gets this many bounds to show its first frame: the HELLO has to reach the sender and
its keyframe come back (a busy sender takes longer), and switching away again at once only thrashes."""


class PathFailover:
    def __init__(self, n_paths: int, failover_ms: float) -> None:
        self.n = n_paths
        self.failover_ns = int(failover_ms * MS)
        self.active = 0
        self.switches = 0
        self._since_ns: int | None = None
        """When the active path last showed life: its last frame, or the switch to it."""
        self._switched = False
        self._last_frame_ns: int | None = None
        self._intervals: deque[int] = deque(maxlen=INTERVALS)
        self._alive_ns = [-(10**18)] * n_paths
        """When each path last carried a frame (the active one's, or a straggler on another)."""

    def bound_ns(self) -> int:
        """How long the active path may stay quiet: `failover_ms`, or 1.5 recent frame intervals if longer."""
        if not self._intervals:
            return self.failover_ns
        return max(self.failover_ns, int(1.5 * sorted(self._intervals)[len(self._intervals) // 2]))

    def awaiting_first(self) -> bool:
        """Switched, and the new path has not shown a frame yet."""
        return self._switched

    def on_frame(self, now_ns: int, path: int) -> bool:
        """A frame came on `path`; True if it is the active path's (the others' are stragglers: dropped, but they
        show that path is alive)."""
        self._alive_ns[path] = now_ns
        if path != self.active:
            return False
        if self._last_frame_ns is not None and not self._switched:
            self._intervals.append(now_ns - self._last_frame_ns)
        self._since_ns = self._last_frame_ns = now_ns
        self._switched = False
        return True

    def due(self, now_ns: int) -> int | None:
        """The path to move to now, or None. Nothing before the first frame (the sender may not run yet: the
        hellos on path 0 find it); a path just switched to gets SWITCH_GRACE bounds. The next path is the other
        one that carried a frame most recently (in order on a tie)."""
        if self.n < 2 or self._since_ns is None:
            return None
        bound = self.bound_ns() * (SWITCH_GRACE if self._switched else 1.0)
        if now_ns - self._since_ns < bound:
            return None
        others = [(self.active + i) % self.n for i in range(1, self.n)]
        self.active = max(others, key=lambda k: (self._alive_ns[k], -others.index(k)))
        self._since_ns = now_ns
        self._switched = True
        self.switches += 1
        return self.active
