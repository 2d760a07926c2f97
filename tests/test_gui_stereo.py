"""Pure parts of the console window: stereo composition, HUD wording and alarm rules, preferences."""

from __future__ import annotations

import numpy as np
import pytest

from base.config import load_config
from console.ui.status import (
    Severity,
    arm_lines,
    console_alarms,
    console_fields,
    sparkline_points,
)
from transport.video_wire import Layout
from video.compositor import DisplayMode, compose, fit

L_BGR, R_BGR = (10, 20, 30), (200, 100, 50)


def sbs(eye_w: int = 64, eye_h: int = 40) -> np.ndarray:
    img = np.empty((eye_h, 2 * eye_w, 3), np.uint8)
    img[:, :eye_w] = L_BGR
    img[:, eye_w:] = R_BGR
    return img


def tb(eye_w: int = 64, eye_h: int = 40) -> np.ndarray:
    img = np.empty((2 * eye_h, eye_w, 3), np.uint8)
    img[:eye_h] = L_BGR
    img[eye_h:] = R_BGR
    return img


def bgr(px: np.ndarray) -> tuple[int, int, int]:
    return int(px[0]), int(px[1]), int(px[2])


@pytest.mark.parametrize("layout,img", [(Layout.SIDE_BY_SIDE, sbs()), (Layout.TOP_BOTTOM, tb())])
def test_side_by_side_and_top_bottom_put_each_eye_in_its_half(layout, img):
    out = compose(img, layout, DisplayMode.SIDE_BY_SIDE, box=(64, 64))
    assert out.shape == (20, 64, 4) and out.flags.c_contiguous and (out[..., 3] == 255).all()
    assert bgr(out[10, 5]) == L_BGR and bgr(out[10, 60]) == R_BGR
    out = compose(img, layout, DisplayMode.TOP_BOTTOM, box=(64, 160))
    assert out.shape == (80, 64, 4)
    assert bgr(out[5, 10]) == L_BGR and bgr(out[75, 10]) == R_BGR


def test_anaglyph_takes_red_from_the_left_eye_and_green_blue_from_the_right():
    out = compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.ANAGLYPH)
    assert out.shape == (40, 64, 4)
    assert bgr(out[0, 0]) == (R_BGR[0], R_BGR[1], L_BGR[2])


@pytest.mark.parametrize("parity", [0, 1])
def test_row_interleaved_alternates_eyes_by_screen_row_and_never_scales(parity):
    out = compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.ROW_INTERLEAVED, box=(1000, 1000), row_parity=parity)
    assert out.shape == (40, 64, 4)  # a bigger box does not enlarge it
    first, second = (L_BGR, R_BGR) if parity == 0 else (R_BGR, L_BGR)
    assert all(bgr(out[r, 3]) == (first if r % 2 == 0 else second) for r in range(40))
    small = compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.ROW_INTERLEAVED, box=(30, 21), row_parity=parity)
    assert small.shape == (21, 30, 4)  # cropped, not scaled, and still starting on the same eye
    assert bgr(small[0, 0]) == first and bgr(small[1, 0]) == second


def test_one_eye_modes_and_swapping_the_eyes():
    assert bgr(compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.LEFT)[5, 5]) == L_BGR
    assert bgr(compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.RIGHT)[5, 5]) == R_BGR
    assert bgr(compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.LEFT, swap_eyes=True)[5, 5]) == R_BGR
    out = compose(sbs(), Layout.SIDE_BY_SIDE, DisplayMode.SIDE_BY_SIDE, swap_eyes=True)
    assert bgr(out[5, 5]) == R_BGR and bgr(out[5, 100]) == L_BGR


def test_mono_pictures_and_tiny_boxes_do_not_break_composition():
    mono = np.full((40, 64, 3), 77, np.uint8)
    for mode in DisplayMode:
        out = compose(mono, Layout.MONO, mode, box=(3, 1))
        assert out.ndim == 3 and out.shape[2] == 4 and out.shape[0] >= 1 and out.shape[1] >= 1
    assert fit(2560, 720, 1280, 1000) == (1280, 360)
    assert fit(2560, 720, 100, 10) == (35, 10)


# ------------------------------------------------------------------------------------------- HUD / alarms

def healthy() -> dict:
    return {
        "type": "state", "link": "UP", "rtt_ms": 0.5, "rtt_history_ms": [0.5, 0.6], "clock_offset_ns": 12_000,
        "bedside": {"state": "ENABLED", "reason": "NONE", "estop": False},
        "session": {"epoch": 7, "ready": True},
        "teleop": {"arms": {"PSM1": {"state": "FOLLOWING", "reason": "NONE", "guidance": "", "active_limits": []},
                            "PSM2": {"state": "ALIGNING", "reason": "NONE", "active_limits": [],
                                     "guidance": "rotate the master to match the tool", "misalignment_deg": 12.3},
                            "ECM": {"state": "CLUTCHED", "reason": "NONE", "guidance": "", "active_limits": []}},
                   "scale": 0.4, "effective_scale": 0.4, "latency": {"level": "ok", "text": ""},
                   "operator_present": True, "estop": False, "inhibits": {}},
        "video": {"state": "ok", "ok": True, "reason": ""},
    }


def test_a_healthy_state_raises_no_alarm_and_the_hud_says_what_it_sees():
    s = healthy()
    assert console_alarms(s, 0.05, False) == []
    f = console_fields(s, 23.4, 59.8, "10.0.0.5")
    assert f["link"] == "LINK UP · 10.0.0.5" and f["rtt"] == "RTT 0.50 ms" and f["offset"] == "offset +0.012 ms"
    assert f["video"] == "video age 23 ms · 60 fps" and f["scale"] == "scale 0.40"
    assert f["presence"] == "operator present" and f["limits"] == "limits: none active"
    lines = {a.name: a for a in arm_lines(s["teleop"])}
    assert lines["PSM1"].text == "tool follows your right hand" and lines["PSM1"].severity is Severity.INFO
    assert lines["PSM2"].text == "left hand · rotate the master to match the tool (12° off)"
    assert lines["ECM"].state == "CLUTCHED"


@pytest.mark.parametrize("mutate,key,severity", [
    (lambda s: s.update(link="LOST"), "link", Severity.CRITICAL),
    (lambda s: s.update(link="CONNECTING"), "link", Severity.WARNING),
    (lambda s: s["teleop"].update(estop=True), "estop", Severity.CRITICAL),
    (lambda s: s["bedside"].update(estop=True), "estop", Severity.CRITICAL),
    (lambda s: s.update(video={"state": "stale", "ok": False, "reason": "video stale: 312 ms old"}), "video",
     Severity.CRITICAL),
    (lambda s: s["teleop"].update(latency={"level": "warn", "text": "RTT 140 ms: scale lowered"}), "latency",
     Severity.WARNING),
    (lambda s: s["teleop"].update(latency={"level": "hard", "text": "RTT 300 ms: following stopped"}), "latency",
     Severity.CRITICAL),
    (lambda s: s["teleop"].update(inhibits={"GUI_LOST": "console window silent for 260 ms: arms held"}), "gui",
     Severity.WARNING),
    (lambda s: s["bedside"].update(state="FAULT", reason="FAULT"), "fault", Severity.CRITICAL),
])
def test_each_alarm_condition_raises_its_alarm(mutate, key, severity):
    s = healthy()
    mutate(s)
    alarms = console_alarms(s, 0.05, False)
    assert [a.key for a in alarms] == [key] and alarms[0].severity is severity
    assert alarms[0].title and alarms[0].text


def test_a_silent_engine_and_a_stale_picture_are_alarms_whatever_the_last_state_said():
    starting = console_alarms(None, 1.0, True, "NO VIDEO")
    assert [(a.key, a.severity) for a in starting] == [("engine", Severity.WARNING)]
    assert [a.key for a in console_alarms(None, float("inf"), True, "NO VIDEO")] == ["engine", "video"]
    assert [a.key for a in console_alarms(healthy(), 0.8, False)] == ["engine"]
    stale = console_alarms(healthy(), 0.05, True, "VIDEO STALE: 250 ms")
    assert [a.key for a in stale] == ["video"] and "250 ms" in stale[0].text


def test_alarms_are_ordered_most_severe_first():
    s = healthy()
    s["teleop"]["latency"] = {"level": "warn", "text": "slow"}
    s["link"] = "LOST"
    assert [a.severity for a in console_alarms(s, 0.05, False)] == [Severity.CRITICAL, Severity.WARNING]


def test_held_arms_show_their_reason_and_limits_are_named():
    t = healthy()["teleop"]
    t["arms"]["PSM1"] = {"state": "HELD", "reason": "VIDEO_STALE", "guidance": "video stale: 350 ms old",
                         "active_limits": ["speed"]}
    line = arm_lines(t)[0]
    assert line.text == "right hand · held: VIDEO_STALE — video stale: 350 ms old · limit: speed"
    assert line.severity is Severity.CRITICAL
    s = healthy()
    s["teleop"] = t
    assert console_fields(s, None, None)["limits"] == "limits: speed"


def test_rtt_sparkline_leaves_gaps_where_there_was_no_measurement():
    segs = sparkline_points([1.0, 2.0, None, 2.0, 4.0], 40, 10)
    assert len(segs) == 2 and segs[0][0] == (0.0, 7.5) and segs[1][-1] == (40.0, 0.0)
    assert sparkline_points([None, None], 40, 10) == []


# ------------------------------------------------------------------------------------------- preferences

def test_preferences_persist_and_the_saved_connection_yields_valid_overrides(tmp_path, qapp):
    from console.ui.settings import Prefs

    p = Prefs("console", tmp_path)
    p.set_display_mode(DisplayMode.ANAGLYPH)
    p.set_scale(0.35)
    p.set_swap_eyes(True)
    p.set_connection({"bedside_host": "10.1.2.3", "control_port": 6001, "keys_dir": "/tmp/k x"})
    p.sync()
    q = Prefs("console", tmp_path)
    assert q.display_mode() is DisplayMode.ANAGLYPH and q.scale() == 0.35 and q.swap_eyes()
    cfg = load_config(None, q.connection_overrides())
    assert cfg.link.bedside_host == "10.1.2.3" and cfg.link.control_port == 6001
    assert cfg.security.keys_dir == "/tmp/k x"


def test_the_installed_pyside_keeps_its_references_to_none_and_true(qapp):
    """PySide6 6.12.0 on Python 3.11 released a reference to None on every void call and to True on every
    signal emit: the window crashed within seconds (pyproject.toml pins around it)."""
    import sys

    from PySide6.QtCore import QObject, Signal
    from PySide6.QtGui import QImage

    class Emitter(QObject):
        ping = Signal()

    img, em = QImage(8, 8, QImage.Format.Format_RGB32), Emitter()
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(1000):
        img.fill(0)
        em.ping.emit()
    assert sys.getrefcount(None) > none0 - 100 and sys.getrefcount(True) > true0 - 100
