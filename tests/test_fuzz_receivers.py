"""Hostile bytes at every receiver besides the bedside's (tests/test_fuzz.py): the console's ack and telemetry
path, the video receiver, the master bridge, the window link and the recording reader of `teleop report` and
`teleop replay`. Zero crashes (only the documented errors escape), bounded work, no arm motion from garbage.

The rigs and their invariants live in tests/receivers.py, shared with the atheris harnesses
(tests/fuzz_<target>.py; their ≥ 100,000-input runs are in docs/reliability.md, "Fuzzing every receiver").
Here each target gets a few hundred hypothesis examples, then one regression test per crash the fuzzing found.
"""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receivers import (
    ConsoleRig,
    MasterRig,
    RecordingRig,
    UiRig,
    VideoRig,
    edit,
    use_session,
    video_seeds,
    write_recording,
)

from base.config import load_config
from base.errors import UserError
from base.procs import teleop_command
from console.uilink import MAX_UI_BYTES, UiMessageError, decode_ui_message
from qa.redrive import plan
from qa.report import make_report
from qa.session import MAX_CHUNK_READ, RecordingError, Session
from transport import codec
from transport import video_wire as wire
from transport.messages import ARM_NAMES, MsgType
from video.codecs import CodecError, H264Encoder, JpegDecoder, JpegEncoder, budget, jpeg_size

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
EDITS = st.lists(st.tuples(st.integers(0, 2**17), st.integers(0, 255)), max_size=6)


def hostile(seeds: list[bytes], max_raw: int) -> st.SearchStrategy[bytes]:
    """Raw bytes, or a valid message with bytes overwritten, cut short and/or junk appended."""
    longest = max(len(s) for s in seeds)
    mutated = st.builds(edit, st.sampled_from(seeds), EDITS, st.none() | st.integers(0, longest),
                        st.binary(max_size=16))
    return st.one_of(st.binary(max_size=max_raw), mutated, mutated)


@pytest.fixture(scope="module")
def lcfg(key_overrides):
    return load_config(None, key_overrides)


# ------------------------------------------------------------------------------------------- console


@pytest.fixture(scope="module")
def console_rig(lcfg):
    return ConsoleRig(lcfg)


@settings(FUZZ, max_examples=200)
@given(st.data())
def test_console_receive_path_survives_hostile_frames(console_rig, data):
    for frame in data.draw(st.lists(hostile(console_rig.seeds, 700), min_size=1, max_size=4)):
        console_rig.feed(frame)


def test_deeply_nested_counters_are_a_protocol_error_not_a_recursion_crash(console_rig):
    """Found by reading the codec for the fuzz targets: 3 KB of "[" took json.loads past the recursion limit."""
    payload = b"[" * 3000
    frame = codec.HEADER.pack(codec.MAGIC, codec.VERSION, MsgType.COUNTERS, 0, 1, 2, 3, len(payload)) + payload
    with pytest.raises(codec.InvalidField, match="RecursionError"):
        codec.decode(frame)
    console_rig.feed(frame)  # dropped and counted by the console (and by the bedside, which uses the same decode)


# ------------------------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def video_rig(lcfg):
    return VideoRig(lcfg)


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_video_receiver_survives_hostile_frames(video_rig, data):
    frames = [f for f in map(wire.decode, video_rig.seeds) if isinstance(f, wire.Frame)]
    corrupt_payload = st.builds(lambda f, e, c, t: wire.encode_frame(f.header, edit(f.payload, e, c, t) or b"\0"),
                                st.sampled_from(frames), EDITS, st.none() | st.integers(0, 6000),
                                st.binary(max_size=16))  # a valid header: every one reaches a decoder
    for msg in data.draw(st.lists(hostile(video_rig.seeds, 2000) | corrupt_payload, min_size=1, max_size=3)):
        video_rig.feed(msg)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A valid 16x16 JPEG whose frame header is edited to declare another size (the body stays 16x16)."""
    jpg = bytearray(JpegEncoder(16, 16).encode(np.zeros((16, 16, 3), np.uint8)).data)
    sof = jpg.find(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpg)


def test_a_jpeg_declaring_a_huge_picture_is_refused_before_decoding():
    """Found by tests/fuzz_receiver.py video: a 600-byte JPEG declaring 30000x30000 cost 5.2 GB and 18 s in OpenCV."""
    bomb = _jpeg_declaring(30000, 30000)
    assert len(bomb) < 1000 and jpeg_size(bomb) == (30000, 30000)
    with pytest.raises(CodecError, match="30000x30000"):
        JpegDecoder().decode(bomb)
    with pytest.raises(CodecError, match="pixel budget"):
        JpegDecoder(budget(320, 96)).decode(_jpeg_declaring(640, 480))


def test_a_jpeg_payload_in_another_format_is_refused():
    """OpenCV's imdecode reads PNG, TIFF, BMP… too: only a JPEG (SOI, then a frame header) reaches it."""
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    with pytest.raises(CodecError, match="not a JPEG"):
        JpegDecoder().decode(png.tobytes())


def test_the_receiver_refuses_a_payload_bigger_than_its_header_says(video_rig):
    """The header announces 320x96; the payload is a 640x480 IDR: FFmpeg refuses it on the decoder's pixel
    budget (budget(320, 96)) before allocating the picture, and the receiver counts a decode error."""
    pkt = H264Encoder(640, 480, 30, 500).encode(np.zeros((480, 640, 3), np.uint8), force_key=True)
    head = wire.FrameHeader(wire.Codec.H264, True, wire.Layout.SIDE_BY_SIDE, 77, 1, 0, 0, 0, 0, 320, 96, 500)
    before = video_rig.rx.counters["decode_errors"]
    video_rig.feed(wire.encode_frame(head, pkt.data))
    assert video_rig.rx.counters["decode_errors"] == before + 1
    assert "Invalid data" in video_rig.rx.last_error
    video_rig.feed(wire.encode_frame(replace(head, codec=wire.Codec.JPEG, stream_id=78), _jpeg_declaring(30000, 30000)))
    assert "pixel budget" in video_rig.rx.last_error


def test_video_seeds_decode_cleanly(video_rig):
    """The fuzzers start from valid frames: each one decodes (or, the report, is refused as a report)."""
    for msg in video_seeds():
        video_rig.feed(msg)


# ------------------------------------------------------------------------------------------- master bridge


@pytest.fixture(scope="module")
def master_rig(lcfg):
    return MasterRig(lcfg)


@settings(FUZZ, max_examples=250)
@given(st.data())
def test_master_bridge_survives_hostile_messages(master_rig, data):
    for msg in data.draw(st.lists(hostile(master_rig.seeds, 300), min_size=1, max_size=4)):
        master_rig.feed(msg)


# ------------------------------------------------------------------------------------------- window link


@pytest.fixture(scope="module")
def ui_rig(lcfg):
    return UiRig(lcfg)


_UI_KEYS = ("type", "name", "value", "seq", "frame_id", "capture_ns", "signature", "source_seq")
JSON_LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
             | st.sampled_from(["heartbeat", "intent", "video", "set_scale", "reset_estop", *ARM_NAMES]))


def json_values(keys: tuple[str, ...]) -> st.SearchStrategy[object]:
    return st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(keys), c,
                                                                                     max_size=4), max_leaves=8)


@settings(FUZZ, max_examples=250)
@given(st.data())
def test_window_link_survives_hostile_messages(ui_rig, data):
    structured = st.dictionaries(st.sampled_from(_UI_KEYS), json_values(_UI_KEYS), max_size=5).map(
        lambda d: json.dumps(d).encode())
    for msg in data.draw(st.lists(hostile(ui_rig.seeds, 600) | structured, min_size=1, max_size=4)):
        ui_rig.feed(msg)


@pytest.mark.parametrize("msg", [
    b"[" * 4000,  # past the recursion limit
    b'{"type":"intent","name":"set_scale","value":' + b"9" * 400 + b"}",  # float() overflows
    b'{"type":"video","frame_id":1,"capture_ns":' + b"9" * 400 + b"}",  # the guard's ms arithmetic overflows
    b'{"type":"video","frame_id":' + b"9" * 30 + b',"capture_ns":1}',
])
def test_window_messages_that_crashed_the_engine_are_dropped(ui_rig, msg):
    """Found by tests/fuzz_receiver.py uilink: each escaped as RecursionError or OverflowError (in the engine
    process, from the window's own socket)."""
    assert len(msg) <= MAX_UI_BYTES
    with pytest.raises(UiMessageError):
        decode_ui_message(msg)
    ui_rig.feed(msg)


# ------------------------------------------------------------------------------------------- recordings


@pytest.fixture(scope="module")
def rec_rig(tmp_path_factory):
    return RecordingRig(tmp_path_factory.mktemp("fuzz-rec"), per_topic=2)


_REC_KEYS = ("type", "status", "arms", "name", "position", "orientation", "measured_cp", "setpoint_cp", "flags",
             "arm_mask", "jaw", "epoch", "seq", "send_ns", "clock_offset_ns", "rtt_ms", "rtt_us", "latency_ms",
             "reason", "text", "source", "kind", "to", "from", "capture_ns", "frame_id", "layout", "width", "height",
             "keyframe", "data", "format", "video", "refresh_frames", "dropped", "messages", "decoded_ns",
             "received_ns", "t_ns", "size_bytes", "age_ms", "stale", "operating_state", "mode", "link", "scale",
             "session_ready", "echo_seq", "rx_ns", "rejected", "engage", "x", "y", "z", "w")
REC_VALUES = json_values(_REC_KEYS)


@st.composite
def hostile_message_file(draw, rig: RecordingRig) -> bytes:
    """The intact recording with one message's JSON changed: fields overwritten with any JSON value, an arm's
    fields likewise, the whole body replaced, or its bytes mutated."""
    ti, mi = draw(st.integers(0, len(rig.topics) - 1)), draw(st.integers(0, 1))
    raw = rig.message(ti, mi)
    body = json.loads(raw)
    how = draw(st.sampled_from(["fields", "arm", "body", "bytes"]))
    fields = st.dictionaries(st.sampled_from(_REC_KEYS), REC_VALUES, min_size=1, max_size=3)
    if how == "bytes":
        data = edit(raw, draw(st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1,
                                       max_size=3)))
    elif how == "body":
        data = json.dumps(draw(REC_VALUES)).encode()
    elif how == "arm" and isinstance(body.get("arms"), list) and body["arms"]:
        body["arms"][0] = {**body["arms"][0], **draw(fields)}
        data = json.dumps(body).encode()
    else:
        data = json.dumps({**body, **draw(fields)}).encode()
    return rig.with_message(ti, mi, data)


@settings(FUZZ, max_examples=120)
@given(st.data())
def test_recording_reader_survives_hostile_files(rec_rig, data):
    longest = max(len(s) for s in rec_rig.seeds)
    files = st.builds(edit, st.sampled_from(rec_rig.seeds), EDITS, st.none() | st.integers(0, longest),
                      st.binary(max_size=16))
    rec_rig.feed(data.draw(files | hostile_message_file(rec_rig)))


def _chunk(compression: bytes, declared: int, data: bytes) -> bytes:
    """An MCAP chunk record (op 0x06) carrying `data` as its compressed records."""
    body = struct.pack("<QQQI", 0, 0, declared, 0) + struct.pack("<I", len(compression)) + compression
    body += struct.pack("<Q", len(data)) + data
    return struct.pack("<BQ", 0x06, len(body)) + body


def _with_first_record_after_header(seed: bytes, record: bytes) -> bytes:
    header_end = 8 + 9 + struct.unpack_from("<Q", seed, 9)[0]
    return seed[:header_end] + record + seed[header_end:]


def _load(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    with pytest.raises(RecordingError) as err:
        Session([path])
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert isinstance(err.value, UserError) and err.value.label == "recording error"
    return text


def test_decompression_bombs_are_refused_by_name(rec_rig, tmp_path):
    """Found writing the recording rig's seeds (tests/fuzz_receiver.py recording): a 33 kB zstd chunk declaring
    1 GB allocated it (zstd trusts its frame header over max_output_size), a 4 MB lz4 chunk expanded to 1 GB
    (2.1 GB peak, 4.8 s)."""
    seed = rec_rig.seeds[1]  # uncompressed, chunked
    small_zstd = zstandard.ZstdCompressor().compress(b"\x05" * (MAX_CHUNK_READ + 1))
    assert "over the" in _load(tmp_path / "console-zstd.mcap", _with_first_record_after_header(
        seed, _chunk(b"zstd", MAX_CHUNK_READ + 1, small_zstd)))
    assert "expands to" in _load(tmp_path / "console-zstd-lie.mcap", _with_first_record_after_header(
        seed, _chunk(b"zstd", 100, small_zstd)))
    import lz4.frame

    assert "lz4 chunk expands" in _load(tmp_path / "console-lz4.mcap", _with_first_record_after_header(
        seed, _chunk(b"lz4", 100, lz4.frame.compress(b"\x05" * (1 << 20)))))
    assert "unsupported chunk compression" in _load(tmp_path / "console-brotli.mcap", _with_first_record_after_header(
        seed, _chunk(b"brotli", 10, b"0123456789")))


def test_huge_declared_lengths_end_the_read_by_name(rec_rig, tmp_path):
    seed = bytearray(rec_rig.seeds[3])  # unchunked: the first record after the header is a schema or channel
    struct.pack_into("<Q", seed, 8 + 9 + struct.unpack_from("<Q", seed, 9)[0] + 1, 2**40)
    assert "no message could be read" in _load(tmp_path / "console-long.mcap", bytes(seed))


def test_files_without_teleop_messages_are_refused_by_name(rec_rig, tmp_path):
    meta = rec_rig.meta["console"]
    assert "no message could be read" in _load(tmp_path / "console-none.mcap", write_recording(meta, []))
    foreign = [("/camera/image", "sensor_msgs/Image", 1, 1, b"{}")]
    assert "none of its topics" in _load(tmp_path / "console-ros.mcap", write_recording(meta, foreign))
    late = [(t, s, lt, 2**63, d) for t, s, lt, _p, d in rec_rig.messages["console"][:3]]
    assert "beyond 2^63" in _load(tmp_path / "console-late.mcap", write_recording(meta, late))


def test_a_timeline_no_session_can_have_is_refused_by_name(rec_rig, tmp_path):
    """Found by probing the window with a fuzzed time: one publish time at 2^62 ns loaded, then the replay
    window's slider (ms in a 32-bit int) raised OverflowError."""
    meta, msgs = rec_rig.meta["console"], rec_rig.messages["console"]
    stretched = [*msgs[:-1], (*msgs[-1][:3], 2**62, msgs[-1][4])]
    assert "span 53376 days" in _load(tmp_path / "console-stretched.mcap", write_recording(meta, stretched))
    later = tmp_path / "console-later.mcap"
    later.write_bytes(write_recording(meta, [(t, s, lt, p + 8 * 86_400 * 10**9, d) for t, s, lt, p, d in msgs]))
    with pytest.raises(RecordingError, match="span 8 days") as err:
        Session([rec_rig.partner["bedside"], later])
    assert str(later) in str(err.value)


@pytest.mark.parametrize(("topic", "data", "what"), [
    ("/console/ack", b'{"status": "APPLIED", ', "is not JSON"),
    ("/console/ack", b"[" * 5000, "is not JSON"),
    ("/console/link", b"[1, 2]", "not a JSON object"),
    ("/console/telemetry", b'{"arms": "PSM1"}', "does not have the recorded shape"),
    ("/console/command", b'{"type": "servo_cp", "arm_mask": 1000}', "does not have the recorded shape"),
    ("/console/link", b'{"clock_offset_ns": 1e999}', "clock_offset_ns"),
])
def test_messages_of_the_wrong_shape_name_the_file(rec_rig, tmp_path, topic, data, what):
    """Found by tests/fuzz_receiver.py recording: each escaped from the report or the window as JSONDecodeError,
    RecursionError, AttributeError, TypeError, OverflowError or a numpy error."""
    path = tmp_path / "console-bad.mcap"
    msgs = [m if m[0] != topic else (*m[:4], data) for m in rec_rig.messages["console"]]
    path.write_bytes(write_recording(rec_rig.meta["console"], msgs))
    with pytest.raises(RecordingError, match=what) as err:
        use_session(Session([path]))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unreadable_video_payloads_show_as_missing_frames(rec_rig, tmp_path):
    """qa/video.py: bad JSON, bad base64 or no "data" in a recorded frame is a missing picture, not a crash."""
    path = tmp_path / "console-video.mcap"
    bad = iter([b'{"data": "!!!"}', b"not json", b'{"format": "h264"}'])
    msgs = [m if m[0] != "/console/video" else (*m[:4], next(bad, b"{}")) for m in rec_rig.messages["console"]]
    path.write_bytes(write_recording(rec_rig.meta["console"], msgs))
    use_session(Session([path]))


def test_a_recording_without_commands_cannot_be_redriven_and_says_which(rec_rig, tmp_path):
    path = tmp_path / "console-quiet.mcap"
    msgs = [m for m in rec_rig.messages["console"] if m[0] != "/console/command"]
    path.write_bytes(write_recording(rec_rig.meta["console"], msgs))
    with pytest.raises(RecordingError, match="nothing to re-drive") as err:
        plan(Session([path]))
    assert str(path) in str(err.value)


def test_report_on_a_damaged_recording_is_one_line_and_leaves_nothing(rec_rig, tmp_path):
    """End to end, the real command: `teleop report` on a file whose ack is not JSON."""
    path = tmp_path / "console-damaged.mcap"
    msgs = [m if m[0] != "/console/ack" else (*m[:4], b"{oops") for m in rec_rig.messages["console"]]
    path.write_bytes(write_recording(rec_rig.meta["console"], msgs))
    out = subprocess.run(teleop_command("report", str(path), "-o", str(tmp_path / "out"), "--no-progress"),
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert lines[0].startswith("teleop: recording error:") and str(path) in lines[0]
    assert not (tmp_path / "out").exists()


def test_report_and_window_show_odd_but_readable_values(rec_rig, tmp_path, qtbot):
    """Values of the right shape but odd content (numbers where text belongs, a latency as text, NaN and
    infinity) load, and the report and the replay window are built from them."""
    odd = {"/console/event": b'{"source": 5, "name": ["x"], "reason": null, "text": {"a": 1}}',
           "/bedside/freeze": b'{"latency_ms": "slow", "reason": 7, "text": 1.5}',
           "/console/ack": b'{"status": 3, "rtt_us": NaN, "epoch": 1}',
           "/console/link": b'{"rtt_ms": Infinity, "clock_offset_ns": null, "scale": -1e300}'}
    paths = []
    for role in ("console", "bedside"):
        msgs = [m if m[0] not in odd else (*m[:4], odd[m[0]]) for m in rec_rig.messages[role]]
        paths.append(tmp_path / f"{role}-odd.mcap")
        paths[-1].write_bytes(write_recording(rec_rig.meta[role], msgs))
    s = Session(paths)
    use_session(s)
    assert make_report([str(p) for p in paths], tmp_path / "report").exists()
    from qa.replay_window import ReplayWindow

    w = ReplayWindow(s)
    qtbot.addWidget(w)
    w.show()
    for e in range(len(s.events())):
        w.seek_to_event(e)
    w.seek(s.t1_ns)
