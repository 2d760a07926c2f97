"""Codecs behind one interface: BGR picture in, one packet out; packet in, BGR picture out.

H.264 (PyAV/libx264) is tuned for latency: ultrafast preset, zerolatency tune (no lookahead, no B-frames,
one packet per frame, sliced threads), intra refresh instead of periodic IDRs, and a VBV cap so no frame
bursts the link. An IDR is made only on request (a receiver that joined or missed a frame). The
target bitrate can be changed between frames (libx264 reconfigures in place, no new keyframe).

Colour conversions are OpenCV's, and pictures cross into and out of FFmpeg without copies of PyAV's (CPU time
per frame on rendered frames, 1920x540 / 2560x720, `teleop bench frames`, 2-core machine under load 5-8):
  encode: BGR -> I420 by OpenCV, 0.4 / 0.7 ms (PyAV's reformat: ~2.9 ms at 1920x540); the I420 array wrapped
          for libx264 as it is (`VideoFrame.from_numpy_buffer`, 0.01 ms) instead of `from_ndarray` (0.16 / 0.25 ms:
          two copies, GIL held)
  decode: 4:2:0 -> BGR from the decoder's own planes (`to_bgr`: 0.38 / 0.59 ms, bit-identical) instead of
          `to_ndarray` + I420 conversion (0.41 / 0.64 ms; up to 0.2 ms more in other runs), whose plane copy holds
          the GIL that the console's GUI thread needs
x264 by thread count (0 = x264's 3 slices on 2 cores, 1, 2) measured the same CPU within noise, so x264 chooses.

JPEG (OpenCV) is for the LAN, monitoring and tests: every frame is a keyframe, quality is the knob.

PyAV's wheels bundle a GPL build of FFmpeg and x264: see docs/video.md, "Licensing".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from transport.video_wire import MAX_DIMENSION, Codec

MAX_PIXELS = MAX_DIMENSION * MAX_DIMENSION
"""A decoder's default pixel budget: the largest picture the wire can announce (docs/video.md)."""
_CODED_MARGIN = 32
"""H.264 checks its budget against the coded size, macroblock-aligned (up to 15 rows/columns more, 31 rows
for field coding): `budget(w, h)` adds this much to each side."""


def budget(width: int, height: int) -> int:
    """The pixel budget for a decoder fed pictures announced as `width`x`height`."""
    return (width + _CODED_MARGIN) * (height + _CODED_MARGIN)


class CodecError(RuntimeError):
    """A picture that cannot be encoded or a packet that cannot be decoded. Never crashes the receiver."""


@dataclass(frozen=True, slots=True)
class Packet:
    data: bytes
    keyframe: bool


def _check_size(image: np.ndarray, w: int, h: int) -> None:
    if image.shape[:2] != (h, w):
        raise CodecError(f"picture {image.shape[1]}x{image.shape[0]} != encoder {w}x{h}")


class Encoder(ABC):
    codec: Codec
    width: int
    height: int

    @abstractmethod
    def encode(self, image: np.ndarray, force_key: bool = False) -> Packet:
        """Exactly one packet per picture; `image` is HxWx3 BGR uint8 of the encoder's size."""

    @abstractmethod
    def set_bitrate(self, kbps: int) -> None:
        """Change the target between frames."""

    def close(self) -> None:  # noqa: B027
        pass


class Decoder(ABC):
    codec: Codec
    max_pixels: int = MAX_PIXELS
    """A packet that declares a bigger picture is refused before anything is allocated: a 600-byte JPEG can
    declare 30000x30000 and cost 5 GB and 18 s to decode (found by tests/fuzz_receiver.py video)."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """One packet to one BGR picture; CodecError if the packet yields none."""

    def reset(self) -> None:  # noqa: B027
        pass


class H264Encoder(Encoder):
    codec = Codec.H264

    def __init__(self, width: int, height: int, fps: int, bitrate_kbps: int, vbv_ms: float = 33.0,
                 refresh_frames: int = 60, threads: int = 0) -> None:
        if width % 2 or height % 2:
            raise CodecError(f"H.264 needs even dimensions, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
        cc.time_base = Fraction(1, fps)
        cc.framerate = Fraction(fps, 1)
        cc.max_b_frames = 0
        cc.gop_size = 100000  # no periodic IDR: intra refresh keeps the stream recoverable
        cc.bit_rate = bitrate_kbps * 1000
        if threads:
            cc.thread_count = threads
        self.vbv_ms = vbv_ms
        cc.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "maxrate": f"{bitrate_kbps}k",
            "bufsize": f"{max(1, int(bitrate_kbps * vbv_ms / 1000))}k",
            "forced-idr": "1",
            "x264-params": f"intra-refresh=1:keyint={refresh_frames}:bframes=0:rc-lookahead=0"
                           ":sync-lookahead=0:repeat-headers=1",
        }
        try:
            cc.open()
        except av.error.FFmpegError as exc:
            raise CodecError(f"cannot open libx264 at {width}x{height}: {exc}") from exc
        self.cc = cc
        self.bitrate_kbps = bitrate_kbps
        self.pts = 0

    def set_bitrate(self, kbps: int) -> None:
        # FFmpeg's libx264 wrapper compares bit_rate with x264's before each frame and reconfigures in
        # place; the VBV cap (maxrate/bufsize) stays as opened, so it still bounds every frame's burst.
        self.cc.bit_rate = kbps * 1000
        self.bitrate_kbps = kbps

    def encode(self, image: np.ndarray, force_key: bool = False) -> Packet:
        _check_size(image, self.width, self.height)
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        # wraps the array, no copy (it lives as long as the frame; libx264 copies the picture into its own)
        frame = av.VideoFrame.from_numpy_buffer(i420, format="yuv420p")
        frame.pts = self.pts
        self.pts += 1
        if force_key:
            frame.pict_type = av.video.frame.PictureType.I
        packets = self.cc.encode(frame)
        if len(packets) != 1:  # zerolatency guarantees one; anything else would add latency or lose data
            raise CodecError(f"libx264 returned {len(packets)} packets for one frame")
        # x264 also flags intra-refresh recovery points as keyframes; only an IDR is decodable on its own
        idr = force_key or frame.pts == 0
        return Packet(bytes(packets[0]), idr)

    def close(self) -> None:
        self.cc = None  # type: ignore[assignment]


class H264Decoder(Decoder):
    codec = Codec.H264

    def __init__(self, threads: int = 2, max_pixels: int = MAX_PIXELS) -> None:
        self.threads = threads
        self.max_pixels = max_pixels
        self.reset()

    def reset(self) -> None:
        cc = av.CodecContext.create("h264", "r")
        cc.thread_type = "SLICE"  # FRAME threading holds frames back: latency
        cc.thread_count = self.threads
        cc.options = {"max_pixels": str(self.max_pixels)}  # FFmpeg refuses bigger parameter sets (EINVAL)
        self.cc = cc

    def decode(self, data: bytes) -> np.ndarray:
        try:
            frames = self.cc.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            raise CodecError(f"H.264 decode failed: {exc}") from exc
        if not frames:
            raise CodecError("H.264 packet produced no picture (missing parameter sets or reference)")
        return to_bgr(frames[-1])


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    """A view of one plane's pixels (its padding past `width` left out): no copy."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded picture as BGR. 8-bit 4:2:0 (what libx264 sends): converted straight from the decoder's planes,
    the chroma interleaved as NV12 (a quarter of the picture), bit-identical to `to_ndarray` + I420 conversion and
    without its copy; any other format (a stream from elsewhere) is first made 4:2:0 by PyAV's reformat."""
    w, h = frame.width, frame.height
    if w % 2 or h % 2 or not w or not h:
        raise CodecError(f"decoded picture {w}x{h}: 4:2:0 needs even, non-zero sides")
    if frame.format.name == "yuv420p":
        uv = cv2.merge((_plane(frame, 1, w // 2, h // 2), _plane(frame, 2, w // 2, h // 2)))
        return cv2.cvtColorTwoPlane(_plane(frame, 0, w, h), uv, cv2.COLOR_YUV2BGR_NV12)
    try:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    except (ValueError, av.error.FFmpegError) as exc:
        raise CodecError(f"cannot convert a decoded {w}x{h} {frame.format.name} picture: {exc}") from exc


class JpegEncoder(Encoder):
    codec = Codec.JPEG

    def __init__(self, width: int, height: int, quality: int = 80) -> None:
        self.width, self.height = width, height
        self.base_quality = self.quality = quality
        self.bitrate_kbps = 0

    def set_bitrate(self, kbps: int) -> None:
        """JPEG has no rate control: the adaptive controller's level maps to quality instead."""
        self.bitrate_kbps = kbps

    def set_quality(self, quality: int) -> None:
        self.quality = int(min(100, max(10, quality)))

    def encode(self, image: np.ndarray, force_key: bool = False) -> Packet:
        _check_size(image, self.width, self.height)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise CodecError("JPEG encode failed")
        return Packet(buf.tobytes(), True)


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (DHT, JPG, DAC are not)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, read without decoding; None if `data` does not start
    like a JPEG or has no frame header before its first scan."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # scan or end of image before any frame header
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


class JpegDecoder(Decoder):
    codec = Codec.JPEG

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels

    def decode(self, data: bytes) -> np.ndarray:
        size = jpeg_size(data)  # also keeps OpenCV's other readers (PNG, TIFF, …) away from the payload
        if size is None:
            raise CodecError("not a JPEG: no frame header before the first scan")
        if size[0] * size[1] > self.max_pixels:
            raise CodecError(f"JPEG declares {size[0]}x{size[1]}, over the {self.max_pixels}-pixel budget")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise CodecError("not a decodable JPEG")
        return img


def make_decoder(codec: Codec, max_pixels: int = MAX_PIXELS) -> Decoder:
    if codec == Codec.H264:
        return H264Decoder(max_pixels=max_pixels)
    if codec == Codec.JPEG:
        return JpegDecoder(max_pixels)
    raise CodecError(f"no decoder for codec {codec!r}")


CODEC_NAMES = {"h264": Codec.H264, "jpeg": Codec.JPEG}
