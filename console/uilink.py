"""The link between the console engine (control process) and its window (GUI process), engine side.

Why two processes: the 1 kHz stream must never wait for painting, decoding or a slow slot, and a hung or
crashed window must stop following rather than leave the arms following a picture nobody sees.

Three loopback sockets, all bound by the engine (docs/architecture.md):
* master samples, GUI → engine: the network-master protocol (console/masters/network.py, PUB → SUB,
  port `console.master_port`); the keyboard/mouse master lives in the window and streams like a haptic
  bridge, but on its own port: the engine reads it only when it is the selected master (`console.master`
  keyboard, or auto with a window), so the window's keys and a bridge never drive at once;
* intents, heartbeats and video reports, GUI → engine: JSON objects, PUSH → PULL (`console.ui_intent_port`);
* state and events, engine → GUI(s): JSON objects, PUB → SUB (`console.ui_state_port`), state at 30 Hz.

GUI → engine messages (one JSON object per frame, at most MAX_UI_BYTES):
    {"type": "heartbeat", "seq": n}                                 from the GUI thread, 20 Hz
    {"type": "intent", "name": "set_scale", "value": 0.3}
    {"type": "intent", "name": "reset_estop"}
    {"type": "intent", "name": "select_master", "value": "bridge"}    switch masters (docs/masters.md)
    {"type": "video", "frame_id": n, "capture_ns": t, "signature": s|null, "source_seq": n|null}
                                                                    per new frame actually painted
Everything else (engage, clutch, camera, presence, e-stop) is a master button and travels with the poses.

The supervisor is pure: fed bytes and `now_ns`, it drives the controller's `inhibit`: GUI_LOST while no
window has attached yet or its heartbeat is missing for `console.gui_timeout_ms` (the window states are in
`WINDOW`, the one mechanism of safety/statemachine.py), VIDEO_STALE while the painted picture is stale. Both
hold the arms and refuse engagement while active; clearing them never resumes motion by itself.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Any

from safety.statemachine import StateMachine, TransitionTable
from safety.video_guard import VideoGuard, VideoState
from safety.watchdog import Watchdog
from transport.messages import Reason

log = logging.getLogger("console.ui")

MAX_UI_BYTES = 4096
STATE_HZ = 30


class WindowState(Enum):
    WAITING = "WAITING"  # no heartbeat yet: arms held, "console window not connected"
    ATTACHED = "ATTACHED"  # heartbeats arrive in time
    LOST = "LOST"  # heartbeat missing for gui_timeout_ms: arms held until it is back (then engage again)


class WindowTrigger(StrEnum):
    HEARTBEAT = "heartbeat"  # a heartbeat while not ATTACHED
    SILENCE = "silence"  # the heartbeat watchdog tripped


WINDOW: TransitionTable[WindowState, WindowTrigger] = TransitionTable("console window", WindowState.WAITING, {
    (WindowState.WAITING, WindowTrigger.HEARTBEAT): WindowState.ATTACHED,
    (WindowState.ATTACHED, WindowTrigger.SILENCE): WindowState.LOST,
    (WindowState.LOST, WindowTrigger.HEARTBEAT): WindowState.ATTACHED,
}, alarm={WindowState.LOST})


VOICE_STATES = ("CONNECTING", "UP", "LOST")
"""The voice link's states (voice/intercom.py VoiceState), as the window reports them: spelled here so the engine
process never imports the voice stack (PyAV) for three words."""


class UiMessageError(ValueError):
    """A GUI message that is not one of the documented ones; dropped and counted."""


def _float(v: int | float) -> float:
    """JSON integers have no size limit: one beyond a float's range is not a number we can use."""
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _wire_int(v: object) -> bool:
    """An integer the video guard can do float arithmetic with (a 400-digit capture time would overflow it)."""
    return isinstance(v, int) and not isinstance(v, bool) and -(2**64) < v < 2**64


def decode_ui_message(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_UI_BYTES:
        raise UiMessageError(f"{len(data)} bytes exceeds {MAX_UI_BYTES}")
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # 4 KB of "[" nests past the stack
        raise UiMessageError(f"not JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") not in ("heartbeat", "intent", "video"):
        raise UiMessageError(f"unknown message {str(msg)[:80]!r}")
    if msg["type"] == "intent":
        if msg.get("name") == "set_scale":
            v = msg.get("value")
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(_float(v)):
                raise UiMessageError(f"set_scale needs a finite number, got {str(v)[:40]}")
        elif msg.get("name") == "select_master":
            if not isinstance(msg.get("value"), str) or len(msg["value"]) > 32:
                raise UiMessageError("select_master needs a master name (console.master's choices)")
        elif msg.get("name") == "voice":
            if msg.get("value") not in VOICE_STATES or not isinstance(msg.get("text", ""), str):
                raise UiMessageError(f"voice needs the voice link's state ({', '.join(VOICE_STATES)}) and a text")
        elif msg.get("name") != "reset_estop":
            raise UiMessageError(f"unknown intent {msg.get('name')!r}")
    if msg["type"] == "video":
        for k in ("frame_id", "capture_ns"):
            if not _wire_int(msg.get(k)):
                raise UiMessageError(f"video report needs integer {k} (|{k}| < 2**64)")
        for k in ("signature", "source_seq"):
            if msg.get(k) is not None and not _wire_int(msg[k]):
                raise UiMessageError(f"video report {k} must be an integer (|{k}| < 2**64) or null")
    return msg


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")


class UiSupervisor:
    """GUI heartbeat watchdog, GUI intents, and the stale-video guard on what the window paints."""

    def __init__(self, controller, gui_timeout_ms: float, stale_ms: float, stuck_ms: float) -> None:
        self.controller = controller
        self.watchdog = Watchdog(int(gui_timeout_ms * 1e6))
        self.guard = VideoGuard(threshold_ms=stale_ms, stuck_ms=stuck_ms)
        self.window = StateMachine(WINDOW, "window", logger=log)
        self.video = self.guard.peek(0)
        self.counters: Counter[str] = Counter()
        self.on_select_master: Callable[[str], None] | None = None
        """The runner's `request_master`: the `select_master` intent switches the one master that drives."""
        self.on_voice: Callable[[int, str, str], None] | None = None
        """The runner's voice-event hook: the window's voice panel reports each voice-link state (recorded as a
        `voice` event; it holds nothing)."""

    def on_bytes(self, now_ns: int, data: bytes, offset_ns: int) -> None:
        try:
            msg = decode_ui_message(data)
        except UiMessageError as exc:
            self.counters["ui_errors"] += 1
            if self.counters["ui_errors"] <= 3:
                log.warning("GUI message dropped: %s", exc)
            return
        kind = msg["type"]
        self.counters[f"ui_{kind}"] += 1
        if kind == "heartbeat":
            if self.window.state is not WindowState.ATTACHED:  # the first heartbeat, or back after a silence
                text = "window attached" if self.window.state is WindowState.WAITING else "window heartbeat back"
                self.window.fire(now_ns, WindowTrigger.HEARTBEAT, Reason.NONE, text)
                self.watchdog.arm(now_ns)
            self.watchdog.feed(now_ns)
        elif kind == "intent":
            if msg["name"] == "set_scale":
                self.controller.set_scale(now_ns, float(msg["value"]))
            elif msg["name"] == "select_master":
                if self.on_select_master is not None:
                    self.on_select_master(msg["value"])
            elif msg["name"] == "voice":
                if self.on_voice is not None:
                    self.on_voice(now_ns, msg["value"], msg.get("text", "")[:200])
            else:
                self.controller.reset_estop(now_ns)
        else:
            self.guard.on_frame(now_ns, msg["frame_id"], msg["capture_ns"], offset_ns, msg.get("signature"),
                                msg.get("source_seq"))

    def tick(self, now_ns: int) -> None:
        """Once per control tick: hold on a vanished window or a stale picture."""
        if self.window.state is WindowState.WAITING:
            self.controller.inhibit(now_ns, Reason.GUI_LOST, True, "console window not connected")
        else:
            trip = self.watchdog.check(now_ns)
            if trip is not None:
                text = f"console window silent for {trip.silence_ns / 1e6:.0f} ms: arms held"
                self.window.fire(now_ns, WindowTrigger.SILENCE, Reason.GUI_LOST, text)
                self.controller.inhibit(now_ns, Reason.GUI_LOST, True, text)
            elif self.window.state is WindowState.ATTACHED:
                self.controller.inhibit(now_ns, Reason.GUI_LOST, False)
        self.video = self.guard.check(now_ns)
        if self.video.changed:
            log.log(logging.INFO if self.video.ok else logging.WARNING, "video %s %s", self.video.state.value,
                    self.video.reason)
            if not self.video.ok and self.counters["video_live"]:
                self.counters["video_stale_episodes"] += 1  # the painted picture was live and no longer is
        if self.video.ok and not self.counters["video_live"]:
            self.counters["video_live"] = 1
        self.controller.inhibit(now_ns, Reason.VIDEO_STALE, not self.video.ok, self.video.reason)

    def video_state(self) -> dict[str, Any]:
        v = self.video
        return {"state": v.state.value, "ok": v.state is VideoState.OK, "reason": v.reason,
                "age_ms": None if v.age_ms is None else round(v.age_ms, 1),
                "silence_ms": None if v.silence_ms is None else round(v.silence_ms, 1), "frame_id": v.frame_id}

