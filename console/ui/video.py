"""The stereo picture on screen: newest frame only, composed once in numpy, painted 1:1, never shown live
when it is not.

`FrameSource` owns a VideoReceiver (video/receiver.py: socket and decoder in its worker thread). The
worker's "new frame" callback only sets a flag and emits a signal; the slot runs in the GUI thread, takes
`latest()` and asks the panes to repaint. Qt coalesces repaints, so a slow paint drops pictures instead of
queueing them. A 10 Hz timer re-judges the picture on screen while no frame arrives, so a frozen stream is
marked stale even though nothing new is painted.

`VideoPane` composes the current picture for its display mode and size (video/compositor.py), wraps the
array in a QImage that shares its memory (the array is kept alive as long as the image, GUIDE §5) and
draws it without scaling. A picture judged stale — by this window's own receiver or by the engine's guard
on what the window reported painting — is drawn through video.framecode.mark_stale. Each new picture
actually painted is reported (`on_painted`): that report is what feeds the engine's stale-video guard, so a
window that stops painting (hidden, hung) makes the engine hold the arms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, QPoint, QRect, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

from base.config import Config
from console.ui.hud import Hud
from safety.video_guard import VideoState
from transport.video_wire import Layout
from video.compositor import DisplayMode, compose
from video.framecode import mark_stale
from video.receiver import FrameView, VideoReceiver

RECHECK_HZ = 10


class FrameSource(QObject):
    """The newest decoded picture and whether it may be shown as live; shared by every pane of a window."""

    changed = Signal()
    _arrived = Signal()

    def __init__(self, cfg: Config, offset_fn: Callable[[], int],
                 on_painted: Callable[[FrameView], None] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cfg = cfg
        self.offset_fn = offset_fn
        self.on_painted = on_painted
        self.view: FrameView | None = None
        self.external_ok = True
        self.external_reason = ""
        self.painted_frames = 0
        self.last_painted_seq = 0
        self.picture_log: list[tuple[float, dict]] = []
        self.stats: dict = {}
        self.paint_log = None  # a video.m2p.PaintLog: every new picture painted, with its stamp (bench only)
        self._pending = threading.Event()
        self._arrived.connect(self._on_arrived, Qt.ConnectionType.QueuedConnection)
        self.receiver = self._make_receiver(cfg)
        self._timer = QTimer(self)
        self._timer.setInterval(1000 // RECHECK_HZ)
        self._timer.timeout.connect(self._recheck)
        self._timer.start()
        self._ticks = 0

    def _make_receiver(self, cfg: Config) -> VideoReceiver:
        from recording.tap import window_recorder

        return VideoReceiver(cfg, clock_offset_ns_fn=self.offset_fn, on_new_frame=self._notify,
                             recorder=window_recorder())

    def restart(self, cfg: Config) -> None:
        """New bedside address or keys: a fresh receiver (the old picture is dropped)."""
        self.receiver.close()
        self.cfg = cfg
        self.view = None
        self.receiver = self._make_receiver(cfg)
        self.changed.emit()

    def _notify(self) -> None:
        """Video worker thread: one queued signal at a time, whatever the frame rate."""
        if not self._pending.is_set():
            self._pending.set()
            self._arrived.emit()

    @Slot()
    def _on_arrived(self) -> None:
        self._pending.clear()
        self.view = self.receiver.latest()
        self.changed.emit()

    @Slot()
    def _recheck(self) -> None:
        self._ticks += 1
        if self._ticks % 2 == 0:
            self.stats = self.receiver.stats()
        if self.view is None:
            return
        was = self.stale
        self.view = self.receiver.latest()
        if self.stale or was:
            self.changed.emit()  # keep the stale marking (and its age) current

    def set_engine_verdict(self, ok: bool, reason: str) -> None:
        """The engine's stale-video guard on what this window painted (console window only)."""
        if ok != self.external_ok or reason != self.external_reason:
            self.external_ok, self.external_reason = ok, reason
            self.changed.emit()

    @property
    def stale(self) -> bool:
        v = self.view
        return v is None or v.stale or not self.external_ok

    @property
    def stale_text(self) -> str:
        """Short, for the marking drawn in each eye; the banner carries the full reason."""
        v = self.view
        if v is None:
            return "NO VIDEO"
        if v.stale:
            what = "VIDEO STUCK" if v.status.state is VideoState.STUCK else "VIDEO STALE"
            return f"{what} · {v.age_ms:.0f} ms old"
        if not self.external_ok:
            return f"VIDEO STALE · {self.external_reason or 'not confirmed live'}"
        return ""

    @property
    def fps(self) -> float | None:
        return self.stats.get("fps")

    def painted(self, view: FrameView, paint_ns: int = 0) -> None:
        """A pane has just painted `view` in `paint_ns`: report it once per new picture, to the engine (its stale
        guard) and to the receiver (what painting costs this machine, for the sender's reports)."""
        if view.seq > self.last_painted_seq:
            if self.paint_log is not None:  # opt-in (teleop bench m2p): first, so its time is the paint's end
                self.paint_log.add(view, time.monotonic_ns(), paint_ns)
            self.last_painted_seq = view.seq
            self.painted_frames += 1
            pic = view.picture()
            if not self.picture_log or self.picture_log[-1][1] != pic:
                self.picture_log.append((round(time.monotonic(), 3), pic))  # the modes the picture went through
            if paint_ns > 0:
                self.receiver.note_painted(view, paint_ns, time.monotonic_ns())
            if self.on_painted is not None:
                self.on_painted(view)

    def close(self) -> None:
        self._timer.stop()
        self.receiver.close()


class VideoPane(QWidget):
    """One picture in one display mode; mouse drags and wheel turns are handed on as signals."""

    drag = Signal(float, float, bool, bool)  # dx px, dy px, left button, right button
    wheel_steps = Signal(float)

    def __init__(self, source: FrameSource, mode: DisplayMode = DisplayMode.SIDE_BY_SIDE,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.mode = mode
        self.swap_eyes = False
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 180)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._frame: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image: QImage | None = None
        self._key: tuple | None = None
        self._stale_cache: tuple[tuple, np.ndarray] | None = None
        self._last_pos: QPoint | None = None
        self.painted_stale = False
        self.hud: Hud | None = None
        source.changed.connect(self.update)

    def set_mode(self, mode: DisplayMode, swap_eyes: bool | None = None) -> None:
        self.mode = mode
        if swap_eyes is not None:
            self.swap_eyes = swap_eyes
        self.update()

    # ------------------------------------------------------------------------------------- painting
    def _stale_image(self, view: FrameView, text: str) -> np.ndarray:
        key = (view.seq, text)
        if self._stale_cache is None or self._stale_cache[0] != key:
            self._stale_cache = (key, mark_stale(view.image, text, view.layout))
        return self._stale_cache[1]

    def paintEvent(self, event: QPaintEvent) -> None:
        t0 = time.monotonic_ns()
        p = QPainter(self)
        try:
            view = self.source.view
            if view is None:
                p.fillRect(self.rect(), QColor(0, 0, 0))
                self._no_video(p)
                self._draw_hud(p)
                return
            stale = self.source.stale
            text = self.source.stale_text if stale else ""
            dpr = self.devicePixelRatioF()
            box = (max(1, int(self.width() * dpr)), max(1, int(self.height() * dpr)))
            parity = 0
            if self.mode == DisplayMode.ROW_INTERLEAVED:
                eye_h = view.image.shape[0] // (2 if view.layout == Layout.TOP_BOTTOM else 1)
                h = min(eye_h, box[1])
                y0 = (box[1] - h) // 2
                parity = (self.mapToGlobal(QPoint(0, 0)).y() * round(dpr) + y0) & 1
            key = (view.seq, text, self.mode, box, parity, self.swap_eyes)
            if key != self._key:
                img = self._stale_image(view, text) if stale else view.image
                frame = compose(img, view.layout, self.mode, box, parity, self.swap_eyes)
                qimg = QImage(frame.data, frame.shape[1], frame.shape[0], frame.strides[0],
                              QImage.Format.Format_RGB32)
                qimg.setDevicePixelRatio(dpr)
                self._frame, self._image, self._key = frame, qimg, key
            assert self._image is not None and self._frame is not None
            w, h = int(self._frame.shape[1] / dpr), int(self._frame.shape[0] / dpr)
            x, y = (self.width() - w) // 2, (self.height() - h) // 2
            black = QColor(0, 0, 0)
            for band in (QRect(0, 0, self.width(), y), QRect(0, y + h, self.width(), self.height() - y - h),
                         QRect(0, y, x, h), QRect(x + w, y, self.width() - x - w, h)):
                if band.width() > 0 and band.height() > 0:
                    p.fillRect(band, black)  # only the margins: the picture covers the rest
            p.drawImage(QPoint(x, y), self._image)
            self._draw_hud(p)
            self.painted_stale = stale
        finally:
            p.end()
        if view is not None:
            self.source.painted(view, time.monotonic_ns() - t0)

    def _draw_hud(self, p: QPainter) -> None:
        if self.hud is None:
            return
        top, bottom = self.hud.images(self.width(), self.devicePixelRatioF())
        p.drawImage(QPoint(0, 0), top)
        p.drawImage(QPoint(0, self.height() - round(bottom.height() / bottom.devicePixelRatio())), bottom)

    def _no_video(self, p: QPainter) -> None:
        p.setPen(QColor(255, 80, 80))
        f = QFont(p.font())
        f.setPointSize(20)
        f.setBold(True)
        p.setFont(f)
        p.drawText(QRect(0, 0, self.width(), self.height()), Qt.AlignmentFlag.AlignCenter,
                   "NO VIDEO\nwaiting for the bedside's stereo stream")
        self.painted_stale = True

    def current_frame(self) -> np.ndarray | None:
        """The composed BGRA picture on screen (tests read frame codes from it)."""
        return self._frame

    # ------------------------------------------------------------------------------------- mouse
    def mousePressEvent(self, e: QMouseEvent) -> None:
        self._last_pos = e.position().toPoint()
        self.setFocus()

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        pos = e.position().toPoint()
        if self._last_pos is not None:
            d = pos - self._last_pos
            b = e.buttons()
            left = bool(b & Qt.MouseButton.LeftButton)
            right = bool(b & Qt.MouseButton.RightButton)
            if left or right:
                self.drag.emit(float(d.x()), float(d.y()), left, right)
        self._last_pos = pos

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        self._last_pos = None

    def wheelEvent(self, e: QWheelEvent) -> None:
        self.wheel_steps.emit(e.angleDelta().y() / 120.0)
