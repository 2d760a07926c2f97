"""Intel RealSense through pyrealsense2: infrared 1 and 2 of a D4xx as the stereo pair, or the colour stream.

Live devices and `.db3` recordings go through the same `rs.pipeline`; a recording made without any
hardware by `write_software_recording` (rs.software_device + rs.recorder) plays back through the real
pipeline with `config.enable_device_from_file`, which is how the tests exercise this path. With no
device present, opening fails with a VideoSourceError that says what to check.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable

import numpy as np

from transport.video_wire import Layout
from video.frames import StereoFrame, StereoSource, VideoSourceError, pack

try:
    import pyrealsense2 as rs
except ImportError as exc:  # pragma: no cover - the wheel is a dependency; libusb may be missing
    rs = None
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None


def _need_rs() -> None:
    if rs is None:
        raise VideoSourceError(
            f"pyrealsense2 cannot be imported ({_IMPORT_ERROR}); on Debian install libusb-1.0-0"
        )


class RealSenseSource(StereoSource):
    """A live camera (by serial, or the first one) or a `.db3` recording, looping."""

    def __init__(self, serial: str | None = None, color: bool = False, file: str | None = None,
                 width: int = 1280, height: int = 720, fps: int = 30, real_time: bool = True,
                 loop: bool = True, timeout_ms: int = 1000) -> None:
        _need_rs()
        self.timeout_ms = timeout_ms
        self.unpaired = 0
        self.pipe = rs.pipeline()
        cfg = rs.config()
        if file is not None:
            if not os.path.isfile(file):
                raise VideoSourceError(f"RealSense recording {file!r} does not exist")
            self.name = f"realsense-file:{file}"
            cfg.enable_device_from_file(file, repeat_playback=loop)
        else:
            devices = list(rs.context().query_devices())
            if not devices:
                raise VideoSourceError(
                    "no Intel RealSense device found: check the USB 3 cable and port, udev rules/permissions "
                    "and that libusb-1.0-0 is installed; or play a recording with realsense-file:REC.db3"
                )
            serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
            if serial is not None and serial not in serials:
                raise VideoSourceError(f"no RealSense with serial {serial}; connected: {', '.join(serials)}")
            serial = serial or serials[0]
            self.name = f"realsense:{serial}"
            cfg.enable_device(serial)
            if color:
                cfg.enable_stream(rs.stream.color, width, height, rs.format.bgr8, fps)
            else:
                cfg.enable_stream(rs.stream.infrared, 1, width, height, rs.format.y8, fps)
                cfg.enable_stream(rs.stream.infrared, 2, width, height, rs.format.y8, fps)
        try:
            profile = self.pipe.start(cfg)
        except RuntimeError as exc:
            raise VideoSourceError(f"RealSense {self.name} would not start: {exc}") from exc
        dev = profile.get_device()
        if file is not None:
            dev.as_playback().set_real_time(real_time)
        else:
            for s in dev.query_sensors():  # the IR projector's dots would show in both eyes
                if s.supports(rs.option.emitter_enabled):
                    s.set_option(rs.option.emitter_enabled, 0)
        streams = {(p.stream_type(), p.stream_index()) for p in profile.get_streams()}
        if (rs.stream.infrared, 1) in streams and (rs.stream.infrared, 2) in streams:
            self.mode = "ir-stereo"
        elif any(s == rs.stream.color for s, _ in streams):
            self.mode = "color"
        elif any(s == rs.stream.infrared for s, _ in streams):
            self.mode = "ir-mono"
        else:
            self.close()
            raise VideoSourceError(f"{self.name} has neither an infrared pair nor a colour stream")

    def read(self) -> StereoFrame:
        for _ in range(4):  # a D4xx exposes both imagers together: a pair from two exposures is skipped
            try:
                fs = self.pipe.wait_for_frames(self.timeout_ms)
            except RuntimeError as exc:
                raise VideoSourceError(
                    f"{self.name} delivered no frame within {self.timeout_ms} ms: {exc}"
                ) from exc
            t = time.monotonic_ns()
            if self.mode != "ir-stereo":
                break
            a, b = fs.get_infrared_frame(1), fs.get_infrared_frame(2)
            if not a or not b or a.get_frame_number() != b.get_frame_number():
                self.unpaired += 1
                continue
            image = pack(np.asanyarray(a.get_data()), np.asanyarray(b.get_data()))
            return StereoFrame(image, Layout.SIDE_BY_SIDE, t, int(a.get_frame_number()))
        else:
            raise VideoSourceError(f"{self.name} delivered no matching infrared pair in 4 framesets")
        f = fs.get_color_frame() if self.mode == "color" else fs.get_infrared_frame()
        if not f:
            raise VideoSourceError(f"{self.name} delivered no {self.mode} frame")
        img = np.asanyarray(f.get_data())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif f.get_profile().format() == rs.format.rgb8:
            img = img[:, :, ::-1]
        return StereoFrame(np.ascontiguousarray(img), Layout.MONO, t, int(f.get_frame_number()))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.pipe.stop()


def write_software_recording(path: str, pairs: Iterable[tuple[np.ndarray, np.ndarray]], fps: int = 30) -> int:
    """Record infrared 1/2 y8 pairs as a D4xx-like `.db3` with rs.software_device + rs.recorder (no
    hardware). Returns the number of pairs written."""
    _need_rs()
    if not path.endswith(".db3"):
        raise VideoSourceError("pyrealsense2 2.59 records only .db3 files")
    it = iter(pairs)
    first = next(it, None)
    if first is None:
        raise VideoSourceError("no frames to record")
    h, w = first[0].shape[:2]
    dev = rs.software_device()
    sensor = dev.add_sensor("Stereo Module")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy = w, h, 0.9 * w, 0.9 * w
    intr.ppx, intr.ppy, intr.model, intr.coeffs = w / 2, h / 2, rs.distortion.none, [0.0] * 5
    profiles = []
    for idx in (1, 2):
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = rs.stream.infrared, idx, idx
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt, vs.intrinsics = w, h, fps, 1, rs.format.y8, intr
        profiles.append(sensor.add_video_stream(vs))
    recorder = rs.recorder(path, dev)
    sensor.open(profiles)
    sensor.start(lambda f: None)
    n = 0
    keep = []  # the SDK reads the pixels after on_video_frame returns
    try:
        for pair in [first, *it]:
            for img, prof in zip(pair, profiles, strict=True):
                if img.shape[:2] != (h, w):
                    raise VideoSourceError("all recorded frames must have one size")
                px = np.ascontiguousarray(img if img.ndim == 2 else img[:, :, 1], dtype=np.uint8)
                keep.append(px)
                f = rs.software_video_frame()
                f.pixels, f.stride, f.bpp = px, w, 1
                f.timestamp, f.frame_number = n * 1000.0 / fps, n
                f.domain = rs.timestamp_domain.hardware_clock
                f.profile = prof.as_video_stream_profile()
                sensor.on_video_frame(f)
            n += 1
            time.sleep(0.002)
    finally:
        sensor.stop()
        sensor.close()
        del recorder
    return n
