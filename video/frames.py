"""What every stereo source delivers: a frame of both eyes with its capture time, the source interface, and a
camera-like pacer. Sources (video/sources.py, video/synthetic.py, video/realsense.py) build on this module."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from transport.video_wire import NO_STAMP, Layout, SceneStamp
from video.framecode import eye_views


class VideoSourceError(RuntimeError):
    """A source that cannot deliver: missing device or file, bad spec, unreadable stream. Says which."""


@dataclass(frozen=True, slots=True)
class StereoFrame:
    image: np.ndarray  # both eyes packed per `layout`, BGR uint8
    layout: Layout
    capture_ns: int  # time.monotonic_ns() when the picture was taken
    source_seq: int  # the device's frame counter, or the source's own
    stamp: SceneStamp = NO_STAMP  # a rendered frame: the bedside state it shows (video/rendered.py)

    @property
    def left(self) -> np.ndarray:
        return eye_views(self.image, self.layout)[0]

    @property
    def right(self) -> np.ndarray:
        return eye_views(self.image, self.layout)[1]


def to_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def pack(left: np.ndarray, right: np.ndarray, layout: Layout = Layout.SIDE_BY_SIDE) -> np.ndarray:
    """Both eyes in one picture (one copy), so one encode keeps them in sync."""
    left, right = to_bgr(left), to_bgr(right)
    if left.shape != right.shape:
        right = cv2.resize(right, (left.shape[1], left.shape[0]), interpolation=cv2.INTER_AREA)
    h, w = left.shape[:2]
    if layout == Layout.TOP_BOTTOM:
        out = np.empty((2 * h, w, 3), np.uint8)
        out[:h], out[h:] = left, right
    elif layout == Layout.SIDE_BY_SIDE:
        out = np.empty((h, 2 * w, 3), np.uint8)
        out[:, :w], out[:, w:] = left, right
    else:
        raise ValueError("pack() needs a two-eye layout")
    return out


def fitted_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The packed picture's size at `scale` of each side of a `width`×`height` one, as the encoder takes it: the
    width a multiple of 4 (each eye's even), the height even. The sender and a source that draws at the fitted size
    (video/rendered.py) both size pictures with this, so a picture drawn at that size needs no resize."""
    return max(4, int(width * scale) // 4 * 4), max(2, int(height * scale) // 2 * 2)


class StereoSource(ABC):
    """One stereo stream. `read` blocks until the next frame; `close` releases the device."""

    name: str = "source"
    native_size: tuple[int, int] | None = None
    """The packed picture's size at scale 1 for a source that can draw smaller (`draw_at`); None: the size of
    what it delivers."""

    @abstractmethod
    def read(self) -> StereoFrame: ...

    def close(self) -> None:  # noqa: B027 - most sources have nothing to release
        pass

    def stats(self) -> dict[str, object]:
        """Figures of the source's own for the sender's summary (the rendered source: its render times)."""
        return {}

    def draw_at(self, scale: float) -> bool:
        """Make the next pictures at `scale` of each side of `native_size` (`fitted_size`), when the source draws
        them (the rendered endoscope: a quarter of the pixels drawn at half size, not drawn in full and shrunk);
        False for a source that delivers what it captures (the sender then shrinks each picture)."""
        return False

    def set_fps(self, fps: float) -> bool:
        """Deliver at `fps` from now on (never faster than the source's own rate), when the source paces itself;
        False for a device that delivers at its own rate (the sender then drops pictures before the encoder)."""
        pacer = getattr(self, "pacer", None)
        if not isinstance(pacer, Pacer):
            return False
        pacer.set_fps(min(fps, pacer.native_fps))
        return True

    def __enter__(self) -> StereoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Releases frame slots at `fps` like a camera: a late reader skips slots instead of bursting.

    The rate can change (`set_fps`, the sender fitting the picture to the machines, video/adapt.py): the next slot
    is then due one new period after the last one, slot numbers run on, and no slot counts as skipped because of
    the change. `clock`/`sleep` are for tests, and for the video sender, which listens to its viewers while it waits
    (video/sender.py `_wait_slot`)."""

    def __init__(self, fps: float, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if fps <= 0:
            raise VideoSourceError(f"fps must be positive, got {fps}")
        self.clock, self.sleep = clock, sleep
        self.native_fps = self.fps = fps
        self.period_ns = int(1e9 / fps)
        self.start_ns = self.t0 = clock()  # slot `slot0` is due at t0, each next one a period later
        self.slot0 = 0
        self.slot = -1
        self.skipped = 0

    def due_ns(self, slot: int) -> int:
        return self.t0 + (slot - self.slot0) * self.period_ns

    def content_s(self, slot: int) -> float:
        """The moment a slot shows, in seconds from the start, whatever the rate was since: what a played source
        (a file, a test pattern) must show at that slot, so a lower rate shows fewer moments, not slow motion."""
        return (self.due_ns(slot) - self.start_ns) / 1e9

    def set_fps(self, fps: float) -> None:
        if fps <= 0:
            raise VideoSourceError(f"fps must be positive, got {fps}")
        if fps == self.fps:
            return
        if self.slot >= 0:  # re-anchor on the last slot released
            self.t0, self.slot0 = self.due_ns(self.slot), self.slot
        self.fps, self.period_ns = fps, int(1e9 / fps)

    def wait(self) -> int:
        """Sleep until the next slot is due; returns the slot number."""
        now = self.clock()
        nxt = self.slot + 1
        late_slot = self.slot0 + (now - self.t0) // self.period_ns
        if late_slot > nxt:  # more than a period behind: drop the missed slots, as a camera would
            self.skipped += late_slot - nxt
            nxt = late_slot
        due = self.due_ns(nxt)
        if due > now:
            self.sleep((due - now) / 1e9)
        self.slot = nxt
        return nxt
