"""Frame code in the pixels, and the two codecs: one packet per frame, IDR on request, rate control,
bad packets as CodecError."""

from __future__ import annotations

import numpy as np
import pytest

from transport.video_wire import Codec, Layout
from video.codecs import CodecError, H264Decoder, H264Encoder, JpegDecoder, JpegEncoder, make_decoder
from video.framecode import content_signature, draw_code, mark_stale, read_code, read_eye_codes
from video.synthetic import SyntheticStereo

W, H = 320, 240  # per eye


@pytest.fixture(scope="module")
def frames():
    src = SyntheticStereo(W, H, 30, paced=False)
    return [src.read() for _ in range(40)]


def test_frame_code_round_trip_and_misread():
    img = np.zeros((64, 300, 3), np.uint8)
    for n in (0, 1, 12345, 2**24 - 1):
        draw_code(img, n)
        assert read_code(img) == n
    img[10:20, 20:60] = 255 - img[10:20, 20:60]  # damage it: the check byte refuses the misread
    assert read_code(img) is None
    assert read_code(np.zeros((10, 10), np.uint8)) is None


def test_synthetic_eyes_carry_the_same_counter_and_have_disparity(frames):
    for i, f in enumerate(frames[:5]):
        assert read_eye_codes(f.image, f.layout) == (i, i)
    left, right = frames[0].left.astype(int), frames[0].right.astype(int)
    row = slice(H // 2 - 20, H // 2 + 20)
    assert np.abs(left[row] - right[row]).mean() > 5  # the eyes differ (disparity) ...
    shifted = np.abs(left[row, 20:-20] - np.roll(right, 2, axis=1)[row, 20:-20]).mean()
    assert shifted < np.abs(left[row] - right[row]).mean()  # ... and the background is a small shift


def test_content_signature_changes_with_content(frames):
    sigs = {content_signature(f.image) for f in frames}
    assert len(sigs) == len(frames)
    assert content_signature(frames[0].image.copy()) == content_signature(frames[0].image)


def test_mark_stale_never_looks_live(frames):
    img = frames[0].image
    out = mark_stale(img, "VIDEO STALE 312 ms", Layout.SIDE_BY_SIDE)
    assert out.shape == img.shape and out is not img
    assert tuple(out[1, img.shape[1] // 2]) == (0, 0, 255)  # red frame
    assert out.astype(int).mean() < img.astype(int).mean()  # darkened
    assert np.array_equal(frames[0].image, img)  # the original is untouched


def test_h264_one_packet_per_frame_idr_on_request_and_code_survives(frames):
    enc = H264Encoder(2 * W, H, 30, 3000)
    dec = H264Decoder()
    keys = []
    for i, f in enumerate(frames):
        pkt = enc.encode(f.image, force_key=(i == 20))
        keys.append(pkt.keyframe)
        img = dec.decode(pkt.data)  # no delay: the picture of packet i comes out of packet i
        assert img.shape == f.image.shape
        assert read_eye_codes(img, Layout.SIDE_BY_SIDE) == (i, i)
    assert [i for i, k in enumerate(keys) if k] == [0, 20]


def test_h264_idr_is_decodable_alone(frames):
    enc = H264Encoder(2 * W, H, 30, 3000)
    pkts = [enc.encode(f.image, force_key=(i == 30)) for i, f in enumerate(frames)]
    late = H264Decoder()  # a viewer that joins at the requested IDR
    assert read_eye_codes(late.decode(pkts[30].data), Layout.SIDE_BY_SIDE) == (30, 30)


def test_h264_bitrate_change_takes_effect(frames):
    enc = H264Encoder(2 * W, H, 30, 4000)
    big = [len(enc.encode(f.image).data) for f in frames[:20]][5:]
    enc.set_bitrate(300)
    small = [len(enc.encode(f.image).data) for f in frames[20:]][5:]
    assert np.mean(small) < 0.5 * np.mean(big)


def test_h264_decoded_picture_is_the_reference_conversion(frames):
    """The decoder converts from its own planes (video/codecs.py `to_bgr`): the very pixels of PyAV's 4:2:0 array
    converted by OpenCV, so the faster path changes no picture."""
    import av
    import cv2

    enc = H264Encoder(2 * W, H, 30, 3000)
    dec, ref = H264Decoder(), av.CodecContext.create("h264", "r")
    for i, f in enumerate(frames[:12]):
        pkt = enc.encode(f.image, force_key=(i == 6))
        yuv = ref.decode(av.Packet(pkt.data))[-1].to_ndarray(format="yuv420p")
        assert np.array_equal(dec.decode(pkt.data), cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))


def test_to_bgr_takes_other_formats_and_refuses_odd_sizes(frames):
    import av
    import cv2

    from video.codecs import to_bgr

    img = frames[0].image
    for fmt in ("yuvj420p", "yuv444p"):  # a stream from elsewhere: made 4:2:0 first, same picture
        out = to_bgr(av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=fmt))
        assert out.shape == img.shape and cv2.PSNR(img, out) > 35
    with pytest.raises(CodecError):
        to_bgr(av.VideoFrame(31, 17, "yuv420p"))


def test_decoders_reject_garbage_with_codec_error():
    with pytest.raises(CodecError):
        H264Decoder().decode(b"\x00\x00\x00\x01\x65garbage")
    with pytest.raises(CodecError):
        JpegDecoder().decode(b"not a jpeg")
    with pytest.raises(CodecError):
        H264Encoder(641, 480, 30, 1000)
    with pytest.raises(CodecError):
        make_decoder(99)  # type: ignore[arg-type]


def test_jpeg_round_trip_keeps_the_code(frames):
    enc, dec = JpegEncoder(2 * W, H, 50), JpegDecoder()
    pkt = enc.encode(frames[3].image)
    assert pkt.keyframe and enc.codec is Codec.JPEG
    assert read_eye_codes(dec.decode(pkt.data), Layout.SIDE_BY_SIDE) == (3, 3)
    with pytest.raises(CodecError):
        enc.encode(frames[0].image[:, :W])
