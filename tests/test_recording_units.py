"""Black-box recording, pure parts: catalogue, converters, translator, taps, files (no recorder process)."""

from __future__ import annotations

import base64
import json
import math

import pytest
import zmq
from mcap.exceptions import EndOfFile
from mcap.reader import NonSeekingReader, make_reader

from base.config import ConfigError, load_config
from recording import catalog
from recording.convert import (
    DROPS,
    K_BEDSIDE,
    K_COMMAND,
    K_DROPS,
    K_JSON,
    K_VIDEO,
    VIDEO_RX,
    Item,
    ItemError,
    Translator,
    head,
    split_items,
    wall_time,
)
from recording.tap import ControlTap, VideoTap
from recording.writer import RecordingFiles, enforce_retention, role_files
from transport import codec
from transport.messages import (
    N_ARMS,
    Ack,
    AckStatus,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    CartesianSetpoint,
    ConsoleFlags,
    EStop,
    Event,
    EventKind,
    OperatingState,
    Reason,
    ServoCp,
    Telemetry,
)
from transport.video_wire import Codec, FrameHeader, Layout, encode_frame

WALL = 1_700_000_000_000_000_000 - 5_000_000_000  # mono_to_wall_ns used throughout
SP = CartesianSetpoint((0.01, 0.02, -0.1), (0.0, 0.0, 0.0, 1.0), 0.3)


def _servo(seq: int, send_ns: int, mask: int = 0b011) -> bytes:
    return codec.encode(ServoCp(7, seq, send_ns, ConsoleFlags.OPERATOR_PRESENT | ConsoleFlags.CLUTCH, mask,
                                (SP,) * N_ARMS))


def _ack(seq: int, send_ns: int, echo_send_ns: int) -> bytes:
    return codec.encode(Ack(7, seq, send_ns, seq, echo_send_ns, echo_send_ns + 100, AckStatus.REJECTED_STEP,
                            OperatingState.ENABLED, Reason.LIMIT))


def _telemetry(seq: int, t: int) -> bytes:
    arm = ArmTelemetry(ArmMode.FOLLOWING, ArmFlags.HOMED | ArmFlags.LIMIT, SP, SP, (0.0,) * 7)
    return codec.encode(Telemetry(7, seq, t, OperatingState.ENABLED, Reason.NONE, False, 3, (arm,) * N_ARMS))


def _frame(codec_: Codec = Codec.H264, capture: int = 1000, send: int = 2000) -> bytes:
    h = FrameHeader(codec_, True, Layout.SIDE_BY_SIDE, 9, 4, capture, send, 11, 0, 64, 32, 3000)
    return encode_frame(h, b"\x00\x00\x00\x01\x67payload")


def test_every_catalogue_schema_is_json_schema_with_a_title_matching_its_name() -> None:
    for role in catalog.ROLES:
        chans = catalog.channels(role)
        assert len({c.topic for c in chans}) == len(chans)
        for ch in chans:
            assert ch.topic.startswith(f"/{role}/")
            schema = json.loads(catalog.schema_bytes(ch.schema))
            assert schema["title"] == ch.schema and schema["type"] == "object"
    fox = catalog.SCHEMAS["foxglove.PoseInFrame"]["properties"]
    assert set(fox) == {"timestamp", "frame_id", "pose"}
    assert set(catalog.SCHEMAS["foxglove.CompressedVideo"]["properties"]) == {"timestamp", "frame_id", "data",
                                                                             "format"}
    assert catalog.video_schema("jpeg") == "foxglove.CompressedImage"


def test_items_round_trip_and_bad_items_are_errors() -> None:
    frames = [head(K_COMMAND, 123, b"surgeon:a"), b"x", head(K_BEDSIDE, -5), b"y"]
    items = list(split_items(frames))
    assert items == [Item(K_COMMAND, 123, b"surgeon:a", b"x"), Item(K_BEDSIDE, -5, b"", b"y")]
    with pytest.raises(ItemError):
        list(split_items([b"abc"]))
    with pytest.raises(ItemError):
        list(split_items([b"ab", b"payload"]))


def test_bedside_command_ack_telemetry_records() -> None:
    tr = Translator("bedside", WALL)
    (topic, t, cmd), = tr.translate(Item(K_COMMAND, 500, b"surgeon:alice", _servo(3, 400)))
    assert topic == "/bedside/command" and t == 500
    assert cmd["type"] == "servo_cp" and cmd["peer"] == "surgeon:alice" and cmd["send_ns"] == 400
    assert cmd["flags"] == {"operator_present": True, "clutch": True, "camera": False}
    assert cmd["arms"][0] == {"name": "PSM1", "position": [0.01, 0.02, -0.1],
                              "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}, "jaw": 0.3}
    (topic, _, ack), = tr.translate(Item(K_BEDSIDE, 600, b"", _ack(3, 600, 400)))
    assert topic == "/bedside/ack" and ack["status"] == "REJECTED_STEP" and ack["rejected"] is True
    assert ack["reason"] == "LIMIT" and "rtt_us" not in ack
    recs = tr.translate(Item(K_BEDSIDE, 5_000_000_000, b"", _telemetry(4, 5_000_000_000)))
    assert [r[0] for r in recs] == ["/bedside/telemetry", "/bedside/PSM1/measured_cp", "/bedside/PSM2/measured_cp",
                                    "/bedside/PSM3/measured_cp", "/bedside/ECM/measured_cp"] + ["/bedside/tf"] * 9
    # the transform tree (tests/test_foxglove.py): world -> 4 bases, ECM_tool -> the camera, 4 bases -> tools
    tel = recs[0][2]
    assert tel["arms"][1]["flags"] == ["HOMED", "LIMIT"] and tel["arms"][1]["mode"] == "FOLLOWING"
    pose = recs[1][2]
    assert pose["frame_id"] == "PSM1_base"
    assert pose["timestamp"] == {"sec": 1_700_000_000, "nsec": 0}
    assert pose["pose"]["position"] == {"x": 0.01, "y": 0.02, "z": -0.1}
    est = tr.translate(Item(K_COMMAND, 1, b"monitor:m", codec.encode(EStop(0, 1, 1, True))))[0][2]
    assert est["type"] == "estop" and est["engage"] is True


def test_malformed_commands_are_kept_and_garbage_items_counted() -> None:
    tr = Translator("bedside", WALL)
    (_, _, bad), = tr.translate(Item(K_COMMAND, 7, b"surgeon:x", b"\x00" * 10))
    assert bad["type"] == "malformed" and bad["size"] == 10 and bad["error"]
    assert tr.translate(Item(K_BEDSIDE, 7, b"", b"junk")) == [] and tr.invalid == 1
    assert tr.translate(Item(99, 7, b"", b"")) == [] and tr.invalid == 2
    assert tr.translate(Item(K_JSON, 7, b"link", b"{}")) == [] and tr.invalid == 3  # not a bedside topic


def test_console_ack_carries_rtt_and_servo_poses_are_decimated_to_100_hz() -> None:
    tr = Translator("console", WALL)
    (_, _, ack), = tr.translate(Item(K_BEDSIDE, 1_000_500_000, b"", _ack(3, 1_000_400_000, 1_000_000_000)))
    assert ack["rtt_us"] == pytest.approx(500.0)
    poses = 0
    for i in range(100):  # 100 ms of 1 kHz commands
        recs = tr.translate(Item(K_COMMAND, i * 1_000_000, b"", _servo(i + 1, i * 1_000_000)))
        assert recs[0][0] == "/console/command"
        poses += len(recs) - 1
        assert all(r[0] in ("/console/PSM1/servo_cp", "/console/PSM2/servo_cp") for r in recs[1:])  # mask 0b011
    assert poses == 10 * 2
    ev = codec.encode(Event(7, 3, 9, EventKind.INFO, Reason.NONE, OperatingState.ENABLED, OperatingState.ENABLED, "x"))
    assert tr.translate(Item(K_BEDSIDE, 9, b"", ev)) == []  # the engine's events carry it as source "bedside"
    (topic, _, link), = tr.translate(Item(K_JSON, 9, b"link", json.dumps({"link": "UP"}).encode()))
    assert topic == "/console/link" and link == {"link": "UP", "t_ns": 9}


def test_video_as_foxglove_and_frame_header_with_console_fate() -> None:
    tr = Translator("console", WALL)
    rx = (3_000, 3_500, 200, False, False)  # received, decoded, offset (bedside − console)
    recs = tr.translate(Item(K_VIDEO, 3_000, VIDEO_RX.pack(*rx), _frame()))
    (vt, _, fox), (ft, _, fr) = recs
    assert vt == "/console/video" and ft == "/console/video/frame"
    assert fox["format"] == "h264" and fox["frame_id"] == "endoscope_stereo"
    assert base64.b64decode(fox["data"]) == b"\x00\x00\x00\x01\x67payload"
    assert fox["timestamp"] == wall_time(1000 - 200 + WALL)
    assert fr["age_ms"] == pytest.approx((3_500 - (1000 - 200)) / 1e6)
    assert fr["size_bytes"] == 12 and fr["keyframe"] is True and fr["stale"] is False
    assert Translator.video_schema_of(recs[0]) == "foxglove.CompressedVideo"
    jpeg = Translator("bedside", WALL).translate(Item(K_VIDEO, 1, b"", _frame(Codec.JPEG)))
    assert jpeg[0][2]["format"] == "jpeg" and "received_ns" not in jpeg[1][2]
    assert Translator.video_schema_of(jpeg[0]) == "foxglove.CompressedImage"


def test_drop_reports_are_summed_per_producer() -> None:
    tr = Translator("bedside", WALL)
    tr.translate(Item(K_DROPS, 0, b"loop", DROPS.pack(5, 0)))
    tr.translate(Item(K_DROPS, 0, b"video", DROPS.pack(0, 7)))
    tr.translate(Item(K_DROPS, 0, b"loop", DROPS.pack(6, 0)))
    assert tr.dropped == {"control": 6, "video": 7}


def test_taps_never_block_count_drops_and_report_them_in_the_next_batch() -> None:
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.bind("inproc://rec-test-control")
    tap = ControlTap("inproc://rec-test-control", hwm=1, ctx=ctx, name="t")
    for i in range(50):  # nobody reads: the queue fills, sends fail at once, items are counted
        tap.add(K_BEDSIDE, i, b"a")
        tap.add(K_BEDSIDE, i, b"b")
        tap.flush()
    assert tap.dropped > 0 and tap.sent + tap.dropped // 2 == 50
    items: list[Item] = []
    for _ in range(100):  # the recorder catches up: the next batch that fits says how much was lost
        while pull.poll(10):
            items += list(split_items(pull.recv_multipart()))
        if any(i.t_ns == 99 for i in items):
            break
        tap.add(K_BEDSIDE, 99, b"c")
        tap.flush()
    drops = [i for i in items if i.kind == K_DROPS]
    assert drops and DROPS.unpack(drops[-1].payload) == (tap.dropped, 0)
    tap.close()
    vpull = ctx.socket(zmq.PULL)
    vpull.setsockopt(zmq.RCVHWM, 1)
    vpull.bind("inproc://rec-test-video")
    vtap = VideoTap("inproc://rec-test-video", hwm=1, ctx=ctx)
    for i in range(20):
        vtap.frame(i, b"frame")
    assert vtap.dropped > 0 and vtap.sent + vtap.dropped == 20
    vtap.close()
    pull.close(0)
    vpull.close(0)


def _files(tmp_path, **kw) -> RecordingFiles:
    args = {"compression": "zstd", "max_file_bytes": 10**9, "max_file_ns": 10**12, "retention_bytes": 10**10,
            "config": {"a": 1}, "config_toml": "[a]\n", "mono_to_wall_ns": WALL}
    args.update(kw)
    return RecordingFiles(tmp_path, "bedside", **args)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_a_flushed_but_unfinished_file_reads_to_its_last_chunk(tmp_path, compression) -> None:
    f = _files(tmp_path, compression=compression)
    path = f.open(0)
    tr = Translator("bedside", WALL)
    for i in range(1, 301):
        for topic, t, msg in tr.translate(Item(K_COMMAND, i * 1_000_000, b"s:x", _servo(i, i))):
            f.write(topic, t, msg)
        if i % 100 == 0:
            f.flush()  # a chunk boundary, as the recorder makes every chunk_ms
    f.write("/bedside/command", 10**9, {"t_ns": 10**9, "type": "ping"})  # never flushed: lost with the process
    seqs = []
    # No footer (the process died): the non-seeking reader reads every complete chunk, then hits the end.
    with open(path, "rb") as fh, pytest.raises(EndOfFile):
        for _schema, channel, message in NonSeekingReader(fh).iter_messages(log_time_order=False):
            if channel.topic == "/bedside/command":
                seqs.append(json.loads(message.data)["seq"])
    assert seqs == list(range(1, 301))
    f.close()
    with open(path, "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        assert summary is not None
        assert {c.topic for c in summary.channels.values()} == {c.topic for c in catalog.channels("bedside")}
        assert summary.statistics.message_count == 300 + 1 + 1  # + config + the late one


def test_chunk_indexes_are_kept_packed_and_the_closed_file_seeks_by_them(tmp_path) -> None:
    f = _files(tmp_path)
    path = f.open(0)  # the first chunk: channels + the config message
    tr = Translator("bedside", WALL)
    for i in range(1, 201):
        for topic, t, msg in tr.translate(Item(K_COMMAND, i * 1_000_000, b"s:x", _servo(i, i))):
            f.write(topic, t, msg)
        f.write("/bedside/counters", i * 1_000_000, {"t_ns": i * 1_000_000, "values": {"n": i}})
        f.flush()  # a chunk per iteration, as the recorder makes every chunk_ms
    packed = f.chunk_indexes
    assert packed is not None and len(packed) == 201
    assert packed.nbytes / len(packed) < 200  # serialized, not ~1.2 kB of Python objects per chunk
    f.close()
    with open(path, "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        assert summary is not None and len(summary.chunk_indexes) == 201
        assert all(ci.message_index_offsets for ci in summary.chunk_indexes)
        # A seek by time (what Foxglove does) uses the chunk indexes and message indexes.
        got = [json.loads(m.data)["seq"] for _s, _c, m in reader.iter_messages(
            topics=["/bedside/command"], starting_at=WALL + 150 * 1_000_000)]
        assert got == list(range(150, 201))


def test_rotation_by_size_and_retention_by_total(tmp_path) -> None:
    f = _files(tmp_path, compression="none", max_file_bytes=20_000, retention_bytes=60_000)
    f.open(0)
    t = 0
    for _ in range(400):
        t += 1_000_000
        f.write("/bedside/counters", t, {"t_ns": t, "values": {f"k{j}": j for j in range(20)}})
        f.flush()
        f.maybe_rotate(t)
    f.close()
    assert len(f.files) > 3
    left = role_files(tmp_path, "bedside")
    assert left[-1] == f.files[-1] and len(left) < len(f.files)  # the oldest went first
    assert sum(p.stat().st_size for p in left) <= 60_000 + 25_000
    assert enforce_retention(tmp_path, "bedside", 0, keep=left[-1]) == left[:-1]
    assert role_files(tmp_path, "bedside") == [left[-1]]


def test_rotation_by_age(tmp_path) -> None:
    f = _files(tmp_path, max_file_ns=1_000_000_000)
    f.open(0)
    assert not f.maybe_rotate(999_000_000)
    assert f.maybe_rotate(1_000_000_000)
    f.close()
    assert len(f.files) == 2 and f.files[0] != f.files[1]


def test_recording_config_is_validated() -> None:
    cfg = load_config(None, ["recording.compression=lz4", "recording.chunk_ms=100"])
    assert cfg.recording.compression == "lz4" and cfg.recording.enabled
    for bad, words in (("recording.compression=gzip", "recording.compression"),
                       ("recording.chunk_ms=5", "recording.chunk_ms"),
                       ("recording.retention_mb=10", "recording.retention_mb"),
                       ("recording.nope=1", "recording.nope")):
        with pytest.raises(ConfigError, match=words):
            load_config(None, [bad])
    assert math.isfinite(cfg.recording.max_file_s)
