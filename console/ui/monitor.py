"""The on-site team's monitor: the same stereo picture and the bedside's state, alarms and an event log.

Read-only by construction: it opens a telemetry SUB (the bedside's PUB drops per subscriber, so a slow or
stopped monitor never stalls the bedside) and its own video viewer (a DEALER on the bedside's video ROUTER),
and no control socket at all: nothing here can send a command. It runs at the lowest CPU priority
(SCHED_IDLE) so several monitors on the console's machine take CPU from neither the control processes nor
the surgeon's window.

What it shows comes from the bedside itself: operating state and reason, e-stop, each arm's mode and
limit flag, the bedside's events. It has no command round trip, so instead of RTT it shows the telemetry
delay beyond the best recently seen, and it estimates the clock offset from telemetry send times (biased
by the one-way delay, which makes picture ages read slightly old, never young).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import deque
from pathlib import Path

from console.ui.app import lower_priority, make_app, quit_on_sigterm

log = logging.getLogger("console.ui.monitor")

MONITOR_NICE = 19
TELEMETRY_TIMEOUT_S = 0.25




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

    from console.ui.hud import AlarmBanner, EventLog, Hud
    from console.ui.status import Severity, monitor_alarms, monitor_arm_lines
    from console.ui.video import FrameSource, VideoPane
    from transport import codec, security
    from transport.clock import DelayBaseline
    from transport.messages import Counters, Event, Telemetry
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
            self.telemetry: Telemetry | None = None
            self.telemetry_mono: float | None = None
            self.bedside_counters: dict[str, int] = {}
            self.events: list[Event] = []
            self.offset_ns = 0
            self.excess_ms: float | None = None
            self._baseline = DelayBaseline()
            self._arrivals: deque[float] = deque(maxlen=400)
            self.decode_errors = 0
            self._closed = False
            self.source = FrameSource(cfg, lambda: self.offset_ns, parent=self)
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

        @Slot()
        def _drain(self) -> None:
            for _ in range(2000):
                try:
                    data = self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                rx = time.monotonic_ns()
                try:
                    msg = codec.decode(data)
                except codec.ProtocolError:
                    self.decode_errors += 1
                    continue
                if isinstance(msg, Telemetry):
                    excess = self._baseline.excess_ns(rx, msg.send_ns)
                    self.offset_ns = -((rx - msg.send_ns) - excess)  # bedside − here, less the best one-way delay
                    self.excess_ms = excess / 1e6
                    self.telemetry = msg
                    self.telemetry_mono = time.monotonic()
                    self._arrivals.append(msg.send_ns / 1e9)  # the bedside's clock: drains come in batches
                elif isinstance(msg, Event):
                    self.events.append(msg)
                    sev = Severity.INFO if msg.reason.name in ("NONE", "CONSOLE_REQUEST", "STARTUP") \
                        else Severity.WARNING
                    if msg.reason.name in ("LINK_LOST", "ESTOP", "FAULT"):
                        sev = Severity.CRITICAL
                    self.log.add(f"bedside {msg.kind.name}: {msg.from_state.name} → {msg.to_state.name} "
                                 f"({msg.reason.name}) {msg.text}", sev)
                elif isinstance(msg, Counters):
                    self.bedside_counters = dict(msg.values)

        def telemetry_hz(self) -> float:
            a = self._arrivals
            if len(a) < 2 or self.telemetry_mono is None or time.monotonic() - self.telemetry_mono > 1.0:
                return 0.0
            return (len(a) - 1) / (a[-1] - a[0]) if a[-1] > a[0] else 0.0

        @Slot()
        def _refresh(self) -> None:
            t = self.telemetry
            silence = float("inf") if self.telemetry_mono is None else time.monotonic() - self.telemetry_mono
            view = self.source.view
            alarms = monitor_alarms(t, silence, TELEMETRY_TIMEOUT_S, self.source.stale, self.source.stale_text)
            raised, cleared = self.banner.show_alarms(alarms)
            for a in raised:
                self.log.add(f"ALARM {a.title}: {a.text}", a.severity)
            for a in cleared:
                self.log.add(f"cleared: {a.title}")
            fps = self.source.fps or 0
            age = None if view is None else view.age_ms
            crit = {a.key for a in alarms if a.severity is Severity.CRITICAL}
            if t is None:
                fields = {"link": "TELEMETRY: none yet", "rtt": "", "offset": "", "session": "", "limits": ""}
            else:
                fields = {
                    "link": f"TELEMETRY {'LOST' if 'telemetry' in crit else 'OK'} · {self.telemetry_hz():.0f} Hz",
                    "rtt": "" if self.excess_ms is None else f"telemetry delay +{self.excess_ms:.2f} ms",
                    "offset": f"offset ≈ {self.offset_ns / 1e6:+.3f} ms",
                    "session": f"bedside {t.operating_state.name} ({t.reason.name}) · epoch {t.epoch}"
                               + (" · E-STOP" if t.estop else ""),
                    "limits": "limits: " + (", ".join(a.name for a, line in zip(("PSM1", "PSM2", "ECM"), t.arms,
                                                                               strict=False)
                                                       if int(line.flags) & 4) or "none active"),
                }
            fields["video"] = "video age " + ("—" if age is None else f"{age:.0f} ms") + f" · {fps:.0f} fps"
            fields["scale"] = ""
            fields["presence"] = ""
            warn = {"link": Severity.CRITICAL if "telemetry" in crit else Severity.INFO,
                    "video": Severity.CRITICAL if "video" in crit else Severity.INFO,
                    "session": Severity.CRITICAL if crit & {"estop", "link", "fault"} else Severity.INFO}
            if self.hud.set_fields(fields, warn) | self.hud.set_arms(monitor_arm_lines(t)):
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
                                "receiver": win.source.receiver.stats(), "telemetry_hz": round(win.telemetry_hz(), 1),
                                "alarms": [a.title for a in win.banner.alarms]})
    return 0
