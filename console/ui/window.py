"""The surgeon's console window: stereo picture with HUD, alarms, controls, event log.

It displays the engine's state and sends intents; it decides nothing about safety (the engine holds the
arms on a vanished heartbeat, a stale picture, a lost link…, and this window shows those verdicts).

Inputs, one way to do each thing: the keyboard/mouse master (console/masters/keyboard.py) is fed every
key and mouse event of this window; each on-screen button presses the same master key. Momentary keys
(engage, disengage, e-stop) are held at least MIN_PRESS_S so the 250 Hz master stream cannot miss a quick
click. The window also binds `A` (align: set each hand's orientation to the tool's, which a keyboard cannot
do by feel) and `F11` (full screen). Losing the window's focus releases every key and presence.

docs/user-guide.md explains every indicator and control.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from base.config import Config
from console.alarm_audio import AlarmPlayer
from console.alarm_sound import Condition, conditions_of
from console.indicators import loop_indicator
from console.ui.hud import AlarmBanner, EventLog, Hud, format_engine_event
from console.ui.links import EngineLink, MasterStreamer
from console.ui.settings import ConnectionDialog, Prefs
from console.ui.status import Severity, arm_lines, console_alarms, console_fields, picture_text
from console.ui.video import FrameSource, VideoPane
from console.ui.voice_panel import console_panel
from video.compositor import DisplayMode
from video.receiver import FrameView

log = logging.getLogger("console.ui")

MIN_PRESS_S = 0.15
REFRESH_HZ = 15
MOMENTARY = ("return", "backspace", "escape", "s")
SELECTABLE_MASTERS = (("keyboard", "Keyboard/mouse"), ("spacemouse", "SpaceMouse"), ("bridge", "Haptic bridge"))
"""The masters a surgeon may pick in the window (console.master's device choices; docs/masters.md). The scripted
ones are for tests and demos: shown when one drives, not offered."""
QT_KEYS: dict[int, str] = {
    Qt.Key.Key_Tab: "tab", Qt.Key.Key_1: "1", Qt.Key.Key_2: "2",
    Qt.Key.Key_Left: "left", Qt.Key.Key_Right: "right", Qt.Key.Key_Up: "up", Qt.Key.Key_Down: "down",
    Qt.Key.Key_PageUp: "pageup", Qt.Key.Key_PageDown: "pagedown",
    Qt.Key.Key_Q: "q", Qt.Key.Key_E: "e", Qt.Key.Key_Z: "z", Qt.Key.Key_X: "x",
    Qt.Key.Key_Space: "space", Qt.Key.Key_C: "c", Qt.Key.Key_V: "v", Qt.Key.Key_S: "s",
    Qt.Key.Key_Return: "return", Qt.Key.Key_Enter: "return", Qt.Key.Key_Backspace: "backspace",
    Qt.Key.Key_Escape: "escape",
}
HELP = ("Space presence · A align · Enter engage · Backspace disengage · C clutch · V camera · S swap arm · "
        "drag move · right-drag rotate · wheel depth · Q/E roll · Z/X grip · Tab hand · Esc E-STOP")


def _button(text: str, tip: str, checkable: bool = False) -> QPushButton:
    b = QPushButton(text)
    b.setToolTip(tip)
    b.setCheckable(checkable)
    b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    b.setMinimumHeight(36)
    return b


class EyeWindow(QWidget):
    """One eye, full screen on its own display (per-eye mode), with the alarm banner over it."""

    def __init__(self, source: FrameSource, eye: DisplayMode, title: str) -> None:
        super().__init__()
        self.setWindowTitle(title)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.banner = AlarmBanner(sound=False)
        v.addWidget(self.banner)
        self.pane = VideoPane(source, eye)
        v.addWidget(self.pane, 1)
        self.setStyleSheet("background: black;")


class ConsoleWindow(QMainWindow):
    def __init__(self, cfg: Config, prefs: Prefs, engine=None, reconnect=None, sound: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.prefs = prefs
        self.engine = engine  # base.procs.Role of the engine process, for its exit status
        self.reconnect_fn = reconnect  # callable(list[str] overrides) -> Config, restarts the engine
        self.setWindowTitle(f"teleop console — bedside {cfg.link.bedside_host}")
        c = cfg.console
        self.link = EngineLink(c.ui_state_port, c.ui_intent_port, parent=self)
        self.streamer = MasterStreamer(c.master_port, presence=c.presence, presence_idle_s=c.presence_idle_s)
        self._idle_ended = 0
        # Alarms you can hear (console/alarm_sound.py); sound=False (tests, screenshots): same schedule, no device.
        self.alarm_player = AlarmPlayer.from_config(c, None if sound else "null")
        self.voice_lost = False
        """Set by the voice panel when the voice link is lost: it sounds as a medium-priority alarm."""
        self.source = FrameSource(cfg, self.link.offset_ns, on_painted=self._report_painted, parent=self)
        self._pressed_at: dict[str, float] = {}
        self._scale_edit_mono = 0.0
        self._scale_sent = False
        self._engine_exit_logged = False
        self._was_active = False
        self.eye_windows: list[EyeWindow] = []
        self.closed = False

        # ------------------------------------------------------------------ layout
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(4, 4, 4, 4)
        v.setSpacing(4)
        self.banner = AlarmBanner(sound=False)  # the alarm player sounds, not the banner's system beep
        v.addWidget(self.banner)
        self.pane = VideoPane(self.source, prefs.display_mode())
        self.pane.swap_eyes = prefs.swap_eyes()
        self.hud = Hud()
        self.pane.hud = self.hud
        self.pane.drag.connect(self._on_drag)
        self.pane.wheel_steps.connect(self._on_wheel)
        self.log = EventLog()
        self.voice_panel = console_panel(cfg)
        self.voice_panel.lost_changed.connect(self._on_voice_lost)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.log)
        bottom.addWidget(self.voice_panel)
        bottom.setStretchFactor(0, 3)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.pane)
        split.addWidget(bottom)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        split.setSizes([800, 120])
        v.addWidget(split, 1)
        controls, settings = self._controls()
        v.addLayout(controls)
        self.help = QLabel(HELP)
        self.help.setStyleSheet("color: #888; font-size: 9pt;")
        self.help.setWordWrap(True)
        settings.insertWidget(0, self.help, 1)
        v.addLayout(settings)
        self.setCentralWidget(central)
        self.setStyleSheet("QMainWindow { background: #1c1c1e; } QLabel, QCheckBox { color: #ddd; }")
        geo = prefs.geometry()
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 900)

        # ------------------------------------------------------------------ wiring
        self.link.state.connect(self._on_state)
        self.link.event.connect(self._on_event)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(1000 // REFRESH_HZ)
        self._refresh_timer.timeout.connect(self._refresh)
        self._refresh_timer.start()
        QApplication.instance().installEventFilter(self)
        self.link.start()
        self._apply_mode(self.pane.mode)
        self.log.add(f"console window started; bedside {cfg.link.bedside_host}:{cfg.link.control_port}, "
                     f"video :{cfg.link.video_port}; settings {prefs.path}")
        self._refresh()

    # ---------------------------------------------------------------------- controls
    def _controls(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """(controls row, settings row)."""
        row, row2 = QHBoxLayout(), QHBoxLayout()
        b = self.buttons = {
            "engage": _button("Engage", "start following (Enter)"),
            "disengage": _button("Disengage", "stop following and release the arms (Backspace)"),
            "clutch": _button("Clutch", "tool holds while you reposition your hand (C, held)", checkable=True),
            "camera": _button("Camera", "hands drive the endoscope (V, held)", checkable=True),
            "swap": _button("Swap arm", "arm-swap pedal: your swap hand takes the idle instrument, which you then "
                            "align; the one it leaves holds (S)"),
            "presence": _button("Present", "operator presence: Space toggles it; it ends when this window loses "
                                f"focus or after {self.cfg.console.presence_idle_s:g} s without input"
                                if self.cfg.console.presence == "toggle" else
                                "operator presence: only while held (Space or this button)",
                                checkable=self.cfg.console.presence == "toggle"),
            "silence": _button("Silence alarms", "pause the alarm sound for "
                               f"{self.cfg.console.alarm_pause_s:g} s (a new alarm still sounds); logged"),
            "align": _button("Align", "set each hand's orientation to its tool's (A)"),
            "reset": _button("Reset E-stop", "clear a latched console e-stop (then engage again)"),
            "connect": _button("Connection…", "bedside address and keys"),
            "estop": _button("E-STOP (Esc)", "emergency stop: every arm holds at once (Esc)"),
        }
        b["estop"].setMinimumSize(180, 64)
        b["estop"].setStyleSheet("QPushButton { background: #d70015; color: white; font-size: 18pt; "
                                 "font-weight: 900; border: 3px solid #fff; border-radius: 8px; }"
                                 "QPushButton:pressed { background: #8e000e; }")
        for name, key in (("engage", "return"), ("disengage", "backspace"), ("estop", "escape"), ("swap", "s")):
            b[name].pressed.connect(lambda k=key: self.key_down(k))
            b[name].released.connect(lambda k=key: self.key_up(k))
        b["clutch"].toggled.connect(lambda on: self._set_held("c", on))
        b["camera"].toggled.connect(lambda on: self._set_held("v", on))
        if self.cfg.console.presence == "toggle":
            b["presence"].toggled.connect(self.set_presence)
        else:  # held: present only while the button (or Space) is down
            b["presence"].pressed.connect(lambda: self.key_down("space"))
            b["presence"].released.connect(lambda: self.key_up("space"))
        b["silence"].clicked.connect(self.silence_alarms)
        b["align"].clicked.connect(self.align)
        b["reset"].clicked.connect(self.reset_estop)
        b["connect"].clicked.connect(self.open_connection_dialog)
        for name in ("presence", "engage", "disengage", "clutch", "camera", "swap", "align", "silence"):
            row.addWidget(b[name])
        row.addSpacing(12)
        row.addWidget(QLabel("Scale"))
        t = self.cfg.teleop
        self.scale_box = QDoubleSpinBox()
        self.scale_box.setRange(t.scale_min, t.scale_max)
        self.scale_box.setSingleStep(0.05)
        self.scale_box.setDecimals(2)
        self.scale_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        saved = self.prefs.scale()
        self.scale_box.setValue(saved if saved is not None and t.scale_min <= saved <= t.scale_max
                                else t.motion_scale)
        self.scale_box.valueChanged.connect(self._on_scale)
        row.addWidget(self.scale_box)
        row2.addWidget(QLabel("Display"))
        self.mode_box = QComboBox()
        self.mode_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for m in DisplayMode:
            self.mode_box.addItem(m.label, m.value)
        self.mode_box.setCurrentIndex(list(DisplayMode).index(self.pane.mode))
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_display_mode(list(DisplayMode)[i]))
        row2.addWidget(self.mode_box)
        self.swap_box = QCheckBox("Swap eyes")
        self.swap_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.swap_box.setChecked(self.pane.swap_eyes)
        self.swap_box.toggled.connect(self._on_swap)
        row2.addWidget(self.swap_box)
        row2.addWidget(QLabel("Master"))
        self.master_box = QComboBox()
        self.master_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.master_box.setToolTip("the one input that drives the arms; switching holds every arm until you "
                                   "align and engage again (logged)")
        for kind, label in SELECTABLE_MASTERS:
            self.master_box.addItem(label, kind)
        self._show_master(self._master_kind)
        self.master_box.activated.connect(self._on_master_chosen)  # the surgeon's choice only, never a sync
        row2.addWidget(self.master_box)
        row2.addWidget(b["connect"])
        row.addStretch(1)
        row.addWidget(b["reset"])
        row.addWidget(b["estop"])
        return row, row2

    # ---------------------------------------------------------------------- master input
    def key_down(self, key: str) -> None:
        self._pressed_at[key] = time.monotonic()
        self.streamer.with_master(lambda m: m.key_down(key))

    def key_up(self, key: str) -> None:
        """Release `key`; momentary keys stay down at least MIN_PRESS_S so the stream cannot miss them."""
        held = time.monotonic() - self._pressed_at.get(key, 0.0)
        if key in MOMENTARY and held < MIN_PRESS_S:
            QTimer.singleShot(int((MIN_PRESS_S - held) * 1000) + 1, lambda: self._release(key))
        else:
            self._release(key)

    def _release(self, key: str) -> None:
        self.streamer.with_master(lambda m: m.key_up(key))

    def press(self, key: str) -> None:
        """A momentary press of `key` (engage, disengage, e-stop, arm swap) as if clicked."""
        self.key_down(key)
        self.key_up(key)

    def _set_held(self, key: str, on: bool) -> None:
        if on:
            self.key_down(key)
        else:
            self._release(key)

    @Slot(bool)
    def set_presence(self, on: bool) -> None:
        def apply(m) -> None:
            if m.present_latched != on:
                m.key_down("space")  # sticky presence: a press toggles it
                m.key_up("space")
        self.streamer.with_master(apply)

    @Slot()
    def align(self) -> None:
        """Snap each hand's orientation to its tool's (the controller's align_target), where it has one."""
        t = (self.link.last_state or {}).get("teleop") or {}
        arms = t.get("arms") or {}
        hands = t.get("hands") or {"right": "PSM1", "left": "PSM2"}
        for hand, name in enumerate((hands.get("right"), hands.get("left"))):
            q = (arms.get(name) or {}).get("align_target")
            if isinstance(q, list | tuple) and len(q) == 4:
                self.streamer.with_master(lambda m, h=hand, q=q: m.snap(h, tuple(float(x) for x in q)))

    @Slot(float, float, bool, bool)
    def _on_drag(self, dx: float, dy: float, left: bool, right: bool) -> None:
        self.streamer.with_master(lambda m: m.mouse_drag(dx, dy, left, right))

    @Slot(float)
    def _on_wheel(self, steps: float) -> None:
        self.streamer.with_master(lambda m: m.wheel(steps))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        et = event.type()
        if et not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or not isinstance(obj, QWidget):
            return False
        win = obj.window()
        if win is not self and win not in self.eye_windows:
            return False  # dialogs keep their keys
        assert isinstance(event, QKeyEvent)
        if event.isAutoRepeat():
            return True
        k = event.key()
        if et == QEvent.Type.KeyPress:
            if k == Qt.Key.Key_A:
                self.align()
                return True
            if k == Qt.Key.Key_F11:
                self.setWindowState(self.windowState() ^ Qt.WindowState.WindowFullScreen)
                return True
        name = QT_KEYS.get(k)
        if name is None:
            return False
        if et == QEvent.Type.KeyPress:
            self.key_down(name)
        else:
            self.key_up(name)
        return True

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.ActivationChange:
            active = self.isActiveWindow() or any(w.isActiveWindow() for w in self.eye_windows)
            if self._was_active and not active:
                self.streamer.with_master(lambda m: m.release_all())
                self.log.add("window lost focus: every key and presence released", Severity.WARNING)
            self._was_active = active
        super().changeEvent(event)

    # ---------------------------------------------------------------------- intents and preferences
    @Slot(float)
    def _on_scale(self, value: float) -> None:
        self._scale_edit_mono = time.monotonic()
        self.link.set_scale(value)
        self.prefs.set_scale(value)

    @Slot()
    def reset_estop(self) -> None:
        self.link.reset_estop()
        self.log.add("e-stop reset requested")

    @Slot()
    def silence_alarms(self) -> None:
        """Audio paused for console.alarm_pause_s (the sounder's rule); logged with who pressed it."""
        self.log.add(self.alarm_player.silence(time.monotonic_ns(), self.cfg.security.identity), Severity.WARNING)

    def set_display_mode(self, mode: DisplayMode) -> None:
        if mode != self.pane.mode:
            self.prefs.set_display_mode(mode)
            self.log.add(f"display mode: {mode.label}")
        idx = list(DisplayMode).index(mode)
        if self.mode_box.currentIndex() != idx:
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(idx)
            self.mode_box.blockSignals(False)
        self._apply_mode(mode)

    def _apply_mode(self, mode: DisplayMode) -> None:
        self.pane.set_mode(mode)
        if mode == DisplayMode.PER_EYE and not self.eye_windows:
            self._open_eye_windows()
        elif mode != DisplayMode.PER_EYE and self.eye_windows:
            for w in self.eye_windows:
                w.close()
            self.eye_windows = []

    def _open_eye_windows(self) -> None:
        screens = QGuiApplication.screens()
        self.eye_windows = [EyeWindow(self.source, DisplayMode.LEFT, "left eye"),
                            EyeWindow(self.source, DisplayMode.RIGHT, "right eye")]
        for w in self.eye_windows:
            w.pane.swap_eyes = self.pane.swap_eyes
            w.pane.hud = self.hud
            w.pane.drag.connect(self._on_drag)
            w.pane.wheel_steps.connect(self._on_wheel)
        if len(screens) >= 2:
            for w, screen in zip(self.eye_windows, screens[-2:], strict=True):
                w.setScreen(screen)
                w.setGeometry(screen.geometry())
                w.showFullScreen()
        else:
            self.log.add("per-eye mode with one screen: the eye windows open side by side, not full screen",
                         Severity.WARNING)
            g = self.geometry()
            for i, w in enumerate(self.eye_windows):
                w.resize(g.width() // 2, g.height() // 2)
                w.move(g.x() + i * g.width() // 2, g.y())
                w.show()

    @Slot(bool)
    def _on_swap(self, on: bool) -> None:
        self.prefs.set_swap_eyes(on)
        self.pane.set_mode(self.pane.mode, swap_eyes=on)
        for w in self.eye_windows:
            w.pane.set_mode(w.pane.mode, swap_eyes=on)

    @Slot()
    def open_connection_dialog(self) -> None:
        dlg = ConnectionDialog(self.cfg, self)
        if dlg.exec() != ConnectionDialog.DialogCode.Accepted:
            return
        self.prefs.set_connection(dlg.values())
        self.prefs.sync()
        if self.reconnect_fn is None:
            self.log.add("connection saved; it applies at the next start", Severity.WARNING)
            return
        self.log.add("reconnecting: restarting the control process", Severity.WARNING)
        try:
            cfg = self.reconnect_fn(self.prefs.connection_overrides())
        except Exception as exc:  # a bad address or key must be shown, not crash the window
            self.log.add(f"reconnect failed: {exc}", Severity.CRITICAL)
            return
        self.cfg = cfg
        self.source.restart(cfg)
        self.setWindowTitle(f"teleop console — bedside {cfg.link.bedside_host}")

    # ---------------------------------------------------------------------- engine state
    def _report_painted(self, view: FrameView) -> None:
        self.link.report_frame(view.frame_id, view.capture_ns, None, view.source_seq)

    @Slot(dict)
    def _on_state(self, state: dict[str, Any]) -> None:
        video = state.get("video") or {}
        self.source.set_engine_verdict(bool(video.get("ok")), str(video.get("reason") or ""))
        t = state.get("teleop") or {}
        scale = t.get("scale")
        if not self._scale_sent:
            self._scale_sent = True
            if scale is None or abs(scale - self.scale_box.value()) > 1e-6:
                self.link.set_scale(self.scale_box.value())  # the remembered scale
                self._scale_edit_mono = time.monotonic()
        elif (isinstance(scale, int | float) and abs(scale - self.scale_box.value()) > 1e-6
              and time.monotonic() - self._scale_edit_mono > 1.0):
            self.scale_box.blockSignals(True)
            self.scale_box.setValue(scale)  # the engine's value wins (clamped, changed elsewhere)
            self.scale_box.blockSignals(False)

    @Slot(dict)
    def _on_event(self, ev: dict[str, Any]) -> None:
        text, sev = format_engine_event(ev)
        self.log.add(text, sev)

    @property
    def state(self) -> dict[str, Any] | None:
        return self.link.last_state

    def arm_state(self, name: str) -> str | None:
        return (((self.state or {}).get("teleop") or {}).get("arms") or {}).get(name, {}).get("state")

    def hand_arms(self) -> tuple[str, str]:
        """The instruments the right and left hands drive now (the engine's hand assignment, console/hands.py)."""
        hands = ((self.state or {}).get("teleop") or {}).get("hands") or {}
        return hands.get("right", "PSM1"), hands.get("left", "PSM2")

    @Slot()
    def _refresh(self) -> None:
        state = self.link.last_state
        view = self.source.view
        alarms = console_alarms(state, self.link.state_age_s(), view is not None and view.stale,
                                self.source.stale_text)
        raised, cleared = self.banner.show_alarms(alarms)
        for w in self.eye_windows:
            w.banner.show_alarms(alarms)
        sounding = conditions_of(alarms) | ({Condition.VOICE_LOST} if self.voice_lost else set())
        self.alarm_player.update(time.monotonic_ns(), sounding)
        for entry in self.alarm_player.sounder.drain_log():
            self.log.add(entry.text, Severity.WARNING)
        for a in raised:
            self.log.add(f"ALARM {a.title}: {a.text}", a.severity)
        for a in cleared:
            self.log.add(f"cleared: {a.title}")
        age = None if view is None else view.age_ms
        fields = console_fields(state, age, self.source.fps, f"{self.cfg.link.bedside_host}")
        fields["picture"] = picture_text(None if view is None else view.picture())
        keys = {a.key for a in alarms if a.severity is Severity.CRITICAL}
        t = (state or {}).get("teleop") or {}
        warn = {
            "link": Severity.CRITICAL if keys & {"link", "engine"} else Severity.INFO,
            "video": Severity.CRITICAL if "video" in keys else Severity.INFO,
            "rtt": {"warn": Severity.WARNING, "hard": Severity.CRITICAL}.get(
                (t.get("latency") or {}).get("level", ""), Severity.INFO),
            "presence": Severity.INFO if t.get("operator_present") else Severity.WARNING,
            "limits": Severity.WARNING if "none" not in fields.get("limits", "none") else Severity.INFO,
            "loop": loop_indicator((state or {}).get("loop") or {})[1],
            "picture": Severity.WARNING if fields["picture"] else Severity.INFO,  # a lowered picture
        }
        changed = self.hud.set_fields(fields, warn)
        changed |= self.hud.set_history((state or {}).get("rtt_history_ms") or [])
        changed |= self.hud.set_arms(arm_lines(t))
        if changed:
            self.pane.update()
            for w in self.eye_windows:
                w.pane.update()
        self._sync_buttons(state)
        if self.engine is not None and not self._engine_exit_logged and self.engine.proc.poll() is not None:
            self._engine_exit_logged = True
            tail = self.engine.stderr_text().strip().splitlines()[-3:]
            self.log.add(f"console engine exited with code {self.engine.proc.returncode}: " + " | ".join(tail),
                         Severity.CRITICAL)

    @property
    def _master_kind(self) -> str:
        """The master that drives: the engine's word once it has spoken, the configured one before."""
        told = (self.state or {}).get("master_kind")
        return told or ("keyboard" if self.cfg.console.master == "auto" else self.cfg.console.master)

    def _show_master(self, kind: str) -> None:
        """Show the master that drives (the engine's word): a scripted one is listed as such, never hidden."""
        i = self.master_box.findData(kind)
        if i < 0:
            self.master_box.addItem(f"{kind} (scripted)", kind)
            i = self.master_box.count() - 1
        if i != self.master_box.currentIndex():
            self.master_box.blockSignals(True)
            self.master_box.setCurrentIndex(i)
            self.master_box.blockSignals(False)

    @Slot(int)
    def _on_master_chosen(self, index: int) -> None:
        kind = self.master_box.itemData(index)
        current = self._master_kind
        if kind == current:
            return
        self.link.select_master(kind)
        self.log.add(f"master: switching from {current} to {kind}: every arm holds; align and engage again",
                     Severity.WARNING)

    def _sync_buttons(self, state: dict[str, Any] | None) -> None:
        held, present, idle_ended = self.streamer.with_master(
            lambda m: (set(m.held), m.present_latched if m.sticky_presence else "space" in m.held, m.idle_ended))
        if idle_ended != self._idle_ended:
            self._idle_ended = idle_ended
            self.log.add(f"presence ended: no key or mouse input for {self.cfg.console.presence_idle_s:g} s; "
                         "press Present (Space) when you are back, then engage", Severity.WARNING)
        left = self.alarm_player.sounder.pause_left_s(time.monotonic_ns())
        self.buttons["silence"].setText("Silence alarms" if left is None else f"Alarms paused {left:.0f} s")
        for name, on in (("clutch", "c" in held), ("camera", "v" in held), ("presence", present)):
            btn = self.buttons[name]
            if btn.isChecked() != on:
                btn.blockSignals(True)
                btn.setChecked(on)
                btn.blockSignals(False)
        t = (state or {}).get("teleop") or {}
        self.buttons["reset"].setEnabled(bool(t.get("estop")))
        self._show_master(self._master_kind)  # a refused switch returns the box to the master that drives
        self.buttons["presence"].setText("Present ✓" if present else "Present")

    @Slot(bool)
    def _on_voice_lost(self, lost: bool) -> None:
        """The voice panel's link state: LOST sounds the "voice lost" alarm; the arms are not affected."""
        self.voice_lost = lost
        self.link.voice_state("LOST" if lost else "UP", "voice link lost: the other site cannot hear you (arms not "
                              "affected)" if lost else "voice link back")
        self.log.add("VOICE LINK LOST: the other site cannot hear you (arms not affected)" if lost else
                     "voice link back", Severity.WARNING if lost else Severity.INFO)

    # ---------------------------------------------------------------------- shutdown
    def closeEvent(self, event: QCloseEvent) -> None:
        self.prefs.set_geometry(self.saveGeometry())
        self.prefs.sync()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop heartbeats first (the engine then holds), then the streams."""
        if self.closed:
            return
        self.closed = True
        self.source.on_painted = None  # a last paint while closing must not report on a closed socket
        QApplication.instance().removeEventFilter(self)
        self._refresh_timer.stop()
        self.link.stop_heartbeat()
        for w in self.eye_windows:
            w.close()
        self.streamer.with_master(lambda m: m.release_all())
        self.streamer.close()
        self.source.close()
        self.link.close()
        self.voice_panel.close_link()
        self.alarm_player.close()
