"""The QA replay window: recorded stereo video (any display mode) with the console's HUD and alarm banner as
they were at that instant, an event timeline that seeks on click, play/pause/step/speed, and plots (RTT,
frame age, tool x/y/z per arm) with a cursor at the current time, a time axis (seconds and clock time) and
a legend on each.

What the surgeon saw is rebuilt with the window's own code: the engine's state as the window received it
is recorded (`/console/state`, 10 Hz), and the HUD texts and alarms at time t are
console/ui/status.py's `console_fields` / `console_alarms` / `arm_lines` of the newest recorded state at or
before t, shown by console/ui/hud.py's `Hud` and `AlarmBanner`. A recording made before that topic has no HUD
to show, and the window says so.

Why it is built like this: everything shown derives from one number, the current time on the session
timeline (qa/session.py); `seek(t)` sets it and every widget repaints from it, so the picture, the plots
and the timeline can never disagree. Plots are light QPainter widgets over pre-decimated min/max envelopes
(PySide6-Essentials has no QtCharts, and 60 k RTT samples must not be drawn point by point). The picture
is composed by the console's own stereo code (video/compositor.py); a frame the console recorded as
stale is drawn through video.framecode.mark_stale exactly as the surgeon saw it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressDialog,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console.indicators import Alarm
from console.ui.hud import AlarmBanner, Hud
from console.ui.status import arm_lines, console_alarms, console_fields
from qa.figures import clock
from qa.session import EVENT_KINDS, KIND_COLOURS, QaEvent, Session, envelope
from qa.video import VideoTrack
from recording.catalog import BEDSIDE, CONSOLE
from transport.messages import ARM_NAMES
from video.compositor import DisplayMode, compose
from video.framecode import mark_stale

SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
REPLAY_MODES = tuple(m for m in DisplayMode if m is not DisplayMode.PER_EYE)
"""One pane in the replay window: the per-eye mode (two full-screen windows) is not offered."""


@dataclass
class Series:
    label: str
    colour: str
    x: np.ndarray  # session seconds
    y: np.ndarray


def nice_ticks(a: float, b: float, n: int = 5) -> list[float]:
    """Round tick positions (1, 2, 5 × 10^k) between a and b, about n of them."""
    span = max(1e-9, b - a)
    raw = span / max(1, n)
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = np.ceil(a / step) * step
    return [float(v) for v in np.arange(first, b + step * 1e-6, step)]


class PlotWidget(QWidget):
    """One small time plot with a cursor, a time axis (session seconds, and the clock time when known) and a
    legend; clicking seeks."""

    clicked = Signal(float)
    LEFT, AXIS_H = 52, 28

    def __init__(self, title: str, unit: str, series: list[Series], span: tuple[float, float],
                 parent: QWidget | None = None, clock_of=None) -> None:
        super().__init__(parent)
        self.title, self.unit = title, unit
        self.series = [Series(s.label, s.colour, *envelope(s.x, s.y)) for s in series]
        self.span = span
        self.clock_of = clock_of  # session seconds -> "HH:MM:SS.mmm" ("" when unknown)
        ys = [s.y for s in self.series if s.y.size]
        if ys:
            lo, hi = float(min(np.min(y) for y in ys)), float(max(np.max(y) for y in ys))
        else:
            lo, hi = 0.0, 1.0
        pad = (hi - lo) * 0.08 or 1.0
        self.yrange = (lo - pad, hi + pad)
        self.cursor = span[0]
        self.setMinimumHeight(110)
        self.setToolTip(f"{title} ({unit}) over {self.axis_label()}; click to seek")

    def _x(self, s: float) -> float:
        a, b = self.span
        return self.LEFT + (s - a) / max(1e-9, b - a) * (self.width() - self.LEFT - 6)

    def set_cursor(self, s: float) -> None:
        self.cursor = s
        self.update()

    def value_at(self, s: float) -> list[tuple[str, float]]:
        out = []
        for se in self.series:
            i = int(np.searchsorted(se.x, s, side="right")) - 1
            if 0 <= i < se.y.size:
                out.append((se.label, float(se.y[i])))
        return out

    def legend(self) -> list[tuple[str, str]]:
        """(label, colour) of each series, as drawn in the legend."""
        return [(s.label, s.colour) for s in self.series]

    def axis_label(self) -> str:
        c = self.clock_of(self.span[0]) if self.clock_of else ""
        return "session time (s)" + (f" · 0 s = {c} UTC" if c else "")

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            w, h = self.width(), self.height()
            p.fillRect(self.rect(), QColor("#111"))
            top, bot = 16, h - self.AXIS_H
            lo, hi = self.yrange

            def yy(v: np.ndarray | float):
                return bot - (np.asarray(v) - lo) / (hi - lo) * (bot - top)

            small = QFont(p.font())
            small.setPointSize(7)
            p.setFont(small)
            p.setPen(QColor("#444"))
            p.drawLine(self.LEFT, top, self.LEFT, bot)
            p.drawLine(self.LEFT, bot, w - 6, bot)
            p.setPen(QColor("#aaa"))
            for v in nice_ticks(lo, hi, 3):
                y = float(yy(v))
                p.drawText(QRectF(0, y - 6, self.LEFT - 4, 12), Qt.AlignmentFlag.AlignRight, f"{v:.4g}")
            p.drawText(QRectF(0, top - 14, self.LEFT - 4, 12), Qt.AlignmentFlag.AlignRight, self.unit)
            x0, x1 = self.span
            if self.clock_of is not None and self.clock_of(x0):
                p.drawText(QRectF(0, bot + 13, self.LEFT - 6, 12), Qt.AlignmentFlag.AlignRight, "UTC")
            fm = p.fontMetrics()
            cw = fm.horizontalAdvance("00:00:00") + 12
            for v in nice_ticks(x0, x1, max(2, int((w - self.LEFT) // cw))):  # seconds, the clock time under each
                x = self._x(v)
                p.setPen(QColor("#444"))
                p.drawLine(QPointF(x, bot), QPointF(x, bot + 3))
                p.setPen(QColor("#aaa"))
                c = self.clock_of(v)[:8] if self.clock_of else ""
                box = QRectF(min(max(float(self.LEFT) - 4, x - cw / 2), w - cw), bot + 2, cw, 12)
                p.drawText(box, Qt.AlignmentFlag.AlignHCenter, f"{v:g} s")
                if c:
                    p.drawText(box.translated(0, 11), Qt.AlignmentFlag.AlignHCenter, c)
            for se in self.series:
                if not se.x.size:
                    continue
                xs = self.LEFT + (se.x - x0) / max(1e-9, x1 - x0) * (w - self.LEFT - 6)
                pts = QPolygonF([QPointF(a, b) for a, b in zip(xs.tolist(), yy(se.y).tolist(), strict=True)])
                p.setPen(QPen(QColor(se.colour), 1))
                p.drawPolyline(pts)
            label = f"{self.title} ({self.unit})  " + "  ".join(
                f"{n} {v:.3g}" for n, v in self.value_at(self.cursor))
            p.setPen(QColor("#ddd"))
            p.drawText(self.LEFT + 4, 11, label)
            lx = w - 8  # legend, right-aligned: a swatch and a label per series; below the title if it would touch
            need = sum(fm.horizontalAdvance(n) + 24 for n, _c in self.legend())
            ly = 11 if self.LEFT + 12 + fm.horizontalAdvance(label) + need < w else top + 10
            for name, colour in reversed(self.legend()):
                tw = fm.horizontalAdvance(name)
                lx -= tw
                p.setPen(QColor("#ddd"))
                p.drawText(int(lx), ly, name)
                lx -= 14
                p.fillRect(QRectF(lx, ly - 7, 10, 6), QColor(colour))
                lx -= 10
            if not self.series or not any(s.x.size for s in self.series):
                p.drawText(QRect(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, "not in this recording")
            cx = self._x(self.cursor)
            p.setPen(QPen(QColor("#ffffff"), 1))
            p.drawLine(QPointF(cx, top), QPointF(cx, bot))
        finally:
            p.end()

    def mousePressEvent(self, e: QMouseEvent) -> None:
        a, b = self.span
        self.clicked.emit(a + (e.position().x() - self.LEFT) / max(1.0, self.width() - self.LEFT - 6) * (b - a))


class TimelineWidget(QWidget):
    """Event markers in one lane per kind, coloured by kind; a click on a marker seeks to that event, a
    click elsewhere seeks to that instant."""

    seek_event = Signal(int)  # index into events
    seek_time = Signal(float)
    LANE = 13
    LEFT = 74

    def __init__(self, session: Session, events: list[QaEvent], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.events = session, events
        self.span = (0.0, max(1e-3, session.duration_s))
        self.kinds = [k for k in EVENT_KINDS if any(e.kind == k for e in events)] or ["info"]
        self.xs = np.asarray([float(session.seconds(e.t_ns)) for e in events])
        self.cursor = 0.0
        self.setMinimumHeight(self.LANE * len(self.kinds) + 8)
        self.setMouseTracking(True)

    def _x(self, s: float | np.ndarray):
        a, b = self.span
        return self.LEFT + (np.asarray(s) - a) / (b - a) * (self.width() - self.LEFT - 6)

    def marker_pos(self, i: int) -> tuple[int, int]:
        """Widget coordinates of event `i`'s marker (tests click there)."""
        lane = self.kinds.index(self.events[i].kind)
        return round(float(self._x(self.xs[i]))), 4 + lane * self.LANE + self.LANE // 2

    def set_cursor(self, s: float) -> None:
        self.cursor = s
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor("#181818"))
            small = QFont(p.font())
            small.setPointSize(7)
            p.setFont(small)
            xs = self._x(self.xs) if self.xs.size else self.xs
            for lane, kind in enumerate(self.kinds):
                y = 4 + lane * self.LANE
                p.setPen(QColor(KIND_COLOURS[kind]))
                p.drawText(2, y + self.LANE - 3, kind)
                p.setPen(QColor("#2a2a2a"))
                p.drawLine(self.LEFT, y + self.LANE // 2, self.width(), y + self.LANE // 2)
            for i, e in enumerate(self.events):
                lane = self.kinds.index(e.kind)
                y = 4 + lane * self.LANE
                c = QColor(KIND_COLOURS[e.kind])
                p.fillRect(QRectF(float(xs[i]) - 2, y + 2, 4, self.LANE - 4), c)
            cx = float(self._x(self.cursor))
            p.setPen(QPen(QColor("#fff"), 1))
            p.drawLine(QPointF(cx, 0), QPointF(cx, self.height()))
        finally:
            p.end()

    def event_near(self, x: float, y: float, tol: float = 5.0) -> int | None:
        if not self.events:
            return None
        lane = int((y - 4) // self.LANE)
        cand = [i for i, e in enumerate(self.events) if 0 <= lane < len(self.kinds) and e.kind == self.kinds[lane]]
        if not cand:
            return None
        xs = self._x(self.xs[cand])
        j = int(np.argmin(np.abs(xs - x)))
        return cand[j] if abs(float(xs[j]) - x) <= tol else None

    def mousePressEvent(self, e: QMouseEvent) -> None:
        pos = e.position()
        i = self.event_near(pos.x(), pos.y())
        if i is not None:
            self.seek_event.emit(i)
            return
        a, b = self.span
        self.seek_time.emit(a + (pos.x() - self.LEFT) / max(1.0, self.width() - self.LEFT - 6) * (b - a))

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        i = self.event_near(e.position().x(), e.position().y())
        if i is None:
            self.setToolTip("")
        else:
            ev = self.events[i]
            lat = f" · {ev.latency_ms:.1f} ms" if ev.latency_ms is not None else ""
            self.setToolTip(f"{self.session.seconds(ev.t_ns):.3f} s  {ev.role}  {ev.name}{lat}\n{ev.text}")


class VideoView(QWidget):
    """The recorded picture, composed for the display mode, with the time and frame facts over it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.mode = DisplayMode.SIDE_BY_SIDE
        self.swap = False
        self.image: np.ndarray | None = None  # BGR as decoded (what tests read codes from)
        self.layout = None
        self.stale_text = ""
        self.caption = ""
        self.hud: Hud | None = None  # the console's HUD as it was (ReplayWindow sets its content)
        self._frame: np.ndarray | None = None
        self._qimg: QImage | None = None
        self._key: tuple | None = None

    def show_frame(self, image: np.ndarray | None, layout, caption: str, stale_text: str = "") -> None:
        self.image, self.layout, self.caption, self.stale_text = image, layout, caption, stale_text
        self._key = None
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor(0, 0, 0))
            if self.image is not None:
                dpr = self.devicePixelRatioF()
                box = (max(1, int(self.width() * dpr)), max(1, int(self.height() * dpr)))
                key = (id(self.image), self.mode, box, self.swap, self.stale_text)
                if key != self._key:
                    img = mark_stale(self.image, self.stale_text, self.layout) if self.stale_text else self.image
                    self._frame = compose(img, self.layout, self.mode, box, 0, self.swap)
                    f = self._frame
                    self._qimg = QImage(f.data, f.shape[1], f.shape[0], f.strides[0], QImage.Format.Format_RGB32)
                    self._qimg.setDevicePixelRatio(dpr)
                    self._key = key
                assert self._frame is not None and self._qimg is not None
                w, h = int(self._frame.shape[1] / dpr), int(self._frame.shape[0] / dpr)
                p.drawImage((self.width() - w) // 2, (self.height() - h) // 2, self._qimg)
            else:
                p.setPen(QColor(255, 80, 80))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no video at this time")
            if self.hud is not None and self.hud.fields:
                top, bottom = self.hud.images(self.width(), self.devicePixelRatioF())
                p.drawImage(QPoint(0, 0), top)
                p.drawImage(QPoint(0, self.height() - 22 - round(bottom.height() / bottom.devicePixelRatio())),
                            bottom)
            p.setPen(QColor(255, 255, 255))
            p.fillRect(QRect(0, self.height() - 20, self.width(), 20), QColor(0, 0, 0, 160))
            p.drawText(6, self.height() - 6, self.caption)
        finally:
            p.end()

    def composed(self) -> np.ndarray | None:
        """The BGRA picture last painted."""
        return self._frame


class ReplayWindow(QWidget):
    """Everything follows `seek(t_ns)`."""

    TICK_MS = 33

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("teleop replay — " + ", ".join(f.path.name for f in session.files))
        self.events = session.events()
        self.tracks = {r: VideoTrack(session, r) for r in ("console", "bedside") if len(session.video_frames(r))}
        self.track_role = next(iter(self.tracks), "")
        self.t_ns = session.t0_ns
        self.playing = False
        self.speed = 1.0
        self.frame_index = -1
        self._last_tick = 0.0

        self.info = QLabel(self._info_text())
        self.info.setWordWrap(True)
        self.video = VideoView()
        self.hud = self.video.hud = Hud(point_size=9)
        self.banner = AlarmBanner(sound=False)
        self.states = session.json_rows("console", CONSOLE.state)
        self._state_t = np.asarray([t for t, _ in self.states], np.int64)
        self.alarms: list[Alarm] = []
        self.mode_box = QComboBox()
        for m in REPLAY_MODES:
            self.mode_box.addItem(m.label, m.value)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.swap_box = QCheckBox("Swap eyes")
        self.swap_box.toggled.connect(self._mode_changed)
        self.source_box = QComboBox()
        for r in self.tracks:
            self.source_box.addItem(f"{r} video", r)
        self.source_box.currentIndexChanged.connect(self._source_changed)
        self.play_btn = QPushButton("Play")
        self.play_btn.clicked.connect(self.toggle_play)
        self.back_btn = QPushButton("◀ frame")
        self.back_btn.clicked.connect(lambda: self.step(-1))
        self.fwd_btn = QPushButton("frame ▶")
        self.fwd_btn.clicked.connect(lambda: self.step(1))
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.currentIndexChanged.connect(lambda _i: self.set_speed(self.speed_box.currentData()))
        self.time_label = QLabel()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, max(1, int(session.duration_s * 1000)))
        self.slider.valueChanged.connect(self._slider_moved)
        self.timeline = TimelineWidget(session, self.events)
        self.timeline.seek_event.connect(self.seek_to_event)
        self.timeline.seek_time.connect(lambda s: self.seek(self._ns(s)))
        self.event_list = QListWidget()
        for e in self.events:
            lat = f" · {e.latency_ms:.1f} ms" if e.latency_ms is not None else ""
            c = clock(session, e.t_ns)
            it = QListWidgetItem(f"{session.seconds(e.t_ns):9.3f} s {c:>12}  {e.kind:<10} {e.name}{lat}  {e.text}")
            it.setForeground(QColor(KIND_COLOURS[e.kind]))
            self.event_list.addItem(it)
        self.event_list.itemClicked.connect(lambda it: self.seek_to_event(self.event_list.row(it)))
        self.plots = self._make_plots()
        for pl in self.plots:
            pl.clicked.connect(lambda s: self.seek(self._ns(s)))

        controls = QHBoxLayout()
        for wdg in (self.play_btn, self.back_btn, self.fwd_btn, QLabel("speed"), self.speed_box, self.time_label):
            controls.addWidget(wdg)
        controls.addStretch(1)
        view_row = QHBoxLayout()  # a second row: the left side may then be narrower than all controls in one
        for wdg in (self.source_box, QLabel("display"), self.mode_box, self.swap_box):
            view_row.addWidget(wdg)
        view_row.addStretch(1)
        left = QVBoxLayout()
        left.addWidget(self.info)
        left.addWidget(self.banner)
        left.addWidget(self.video, 5)
        left.addLayout(controls)
        left.addLayout(view_row)
        left.addWidget(self.slider)
        left.addWidget(self.timeline)
        left.addWidget(self.event_list, 2)
        lw = QWidget()
        lw.setLayout(left)
        right = QVBoxLayout()
        for pl in self.plots:
            right.addWidget(pl)
        rw = QWidget()
        rw.setLayout(right)
        split = QSplitter()
        split.addWidget(lw)
        split.addWidget(rw)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([800, 600])
        outer = QVBoxLayout(self)
        outer.addWidget(split)
        self.timer = QTimer(self)
        self.timer.setInterval(self.TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.resize(1500, 900)
        tr = self.tracks.get(self.track_role)
        self.seek(int(tr.frames["t"][0]) if tr is not None and len(tr) else self.t_ns)

    # ------------------------------------------------------------------ building

    def _clock_of(self, sec: float) -> str:
        return clock(self.session, self._ns(sec))

    def _ns(self, s: float) -> int:
        return int(self.session.t0_ns + s * 1e9)

    def _info_text(self) -> str:
        s = self.session
        start = clock(s, s.t0_ns, with_date=True)
        parts = [f"{', '.join(f.path.name for f in s.files)} · {s.duration_s:.1f} s · timeline: {s.clock} clock"
                 + (f" · started {start} UTC" if start else "")]
        if not s.has("console", CONSOLE.state):
            parts.append("no console HUD recorded (a recording from before /console/state)")
        _lt, off = s.offsets()
        if "bedside" in s.roles and "console" in s.roles:
            parts.append(f"bedside aligned by clock offset {np.median(off) / 1e6:+.3f} ms" if off.size
                         else f"bedside NOT aligned (no {CONSOLE.link} offset)")
        cut = [f.path.name for f in s.files if f.truncated]
        if cut:
            parts.append("cut short: " + ", ".join(cut))
        return " · ".join(parts)

    def _make_plots(self) -> list[PlotWidget]:
        s = self.session
        span = (0.0, max(1e-3, s.duration_s))
        sec = s.seconds
        plots = []
        rtt: list[Series] = []
        if s.has("console", CONSOLE.ack):
            a = s.acks("console")
            rtt.append(Series("ack", "#4aa3ff", sec(a["t"]), a["rtt_ms"]))
        if s.has("console", CONSOLE.link):
            lk = s.link()
            rtt.append(Series("link", "#ffaa00", sec(lk["t"]), lk["rtt_ms"]))
        plots.append(PlotWidget("RTT", "ms", rtt, span, clock_of=self._clock_of))
        age: list[Series] = []
        if len(s.video_frames("console")):
            v = s.video_frames("console")
            age.append(Series("console age", "#e377c2", sec(v["t"]), v["age_ms"]))
        if len(s.video_frames("bedside")):
            v = s.video_frames("bedside")
            age.append(Series("capture→sent", "#17becf", sec(v["t"]), (v["t"] - v["capture"]) / 1e6))
        plots.append(PlotWidget("frame age", "ms", age, span, clock_of=self._clock_of))
        role = "bedside" if s.has("bedside", BEDSIDE.telemetry) else "console"
        tel = s.telemetry(role)
        for j, arm in enumerate(ARM_NAMES):
            ser = []
            if len(tel):
                for k, (axis, col) in enumerate((("x", "#ff5555"), ("y", "#55dd55"), ("z", "#5599ff"))):
                    ser.append(Series(axis, col, sec(tel["t"]), tel["pos"][:, j, k] * 1000))
            plots.append(PlotWidget(f"{arm} tool position ({role})", "mm", ser, span, clock_of=self._clock_of))
        return plots

    # ------------------------------------------------------------------ time

    def seek(self, t_ns: int) -> None:
        """Move everything to `t_ns` (clamped to the recording)."""
        s = self.session
        self.t_ns = int(min(max(t_ns, s.t0_ns), s.t1_ns))
        sec = float(s.seconds(self.t_ns))
        self.slider.blockSignals(True)
        self.slider.setValue(int(sec * 1000))
        self.slider.blockSignals(False)
        self.timeline.set_cursor(sec)
        for pl in self.plots:
            pl.set_cursor(sec)
        c = clock(s, self.t_ns)
        self.time_label.setText(f"{sec:8.3f} / {s.duration_s:.3f} s" + (f"  ·  {c} UTC" if c else ""))
        self._show_video()
        self._show_hud()

    def state_at(self, t_ns: int) -> tuple[int, dict] | None:
        """The newest recorded engine state at or before `t_ns` (what the window was showing), or None."""
        i = int(np.searchsorted(self._state_t, t_ns, side="right")) - 1
        return self.states[i] if i >= 0 else None

    def _show_hud(self) -> None:
        """HUD and banner at the current time, by the console window's own rules (console/ui/status.py)."""
        st = self.state_at(self.t_ns)
        if st is None:
            self.hud.set_fields({})
            self.banner.show_alarms([])
            self.alarms = []
            return
        t, state = st
        age, fps, stale = self._picture_at(self.t_ns)
        self.hud.set_fields(console_fields(state, age, fps))
        self.hud.set_arms(arm_lines(state.get("teleop")))
        self.hud.set_history([v for v in state.get("rtt_history_ms") or []])
        self.alarms = console_alarms(state, (self.t_ns - t) / 1e9, stale)
        self.banner.show_alarms(self.alarms)
        self.video.update()

    def _picture_at(self, t_ns: int) -> tuple[float | None, float | None, bool]:
        """(age of the console's frame on screen in ms, frames received in the last second, its stale flag)."""
        tr = self.tracks.get("console")
        if tr is None or not len(tr):
            return None, None, False
        f = tr.frames
        i = tr.index_at(t_ns)
        if i < 0:
            return None, 0.0, False
        lo = int(np.searchsorted(f["t"], t_ns - 1_000_000_000, side="right"))
        age = float(f["age_ms"][i])
        return (age if np.isfinite(age) else None), float(i + 1 - lo), bool(f["stale"][i])

    def seek_to_event(self, i: int) -> None:
        if 0 <= i < len(self.events):
            self.event_list.setCurrentRow(i)
            self.seek(self.events[i].t_ns)

    def _show_video(self) -> None:
        tr = self.tracks.get(self.track_role)
        if tr is None:
            self.video.show_frame(None, None, "no video in this recording")
            return
        i = tr.index_at(self.t_ns)
        self.frame_index = i
        if i < 0:
            self.video.show_frame(None, None, "before the first frame")
            return
        img = tr.frame(i)
        f = tr.frames
        cap_s = float(self.session.seconds(f["capture"][i]))
        age = f["age_ms"][i]
        stale = bool(f["stale"][i])
        cap = (f"{self.track_role} frame #{int(f['source_seq'][i])} · captured {cap_s:.3f} s"
               + (f" · age {age:.1f} ms" if np.isfinite(age) else "") + (" · STALE" if stale else "")
               + ("" if img is not None else " · not decodable from the recording"))
        self.video.show_frame(img, tr.layout(i), cap, f"VIDEO STALE · {age:.0f} ms old" if stale else "")

    def _slider_moved(self, v: int) -> None:
        self.seek(self._ns(v / 1000))

    def toggle_play(self) -> None:
        self.playing = not self.playing
        self.play_btn.setText("Pause" if self.playing else "Play")
        if self.playing:
            if self.t_ns >= self.session.t1_ns:
                self.seek(self.session.t0_ns)
            self._last_tick = time.monotonic()
            self.timer.start()
        else:
            self.timer.stop()

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)

    def _tick(self) -> None:
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        self.seek(self.t_ns + int(dt * self.speed * 1e9))
        if self.t_ns >= self.session.t1_ns:
            self.toggle_play()

    def step(self, n: int) -> None:
        """One video frame forward/back (10 ms without video)."""
        tr = self.tracks.get(self.track_role)
        if tr is None or not len(tr):
            self.seek(self.t_ns + n * 10_000_000)
            return
        i = int(np.clip(tr.index_at(self.t_ns) + n, 0, len(tr) - 1))
        self.seek(int(tr.frames["t"][i]))

    def _mode_changed(self, *_a) -> None:
        self.video.mode = DisplayMode(self.mode_box.currentData())
        self.video.swap = self.swap_box.isChecked()
        self.video._key = None
        self.video.update()

    def _source_changed(self, *_a) -> None:
        self.track_role = self.source_box.currentData() or ""
        self._show_video()

    def set_mode(self, mode: DisplayMode) -> None:
        self.mode_box.setCurrentIndex(REPLAY_MODES.index(mode))

    def closeEvent(self, e) -> None:
        self.timer.stop()
        super().closeEvent(e)


def load_session(files: list[str], parent: QWidget | None = None, also=None) -> Session:
    """Load `files` with a progress dialog (a long recording takes seconds): the window's own progress
    indication, beside the progress bar on stderr."""
    dlg = QProgressDialog("Loading the recording…", "", 0, 1000, parent)
    dlg.setWindowTitle("teleop replay")
    dlg.setCancelButton(None)
    dlg.setMinimumDuration(300)
    dlg.setValue(0)

    def progress(frac: float, what: str) -> None:
        dlg.setLabelText(f"Loading {what}… {frac * 100:.0f} %")
        dlg.setValue(int(frac * 1000))
        QApplication.processEvents()
        if also is not None:
            also(frac, what)

    try:
        return Session(files, progress=progress)
    finally:
        dlg.close()


def grab_html(html_path: str, png: str, width: int = 1200, height: int = 1600) -> None:
    """A picture of an HTML report as Qt's rich-text view renders it (offscreen, no browser engine needed):
    `teleop report … --screenshot PNG` for the docs."""
    from pathlib import Path

    from PySide6.QtCore import QUrl
    from PySide6.QtWidgets import QTextBrowser

    view = QTextBrowser()
    view.setSearchPaths([str(Path(html_path).resolve().parent)])
    view.setSource(QUrl.fromLocalFile(str(Path(html_path).resolve())))
    view.resize(width, height)
    view.show()
    QApplication.processEvents()
    view.grab().save(png)
    view.close()
