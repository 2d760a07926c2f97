"""Redundant paths, free of I/O: which copy of a frame counts, and how each path is doing.

With more than one path (`link.paths`, docs/operations.md "Redundant paths") the console sends every control
frame, the same bytes, on every live path, and the bedside sends every ack and telemetry frame on every path
(SRT's "broadcast" groups do the same). Two small rules make the copies harmless:

* `CopyFilter` (bedside): a frame from the controller that is byte-for-byte a frame already applied (servo_cp
  APPLIED, ENABLE granted, DISABLE done, e-stop latched), arriving for the first time on this path, is a copy:
  dropped silently and counted per path, never judged and never a refusal; so is a servo_cp, first on this path,
  older than every frame remembered (too old to tell, counted apart). Anything else goes through the whole check
  order unchanged. Each path keeps a mark, the highest sequence number it has delivered a copy or an applied frame
  of: one TCP connection never reorders, so a frame at or below its path's mark is not that
  path's copy but a replay, and is judged (and refused: REJECTED_SEQUENCE) like any other. A servo_cp above its
  path's mark that no path delivered before, older than the newest frame that took effect, is the controller's
  own frame whose faster path lost its copy (a connection dropped in a cut and came back: the console's sends on it
  failed meanwhile, so its first frame is newer than the other path's next one): no replay, never applicable,
  answered SUPERSEDED (not a refusal) if the gate refuses it for its sequence alone.
* `PathMonitor` (console): the first copy of each bedside frame (numbered from one counter: acks, telemetry,
  events, counters) goes to the engine; later copies only feed their path's figures: round trip, loss, state.

The single-path case never builds either: one path costs nothing more than it did before paths existed.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from base.stats import Histogram
from transport import codec
from transport.messages import AckStatus

_SEQ = struct.Struct("<Q")
_ECHO_SEND = struct.Struct("<q")
ECHO_SEND_OFFSET = codec.HEADER_SIZE + 8
"""An ACK's echo of the command's send time (after echo_seq)."""
_SERVO_CP = codec.MsgType.SERVO_CP
"""A frame's type byte for a servo_cp: only a motion command may be too old to tell."""
_ACK = codec.MsgType.ACK
_SUPERSEDED = AckStatus.SUPERSEDED
ACK_STATUS_OFFSET = codec.HEADER_SIZE + 24
"""An ACK's status byte (after echo_seq, echo_send_ns, rx_ns)."""
TOOK_EFFECT = frozenset({AckStatus.APPLIED, AckStatus.ENABLED, AckStatus.DISABLED, AckStatus.ESTOP_LATCHED})
"""Answers after which a byte-identical copy of the frame would do the same thing again (or, for ENABLE, grant
a second epoch and end the session the first one opened): its copies are dropped. A PING's copies are answered
on their own path (that path's round trip); a refused frame's copies are judged again."""
COPY_WINDOW = 4096
"""Applied frames remembered for recognising copies: 4 s of commands at 1 kHz. A path lagging more than that
delivers its frames too old to tell from copies: dropped silently too and counted apart (`CopyFilter.copy_key`)."""


def frame_seq(data: bytes) -> int:
    """The header's sequence number (-1 for a frame too short to have one: the decoder will say why)."""
    return _SEQ.unpack_from(data, codec.SEQ_OFFSET)[0] if len(data) >= codec.HEADER_SIZE else -1


def ack_status(ack: bytes) -> int:
    """The status byte of an ACK frame the bedside itself encoded (codec.encode_ack)."""
    return ack[ACK_STATUS_OFFSET]


class CopyFilter:
    """The bedside's memory of the controller's applied frames, and each path's mark (module docstring).

    Fed only with the controller's frames (the agent checks who sent it first): no other peer's frame changes what
    it holds, and a refused frame only makes its own copies be judged in full, so none can change how the
    controller's commands are judged."""

    def __init__(self, n_paths: int, window: int = COPY_WINDOW) -> None:
        self.marks = [-1] * n_paths
        self.window = window
        self._applied: dict[int, bytes] = {}
        self._order: deque[int] = deque()
        self._first = -1
        """The first frame of this controller's that took effect (its ENABLE): older ones are judged in full."""
        self.copy_keys = tuple(f"duplicates_path{k}" for k in range(n_paths))
        """The agent's counter for each path's dropped copies."""
        self.applied_keys = tuple(f"applied_path{k}" for k in range(n_paths))
        """The agent's counter for the servo_cp each path delivered first (and that was applied)."""
        self.stale_keys = tuple(f"stale_copies_path{k}" for k in range(n_paths))
        """The agent's counter for each path's frames too old to tell (`copy_key`): dropped silently too."""
        self.superseded_keys = tuple(f"superseded_path{k}" for k in range(n_paths))
        """The agent's counter for each path's frames delivered for the first time after a newer one took effect
        (`copy_key`): answered SUPERSEDED once the gate confirms it passed their sequence."""
        self._high = -1
        """The highest sequence number that took effect."""
        self._judged = RecentSet(window)
        """The controller's frames (sequence numbers) delivered and refused or superseded: never first again."""

    def reset(self) -> None:
        """Another connection controls now: nothing of the old one's frames is a copy of the new one's."""
        self.marks = [-1] * len(self.marks)
        self._applied.clear()
        self._order.clear()
        self._first = -1
        self._high = -1
        self._judged = RecentSet(self.window)

    def copy_key(self, path: int, data: bytes) -> str | None:
        """The counter to count `data` (from the controller, on `path`) under if it is to be dropped silently, else
        None (judge it in full). Dropped: a frame this path has not delivered yet (above its mark) that repeats,
        byte for byte, a frame that took effect (`duplicates_path<k>`), or a SERVO_CP older than every frame
        remembered but not older than the controller's first (`stale_copies_path<k>`): the controller's sequence
        numbers only grow, so such a frame is its own old frame that this path brings late (TCP's backlog after
        a cut), a copy or a frame already judged, too old to tell which and never applicable (the gate has passed
        its sequence). Marks the path: the same frame again on it is a replay, refused (REJECTED_SEQUENCE).
        Not dropped, but `superseded_path<k>` (the agent answers SUPERSEDED if the gate refuses it for its sequence
        alone, then calls `superseded`, else judges it in full): a SERVO_CP within the memory, older than the newest
        frame that took effect, and never delivered before on any path (neither applied nor refused): the other
        paths lost their copies (a connection that dropped, a full queue), this one brings it after a newer one was
        applied; no replay, as nothing delivered it before, and never applicable."""
        seq = frame_seq(data)
        if seq <= self.marks[path]:
            return None  # this path delivered it already: a replay, judged in full
        orig = self._applied.get(seq)
        if orig is None:
            if seq >= self._high or data[codec.TYPE_OFFSET] != _SERVO_CP or seq < self._first:
                return None  # newer than anything applied (the usual first copy), not a servo_cp (an e-stop,
                # however late, latches), or older than its control: judged in full
            if seq >= self._order[0]:
                return None if seq in self._judged else self.superseded_keys[path]  # refused before: judged again
            key = self.stale_keys[path]
        elif orig != data:
            return None
        else:
            key = self.copy_keys[path]
        self.marks[path] = seq
        return key

    def superseded(self, path: int, data: bytes) -> None:
        """The agent answered the controller's frame on `path` SUPERSEDED (`copy_key`): raise the path's mark and
        remember it delivered, so the same frame again, on any path, is judged in full (a replay)."""
        seq = frame_seq(data)
        self.marks[path] = max(self.marks[path], seq)
        self._judged.add(seq)

    def refused(self, data: bytes) -> None:
        """The controller's frame was refused: its copies, on any path, are judged in full again (never
        SUPERSEDED). Marks nothing."""
        self._judged.add(frame_seq(data))

    def explain(self, path: int, data: bytes) -> str:
        """Why a frame of the controller's on `path` was not taken as a copy, in words (for the refusal's event):
        its sequence, the path's mark, and the sequences the memory spans."""
        seq = frame_seq(data)
        span = f"remembered {self._order[0]}..{self._order[-1]}" if self._order else "nothing remembered"
        if seq <= self.marks[path]:
            why = "at or below the path's mark: a replay"
        elif seq not in self._applied:
            why = ("before the controller's first frame" if seq < self._first else
                   "older than the memory" if self._order and seq < self._order[0] else
                   "refused before: judged again" if seq in self._judged else "never took effect")
        else:
            why = "differs from the frame that took effect"
        return f"seq {seq} on path{path} (mark {self.marks[path]}, {span}): {why}"

    def took_effect(self, path: int, data: bytes) -> None:
        """The controller's frame on `path` was applied (TOOK_EFFECT): remember it, raise the path's mark."""
        seq = frame_seq(data)
        if seq > self.marks[path]:
            self.marks[path] = seq
        if seq > self._high:
            self._high = seq
        if seq not in self._applied:
            if self._first < 0:
                self._first = seq
            self._applied[seq] = data
            self._order.append(seq)
            if len(self._order) > self.window:
                del self._applied[self._order.popleft()]


class RecentSet:
    """The last `window` distinct values added, as a set: membership in O(1), memory bounded (oldest forgotten)."""

    __slots__ = ("_order", "_set", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._set: set[int] = set()
        self._order: deque[int] = deque()

    def __contains__(self, value: int) -> bool:
        return value in self._set

    def add(self, value: int) -> None:
        """Remember `value` (once), forgetting the oldest past the window."""
        if value in self._set:
            return
        self._set.add(value)
        self._order.append(value)
        if len(self._order) > self.window:
            self._set.discard(self._order.popleft())


PATH_STATES = ("CONNECTING", "UP", "LOST")
"""A path's state at the console: no frame from the bedside yet; one within link.console_timeout_ms; none since."""
RTT_RECENT = 64


@dataclass
class PathFigures:
    """One path's figures at the console."""

    name: str
    endpoint: str
    state: str = "CONNECTING"
    rx: int = 0
    """Every bedside frame that came in on this path (copies included)."""
    first: int = 0
    """Frames this path delivered first (the ones the engine acted on)."""
    acks: int = 0
    last_rx_ns: int | None = None
    rtt_recent_ns: deque[int] = field(default_factory=lambda: deque(maxlen=RTT_RECENT))
    rtt_hist: Histogram = field(default_factory=Histogram)
    sent: int = 0
    """Frames handed to this path's socket."""
    send_would_block: int = 0
    losses: int = 0
    """Times this path went LOST."""
    loss_pct: float | None = None
    """Acks missing on this path over the last second, of those that came back on any path."""
    acks_mark: int = 0
    """`acks` when the loss was last computed."""

    def rtt_ms(self) -> float | None:
        r = self.rtt_recent_ns
        return None if not r else sum(r) / len(r) / 1e6

    def snapshot(self) -> dict:
        """What the HUD, the station, the recording (`/console/link` `paths`) and the summaries show."""
        rtt = self.rtt_ms()
        return {"name": self.name, "endpoint": self.endpoint, "state": self.state,
                "rtt_ms": None if rtt is None else round(rtt, 3),
                "loss_pct": None if self.loss_pct is None else round(self.loss_pct, 2),
                "rx": self.rx, "first": self.first, "acks": self.acks, "sent": self.sent,
                "send_would_block": self.send_would_block, "losses": self.losses}


class PathMonitor:
    """The console's view of its paths: keeps the first copy of each bedside frame, measures each path."""

    def __init__(self, endpoints: list[str], timeout_ns: int, window: int = 8192) -> None:
        self.paths = [PathFigures(f"path{k}", e) for k, e in enumerate(endpoints)]
        self.timeout_ns = timeout_ns
        self.window = window
        self._seen = RecentSet(window)
        """The bedside frames' sequence numbers already handed to the engine."""
        self._max_seq = 0
        self._answered = RecentSet(window)
        """The commands (echo_seq) already answered."""
        self.unique_acks = 0
        self.copies = 0
        self.superseded = 0
        """Commands whose one answer was SUPERSEDED (CopyFilter.copy_key): answered, neither applied nor refused."""
        self._next_loss_ns = 0
        self._unique_mark = 0

    def on_frame(self, now_ns: int, path: int, data: bytes) -> bool:
        """A bedside frame on `path`: True if it is the first copy (hand it to the engine), False for a copy."""
        p = self.paths[path]
        p.rx += 1
        p.last_rx_ns = now_ns
        if p.state != "UP":
            p.state = "UP"
        is_ack = len(data) > ACK_STATUS_OFFSET and data[codec.TYPE_OFFSET] == _ACK
        if is_ack:
            p.acks += 1
            rtt = now_ns - _ECHO_SEND.unpack_from(data, ECHO_SEND_OFFSET)[0]
            if 0 <= rtt < 10_000_000_000:
                p.rtt_recent_ns.append(rtt)
                p.rtt_hist.add_ns(rtt)
        seq = frame_seq(data)
        if seq < 0:
            return True  # malformed: the engine's decoder counts it
        if seq in self._seen or seq <= self._max_seq - self.window:
            self.copies += 1  # a copy, or one too old to tell (a path lagging by more than the window)
            return False
        if is_ack:
            # One answer per command: a copy the bedside judged again on another path (a refused command's copy is
            # refused again, a PING is answered on each path) gets an ack of its own, with its own sequence number;
            # only the first reaches the engine, so `commands_rejected` counts commands and `lost` is not masked.
            echo = _SEQ.unpack_from(data, codec.HEADER_SIZE)[0]
            if echo in self._answered:
                self.copies += 1
                return False
            self._answered.add(echo)
            if data[ACK_STATUS_OFFSET] == _SUPERSEDED:
                self.superseded += 1
        self._max_seq = max(self._max_seq, seq)
        self._seen.add(seq)
        p.first += 1
        if is_ack:
            self.unique_acks += 1
        return True

    def tick(self, now_ns: int) -> list[tuple[str, str]]:
        """Each path's state from its silence; once a second its loss. Returns (path, new state) changes."""
        changes = []
        for p in self.paths:
            if p.state == "UP" and p.last_rx_ns is not None and now_ns - p.last_rx_ns > self.timeout_ns:
                p.state = "LOST"
                p.losses += 1
                changes.append((p.name, p.state))
        if now_ns >= self._next_loss_ns:
            self._next_loss_ns = now_ns + 1_000_000_000
            total = self.unique_acks - self._unique_mark
            self._unique_mark = self.unique_acks
            for p in self.paths:
                got, p.acks_mark = p.acks - p.acks_mark, p.acks
                p.loss_pct = None if total <= 0 else max(0.0, 100.0 * (1 - got / total))
        return changes

    def live(self) -> list[int]:
        """Paths worth sending on: every one not LOST (a LOST path is still tried: that is how it comes back)."""
        return [k for k, p in enumerate(self.paths) if p.state != "LOST"]

    def best(self) -> int:
        """The path video should use: UP with the lowest recent round trip, else path 0."""
        up = [(p.rtt_ms() or 1e9, k) for k, p in enumerate(self.paths) if p.state == "UP"]
        return min(up)[1] if up else 0

    def snapshot(self) -> list[dict]:
        return [p.snapshot() for p in self.paths]

    def summary(self) -> list[dict]:
        return [{**p.snapshot(), "rtt_us": p.rtt_hist.percentiles()} for p in self.paths]
