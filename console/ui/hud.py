"""Heads-up display, alarm banner and event log: Qt widgets that show what console/ui/status.py (console
window) and console/monitor_model.py (monitor) say.

The HUD is painted over the video by the pane from two small cached images, rebuilt only when a text
changes; its texts stay readable from the `Hud` object, so tests read exactly what the surgeon reads.

Alarms are impossible to miss: a full-width banner in red (critical) or amber (warning) with the alarm's
name in large capitals and what it means, flashing while a critical alarm is new, a beep where the
platform has one (QApplication.beep; never the only cue), and the stale picture itself is marked
(console/ui/video.py). Every alarm change also goes to the event log.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QApplication, QLabel, QPlainTextEdit, QSizePolicy, QWidget

from console.indicators import Alarm, ArmLine, Severity, alarm_changes
from console.ui.status import sparkline_points

COLOURS = {Severity.INFO: "#e8f5e9", Severity.WARNING: "#ffb300", Severity.CRITICAL: "#ff3b30"}
STATE_COLOURS = {"FOLLOWING": "#4cd964", "CLUTCHED": "#5ac8fa", "CAMERA": "#5ac8fa", "ALIGNING": "#ffb300",
                 "HELD": "#ff3b30", "DISABLED": "#c7c7cc", "HOLDING": "#ffb300"}


CHIP_BG = QColor(0, 0, 0, 170)
PAD_X, PAD_Y, GAP, MARGIN = 7, 3, 6, 8
SPARK_W = 150


class Hud:
    """The HUD's content (text per field and per arm, RTT history) and its rendering.

    The video pane paints it over the picture (console/ui/video.py). It is rendered into two small
    transparent images (top block: link/RTT/offset/video/picture/scale and session/presence/limits/loop; bottom block:
    one line per arm) only when something changed, at most at the window's refresh rate; each video frame
    then blits them. QLabel chips over the video cost ≈10 % of a core at 60 fps (each one restyled and
    repainted with every frame): that time is taken from the machine the control loop runs on.
    """

    TOP = (("link", "rtt", "offset", "video", "picture", "scale"), ("session", "presence", "limits", "loop"))

    def __init__(self, point_size: int = 11) -> None:
        self.fields: dict[str, tuple[str, Severity]] = {}
        self.arms: dict[str, tuple[str, str]] = {}  # name -> (text, colour)
        self.history: list[float | None] = []
        self.version = 0
        self.font = QFont()
        self.font.setPointSize(point_size)
        self.arm_font = QFont(self.font)
        self.arm_font.setPointSize(point_size + 1)
        self.arm_font.setBold(True)
        self._cache: dict[tuple, tuple[QImage, QImage]] = {}

    # ------------------------------------------------------------------ content
    def set_fields(self, fields: dict[str, str], warn: dict[str, Severity] | None = None) -> bool:
        warn = warn or {}
        new = dict(self.fields)
        for k, text in fields.items():
            new[k] = (text, warn.get(k, Severity.INFO))
        return self._update("fields", new)

    def set_arms(self, lines: list[ArmLine]) -> bool:
        new = {line.name: (f"{line.name}  {line.state}  ·  {line.text}",
                           STATE_COLOURS.get(line.state, COLOURS[line.severity])) for line in lines}
        return self._update("arms", new)

    def set_history(self, history: list[float | None]) -> bool:
        return self._update("history", list(history))

    def _update(self, attr: str, value) -> bool:
        if getattr(self, attr) == value:
            return False
        setattr(self, attr, value)
        self.version += 1
        self._cache.clear()
        return True

    def text_of(self, key: str) -> str:
        return self.fields.get(key, ("", Severity.INFO))[0]

    def arm_text(self, name: str) -> str:
        return self.arms.get(name, ("", ""))[0]

    def text(self) -> str:
        """Everything the HUD shows, one item per line (tests, logs, screen readers)."""
        return "\n".join([t for t, _ in self.fields.values() if t] + [t for t, _ in self.arms.values()])

    # ------------------------------------------------------------------ rendering
    def images(self, width: int, dpr: float) -> tuple[QImage, QImage]:
        """(top block, bottom block), transparent, in device pixels with `dpr` set."""
        key = (width, dpr)  # several panes (per-eye windows) share one HUD; _update() clears on any change
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.clear()
            self._cache[key] = (self._render_top(width, dpr), self._render_arms(width, dpr))
        return self._cache[key]

    def _canvas(self, w: int, h: int, dpr: float) -> QImage:
        img = QImage(max(1, int(w * dpr)), max(1, int(h * dpr)), QImage.Format.Format_ARGB32_Premultiplied)
        img.setDevicePixelRatio(dpr)
        img.fill(Qt.GlobalColor.transparent)
        return img

    def _chip(self, p: QPainter, x: int, y: int, text: str, colour: str, fm: QFontMetrics) -> int:
        w, h = fm.horizontalAdvance(text) + 2 * PAD_X, fm.height() + 2 * PAD_Y
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(CHIP_BG)
        p.drawRoundedRect(QRectF(x, y, w, h), 4, 4)
        p.setPen(QColor(colour))
        p.drawText(QPointF(x + PAD_X, y + PAD_Y + fm.ascent()), text)
        return w

    def _render_top(self, width: int, dpr: float) -> QImage:
        fm = QFontMetrics(self.font)
        row_h = fm.height() + 2 * PAD_Y
        img = self._canvas(width, MARGIN + 2 * (row_h + GAP), dpr)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for r, keys in enumerate(self.TOP):
            x, y = MARGIN, MARGIN + r * (row_h + GAP)
            for k in keys:
                text, sev = self.fields.get(k, ("", Severity.INFO))
                if not text:
                    continue
                f = QFont(self.font)
                f.setBold(sev is not Severity.INFO)
                p.setFont(f)
                x += self._chip(p, x, y, text, COLOURS[sev], QFontMetrics(f)) + GAP
                if k == "rtt":
                    self._sparkline(p, QRectF(x, y, SPARK_W, row_h))
                    x += SPARK_W + GAP
        p.end()
        return img

    def _sparkline(self, p: QPainter, r: QRectF) -> None:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(CHIP_BG)
        p.drawRoundedRect(r, 4, 4)
        pen = QPen(QColor("#5ac8fa"))
        pen.setWidthF(1.5)
        p.setPen(pen)
        for seg in sparkline_points(self.history, r.width() - 6, r.height() - 6):
            pts = [QPointF(r.x() + 3 + x, r.y() + 3 + y) for x, y in seg]
            if len(pts) == 1:
                p.drawPoint(pts[0])
            else:
                p.drawPolyline(QPolygonF(pts))

    def _render_arms(self, width: int, dpr: float) -> QImage:
        fm = QFontMetrics(self.arm_font)
        row_h = fm.height() + 2 * PAD_Y
        n = len(self.arms)
        img = self._canvas(width, max(1, n * (row_h + GAP) + MARGIN), dpr)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setFont(self.arm_font)
        for i, (text, colour) in enumerate(self.arms.values()):
            self._chip(p, MARGIN, i * (row_h + GAP), text, colour, fm)
        p.end()
        return img


class AlarmBanner(QLabel):
    """The alarm banner: hidden when all is well; the most severe alarm in large type, then the others."""

    def __init__(self, parent: QWidget | None = None, sound: bool = True) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.alarms: list[Alarm] = []
        self.sound = sound
        self.beeps = 0
        self._flash = False
        self._flash_until = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(400)
        self._timer.timeout.connect(self._blink)
        self.hide()

    @property
    def keys(self) -> set[str]:
        return {a.key for a in self.alarms}

    @property
    def severity(self) -> Severity | None:
        return self.alarms[0].severity if self.alarms else None

    def show_alarms(self, alarms: list[Alarm]) -> tuple[list[Alarm], list[Alarm]]:
        """Show `alarms` (most severe first); returns (raised, cleared) compared with before."""
        raised, cleared = alarm_changes(self.alarms, alarms)
        changed = [(a.key, a.title, a.text, a.severity) for a in alarms] != \
                  [(a.key, a.title, a.text, a.severity) for a in self.alarms]
        self.alarms = list(alarms)
        if any(a.severity is Severity.CRITICAL for a in raised):
            self._flash_until = time.monotonic() + 3.0
            self._timer.start()
            if self.sound:
                QApplication.beep()
                self.beeps += 1
        if changed:
            self._render()
        return raised, cleared

    def _render(self) -> None:
        if not self.alarms:
            self.hide()
            self._timer.stop()
            return
        top = self.alarms[0]
        rest = self.alarms[1:]
        html = f"<span style='font-size:22pt; font-weight:800'>⚠ {top.title}</span>" \
               f"<br><span style='font-size:12pt'>{top.text}</span>"
        if rest:
            html += "<br><span style='font-size:12pt; font-weight:700'>also: " + \
                    " · ".join(f"{a.title}" for a in rest) + "</span>"
        self.setText(html)
        self._style()
        self.show()

    def _style(self) -> None:
        crit = self.severity is Severity.CRITICAL
        bg = "#d70015" if crit else "#ff9f0a"
        fg = "#ffffff" if crit else "#000000"
        border = "#ffffff" if (crit and self._flash) else bg
        self.setStyleSheet(f"QLabel {{ background: {bg}; color: {fg}; padding: 6px; border: 4px solid {border}; }}")

    @Slot()
    def _blink(self) -> None:
        if time.monotonic() > self._flash_until:
            self._flash = False
            self._timer.stop()
        else:
            self._flash = not self._flash
        if self.alarms:
            self._style()


class EventLog(QPlainTextEdit):
    """Time-stamped events (engine, bedside, alarms), newest at the bottom; bounded."""

    def __init__(self, parent: QWidget | None = None, max_lines: int = 2000) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setStyleSheet("QPlainTextEdit { background: #111; color: #ddd; font-family: monospace; "
                           "font-size: 9pt; }")
        self.lines: list[str] = []

    def add(self, text: str, severity: Severity = Severity.INFO) -> None:
        stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        line = f"{stamp}  {'!!' if severity is Severity.CRITICAL else '! ' if severity else '  '} {text}"
        self.lines.append(line)
        if len(self.lines) > 4000:
            del self.lines[:2000]
        self.appendPlainText(line)


def format_engine_event(ev: dict) -> tuple[str, Severity]:
    """One engine event message (console/uilink.py) as a log line."""
    reason = ev.get("reason", "NONE")
    sev = Severity.INFO if reason in ("NONE", "CONSOLE_REQUEST") else Severity.WARNING
    if ev.get("name") == "LOST" or reason in ("ESTOP", "LINK_LOST", "FAULT"):
        sev = Severity.CRITICAL
    return f"{ev.get('source', '?')} {ev.get('name', '?')} ({reason}): {ev.get('text', '')}", sev
