"""Video over one path at a time, moved to another path when its own path stops answering (pure, no sockets).

With several paths (`link.paths`) the stereo stream flows on one of them: sending it on every path would
double the heaviest traffic there is (10–40 Mbit/s against the control stream's ~1). The viewer keeps a DEALER
connected on every path and sends a small PROBE report on each of them every `probe_ns` (the sender echoes it
on the same connection, video/sender.py); frames and echoes are a path's signs of life.

Why a path's own liveness and not frame inter-arrival: a sender slowed by its machine (a stall, 10 fps on a
busy bedside) delays frames *and* echoes on every path alike, so "the active path is quiet" alone switches on
jitter (measured: 15–38 switches for 12 cuts). The rule is relative: the viewer moves only when the active path
has been silent for `video.failover_ms` **while another path was heard well after the active one went quiet**
(`evidence_ns` later). A stalled sender or a starved viewer silences every path and moves nothing; a cut path
is silent while the other keeps echoing. The path moved to is the one heard most recently, so a cut path is
never chosen while a live one exists; a path just moved to counts as heard at the switch (hysteresis: it gets
the full bound before it can be left).

On a move the viewer says HELLO|KEYFRAME_REQUEST on the new path at once; the sender, which listens while it
waits for its next frame slot (video/sender.py `_wait_slot`), takes its next picture at once as a keyframe for
the viewer new on that path (video/session.py `Peer.fresh`). Until the first frame on the new path the viewer
still shows newer frames that straggle in on the old one (make before break: a move on a live path costs no
gap). End to end: the active path's last frame (≤ 1 frame interval before the cut) + `failover_ms` + a round
trip + one capture, encode and decode: about 100 ms at 30 fps with the default 60 ms, under `video.stale_ms`
(200). tests/test_video_failover.py (the rules), tests/test_netns_paths.py (real cuts).
"""

from __future__ import annotations

MS = 1_000_000
NEVER = -(2**62)


class PathFailover:
    def __init__(self, n_paths: int, failover_ms: float) -> None:
        self.n = n_paths
        self.failover_ns = int(failover_ms * MS)
        self.evidence_ns = self.failover_ns // 2
        """Another path must have been heard this long after the active one's last sign of life."""
        self.probe_ns = max(5 * MS, self.failover_ns // 4)
        """A probe on every path this often: several echoes fit in one bound even at the sender's frame pace."""
        self.active = 0
        self.switches = 0
        self._heard = [NEVER] * n_paths
        """When each path last showed life: a frame or a probe's echo."""
        self._switched_ns = NEVER
        """The last move (or the first look): the active path counts as heard then."""
        self._awaiting = False
        self._probed = [NEVER] * n_paths

    def awaiting_first(self) -> bool:
        """Moved, and the new path has not shown a frame yet (frames straggling in on the old one may be shown)."""
        return self._awaiting

    @property
    def moved_ns(self) -> int:
        """When the last move was made (monotonic ns)."""
        return self._switched_ns

    def heard_ns(self, path: int) -> int:
        return self._heard[path]

    def on_frame(self, now_ns: int, path: int) -> bool:
        """A frame came on `path`; True if it is the active path's."""
        self._heard[path] = max(self._heard[path], now_ns)
        if path != self.active:
            return False
        self._awaiting = False
        return True

    def on_echo(self, now_ns: int, path: int) -> None:
        """A probe's echo came back on `path`: the path works both ways."""
        self._heard[path] = max(self._heard[path], now_ns)

    def probes_due(self, now_ns: int) -> list[int]:
        """The paths to probe now (each every `probe_ns`); the caller sends them, whether they get through or not."""
        due = [k for k in range(self.n) if now_ns - self._probed[k] >= self.probe_ns] if self.n > 1 else []
        for k in due:
            self._probed[k] = now_ns
        return due

    def due(self, now_ns: int) -> int | None:
        """The path to move to now, or None: the active path silent for `failover_ns` (counted from its last sign of
        life or the last move) while another was heard `evidence_ns` after that and within the bound."""
        if self.n < 2:
            return None
        if self._switched_ns == NEVER:
            self._switched_ns = now_ns  # the first look: the active path gets a full bound from here
        last = max(self._heard[self.active], self._switched_ns)
        if now_ns - last < self.failover_ns:
            return None
        live = [k for k in range(self.n) if k != self.active and self._heard[k] - last >= self.evidence_ns
                and now_ns - self._heard[k] < self.failover_ns]
        if not live:
            return None  # every path quiet: the sender (or this machine) stalled, or all are cut; moving helps nothing
        self.active = max(live, key=lambda k: self._heard[k])
        self._switched_ns = now_ns
        self._awaiting = True
        self.switches += 1
        return self.active
