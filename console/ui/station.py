"""`teleop station`: the on-site team's station at the bedside — the monitor grown into the team's app.

Live stereo video, the bedside's state, who is in control and since when, alarms you see and hear, guidance
for each state, an event log that follows the newest event unless scrolled back, the bedside e-stop (held
for a second to fire: a brush does nothing) and its reset with a reason, and the voice panel.

Every decision is the headless model's (console/station_model.py): this window receives, passes bytes and
the time to it, paints what it returns and sends the bytes it makes. Sockets: the telemetry SUB and a video
viewer like the monitor's, and a control DEALER with the station's own key (role `station`,
transport/security.py) that carries only PING and ESTOP; the bedside refuses anything else from it. It runs
below the control processes (nice 10), not SCHED_IDLE like a monitor: its e-stop button must answer.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

from console.ui.app import lower_priority, make_app, quit_on_sigterm

log = logging.getLogger("console.ui.station")

STATION_NICE = 10
COLOURS = {0: ("#1f3a24", "#e8f5e9"), 1: ("#ff9f0a", "#000000"), 2: ("#d70015", "#ffffff")}
"""Guidance panel (background, text) per severity: the console banner's colours (console/ui/hud.py)."""


def build_window(cfg, prefs, title: str = "", sound: bool = True, connect: bool = True):
    """The station window (built lazily: `teleop --help` imports no Qt). `connect=False`: no sockets at all
    (tests that drive the model directly, screenshots of a given state)."""
    import zmq
    from PySide6.QtCore import Qt, QTimer, Slot
    from PySide6.QtWidgets import (
        QComboBox,
        QDialog,
        QDialogButtonBox,
        QHBoxLayout,
        QLabel,
        QLineEdit,
        QMainWindow,
        QPushButton,
        QSplitter,
        QVBoxLayout,
        QWidget,
    )

    from console.alarm_audio import AlarmPlayer
    from console.indicators import Severity
    from console.monitor_model import VideoStatus
    from console.station_model import HoldToActivate, LogFollow, StationModel, reset_reason_problem
    from console.ui.hud import AlarmBanner, EventLog, Hud
    from console.ui.video import FrameSource, VideoPane
    from transport import security
    from transport.zmqlink import control_client, tcp, telemetry_subscriber
    from video.compositor import DisplayMode

    class ResetDialog(QDialog):
        """The reset's reason, required before the confirm button enables; the model's rule, in words."""

        def __init__(self, parent: QWidget) -> None:
            super().__init__(parent)
            self.setWindowTitle("Reset the bedside e-stop")
            self.setStyleSheet("QDialog { background: #2c2c2e; } QLabel { color: #eeeeee; font-size: 11pt; } "
                               "QLineEdit { font-size: 12pt; padding: 4px; }")
            v = QVBoxLayout(self)
            v.addWidget(QLabel("Why is it safe to let the arms be engaged again? This goes into the audit\n"
                               "(the bedside's event log and the recording), with this station's name."))
            self.reason = QLineEdit()
            self.reason.setPlaceholderText("e.g. instrument clear of the liver, team ready")
            v.addWidget(self.reason)
            self.problem = QLabel("")
            self.problem.setStyleSheet("color: #ffb300;")
            v.addWidget(self.problem)
            self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
            self.confirm = self.buttons.addButton("Reset e-stop", QDialogButtonBox.ButtonRole.AcceptRole)
            self.buttons.accepted.connect(self.accept)
            self.buttons.rejected.connect(self.reject)
            v.addWidget(self.buttons)
            self.reason.textChanged.connect(self._check)
            self._check("")

        @Slot(str)
        def _check(self, text: str) -> None:
            why = reset_reason_problem(text)
            self.problem.setText(why or "")
            self.confirm.setEnabled(why is None)

    class StationWindow(QMainWindow):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.prefs = prefs
            self.identity = cfg.security.identity
            self.setWindowTitle(f"teleop station — bedside {cfg.link.bedside_host}" + (f" — {title}" if title else ""))
            self.model = StationModel(self.identity)
            self.follow = LogFollow()
            self.estop_button = HoldToActivate()
            self.voice_lost = False
            self.estop_sent_ns: int | None = None
            self.view = None
            self._closed = False
            self.sub = self.ctrl = None
            if connect:
                ctx = zmq.Context.instance()
                sec = security.for_client(cfg)
                self.sub = telemetry_subscriber(ctx, tcp(cfg.link.bedside_host, cfg.link.telemetry_port), sec)
                self.ctrl = control_client(ctx, tcp(cfg.link.bedside_host, cfg.link.control_port), sec)
            self.source = FrameSource(cfg, lambda: self.model.offset_ns, parent=self) if connect else None
            self.alarm_player = AlarmPlayer.from_config(cfg.console, None if sound else "null")  # after the keys
            self._layout()
            geo = prefs.geometry()
            if geo is not None:
                self.restoreGeometry(geo)
            else:
                self.resize(1600, 1000)
            self._drain_timer = QTimer(self)
            self._drain_timer.setInterval(16)
            self._drain_timer.timeout.connect(self._drain)
            self._refresh_timer = QTimer(self)
            self._refresh_timer.setInterval(100)
            self._refresh_timer.timeout.connect(self.refresh)
            self._hold_timer = QTimer(self)
            self._hold_timer.setInterval(20)
            self._hold_timer.timeout.connect(self._poll_hold)
            if connect:
                self._drain_timer.start()
                self._refresh_timer.start()
            self.add_log(f"station started as '{self.identity}'; bedside {cfg.link.bedside_host}:"
                         f"{cfg.link.control_port} (control), :{cfg.link.telemetry_port} (telemetry), "
                         f":{cfg.link.video_port} (video)")
            self.refresh()

        # -------------------------------------------------------------- layout
        def _layout(self) -> None:
            central = QWidget()
            v = QVBoxLayout(central)
            v.setContentsMargins(4, 4, 4, 4)
            v.setSpacing(4)
            self.banner = AlarmBanner(sound=False)  # the alarm player sounds
            v.addWidget(self.banner)
            top = QHBoxLayout()
            self.guide_title = QLabel()
            self.guide_text = QLabel()
            self.guide_text.setWordWrap(True)
            guide = QWidget()
            gv = QVBoxLayout(guide)
            gv.setContentsMargins(10, 6, 10, 6)
            gv.addWidget(self.guide_title)
            gv.addWidget(self.guide_text)
            self.guide = guide
            top.addWidget(guide, 1)
            v.addLayout(top)
            self.control_label = QLabel()
            self.control_label.setStyleSheet("color: #ddd; font-size: 13pt;")
            v.addWidget(self.control_label)
            mid = QSplitter(Qt.Orientation.Horizontal)
            left = QSplitter(Qt.Orientation.Vertical)
            if self.source is not None:
                self.pane = VideoPane(self.source, prefs.display_mode())
                self.pane.swap_eyes = prefs.swap_eyes()
            else:
                self.pane = QLabel("no video (not connected)")
                self.pane.setAlignment(Qt.AlignmentFlag.AlignCenter)
                self.pane.setStyleSheet("background: #000; color: #888;")
            self.hud = Hud()
            if self.source is not None:
                self.pane.hud = self.hud
            left.addWidget(self.pane)
            logbox = QWidget()
            lv = QVBoxLayout(logbox)
            lv.setContentsMargins(0, 0, 0, 0)
            self.log = EventLog()
            self.log.verticalScrollBar().valueChanged.connect(self._on_scroll)
            lv.addWidget(self.log)
            self.unseen_label = QPushButton("")
            self.unseen_label.setFlat(True)
            self.unseen_label.setStyleSheet("color: #5ac8fa; text-align: left;")
            self.unseen_label.clicked.connect(self._to_newest)
            self.unseen_label.hide()
            lv.addWidget(self.unseen_label)
            left.addWidget(logbox)
            left.setSizes([650, 250])
            mid.addWidget(left)
            mid.addWidget(self._side())
            mid.setSizes([1250, 330])
            v.addWidget(mid, 1)
            row = QHBoxLayout()
            ident = QLabel(f"BEDSIDE STATION · {self.identity}")
            ident.setStyleSheet("color: #5ac8fa; font-weight: 700;")
            row.addWidget(ident)
            row.addStretch(1)
            row.addWidget(QLabel("Display"))
            self.mode_box = QComboBox()
            modes = [m for m in DisplayMode if m != DisplayMode.PER_EYE]
            for m in modes:
                self.mode_box.addItem(m.label, m.value)
            if self.source is not None:
                if self.pane.mode in modes:
                    self.mode_box.setCurrentIndex(modes.index(self.pane.mode))
                else:
                    self.pane.set_mode(DisplayMode.SIDE_BY_SIDE)
                self.mode_box.currentIndexChanged.connect(lambda i: self._set_mode(modes[i]))
            row.addWidget(self.mode_box)
            v.addLayout(row)
            self.setCentralWidget(central)
            self.setStyleSheet("QMainWindow { background: #1c1c1e; } QLabel { color: #ddd; } "
                               "QPushButton { min-height: 34px; }")

        def _side(self) -> QWidget:
            side = QWidget()
            s = QVBoxLayout(side)
            s.setContentsMargins(6, 0, 0, 0)
            self.estop = QPushButton()
            self.estop.setMinimumHeight(120)
            self.estop.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # never by a stray Space or Enter
            self.estop.setToolTip("press and hold for 1 s: every arm holds at once and nobody can engage "
                                  "until it is reset here")
            self.estop.pressed.connect(self._estop_down)
            self.estop.released.connect(self._estop_up)
            s.addWidget(self.estop)
            self.path_label = QLabel()
            self.path_label.setWordWrap(True)
            s.addWidget(self.path_label)
            self.reset = QPushButton("Reset e-stop…")
            self.reset.setToolTip("clear the bedside's e-stop, with the reason, once it is safe")
            self.reset.clicked.connect(self.ask_reset)
            s.addWidget(self.reset)
            self.silence = QPushButton("Silence alarms")
            self.silence.setToolTip(f"pause the alarm sound for {cfg.console.alarm_pause_s:g} s (a new alarm "
                                    "still sounds); logged")
            self.silence.clicked.connect(self.silence_alarms)
            s.addWidget(self.silence)
            s.addSpacing(10)
            s.addWidget(self._voice())
            s.addStretch(1)
            return side

        def _voice(self) -> QWidget:
            """The voice intercom panel (console/ui/voice_panel.py): the station's end binds voice.port; a lost
            voice link sounds as the medium-priority "voice lost" alarm (`refresh`)."""
            from console.ui.voice_panel import station_panel

            self.voice_panel = station_panel(cfg, self) if connect else None
            if self.voice_panel is not None:
                return self.voice_panel
            slot = QLabel("Voice intercom: not connected")
            slot.setAlignment(Qt.AlignmentFlag.AlignCenter)
            slot.setStyleSheet("color: #888; border: 1px dashed #555; padding: 8px;")
            return slot

        # -------------------------------------------------------------- log
        def add_log(self, text: str, severity: Severity = Severity.INFO) -> None:
            sb = self.log.verticalScrollBar()
            keep = sb.value()
            self.log.add(text, severity)
            if self.follow.added():
                sb.setValue(sb.maximum())
            else:
                sb.setValue(keep)
            self._show_unseen()

        @Slot(int)
        def _on_scroll(self, value: int) -> None:
            self.follow.scrolled(value, self.log.verticalScrollBar().maximum())
            self._show_unseen()

        def _show_unseen(self) -> None:
            n = self.follow.unseen
            self.unseen_label.setVisible(n > 0)
            if n:
                self.unseen_label.setText(f"↓ {n} newer event{'s' if n > 1 else ''} below — click to follow again")

        @Slot()
        def _to_newest(self) -> None:
            sb = self.log.verticalScrollBar()
            sb.setValue(sb.maximum())

        # -------------------------------------------------------------- e-stop and reset
        @Slot()
        def _estop_down(self) -> None:
            self.estop_button.press(time.monotonic_ns())
            self._hold_timer.start()
            self._paint_estop()

        @Slot()
        def _estop_up(self) -> None:
            if self.estop_button.release(time.monotonic_ns()):
                self.add_log("E-STOP not sent: released before 1 s (hold it to stop the arms)", Severity.WARNING)
            self._hold_timer.stop()
            self._paint_estop()

        @Slot()
        def _poll_hold(self) -> None:
            now = time.monotonic_ns()
            if self.estop_button.poll(now):
                self.send_estop(now)
            self._paint_estop()

        def send_estop(self, now_ns: int) -> None:
            self.add_log(f"E-STOP pressed at this station ({self.identity})", Severity.CRITICAL)
            self.estop_sent_ns = now_ns  # the frame's send time (tests compare the bedside's freeze with it)
            self._send(self.model.estop(now_ns))

        def send_reset(self, reason: str) -> None:
            data = self.model.reset(time.monotonic_ns(), reason)  # ValueError if the reason will not do
            self.add_log(f"e-stop reset requested by {self.identity}: {reason.strip()}", Severity.WARNING)
            self._send(data)

        def reset_dialog(self) -> ResetDialog:
            return ResetDialog(self)

        @Slot()
        def ask_reset(self) -> None:
            dlg = self.reset_dialog()
            if dlg.exec() == QDialog.DialogCode.Accepted:
                self.send_reset(dlg.reason.text())

        def _send(self, data: bytes) -> None:
            if self.ctrl is None:
                return
            try:
                self.ctrl.send(data, zmq.NOBLOCK)
            except zmq.Again:
                self.add_log("NOT SENT: no connection to the bedside's control port (check the network, "
                             "or use the e-stop on the cart)", Severity.CRITICAL)

        def _paint_estop(self) -> None:
            p = self.estop_button.progress(time.monotonic_ns())
            latched = self.view is not None and self.view.estop_latched
            if self.estop_button.pressed and p < 1.0:
                text = f"HOLD… {p * 100:.0f} %"
            elif latched:
                text = "E-STOP LATCHED"
            else:
                text = "E-STOP\npress and hold 1 s"
            self.estop.setText(text)
            edge = "#ffffff" if self.estop_button.pressed else "#ffcccc"
            fill = f"qlineargradient(x1:0, y1:0, x2:1, y2:0, stop:0 #8e000e, stop:{max(p, 0.001):.3f} #8e000e, " \
                   f"stop:{min(p + 0.001, 1):.3f} #d70015, stop:1 #d70015)"
            self.estop.setStyleSheet(f"QPushButton {{ background: {fill}; color: white; font-size: 20pt; "
                                     f"font-weight: 900; border: 4px solid {edge}; border-radius: 10px; }}")

        @Slot()
        def silence_alarms(self) -> None:
            self.add_log(self.alarm_player.silence(time.monotonic_ns(), self.identity), Severity.WARNING)

        # -------------------------------------------------------------- receive and paint
        @Slot()
        def _drain(self) -> None:
            now = time.monotonic_ns()
            for _ in range(2000):
                try:
                    data = self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for line in self.model.receive(data, time.monotonic_ns()):
                    self.add_log(line.text, line.severity)
            for _ in range(100):
                try:
                    data = self.ctrl.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for text, sev in self.model.on_answer(data, time.monotonic_ns()):
                    self.add_log(text, sev)
            ping = self.model.ping_due(now)
            if ping is not None:
                with contextlib.suppress(zmq.Again):  # not connected yet: the path label says so
                    self.ctrl.send(ping, zmq.NOBLOCK)

        def video_status(self) -> VideoStatus:
            src = self.source
            if src is None:
                return VideoStatus(True, "no video (not connected)")
            view = src.view
            return VideoStatus(src.stale, src.stale_text, None if view is None else view.age_ms, src.fps or 0)

        @Slot()
        def refresh(self) -> None:
            now = time.monotonic_ns()
            voice_lost = self.voice_lost or bool(getattr(self.voice_panel, "link_lost", False))
            shown = self.view = self.model.refresh_station(now, self.video_status(), time.time(), voice_lost)
            self.banner.show_alarms(list(shown.monitor.alarms))
            for line in shown.monitor.log:
                self.add_log(line.text, line.severity)
            self.alarm_player.update(now, set(shown.conditions))
            for entry in self.alarm_player.sounder.drain_log():
                self.add_log(entry.text, Severity.WARNING)
            g = shown.guidance
            bg, fg = COLOURS[int(g.severity)]
            self.guide.setStyleSheet(f"background: {bg}; border-radius: 6px;")
            self.guide_title.setText(g.title)
            self.guide_title.setStyleSheet(f"color: {fg}; font-size: 20pt; font-weight: 800;")
            self.guide_text.setText(g.text)
            self.guide_text.setStyleSheet(f"color: {fg}; font-size: 12pt;")
            self.control_label.setText(f"In control: <b>{shown.control}</b>")
            if shown.path_ok:
                self.path_label.setText("e-stop path to the bedside: connected")
                self.path_label.setStyleSheet("color: #4cd964;")
            else:
                self.path_label.setText("e-stop path: NO ANSWER from the bedside — this button may not reach it; "
                                        "use the e-stop on the cart")
                self.path_label.setStyleSheet("color: #ff3b30; font-weight: 700;")
            self.reset.setEnabled(shown.may_reset)
            left = self.alarm_player.sounder.pause_left_s(now)
            self.silence.setText("Silence alarms" if left is None else f"Alarms paused {left:.0f} s")
            self._paint_estop()
            if self.source is not None and (self.hud.set_fields(shown.monitor.fields, shown.monitor.warn)
                                            | self.hud.set_arms(list(shown.monitor.arms))):
                self.pane.update()

        def _set_mode(self, mode: DisplayMode) -> None:
            self.prefs.set_display_mode(mode)
            self.pane.set_mode(mode)

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
            self._hold_timer.stop()
            self.alarm_player.close()
            if self.voice_panel is not None:
                self.voice_panel.close_link()
            if self.source is not None:
                self.source.close()
            for s in (self.sub, self.ctrl):
                if s is not None:
                    s.close(0)

    return StationWindow()


def run_station(args: argparse.Namespace) -> int:
    lower_priority(STATION_NICE)  # before any thread: below the control processes, above monitors
    from PySide6.QtCore import QTimer

    from base.runtime import announce_ready, write_json
    from console.ui.settings import Prefs

    app = make_app("teleop station")
    prefs = Prefs("station", Path(args.settings_dir) if args.settings_dir else None)
    win = build_window(args.cfg, prefs, args.title, sound=not args.no_sound)
    quit_on_sigterm(app)
    win.show()
    if args.seconds:
        QTimer.singleShot(int(args.seconds * 1000), win.close)
    announce_ready(station=args.cfg.link.bedside_host, identity=args.cfg.security.identity)
    try:
        app.exec()
    finally:
        win.shutdown()
    if args.stats:
        write_json(args.stats, {"alarms": [a.title for a in win.banner.alarms],
                                "guidance": win.view.guidance.title if win.view else None,
                                "bursts": [b.priority.name for b in win.alarm_player.sounder.bursts]})
    return 0
