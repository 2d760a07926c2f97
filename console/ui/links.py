"""The window's side of the loopback link to the console engine (console/uilink.py is the engine's side).

* `MasterStreamer`: the keyboard/mouse master lives here, fed Qt events in the GUI thread; a small thread
  streams its samples to the engine's master port at 250 Hz (network-master protocol), so a long paint
  delays neither the stream nor the engine. One lock guards the master's state.
* `EngineLink`: heartbeats (a QTimer in the GUI thread: a hung GUI thread stops them and the engine holds
  with GUI_LOST), intents and video reports on a PUSH socket; state and events from the engine's PUB,
  drained without blocking by a 60 Hz QTimer. Neither ever waits on a socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from console.masters.keyboard import KeyboardMouseMaster
from console.masters.network import encode_master_message
from console.uilink import MAX_UI_BYTES
from transport.zmqlink import master_publisher, tcp, ui_intent_client, ui_state_subscriber

log = logging.getLogger("console.ui")

MASTER_HZ = 250
HEARTBEAT_HZ = 20
DRAIN_HZ = 60


class MasterStreamer:
    """The keyboard/mouse master and the thread that streams it. Call every master method through `with_master`
    (GUI thread) so the sender never reads a half-updated pose."""

    def __init__(self, port: int, master: KeyboardMouseMaster | None = None, rate_hz: int = MASTER_HZ,
                 ctx: zmq.Context | None = None, presence: str = "toggle", presence_idle_s: float = 20.0) -> None:
        """`presence`, `presence_idle_s`: console.presence and console.presence_idle_s (base/config.py)."""
        self.master = master or KeyboardMouseMaster(time.monotonic_ns(), sticky_presence=presence == "toggle",
                                                    idle_s=presence_idle_s)
        self.lock = threading.Lock()
        self.period_s = 1.0 / rate_hz
        self.sent = 0
        self._ctx = ctx or zmq.Context.instance()
        self._endpoint = tcp("127.0.0.1", port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="master-stream", daemon=True)
        self._thread.start()

    def with_master(self, fn: Callable[[KeyboardMouseMaster], Any]) -> Any:
        with self.lock:
            return fn(self.master)

    def _run(self) -> None:
        pub = master_publisher(self._ctx, self._endpoint)
        seq = 0
        nxt = time.monotonic()
        try:
            while not self._stop.is_set():
                now_ns = time.monotonic_ns()
                with self.lock:
                    s = self.master.read(now_ns)
                seq += 1
                with contextlib.suppress(zmq.Again):
                    pub.send(encode_master_message(seq, now_ns, s.hands, s.buttons, s.valid), zmq.NOBLOCK)
                    self.sent += 1
                nxt += self.period_s
                delay = nxt - time.monotonic()
                if delay < -0.05:  # stalled (SIGSTOP, swap): no catch-up burst
                    nxt = time.monotonic()
                elif delay > 0:
                    self._stop.wait(delay)
        finally:
            pub.close(0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class EngineLink(QObject):
    """GUI-thread endpoint of the engine's intents (PUSH) and state (SUB) sockets."""

    state = Signal(dict)
    event = Signal(dict)

    def __init__(self, state_port: int, intent_port: int, ctx: zmq.Context | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        ctx = ctx or zmq.Context.instance()
        self.push = ui_intent_client(ctx, tcp("127.0.0.1", intent_port))
        self.sub = ui_state_subscriber(ctx, tcp("127.0.0.1", state_port))
        self.last_state: dict[str, Any] | None = None
        self.last_state_mono: float | None = None
        self.started_mono = time.monotonic()
        self.heartbeats = 0
        self.dropped_sends = 0
        self._hb = QTimer(self)
        self._hb.setInterval(1000 // HEARTBEAT_HZ)
        self._hb.timeout.connect(self._heartbeat)
        self._drain = QTimer(self)
        self._drain.setInterval(1000 // DRAIN_HZ)
        self._drain.timeout.connect(self._drain_state)

    def start(self) -> None:
        self._hb.start()
        self._drain.start()
        self._heartbeat()

    def stop_heartbeat(self) -> None:
        """Stop feeding the engine's GUI watchdog (closing, or a test of the hung-window path)."""
        self._hb.stop()

    def state_age_s(self) -> float:
        """Since the newest state arrived; before the first one, since this link was made."""
        return time.monotonic() - (self.last_state_mono if self.last_state_mono is not None else self.started_mono)

    def offset_ns(self) -> int:
        """Bedside − console clock offset from the newest state (0 before the first): read by the video
        worker thread, hence a plain attribute read."""
        s = self.last_state
        v = None if s is None else s.get("clock_offset_ns")
        return int(v) if isinstance(v, int | float) else 0

    def send(self, msg: dict[str, Any]) -> bool:
        if self.push.closed:
            return False
        data = json.dumps(msg, separators=(",", ":")).encode()
        if len(data) > MAX_UI_BYTES:
            raise ValueError(f"UI message of {len(data)} bytes exceeds {MAX_UI_BYTES}")
        try:
            self.push.send(data, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.dropped_sends += 1
            return False

    def set_scale(self, value: float) -> None:
        self.send({"type": "intent", "name": "set_scale", "value": float(value)})

    def reset_estop(self) -> None:
        self.send({"type": "intent", "name": "reset_estop"})

    def select_master(self, kind: str) -> None:
        """Switch the one master that drives (console.master's choices); the engine holds the arms for a new
        engage."""
        self.send({"type": "intent", "name": "select_master", "value": str(kind)})

    def voice_state(self, state: str, text: str = "") -> None:
        """The voice panel's link state (CONNECTING/UP/LOST), for the engine to record as a `voice` event."""
        self.send({"type": "intent", "name": "voice", "value": state, "text": text[:200]})

    def report_frame(self, frame_id: int, capture_ns: int, signature: int | None, source_seq: int | None) -> None:
        self.send({"type": "video", "frame_id": int(frame_id), "capture_ns": int(capture_ns),
                   "signature": signature, "source_seq": source_seq})

    @Slot()
    def _heartbeat(self) -> None:
        self.heartbeats += 1
        self.send({"type": "heartbeat", "seq": self.heartbeats})

    @Slot()
    def _drain_state(self) -> None:
        newest = None
        for _ in range(1000):
            try:
                data = self.sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                msg = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("malformed state message from the engine dropped")
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "event":
                self.event.emit(msg)
            elif msg.get("type") == "state":
                newest = msg
        if newest is not None:
            self.last_state = newest
            self.last_state_mono = time.monotonic()
            self.state.emit(newest)

    def close(self) -> None:
        self._hb.stop()
        self._drain.stop()
        self.push.close(0)
        self.sub.close(0)
