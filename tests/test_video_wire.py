"""Video wire codec: exact round trips, and every malformed input is a specific VideoWireError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport import video_wire as wire
from transport.video_wire import (
    Codec,
    Frame,
    FrameHeader,
    Layout,
    ModeReason,
    Report,
    ReportFlags,
    decode,
    encode_frame,
    encode_report,
)


def header(**kw) -> FrameHeader:
    base = dict(codec=Codec.H264, keyframe=True, layout=Layout.SIDE_BY_SIDE, stream_id=7, frame_id=42,
                capture_ns=123_456_789, send_ns=123_999_000, source_seq=41, content_sig=0xDEADBEEF,
                width=2560, height=720, bitrate_kbps=12000)
    base.update(kw)
    return FrameHeader(**base)


def test_frame_round_trip():
    msg = encode_frame(header(), b"\x00\x00\x00\x01payload")
    assert len(msg) == wire.FRAME_HEADER_SIZE + 11
    out = decode(msg)
    assert isinstance(out, Frame)
    assert out.header == header()
    assert out.payload == b"\x00\x00\x00\x01payload"


def test_report_round_trip():
    r = Report(ReportFlags.KEYFRAME_REQUEST, 7, 42, 123, 456, 789, 3, 100)
    b = encode_report(r)
    assert len(b) == wire.REPORT_SIZE == 64
    assert decode(b) == r


def test_report_carries_the_viewers_decode_and_paint_times():
    """Version 3: what decoding and painting cost the viewer travels back to the sender (video/adapt.py)."""
    r = Report(ReportFlags(0), 7, 42, 123, 456, 789, 3, 100, decode_us=4_200, paint_us=6_100, paint_lag_us=12_000)
    out = decode(encode_report(r))
    assert out == r
    assert (out.decode_us, out.paint_us, out.paint_lag_us) == (4_200, 6_100, 12_000)
    assert wire.VERSION == 3
    with pytest.raises(wire.InvalidField):
        encode_report(Report(ReportFlags(0), 1, 2, 3, 4, 5, 0, 0, paint_us=2**32))
    with pytest.raises(wire.UnsupportedVersion):  # a version-2 viewer is refused, not misread
        decode(encode_report(r)[:4] + b"\x02" + encode_report(r)[5:])


def test_frame_header_states_the_video_mode():
    h = header(fps=30, mode_reason=ModeReason.CONSOLE)
    out = decode(encode_frame(h, b"x"))
    assert isinstance(out, Frame) and out.header == h
    assert (out.header.fps, out.header.mode_reason) == (30, ModeReason.CONSOLE)
    with pytest.raises(wire.InvalidField):
        encode_frame(header(fps=wire.MAX_FPS + 1), b"x")
    bad_fps = bytearray(encode_frame(h, b"x"))
    bad_fps[10:12] = struct.pack("<H", wire.MAX_FPS + 1)
    with pytest.raises(wire.InvalidField):
        decode(bytes(bad_fps))


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda b: b[:10], wire.Truncated),
        (lambda b: b"XXXX" + b[4:], wire.BadMagic),
        (lambda b: b[:4] + b"\x09" + b[5:], wire.UnsupportedVersion),
        (lambda b: b[:5] + b"\x09" + b[6:], wire.UnknownType),
        (lambda b: b[:6] + b"\x07" + b[7:], wire.UnknownCodec),
        (lambda b: b[:7] + b"\x80" + b[8:], wire.InvalidField),  # unknown flag bit
        (lambda b: b[:8] + b"\x05" + b[9:], wire.InvalidField),  # unknown layout
        (lambda b: b[:9] + b"\x09" + b[10:], wire.InvalidField),  # unknown mode reason
        (lambda b: b[:-1], wire.Truncated),  # payload shorter than the header says
        (lambda b: b + b"x", wire.LengthMismatch),
        (lambda b: b[:52] + struct.pack("<H", 0) + b[54:], wire.InvalidField),  # width 0
    ],
)
def test_malformed_frames_raise_specific_errors(mutate, error):
    good = encode_frame(header(), b"0123456789")
    with pytest.raises(error):
        decode(mutate(good))


def test_report_with_wrong_length_or_reserved_bits():
    good = encode_report(Report(ReportFlags(0), 1, 2, 3, 4, 5, 0, 0))
    with pytest.raises(wire.Truncated):
        decode(good[:-1])
    with pytest.raises(wire.LengthMismatch):
        decode(good + b"\x00")
    with pytest.raises(wire.InvalidField):
        decode(good[:6] + b"\x80" + good[7:])
    with pytest.raises(wire.InvalidField):
        decode(good[:7] + b"\x01" + good[8:])  # reserved


def test_encode_refuses_what_the_wire_cannot_carry():
    with pytest.raises(wire.InvalidField):
        encode_frame(header(width=0), b"x")
    with pytest.raises(wire.InvalidField):
        encode_frame(header(), b"")
    with pytest.raises(wire.InvalidField):
        encode_frame(header(stream_id=2**32), b"x")
    with pytest.raises(wire.InvalidField):
        encode_report(Report(ReportFlags(0), 1, 2, 3, 4, -1, 0, 0))


def test_decode_rejects_non_bytes():
    with pytest.raises(wire.VideoWireError):
        decode("SRGV")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_crash(data):
    try:
        out = decode(data)
    except wire.VideoWireError:
        return
    assert isinstance(out, Frame | Report)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 63), st.integers(0, 255), st.binary(min_size=1, max_size=50))
def test_fuzz_one_corrupted_header_byte(pos, value, payload):
    good = bytearray(encode_frame(header(), payload))
    good[pos] = value
    try:
        out = decode(bytes(good))
    except wire.VideoWireError:
        return
    # whatever survives is complete and consistent with its own header
    assert isinstance(out, Frame)
    assert len(out.payload) == len(payload)
    assert 1 <= out.header.width <= wire.MAX_DIMENSION and 1 <= out.header.height <= wire.MAX_DIMENSION
