"""The voice intercom panel, the same in the console window and the station: push-to-talk, open mic, mute,
volume, mic and speaker level meters, and the voice link's state ("VOICE LINK LOST" in red).

It shows a running `VoiceLink` (voice/link.py: its own thread and PortAudio callbacks in this process, never
the engine's 1 kHz loop) and polls its snapshot at 10 Hz. `link_lost` is True while the link is LOST (the
window sounds it as the medium-priority "voice lost" alarm; the arms never hold for it); `lost_changed`
fires on each change. With several network paths (link.paths) a line under the state says how each is
(the voice goes over all of them; the state above is their union). Without a link (voice.enabled = false,
or a device or key that cannot be used) the panel says why and stays inert. Factories: `console_panel(cfg,
parent)`, `station_panel(cfg, parent)`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QWidget,
)

from base.config import Config
from base.errors import UserError
from recording.recorder import recording_dir
from voice.levels import FLOOR_DB
from voice.link import VoiceLink
from voice.record import VoiceRecorder

log = logging.getLogger("console.ui.voice")

METER_FLOOR_DB = -60

STATE_TEXT = {
    "CONNECTING": ("VOICE: CONNECTING", "#ff9f0a", "waiting for the other end of the intercom"),
    "UP": ("VOICE: CONNECTED", "#30d158", "you can talk to the other site"),
    "LOST": ("VOICE LINK LOST", "#ff453a", "no voice either way: use the phone. The arms are not affected."),
}


def _meter() -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(METER_FLOOR_DB, 0)
    bar.setValue(METER_FLOOR_DB)
    bar.setTextVisible(False)
    bar.setFixedHeight(10)
    bar.setStyleSheet("QProgressBar { background: #222; border: 1px solid #444; } "
                      "QProgressBar::chunk { background: #30d158; }")
    return bar


class VoicePanel(QGroupBox):
    lost_changed = Signal(bool)

    def __init__(self, link: VoiceLink | None, why_off: str = "", parent: QWidget | None = None) -> None:
        super().__init__("Voice intercom", parent)
        self.link = link
        self.link_lost = False
        self.setStyleSheet("QGroupBox { color: #ddd; border: 1px solid #444; margin-top: 8px; padding: 4px; } "
                           "QGroupBox::title { subcontrol-origin: margin; left: 6px; }")
        g = QGridLayout(self)
        g.setContentsMargins(6, 10, 6, 6)
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.state.setMinimumHeight(52)
        g.addWidget(self.state, 0, 0, 1, 4)
        self.ptt = QPushButton("Push to talk")
        self.ptt.setToolTip("hold to talk to the other site")
        self.ptt.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ptt.setMinimumHeight(36)
        self.ptt.pressed.connect(lambda: self._call("set_ptt", True))
        self.ptt.released.connect(lambda: self._call("set_ptt", False))
        g.addWidget(self.ptt, 1, 0, 1, 2)
        self.open_mic = QCheckBox("Open mic")
        self.open_mic.setToolTip("send the microphone all the time (no need to hold Push to talk)")
        self.open_mic.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.open_mic.toggled.connect(lambda on: self._call("set_mode", "open" if on else "ptt"))
        g.addWidget(self.open_mic, 1, 2)
        self.mute = QCheckBox("Mute")
        self.mute.setToolTip("nothing from your microphone is sent, whatever else is set")
        self.mute.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mute.toggled.connect(lambda on: self._call("set_mute", on))
        g.addWidget(self.mute, 1, 3)
        g.addWidget(QLabel("Mic"), 2, 0)
        self.mic_meter = _meter()
        g.addWidget(self.mic_meter, 2, 1, 1, 3)
        g.addWidget(QLabel("Speaker"), 3, 0)
        self.spk_meter = _meter()
        g.addWidget(self.spk_meter, 3, 1, 1, 3)
        g.addWidget(QLabel("Volume"), 4, 0)
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 200)
        self.volume.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.volume.valueChanged.connect(lambda v: self._call("set_volume", v / 100))
        g.addWidget(self.volume, 4, 1, 1, 3)
        if link is not None:
            snap = link.snapshot()
            self.open_mic.setChecked(snap["mode"] == "open")
            self.volume.setValue(round(snap["volume"] * 100))
        else:
            self.volume.setValue(100)
            for w in (self.ptt, self.open_mic, self.mute, self.volume):
                w.setEnabled(False)
        self.why_off = why_off
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def _call(self, method: str, *args: Any) -> None:
        if self.link is not None:
            getattr(self.link, method)(*args)

    def snapshot(self) -> dict | None:
        return None if self.link is None else self.link.snapshot()

    @Slot()
    def refresh(self) -> None:
        snap = self.snapshot()
        if snap is None:
            self.state.setText(f"VOICE OFF — {self.why_off}")
            self.state.setStyleSheet("color: #888;")
            return
        title, color, text = STATE_TEXT[snap["link"]]
        talking = " · you are heard" if snap["talking"] and snap["link"] == "UP" else ""
        paths = paths_line(snap.get("paths"))
        self.state.setText(f"<b>{title}</b>{talking}<br><span style='color:#aaa'>{text}</span>"
                           + (f"<br><span style='color:#aaa'>{paths}</span>" if paths else ""))
        self.state.setStyleSheet(f"color: {color};")
        for bar, db in ((self.mic_meter, snap["mic_db"]), (self.spk_meter, snap["spk_db"])):
            bar.setValue(int(max(METER_FLOOR_DB, db if db > FLOOR_DB else METER_FLOOR_DB)))
        self.ptt.setStyleSheet("QPushButton { background: #0a84ff; color: white; font-weight: bold; }"
                               if snap["talking"] else "")
        lost = snap["link"] == "LOST"
        if lost != self.link_lost:
            self.link_lost = lost
            self.lost_changed.emit(lost)

    def close_link(self) -> None:
        """Stop the voice link and close its recording (the window is closing)."""
        self.timer.stop()
        if self.link is not None:
            self.link.close()
            if self.link.recorder is not None:
                self.link.recorder.close()
            self.link = None


def paths_line(paths: list[dict[str, Any]] | None) -> str:
    """'path0 UP · path1 LOST 812 ms ago' (several paths; empty with one): each path's state, from the snapshot."""
    if not paths or len(paths) < 2:
        return ""
    return " · ".join(f"path{p['path']} {p['state']}" + (f" {p['heard_ms_ago']:.0f} ms ago" if p["state"] == "LOST"
                                                         and p["heard_ms_ago"] is not None else "") for p in paths)


def _panel(cfg: Config, side: str, parent: QWidget | None) -> VoicePanel:
    if not cfg.voice.enabled:
        return VoicePanel(None, "voice.enabled is false (docs/operations.md, Audio)", parent)
    recorder = None
    try:
        if cfg.recording.enabled and cfg.voice.record:  # voice is recorded at both ends (docs/recording.md)
            recorder = VoiceRecorder(recording_dir(cfg), side, cfg.recording.chunk_ms)
    except UserError as exc:
        log.error("voice intercom unavailable: %s", exc)
        return VoicePanel(None, str(exc), parent)
    link = VoiceLink(cfg, side, recorder=recorder)
    try:
        link.start()
    except (UserError, OSError) as exc:
        link.close()
        if recorder is not None:
            recorder.close()
            recorder.path.unlink(missing_ok=True)
        log.error("voice intercom unavailable: %s", exc)
        return VoicePanel(None, str(exc), parent)
    return VoicePanel(link, "", parent)


def console_panel(cfg: Config, parent: QWidget | None = None) -> VoicePanel:
    """The surgeon's end: connects to the station's voice endpoint."""
    return _panel(cfg, "console", parent)


def station_panel(cfg: Config, parent: QWidget | None = None) -> VoicePanel:
    """The on-site team's end: binds voice.port with the bedside's keys (the station runs on the bedside host)."""
    return _panel(cfg, "station", parent)
