"""Pure codec for the video link: bytes in, one valid message out, or a VideoWireError.

No sockets, no clocks (sans-IO, like transport/codec.py). Two messages, each one ZeroMQ frame:

- FRAME (bedside -> console): a 120-byte header, then the encoded picture (both eyes packed in one image). The
  header's last 56 bytes say what a rendered frame shows (`SceneStamp`): the bedside state it was drawn from,
  down to the last servo_cp applied and the console's send time of it.
  Bytes 6-7 of the header say the sender's video mode: the frame rate it sends at and why the picture is below the
  configured size and rate (`ModeReason`; video/adapt.py).
- REPORT (console -> bedside): 64 bytes, no payload. Sent once per decoded frame (an ack that carries the
  receiver's hold time, so the sender can measure round trips on its own clock, and what decoding and painting
  cost the viewer's machine, so the sender can fit the picture to it), on a detected gap (with the
  keyframe-request flag), and as a hello every few hundred ms while no video arrives. With several paths, a
  PROBE report on every path every few tens of ms, which the sender echoes unchanged on the same connection
  (bedside -> console): the path's own liveness (video/failover.py).

`decode` never returns a half-valid message: magic, version, type, codec, layout, flags, reserved bytes,
sizes and the exact length are checked before anything is built. Layout table: docs/protocol.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

MAGIC = b"SRGV"
VERSION = 3
"""2: the frame header carries the `SceneStamp` (120 bytes; version 1 had 64). 3: the frame header says the video
mode (frame rate, `ModeReason`), the report the viewer's decode and paint times (video/adapt.py)."""

# magic ver type codec flags layout mode_reason fps | stream frame_id capture send source_seq sig w h plen kbps
# | state_seq telemetry_seq applied_seq applied_send applied_rx state_ns applied_epoch render_us
_FRAME = struct.Struct("<4sBBBBBBHIQqqQIHHII" + "QQQqqqII")
# magic ver type flags rsv decode_us | stream frame_id echo_send_ns rx_ns hold_ns lost decoded paint_us paint_lag_us
_REPORT = struct.Struct("<4sBBBBIIQqqqIIII")
FRAME_HEADER_SIZE = _FRAME.size  # 120
REPORT_SIZE = _REPORT.size  # 64
MAX_PAYLOAD_BYTES = 96 * 1024 * 1024
"""The largest encoded picture: the raw size (3 bytes a pixel) of the largest stereo picture the configuration
allows, two 4096x4096 eyes (base/config.py `video.width`/`height`). The largest encoded frame is JPEG at
quality 100 of the worst content found (binary noise): 2.3 bytes a pixel, 77 MB at that size (margin 31 %);
H.264 at the largest bitrate and VBV is capped at 12.5 MB a frame. tests/test_bounded_frames.py checks both."""
MAX_DIMENSION = 8192
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class MsgType(IntEnum):
    FRAME = 1
    REPORT = 2


class Codec(IntEnum):
    H264 = 1
    JPEG = 2


class Layout(IntEnum):
    """How the two eyes sit in the one encoded picture."""

    SIDE_BY_SIDE = 0  # left | right
    TOP_BOTTOM = 1  # left over right
    MONO = 2  # one view for both eyes (e.g. a RealSense colour stream)


class ModeReason(IntEnum):
    """Why the sender sends less than the configured picture (size, frame rate, bitrate); video/adapt.py."""

    NONE = 0  # the configured picture
    LINK = 1  # frames queue on the network: bitrate (then size) lowered (video/abr.py)
    BEDSIDE = 2  # the bedside's machine: drawing and encoding a frame take too much of its period
    CONSOLE = 3  # the viewer's machine: decoding and painting a frame take too long, or the painter lags
    STARTING = 4  # started below the configured picture; raised step by step while the machines keep up


MAX_FPS = 1000
"""The largest frame rate a header may state (the configuration allows 240)."""


class FrameFlags(IntFlag):
    KEYFRAME = 1  # decodable on its own (H.264 IDR; every JPEG)


class ReportFlags(IntFlag):
    KEYFRAME_REQUEST = 1  # the receiver is missing a frame or just joined: send an IDR
    HELLO = 2  # no frame to acknowledge: "I am here, send me video"
    PROBE = 4  # several paths: "is this path alive?"; the sender echoes it unchanged; never with another flag


_FRAME_FLAG_BITS = int(FrameFlags.KEYFRAME)
_REPORT_FLAG_BITS = int(ReportFlags.KEYFRAME_REQUEST | ReportFlags.HELLO | ReportFlags.PROBE)


class VideoWireError(ValueError):
    """Bytes that are not a valid video message. Counted and reported by the receiver, never acted on."""


class Truncated(VideoWireError):
    pass


class BadMagic(VideoWireError):
    pass


class UnsupportedVersion(VideoWireError):
    pass


class UnknownType(VideoWireError):
    pass


class UnknownCodec(VideoWireError):
    pass


class LengthMismatch(VideoWireError):
    pass


class InvalidField(VideoWireError):
    pass


def _check_report_flags(flags: int) -> None:
    if flags & ~_REPORT_FLAG_BITS:
        raise InvalidField(f"unknown report flag bits {flags:#x}")
    if flags & ReportFlags.PROBE and flags != ReportFlags.PROBE:
        raise InvalidField(f"a probe carries no other report flag ({flags:#x})")


@dataclass(frozen=True, slots=True)
class SceneStamp:
    """What a rendered frame shows: the bedside state it was drawn from (transport/bedside_state.py). All zero for a
    picture not drawn from the bedside's state (a camera, a file, the pattern source)."""

    state_seq: int = 0  # the bedside state snapshot (one per bedside tick); 0 = not drawn from bedside state
    state_ns: int = 0  # bedside clock: when that snapshot was taken, after the arms advanced
    telemetry_seq: int = 0  # the last TELEMETRY message the bedside published before the snapshot
    applied_epoch: int = 0  # session epoch of the command below
    applied_seq: int = 0  # the last servo_cp applied before the snapshot (0: none yet in this session)
    applied_send_ns: int = 0  # that command's header send time: the CONSOLE's clock
    applied_rx_ns: int = 0  # bedside clock: when that command was taken off the socket
    render_us: int = 0  # how long drawing the picture took


NO_STAMP = SceneStamp()


@dataclass(frozen=True, slots=True)
class FrameHeader:
    codec: Codec
    keyframe: bool
    layout: Layout
    stream_id: int  # random per sender start: a change tells the receiver to reset its decoder
    frame_id: int  # consecutive within a stream; a gap means a frame never reached the decoder
    capture_ns: int  # sender's monotonic clock when the camera delivered the picture
    send_ns: int  # sender's monotonic clock when the message left the encoder
    source_seq: int  # the camera's own frame counter (or the source's read counter)
    content_sig: int  # CRC32 of a subsample of the raw picture: unchanged content = stuck camera
    width: int  # of the packed picture (both eyes)
    height: int
    bitrate_kbps: int  # encoder target when this frame was made (informational)
    stamp: SceneStamp = NO_STAMP
    fps: int = 0  # the frame rate the sender sends at in its current mode (0: not stated)
    mode_reason: ModeReason = ModeReason.NONE  # why the picture is below the configured one (video/adapt.py)


@dataclass(frozen=True, slots=True)
class Frame:
    header: FrameHeader
    payload: bytes


@dataclass(frozen=True, slots=True)
class Report:
    flags: ReportFlags
    stream_id: int  # 0 before the first frame
    frame_id: int  # newest frame received (0 with HELLO)
    echo_send_ns: int  # that frame's send_ns, echoed: the sender times the round trip on its own clock
    rx_ns: int  # receiver clock when that frame was taken off the socket
    hold_ns: int  # receiver time between taking the frame and sending this report (decode), subtracted
    lost: int  # frames missing so far (gaps in frame_id)
    decoded: int  # frames decoded so far
    decode_us: int = 0  # what decoding this frame took the viewer (0: not measured, e.g. not decoded)
    paint_us: int = 0  # what painting its newest painted picture took (0: this viewer does not paint)
    paint_lag_us: int = 0  # decoded -> painted for that picture: how long it waited for the painter


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not (lo <= value <= hi):
        raise InvalidField(f"{name} {value} out of range [{lo}, {hi}]")


def encode_frame(h: FrameHeader, payload: bytes | bytearray | memoryview) -> bytes:
    """Header + payload as one message. Raises InvalidField for values the wire cannot carry."""
    n = len(payload)
    if n == 0 or n > MAX_PAYLOAD_BYTES:
        raise InvalidField(f"payload of {n} bytes (must be 1..{MAX_PAYLOAD_BYTES})")
    for name, v, lo, hi in (
        ("stream_id", h.stream_id, 0, U32_MAX),
        ("frame_id", h.frame_id, 0, U64_MAX),
        ("capture_ns", h.capture_ns, I64_MIN, I64_MAX),
        ("send_ns", h.send_ns, I64_MIN, I64_MAX),
        ("source_seq", h.source_seq, 0, U64_MAX),
        ("content_sig", h.content_sig, 0, U32_MAX),
        ("width", h.width, 1, MAX_DIMENSION),
        ("height", h.height, 1, MAX_DIMENSION),
        ("bitrate_kbps", h.bitrate_kbps, 0, U32_MAX),
        ("fps", h.fps, 0, MAX_FPS),
        ("state_seq", h.stamp.state_seq, 0, U64_MAX),
        ("telemetry_seq", h.stamp.telemetry_seq, 0, U64_MAX),
        ("applied_seq", h.stamp.applied_seq, 0, U64_MAX),
        ("applied_send_ns", h.stamp.applied_send_ns, I64_MIN, I64_MAX),
        ("applied_rx_ns", h.stamp.applied_rx_ns, I64_MIN, I64_MAX),
        ("state_ns", h.stamp.state_ns, I64_MIN, I64_MAX),
        ("applied_epoch", h.stamp.applied_epoch, 0, U32_MAX),
        ("render_us", h.stamp.render_us, 0, U32_MAX),
    ):
        _check_range(name, v, lo, hi)
    st = h.stamp
    head = _FRAME.pack(
        MAGIC, VERSION, MsgType.FRAME, Codec(h.codec), int(FrameFlags.KEYFRAME if h.keyframe else 0),
        Layout(h.layout), ModeReason(h.mode_reason), h.fps, h.stream_id, h.frame_id, h.capture_ns, h.send_ns,
        h.source_seq,
        h.content_sig, h.width, h.height, n, h.bitrate_kbps, st.state_seq, st.telemetry_seq, st.applied_seq,
        st.applied_send_ns, st.applied_rx_ns, st.state_ns, st.applied_epoch, st.render_us,
    )
    return head + bytes(payload)


def encode_report(r: Report) -> bytes:
    for name, v, lo, hi in (
        ("stream_id", r.stream_id, 0, U32_MAX),
        ("frame_id", r.frame_id, 0, U64_MAX),
        ("echo_send_ns", r.echo_send_ns, I64_MIN, I64_MAX),
        ("rx_ns", r.rx_ns, I64_MIN, I64_MAX),
        ("hold_ns", r.hold_ns, 0, I64_MAX),
        ("lost", r.lost, 0, U32_MAX),
        ("decoded", r.decoded, 0, U32_MAX),
        ("decode_us", r.decode_us, 0, U32_MAX),
        ("paint_us", r.paint_us, 0, U32_MAX),
        ("paint_lag_us", r.paint_lag_us, 0, U32_MAX),
    ):
        _check_range(name, v, lo, hi)
    _check_report_flags(int(r.flags))
    return _REPORT.pack(
        MAGIC, VERSION, MsgType.REPORT, int(r.flags), 0, r.decode_us, r.stream_id, r.frame_id, r.echo_send_ns,
        r.rx_ns, r.hold_ns, r.lost, r.decoded, r.paint_us, r.paint_lag_us,
    )


def _common(data: bytes, min_size: int) -> MsgType:
    if len(data) < min_size:
        raise Truncated(f"{len(data)} bytes is shorter than the {min_size}-byte header")
    magic, version, mtype = struct.unpack_from("<4sBB", data)
    if magic != MAGIC:
        raise BadMagic(f"bad magic {magic!r}")
    if version != VERSION:
        raise UnsupportedVersion(f"video protocol version {version}, this end speaks {VERSION}")
    try:
        return MsgType(mtype)
    except ValueError:
        raise UnknownType(f"unknown video message type {mtype}") from None


def decode(data: bytes | bytearray | memoryview) -> Frame | Report:
    """Parse one message. Returns a fully valid Frame or Report, or raises a VideoWireError subclass."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise VideoWireError(f"expected bytes, got {type(data).__name__}")
    mv = memoryview(data)
    mtype = _common(mv, 6)
    if mtype is MsgType.REPORT:
        if len(mv) != REPORT_SIZE:
            cls = Truncated if len(mv) < REPORT_SIZE else LengthMismatch
            raise cls(f"report must be {REPORT_SIZE} bytes, got {len(mv)}")
        (_, _, _, flags, r8, dec_us, stream, fid, echo, rx, hold, lost, dec, paint_us, lag_us) = _REPORT.unpack_from(mv)
        if r8:
            raise InvalidField("reserved report field must be 0")
        _check_report_flags(flags)
        if hold < 0:
            raise InvalidField(f"negative hold time {hold}")
        return Report(ReportFlags(flags), stream, fid, echo, rx, hold, lost, dec, dec_us, paint_us, lag_us)
    if len(mv) < FRAME_HEADER_SIZE:
        raise Truncated(f"{len(mv)} bytes is shorter than the {FRAME_HEADER_SIZE}-byte frame header")
    (_, _, _, codec, flags, layout, reason, fps, stream, fid, cap, send, sseq, sig, w, h, plen, kbps,
     st_seq, t_seq, a_seq, a_send, a_rx, st_ns, a_epoch, render_us) = _FRAME.unpack_from(mv)
    try:
        codec_e = Codec(codec)
    except ValueError:
        raise UnknownCodec(f"unknown codec {codec}") from None
    try:
        layout_e = Layout(layout)
    except ValueError:
        raise InvalidField(f"unknown eye layout {layout}") from None
    if flags & ~_FRAME_FLAG_BITS:
        raise InvalidField(f"unknown frame flag bits {flags:#x}")
    try:
        reason_e = ModeReason(reason)
    except ValueError:
        raise InvalidField(f"unknown video mode reason {reason}") from None
    if fps > MAX_FPS:
        raise InvalidField(f"frame rate {fps} out of range [0, {MAX_FPS}]")
    if not (1 <= w <= MAX_DIMENSION and 1 <= h <= MAX_DIMENSION):
        raise InvalidField(f"picture size {w}x{h} out of range")
    if plen == 0 or plen > MAX_PAYLOAD_BYTES:
        raise InvalidField(f"payload length {plen} out of range")
    have = len(mv) - FRAME_HEADER_SIZE
    if plen != have:
        cls = Truncated if plen > have else LengthMismatch
        raise cls(f"header says {plen} payload bytes, message carries {have}")
    if st_seq == 0 and (t_seq or a_seq or a_send or a_rx or st_ns or a_epoch or render_us):
        raise InvalidField("scene stamp fields set on a frame not drawn from bedside state (state seq 0)")
    stamp = NO_STAMP if st_seq == 0 else SceneStamp(st_seq, st_ns, t_seq, a_epoch, a_seq, a_send, a_rx, render_us)
    header = FrameHeader(codec_e, bool(flags & FrameFlags.KEYFRAME), layout_e, stream, fid, cap, send, sseq,
                         sig, w, h, kbps, stamp, fps, reason_e)
    return Frame(header, bytes(mv[FRAME_HEADER_SIZE:]))
