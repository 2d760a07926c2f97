"""Stereo sources behind one interface: each `read()` returns both eyes, packed, with a capture time.

Sources: synthetic (video/synthetic.py), video files (one side-by-side file or a left/right pair, looping),
USB cameras through OpenCV (one stereo camera delivering side-by-side frames, or two cameras grabbed
together), Intel RealSense (video/realsense.py). `open_source(spec, cfg)` turns a config string into one.
Capture time is the sender's monotonic clock when the picture was taken off the device (or made).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from base.config import Config, VideoConfig
from transport.video_wire import Layout
from video.frames import Pacer, StereoFrame, StereoSource, VideoSourceError, pack, to_bgr


class FileSource(StereoSource):
    """One side-by-side file, or a left/right pair, read through OpenCV at `fps`, looping at the end."""

    def __init__(self, paths: list[str], fps: float | None = None, loop: bool = True,
                 layout: Layout = Layout.SIDE_BY_SIDE) -> None:
        if len(paths) not in (1, 2):
            raise VideoSourceError(f"a file source takes one side-by-side file or a left,right pair: {paths}")
        self.paths, self.loop, self.layout = paths, loop, layout
        self.name = "file:" + ",".join(paths)
        self.caps = []
        for p in paths:
            cap = cv2.VideoCapture(p)
            if not cap.isOpened():
                self.close()
                raise VideoSourceError(f"cannot open video file {p!r} (missing, or unreadable by OpenCV)")
            self.caps.append(cap)
        file_fps = self.caps[0].get(cv2.CAP_PROP_FPS) or 0.0
        self.pacer = Pacer(fps or (file_fps if 1 <= file_fps <= 240 else 30.0))
        self.count = 0
        self.pos = -1  # the file frame shown last

    def _read_one(self, cap: Any, path: str) -> np.ndarray:
        ok, img = cap.read()
        if not ok and self.loop:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = cap.read()
        if not ok or img is None:
            raise VideoSourceError(f"video file {path!r} yields no frames")
        return img

    def read(self) -> StereoFrame:
        slot = self.pacer.wait()
        # the file frame for this slot's moment: at a lower rate (video/adapt.py) or behind, frames are passed over
        # (grabbed, not converted; at most 8 a read), so the file plays at its own speed, never in slow motion
        want = int(self.pacer.content_s(slot) * self.pacer.native_fps + 1e-6)
        for _ in range(min(8, want - self.pos - 1)):
            for c in self.caps:
                if not c.grab() and self.loop:
                    c.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.pos = max(want, self.pos + 1)
        imgs = [self._read_one(c, p) for c, p in zip(self.caps, self.paths, strict=True)]
        t = time.monotonic_ns()
        if len(imgs) == 2:
            image = pack(imgs[0], imgs[1], self.layout)
        else:
            image = to_bgr(imgs[0])
            if image.shape[1] % 2:
                image = image[:, :-1]
        self.count += 1
        return StereoFrame(np.ascontiguousarray(image), self.layout, t, self.count)

    def close(self) -> None:
        for c in self.caps:
            c.release()
        self.caps = []


CaptureFactory = Callable[[int], Any]


def _v4l2_capture(index: int) -> Any:
    return cv2.VideoCapture(index, cv2.CAP_V4L2)


class UsbSource(StereoSource):
    """USB cameras through OpenCV: one stereo camera delivering side-by-side frames (one index), or two
    cameras (two indices) grabbed back to back and then decoded, which keeps the pair within a frame.

    `capture_factory` opens index -> cv2.VideoCapture-like object (tests hand in file-backed captures).
    """

    def __init__(self, indices: list[int], eye_width: int, height: int, fps: int,
                 capture_factory: CaptureFactory | None = None) -> None:
        if len(indices) not in (1, 2):
            raise VideoSourceError(f"usb source takes one stereo camera or two cameras, got {indices}")
        factory = capture_factory or _v4l2_capture
        self.name = "usb:" + ",".join(map(str, indices))
        self.indices = indices
        self.caps = []
        for i in indices:
            cap = factory(i)
            if cap is None or not cap.isOpened():
                self.close()
                raise VideoSourceError(
                    f"no USB camera at index {i}: /dev/video{i} is missing, busy, or not a capture device"
                )
            width = eye_width * (2 if len(indices) == 1 else 1)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a driver queue of old ones
            self.caps.append(cap)
        self.count = 0

    def read(self) -> StereoFrame:
        for cap, i in zip(self.caps, self.indices, strict=True):
            if not cap.grab():
                raise VideoSourceError(f"USB camera {i} stopped delivering frames (unplugged?)")
        t = time.monotonic_ns()
        imgs = []
        for cap, i in zip(self.caps, self.indices, strict=True):
            ok, img = cap.retrieve()
            if not ok or img is None:
                raise VideoSourceError(f"USB camera {i} delivered an undecodable frame")
            imgs.append(img)
        self.count += 1
        if len(imgs) == 2:
            image = pack(imgs[0], imgs[1])
        else:
            image = to_bgr(imgs[0])
            if image.shape[1] % 2:
                image = image[:, :-1]
        return StereoFrame(np.ascontiguousarray(image), Layout.SIDE_BY_SIDE, t, self.count)

    def close(self) -> None:
        for c in self.caps:
            c.release()
        self.caps = []


SPEC_HELP = (
    "rendered | synthetic | file:SBS.mp4 | file:LEFT.mp4,RIGHT.mp4 | usb:0 | usb:0,1 | realsense[:SERIAL] | "
    "realsense-color[:SERIAL] | realsense-file:REC.db3"
)


def open_source(spec: str, cfg: VideoConfig, *, config: Config | None = None, state: str | None = None
                ) -> StereoSource:
    """Build the source a config string names; VideoSourceError with the accepted forms otherwise. `rendered` draws
    the arms from the bedside state block at `state` (None: the bedside has none: a still scene that says so), with
    `config`'s tissue, arm bases and camera (None: the defaults)."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "rendered":
        from video.rendered import RenderedStereo

        return RenderedStereo(config if config is not None else Config(), state)
    if kind == "synthetic":
        from video.synthetic import SyntheticStereo

        return SyntheticStereo(cfg.width, cfg.height, cfg.fps)
    if kind == "file" and arg:
        return FileSource([p for p in arg.split(",") if p])  # at the file's own frame rate
    if kind == "usb":
        try:
            idx = [int(x) for x in (arg or "0").split(",")]
        except ValueError:
            raise VideoSourceError(f"usb source wants indices like usb:0 or usb:0,1, got {spec!r}") from None
        return UsbSource(idx, cfg.width, cfg.height, cfg.fps)
    if kind in ("realsense", "realsense-color", "realsense-file"):
        from video.realsense import RealSenseSource

        if kind == "realsense-file":
            if not arg:
                raise VideoSourceError("realsense-file needs a path: realsense-file:REC.db3")
            return RealSenseSource(file=arg, color=False, width=cfg.width, height=cfg.height, fps=cfg.fps)
        return RealSenseSource(serial=arg or None, color=kind == "realsense-color", width=cfg.width,
                               height=cfg.height, fps=cfg.fps)
    raise VideoSourceError(f"unknown video source {spec!r}; use {SPEC_HELP}")
