"""The QA replay window, driven through its own widgets (pytest-qt, offscreen): clicking an event on the
timeline seeks there, and the picture shown is the frame of that instant (read back from the frame code
the synthetic camera drew into it)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from qa.replay_window import ReplayWindow
from qa.session import Session
from qa.synth import synthesize
from video.compositor import DisplayMode
from video.framecode import read_code

FPS = 30


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("rec"), seconds=4.0, fps=FPS)


@pytest.fixture
def window(qtbot, rec):
    w = ReplayWindow(Session([rec.console, rec.bedside]))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def _shown_counter(w: ReplayWindow) -> int | None:
    img = w.video.image
    assert img is not None
    return read_code(img[:, : img.shape[1] // 2], 16)


@pytest.mark.parametrize("source", ["console", "bedside"])
def test_clicking_an_event_shows_the_frame_of_that_instant(qtbot, window, source, tmp_path):
    w = window
    w.source_box.setCurrentIndex(w.source_box.findData(source))
    for kind in ("freeze", "clutch", "limit"):
        i = next(k for k, e in enumerate(w.events) if e.kind == kind)
        x, y = w.timeline.marker_pos(i)
        qtbot.mouseClick(w.timeline, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
        # the click lands within a pixel of the marker; another marker of the same kind may be that close
        ev = w.events[w.event_list.currentRow()]
        assert ev.kind == kind and w.t_ns == ev.t_ns
        tr = w.tracks[source]
        k = w.frame_index
        # the frame on screen: the newest one that existed for that role at the event, read from its pixels
        assert tr.frames["t"][k] <= ev.t_ns and (k + 1 == len(tr) or tr.frames["t"][k + 1] > ev.t_ns)
        assert _shown_counter(w) == tr.frames["source_seq"][k]
        # …captured at or just before the event (one frame period plus the recorded pipeline delay)
        lag_ms = (ev.t_ns - tr.frames["capture"][k]) / 1e6
        assert 0 <= lag_ms <= 1000 / FPS + 10
    w.grab().save(str(tmp_path / f"replay-{source}.png"))


def test_step_play_speed_and_stereo_modes(qtbot, window, tmp_path):
    w = window
    w.seek(w.session.t0_ns + 1_000_000_000)
    first = _shown_counter(w)
    qtbot.mouseClick(w.fwd_btn, Qt.MouseButton.LeftButton)
    assert _shown_counter(w) == first + 1
    qtbot.mouseClick(w.back_btn, Qt.MouseButton.LeftButton)
    assert _shown_counter(w) == first
    w.speed_box.setCurrentIndex(w.speed_box.findData(4.0))
    t = w.t_ns
    qtbot.mouseClick(w.play_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.t_ns > t + 200_000_000, timeout=5000)
    qtbot.mouseClick(w.play_btn, Qt.MouseButton.LeftButton)
    assert not w.playing and w.play_btn.text() == "Play"
    for mode in (DisplayMode.ANAGLYPH, DisplayMode.ROW_INTERLEAVED, DisplayMode.TOP_BOTTOM, DisplayMode.LEFT):
        w.set_mode(mode)
        w.video.repaint()
        out = w.video.composed()
        assert out is not None and out.ndim == 3 and out.shape[2] == 4
    # every plot's cursor follows the current time
    s = float(w.session.seconds(w.t_ns))
    assert all(p.cursor == pytest.approx(s) for p in w.plots)
    assert np.isfinite([v for p in w.plots for _n, v in p.value_at(s)]).all()
    w.set_mode(DisplayMode.SIDE_BY_SIDE)
    w.grab().save(str(tmp_path / "replay.png"))
    assert (tmp_path / "replay.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("story"), seconds=10.0, video="jpeg", eye_w=160, eye_h=96, fps=FPS,
                      story=True)


def test_the_hud_and_banner_are_those_of_the_recorded_state_at_the_chosen_time(qtbot, story, tmp_path):
    from console.ui.status import arm_lines, console_alarms, console_fields
    from qa.synth import STORY

    w = ReplayWindow(Session([story.console, story.bedside]))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    (t_stale, dur_ms), _second = story.truth["stale_episodes"]
    assert dur_ms == STORY[0][1] * 1000
    for t, stale in ((t_stale + 60_000_000, True), (t_stale - 400_000_000, False)):
        w.seek(t)
        t_rec, state = w.state_at(t)
        assert 0 <= t - t_rec < 100_000_000  # the newest state at or before t (recorded at 10 Hz)
        assert state["video"]["ok"] is not stale
        age, fps, pic_stale = w._picture_at(t)
        assert w.hud.fields == {k: (v, w.hud.fields[k][1]) for k, v in console_fields(state, age, fps).items()}
        assert list(w.hud.arms) == [line.name for line in arm_lines(state["teleop"])]
        want = console_alarms(state, (t - t_rec) / 1e9, pic_stale)
        assert [a.key for a in w.banner.alarms] == [a.key for a in want]
        if stale:
            assert w.banner.isVisible() and "VIDEO STALE" in w.banner.text()
            assert "HELD" in w.hud.arm_text("PSM1") and "VIDEO_STALE" in w.hud.arm_text("PSM1")
        else:
            assert not w.banner.isVisible() and "FOLLOWING" in w.hud.arm_text("PSM1")
        assert "LINK UP" in w.hud.text_of("link")
    w.seek(t_stale + 60_000_000)
    w.grab().save(str(tmp_path / "replay-stale.png"))


def test_every_plot_has_a_time_axis_with_units_and_a_legend_and_holds_have_their_lane(qtbot, story):
    w = ReplayWindow(Session([story.console, story.bedside]))
    qtbot.addWidget(w)
    for pl in w.plots:
        assert pl.unit in ("ms", "mm") and pl.legend()
        assert pl.axis_label() == "session time (s) · 0 s = 22:13:20.000 UTC"
    lanes = {e.kind for e in w.events}
    assert {"hold", "clutch", "video", "refusal", "freeze", "alarm"} <= lanes
    assert all(e.kind == "hold" for e in w.events if e.name.endswith("->HELD"))
    assert all(e.kind == "clutch" for e in w.events if "FOLLOWING->CLUTCHED" in e.name)
    assert "started 2023-11-14 22:13:20.000 UTC" in w.info.text()
    assert "UTC" in w.time_label.text()
