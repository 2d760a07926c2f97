"""The on-site team's monitor (pytest-qt, offscreen) against a real bedside and a real headless console;
and the commands that open windows (`teleop demo` without a display, `teleop screenshot`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest
from crossproc import Session
from PySide6.QtWidgets import QAbstractButton
from test_gui_console import GUI_VIDEO, video_child_pid

from base.config import load_config
from console.ui.app import tied_to_us
from console.ui.monitor import build_window
from console.ui.settings import Prefs

pytestmark = pytest.mark.fault

WAIT_MS = 20_000


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path, video=True, extra=GUI_VIDEO, con_extra=["console.engage_at_s=0.3"], bed_prefix=tied_to_us(),
                con_prefix=tied_to_us())
    yield s
    s.close()


def test_two_monitors_watch_read_only_and_show_the_link_lost_alarm(session, tmp_path, qtbot):
    session.start_bedside()
    cfg = load_config(None, [*session.bed_sets, "security.identity=monitor"])
    mons = [build_window(cfg, Prefs("monitor", tmp_path / f"m{k}"), f"monitor {k}") for k in range(2)]
    try:
        for m in mons:
            qtbot.addWidget(m)
            m.resize(1100, 700)
            m.show()
        # no way to send anything: not a single button, and no control socket
        assert all([b.text() for b in m.findChildren(QAbstractButton)] == ["Swap eyes"] for m in mons)
        assert not any(hasattr(m, "link") or hasattr(m, "streamer") for m in mons)
        session.start_console()
        session.wait_engaged()

        def following(m) -> bool:
            t = m.telemetry
            return (t is not None and t.operating_state.name == "ENABLED" and not m.source.stale
                    and not m.pane.painted_stale and all(a.mode.name == "FOLLOWING" for a in t.arms[:2]))
        for m in mons:
            qtbot.waitUntil(lambda m=m: bool(following(m)), timeout=WAIT_MS)
            qtbot.waitUntil(lambda m=m: "FOLLOWING" in m.hud.arm_text("PSM1"), timeout=WAIT_MS)
        assert mons[0].hud.text_of("session").startswith("bedside ENABLED")
        assert mons[0].hud.text_of("link").startswith("TELEMETRY OK")
        assert not mons[0].banner.alarms
        mons[0].grab().save(str(tmp_path / "monitor-following.png"))

        session.console.signal(signal.SIGKILL)
        for m in mons:
            qtbot.waitUntil(lambda m=m: "link" in m.banner.keys, timeout=WAIT_MS)
            assert "LINK LOST" in m.banner.text()
            qtbot.waitUntil(lambda m=m: any("PAUSED" in line and "LINK_LOST" in line for line in m.log.lines),
                            timeout=WAIT_MS)
            assert "held: the link to the surgeon was lost" in m.hud.arm_text("PSM1")  # plain words, no enum names
        mons[1].grab().save(str(tmp_path / "monitor-link-lost.png"))

        video = video_child_pid(session)
        session.bedside.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # the whole bedside host is gone
            os.kill(video, signal.SIGKILL)
        qtbot.waitUntil(lambda: "telemetry" in mons[0].banner.keys and mons[0].pane.painted_stale, timeout=WAIT_MS)
        mons[0].grab().save(str(tmp_path / "monitor-no-telemetry.png"))
    finally:
        for m in mons:
            m.shutdown()


def test_demo_without_a_display_says_so_and_runs_headless():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "demo", "--seconds", "1", "--json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "no display found: running the headless demo" in out.stderr
    assert '"commands_sent"' in out.stdout


def test_screenshot_command_saves_the_driven_window(tmp_path):
    png = tmp_path / "console.png"
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "screenshot", "-o", str(png), "--size", "1200x760"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    from PySide6.QtGui import QImage

    img = QImage(str(png))
    assert (img.width(), img.height()) == (1200, 760)


def test_sigterm_closes_the_windows_from_the_event_loop_never_inside_the_interrupted_code(qtbot):
    """A Python signal handler runs between any two bytecodes, e.g. in the middle of the monitor's `_drain`;
    closing the windows there shut its sockets under the running slot (a ENOTSOCK traceback in 3 of 4 SIGTERMed
    monitors, and libzmq's `_input_stopped` abort). The handler only notes the signal; a timer's slot closes."""
    from PySide6.QtWidgets import QApplication

    from console.ui.app import quit_on_sigterm

    app = QApplication.instance()
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    closed: list[int] = []
    original = app.closeAllWindows
    app.closeAllWindows = lambda: closed.append(1)  # type: ignore[method-assign]
    try:
        quit_on_sigterm(app)
        handler = signal.getsignal(signal.SIGTERM)
        handler(signal.SIGTERM, None)  # as Python runs it: from inside whatever code was running
        assert closed == []  # nothing closed under the interrupted code
        qtbot.waitUntil(lambda: bool(closed), timeout=2000)  # the event loop closes, soon
    finally:
        app.closeAllWindows = original  # type: ignore[method-assign]
        app._sig_timer.stop()
        for s, h in saved.items():
            signal.signal(s, h)
