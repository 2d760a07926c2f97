"""The on-site team's monitor: the same stereo picture and the bedside's state, alarms and an event log.

Read-only by construction: it opens a telemetry SUB (the bedside's PUB drops per subscriber, so a slow or
stopped monitor never stalls the bedside) and its own video viewer (a DEALER on the bedside's video ROUTER),
and no control socket at all: nothing here can send a command. It runs at the lowest CPU priority
(SCHED_IDLE) so several monitors on the console's machine take CPU from neither the control processes nor
the surgeon's window.

What it shows is decided by the headless monitor model (console/monitor_model.py: telemetry bytes and the
time in; fields, alarms and event-log lines out); this window only receives, passes bytes and the time to
the model, and paints what comes back.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from console.ui.app import lower_priority, make_app, quit_on_sigterm

log = logging.getLogger("console.ui.monitor")

MONITOR_NICE = 19


def build_window(cfg, prefs, title: str = ""):
    """The monitor window class is built lazily so `teleop --help` does not import Qt."""
    import zmq
    from PySide6.QtCore import Qt, QTimer, Slot
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QHBoxLayout,
        QLabel,
        QMainWindow,
        QSplitter,
        QVBoxLayout,
        QWidget,
    )

    from console.monitor_model import MonitorModel, VideoStatus
    from console.ui.hud import AlarmBanner, EventLog, Hud
    from console.ui.video import FrameSource, VideoPane
    from transport import security
    from transport.messages import Telemetry
    from transport.zmqlink import tcp, telemetry_subscriber
    from video.compositor import DisplayMode

    class MonitorWindow(QMainWindow):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.prefs = prefs
            self.setWindowTitle(f"teleop monitor — bedside {cfg.link.bedside_host}" + (f" — {title}" if title else ""))
            self.sub = telemetry_subscriber(zmq.Context.instance(), tcp(cfg.link.bedside_host, cfg.link.telemetry_port),
                                            security.for_client(cfg))
            self.model = MonitorModel()
            self._closed = False
            self.source = FrameSource(cfg, lambda: self.model.offset_ns, parent=self)
            central = QWidget()
            v = QVBoxLayout(central)
            v.setContentsMargins(4, 4, 4, 4)
            self.banner = AlarmBanner(sound=False)
            v.addWidget(self.banner)
            self.pane = VideoPane(self.source, prefs.display_mode())
            self.pane.swap_eyes = prefs.swap_eyes()
            self.hud = Hud()
            self.pane.hud = self.hud
            self.log = EventLog()
            split = QSplitter(Qt.Orientation.Vertical)
            split.addWidget(self.pane)
            split.addWidget(self.log)
            split.setSizes([700, 200])
            v.addWidget(split, 1)
            row = QHBoxLayout()
            ro = QLabel("READ-ONLY MONITOR · no control")
            ro.setStyleSheet("color: #5ac8fa; font-weight: 700;")
            row.addWidget(ro)
            row.addStretch(1)
            row.addWidget(QLabel("Display"))
            self.mode_box = QComboBox()
            modes = [m for m in DisplayMode if m != DisplayMode.PER_EYE]
            for m in modes:
                self.mode_box.addItem(m.label, m.value)
            if self.pane.mode in modes:
                self.mode_box.setCurrentIndex(modes.index(self.pane.mode))
            else:
                self.pane.set_mode(DisplayMode.SIDE_BY_SIDE)
            self.mode_box.currentIndexChanged.connect(lambda i: self.set_display_mode(modes[i]))
            row.addWidget(self.mode_box)
            self.swap_box = QCheckBox("Swap eyes")
            self.swap_box.setChecked(self.pane.swap_eyes)
            self.swap_box.toggled.connect(self._on_swap)
            row.addWidget(self.swap_box)
            v.addLayout(row)
            self.setCentralWidget(central)
            self.setStyleSheet("QMainWindow { background: #1c1c1e; } QLabel, QCheckBox { color: #ddd; }")
            geo = prefs.geometry()
            if geo is not None:
                self.restoreGeometry(geo)
            else:
                self.resize(1280, 800)
            self._drain_timer = QTimer(self)
            self._drain_timer.setInterval(16)
            self._drain_timer.timeout.connect(self._drain)
            self._drain_timer.start()
            self._refresh_timer = QTimer(self)
            self._refresh_timer.setInterval(100)
            self._refresh_timer.timeout.connect(self._refresh)
            self._refresh_timer.start()
            self.log.add(f"monitor started (read-only) as '{cfg.security.identity}'; bedside "
                         f"{cfg.link.bedside_host}:{cfg.link.telemetry_port}, video :{cfg.link.video_port}")
            self._refresh()

        def set_display_mode(self, mode: DisplayMode) -> None:
            self.prefs.set_display_mode(mode)
            self.pane.set_mode(mode)

        @Slot(bool)
        def _on_swap(self, on: bool) -> None:
            self.prefs.set_swap_eyes(on)
            self.pane.set_mode(self.pane.mode, swap_eyes=on)

        @property
        def telemetry(self) -> Telemetry | None:
            return self.model.telemetry

        @Slot()
        def _drain(self) -> None:
            for _ in range(2000):
                try:
                    data = self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for line in self.model.receive(data, time.monotonic_ns()):
                    self.log.add(line.text, line.severity)

        @Slot()
        def _refresh(self) -> None:
            src = self.source
            view = src.view
            video = VideoStatus(src.stale, src.stale_text, None if view is None else view.age_ms, src.fps or 0)
            shown = self.model.refresh(time.monotonic_ns(), video)
            self.banner.show_alarms(list(shown.alarms))
            for line in shown.log:
                self.log.add(line.text, line.severity)
            if self.hud.set_fields(shown.fields, shown.warn) | self.hud.set_arms(list(shown.arms)):
                self.pane.update()

        def closeEvent(self, event) -> None:
            self.prefs.set_geometry(self.saveGeometry())
            self.prefs.sync()
            self.shutdown()
            super().closeEvent(event)

        def shutdown(self) -> None:
            if self._closed:
                return
            self._closed = True
            self._drain_timer.stop()
            self._refresh_timer.stop()
            self.source.close()
            self.sub.close(0)

    return MonitorWindow()


def run_monitor(args: argparse.Namespace) -> int:
    lower_priority(MONITOR_NICE, idle=True)  # before any thread: the control processes and the window first
    from PySide6.QtCore import QTimer

    from base.runtime import announce_ready, write_json
    from console.ui.settings import Prefs

    app = make_app("teleop monitor")
    prefs = Prefs("monitor", Path(args.settings_dir) if args.settings_dir else None)
    win = build_window(args.cfg, prefs, args.title)
    quit_on_sigterm(app)
    win.show()
    if args.seconds:
        QTimer.singleShot(int(args.seconds * 1000), win.close)
    announce_ready(monitor=args.cfg.link.bedside_host, identity=args.cfg.security.identity)
    t0 = time.monotonic()
    try:
        app.exec()
    finally:
        win.shutdown()
    if args.stats:
        span = time.monotonic() - t0
        write_json(args.stats, {"seconds": round(span, 1), "painted_frames": win.source.painted_frames,
                                "painted_fps": round(win.source.painted_frames / span, 1) if span else None,
                                "receiver": win.source.receiver.stats(),
                                "telemetry_hz": round(win.model.telemetry_hz(time.monotonic_ns()), 1),
                                "alarms": [a.title for a in win.banner.alarms]})
    return 0
