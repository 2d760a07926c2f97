"""Producer side of the recorder: hand raw bytes to the recorder process, never waiting for it.

A control loop calls `add(...)` as things happen (a list append) and `flush(now)` once per iteration, after
its time-critical send: one ZeroMQ multipart message with NOBLOCK at most every `BATCH_NS`. Batching keeps
the recorder's traffic from waking the real-time zmq I/O thread at every tick (a send per 1 kHz tick raised
the command RTT's p50 by ~50 µs, docs/benchmarks.md); a kill loses at most one batch more than the
recorder's chunk. If the recorder's queue is full the batch is dropped and counted; the counts travel in
the next batch that gets through (K_DROPS), so the recording says what it is missing. Video has its own
socket and a short queue (`video()` sends one frame at once): when the recorder falls behind, video is what
fills up and drops first.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import zmq

from recording.convert import DROPS, K_DROPS, K_JSON, K_VIDEO, VIDEO_RX, head
from transport.zmqlink import RECORDING_CONTROL_MAX_BYTES, recording_tap

RECORDER_VIDEO_ENV = "TELEOP_RECORDER_VIDEO"
"""The console window learns its engine's recorder video endpoint through this variable (console/ui/app.py)."""


BATCH_NS = 10_000_000
"""A control tap sends at most this often (10 ms: ten 1 kHz ticks)."""


class ControlTap:
    """Batches (head, payload) pairs of several loop iterations into one NOBLOCK multipart send."""

    def __init__(self, endpoint: str, hwm: int = 400, ctx: zmq.Context | None = None, name: str = "",
                 batch_ns: int = BATCH_NS) -> None:
        self.sock = recording_tap(ctx or zmq.Context.instance(), endpoint, hwm)
        self.name = (name or f"control-{os.getpid()}").encode()
        self.batch_ns = batch_ns
        self._due_ns = 0
        self.parts: list[bytes] = []
        self.sent = 0
        self.dropped = 0
        self._reported = 0

    def add(self, kind: int, t_ns: int, payload: bytes, extra: bytes = b"") -> None:
        self.parts.append(head(kind, t_ns, extra))
        self.parts.append(payload)

    def add_json(self, topic_suffix: str, t_ns: int, obj: dict[str, Any]) -> None:
        """A record over the recorder's frame limit is a counted drop here: sent, it would cost this tap its
        connection and the batch with it (transport/zmqlink.py, RECORDING_CONTROL_MAX_BYTES)."""
        payload = json.dumps(obj, separators=(",", ":")).encode()
        if len(payload) > RECORDING_CONTROL_MAX_BYTES:
            self.dropped += 1
            return
        self.add(K_JSON, t_ns, payload, topic_suffix.encode())

    def flush(self, now_ns: int | None = None) -> None:
        """One multipart send of everything added since the last send, if `batch_ns` has passed since then (or
        `now_ns` is None: at once); a full queue is a counted drop."""
        parts = self.parts
        if not parts or (now_ns is not None and now_ns < self._due_ns):
            return
        if now_ns is not None:
            self._due_ns = now_ns + self.batch_ns
        self.parts = []
        if self.dropped != self._reported:
            parts = [head(K_DROPS, 0, self.name), DROPS.pack(self.dropped, 0), *parts]
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=True)
        except zmq.Again:
            self.dropped += (len(parts) // 2) - (1 if self.dropped != self._reported else 0)
            return
        self._reported = self.dropped
        self.sent += 1

    def close(self) -> None:
        self.flush()
        _final_drop_report(self.sock, self.name, self.dropped, 0, self.dropped != self._reported)
        self.sock.close()


class VideoTap:
    """One encoded frame per NOBLOCK send, on its own short queue; safe to use from one thread only."""

    def __init__(self, endpoint: str, hwm: int = 120, ctx: zmq.Context | None = None, name: str = "") -> None:
        self.sock = recording_tap(ctx or zmq.Context.instance(), endpoint, hwm)
        self.name = (name or f"video-{os.getpid()}").encode()
        self.sent = 0
        self.dropped = 0
        self._reported = 0

    def frame(self, t_ns: int, data: bytes, rx: tuple[int, int, int, bool, bool] | None = None) -> None:
        """`data`: the transport/video_wire.py FRAME bytes as sent or received; `rx` the console's VIDEO_RX fields."""
        parts = [head(K_VIDEO, t_ns, VIDEO_RX.pack(*rx) if rx is not None else b""), data]
        if self.dropped != self._reported:
            parts = [head(K_DROPS, 0, self.name), DROPS.pack(0, self.dropped), *parts]
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=len(data) < 65536)
        except zmq.Again:
            self.dropped += 1
            return
        self._reported = self.dropped
        self.sent += 1

    def close(self) -> None:
        _final_drop_report(self.sock, self.name, 0, self.dropped, self.dropped != self._reported)
        self.sock.close()


def _final_drop_report(sock: zmq.Socket, name: bytes, control: int, video: int, pending: bool) -> None:
    """Drops at the very end would otherwise go unreported: at close (off the control path) wait briefly."""
    if not pending:
        return
    sock.setsockopt(zmq.SNDTIMEO, 500)
    with contextlib.suppress(zmq.Again):
        sock.send_multipart([head(K_DROPS, 0, name), DROPS.pack(control, video)])


class NullTap:
    """Recording off: the same calls, doing nothing (cheaper than a test at every call site)."""

    sent = 0
    dropped = 0

    def add(self, kind: int, t_ns: int, payload: bytes, extra: bytes = b"") -> None:
        pass

    def add_json(self, topic_suffix: str, t_ns: int, obj: dict[str, Any]) -> None:
        pass

    def flush(self, now_ns: int | None = None) -> None:
        pass

    def frame(self, t_ns: int, data: bytes, rx: tuple[int, int, int, bool, bool] | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def set_window_recorder(ready_line: str) -> str | None:
    """The console window's process: remember the engine's recorder video endpoint from its READY line
    (`recorder_video=...`), so the window's video receiver records frames as received."""
    fields = dict(f.split("=", 1) for f in ready_line.split()[1:] if "=" in f)
    ep = fields.get("recorder_video", "off")
    if ep.startswith("ipc://"):
        os.environ[RECORDER_VIDEO_ENV] = ep
        return ep
    os.environ.pop(RECORDER_VIDEO_ENV, None)
    return None


def window_recorder() -> str | None:
    """The endpoint set_window_recorder found, if any (None in a monitor or with recording off)."""
    return os.environ.get(RECORDER_VIDEO_ENV) or None
