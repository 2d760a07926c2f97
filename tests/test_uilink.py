"""The engine's supervision of its window, fed bytes and time: heartbeat watchdog, intents, painted video."""

from __future__ import annotations

import json

from conftest import ms

from console.uilink import UiSupervisor, decode_ui_message
from transport.messages import Reason


class Recorder:
    """Stands where the TeleopController is: records what the supervisor asks of it."""

    def __init__(self) -> None:
        self.inhibits: dict[Reason, bool] = {}
        self.scale: float | None = None
        self.resets = 0

    def inhibit(self, now_ns, reason, active, text=""):
        self.inhibits[reason] = active

    def set_scale(self, now_ns, scale):
        self.scale = scale

    def reset_estop(self, now_ns):
        self.resets += 1


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def test_no_window_or_a_silent_window_holds_with_gui_lost():
    c = Recorder()
    ui = UiSupervisor(c, gui_timeout_ms=250, stale_ms=200, stuck_ms=500)
    ui.tick(ms(1))
    assert c.inhibits[Reason.GUI_LOST] is True  # no window attached yet
    ui.on_bytes(ms(10), j({"type": "heartbeat", "seq": 1}), 0)
    ui.tick(ms(11))
    assert c.inhibits[Reason.GUI_LOST] is False
    ui.tick(ms(259))
    assert c.inhibits[Reason.GUI_LOST] is False
    ui.tick(ms(261))  # 251 ms of silence: the window hung or died
    assert c.inhibits[Reason.GUI_LOST] is True
    ui.on_bytes(ms(300), j({"type": "heartbeat", "seq": 2}), 0)
    ui.tick(ms(301))
    assert c.inhibits[Reason.GUI_LOST] is False  # the condition clears; re-engaging is the surgeon's


def test_painted_video_feeds_the_stale_guard():
    c = Recorder()
    ui = UiSupervisor(c, gui_timeout_ms=250, stale_ms=200, stuck_ms=500)
    ui.tick(ms(1))
    assert c.inhibits[Reason.VIDEO_STALE] is True  # no picture yet
    offset = 5_000_000_000  # bedside clock ahead by 5 s
    for i in range(10):
        t = ms(10 + 16 * i)
        ui.on_bytes(t, j({"type": "video", "frame_id": i, "capture_ns": t - ms(30) + offset, "signature": i}), offset)
        ui.tick(t)
    assert c.inhibits[Reason.VIDEO_STALE] is False
    ui.tick(ms(10 + 16 * 9 + 201))
    assert c.inhibits[Reason.VIDEO_STALE] is True
    assert ui.video_state()["state"] == "stale"


def test_intents_and_malformed_messages():
    c = Recorder()
    ui = UiSupervisor(c, gui_timeout_ms=250, stale_ms=200, stuck_ms=500)
    ui.on_bytes(1, j({"type": "intent", "name": "set_scale", "value": 0.4}), 0)
    ui.on_bytes(2, j({"type": "intent", "name": "reset_estop"}), 0)
    assert c.scale == 0.4 and c.resets == 1
    for bad in (b"\xff", b"[]", j({"type": "intent", "name": "move_arm"}), j({"type": "intent", "name": "set_scale",
                "value": "fast"}), j({"type": "video", "frame_id": "x", "capture_ns": 1}), b"{" * 5000):
        ui.on_bytes(3, bad, 0)
    assert ui.counters["ui_errors"] == 6 and c.scale == 0.4
    assert decode_ui_message(j({"type": "heartbeat"}))["type"] == "heartbeat"
