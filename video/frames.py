"""What every stereo source delivers: a frame of both eyes with its capture time, the source interface, and a
camera-like pacer. Sources (video/sources.py, video/synthetic.py, video/realsense.py) build on this module."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from transport.video_wire import Layout
from video.framecode import eye_views


class VideoSourceError(RuntimeError):
    """A source that cannot deliver: missing device or file, bad spec, unreadable stream. Says which."""


@dataclass(frozen=True, slots=True)
class StereoFrame:
    image: np.ndarray  # both eyes packed per `layout`, BGR uint8
    layout: Layout
    capture_ns: int  # time.monotonic_ns() when the picture was taken
    source_seq: int  # the device's frame counter, or the source's own

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


class StereoSource(ABC):
    """One stereo stream. `read` blocks until the next frame; `close` releases the device."""

    name: str = "source"

    @abstractmethod
    def read(self) -> StereoFrame: ...

    def close(self) -> None:  # noqa: B027 - most sources have nothing to release
        pass

    def __enter__(self) -> StereoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Releases frame slots at `fps` like a camera: a late reader skips slots instead of bursting."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise VideoSourceError(f"fps must be positive, got {fps}")
        self.period_ns = int(1e9 / fps)
        self.t0 = time.monotonic_ns()
        self.slot = -1
        self.skipped = 0

    def wait(self) -> int:
        """Sleep until the next slot is due; returns the slot number."""
        now = time.monotonic_ns()
        nxt = self.slot + 1
        late_slot = (now - self.t0) // self.period_ns
        if late_slot > nxt:  # more than a period behind: drop the missed slots, as a camera would
            self.skipped += late_slot - nxt
            nxt = late_slot
        due = self.t0 + nxt * self.period_ns
        if due > now:
            time.sleep((due - now) / 1e9)
        self.slot = nxt
        return nxt
