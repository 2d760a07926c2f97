"""What every receiver must do with hostile bytes, written once for both fuzzers.

The hypothesis tests (tests/test_fuzz_receivers.py) and the atheris harnesses (tests/fuzz_<target>.py) drive
the same rigs. A rig holds one receiver in a realistic state (a console in a live session, a video receiver
that has decoded frames, a loaded recording…); `rig.feed(data)` hands it one input and raises AssertionError
when an invariant breaks. Any other exception escaping `feed` is a crash: a bug in the receiver.

Inputs are either raw bytes or a valid message made by the project's own encoders, then mutated: a few
bytes overwritten, cut short, junk appended (`edit`). `from_fuzzer` reads that recipe from atheris' bytes;
tests/test_fuzz_receivers.py draws it with hypothesis strategies.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pickle
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from base.config import Config
from bedside.agent import BedsideAgent
from console.controller import BedsideView, TeleopController
from console.engine import ConsoleEngine
from console.master import MasterButtons, MasterHand, MasterSample, ScriptedMaster
from console.masters.network import MessageError, NetworkMasterState, decode_master_message, encode_master_message
from console.uilink import UiMessageError, UiSupervisor, decode_ui_message
from qa.redrive import plan
from qa.session import RecordingError, Session
from qa.synth import synthesize
from qa.video import VideoTrack
from recording.catalog import Topics
from recording.convert import K_BEDSIDE, K_VIDEO, VIDEO_RX, Item, Translator
from transport import codec
from transport import video_wire as wire
from transport.messages import (
    N_ARMS,
    CartesianSetpoint,
    Counters,
    EStop,
    Event,
    EventKind,
    OperatingState,
    Ping,
    Reason,
    ServoCp,
)
from video.codecs import H264Encoder, JpegEncoder
from video.receiver import VideoReceiver
from video.synthetic import SyntheticStereo

MS = 1_000_000
_EDIT = struct.Struct("<HB")


# ----------------------------------------------------------------------------------------------- inputs


def edit(seed: bytes, edits: Sequence[tuple[int, int]] = (), cut: int | None = None, tail: bytes = b"") -> bytes:
    """`seed` with bytes overwritten (position modulo its length), cut to `cut` bytes, then `tail` appended."""
    b = bytearray(seed)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    if cut is not None:
        del b[cut:]
    return bytes(b) + tail


def from_fuzzer(seeds: Sequence[bytes], data: bytes) -> bytes:
    """atheris' bytes as one input. data[0] even: data[1:] as they are. Odd: seed data[1] (modulo the count),
    cut to data[2:4] bytes (u16; beyond the seed: no cut), with data[4] % 16 overwrites of 3 bytes each
    (position u16, value) that follow; whatever bytes remain are appended."""
    if len(data) < 5 or not data[0] & 1 or not seeds:
        return data[1:]
    seed = seeds[data[1] % len(seeds)]
    cut = int.from_bytes(data[2:4], "little")
    n = min(data[4] % 16, (len(data) - 5) // _EDIT.size)
    edits = [_EDIT.unpack_from(data, 5 + i * _EDIT.size) for i in range(n)]
    return edit(seed, edits, cut if cut < len(seed) else None, data[5 + n * _EDIT.size:])


def _fingerprint(obj: object, skip: tuple[str, ...] = ("counters",)) -> bytes:
    """The whole state of a pure object (counters aside): equal bytes = the receiver did not change."""
    return pickle.dumps({k: v for k, v in vars(obj).items() if k not in skip})


# ----------------------------------------------------------------------------------------------- console


class ConsoleRig:
    """The console's receive path (console/runner.py `_drain`): every frame off the control and telemetry
    sockets goes to `ConsoleEngine.on_bytes` and, as recorded, to the recorder's `Translator`.

    Two consoles: one in a live session with the real BedsideAgent in memory (as tests/test_console_engine.py),
    one whose surgeon never engages. Invariants per input: nothing but the documented drop escapes; a frame
    that does not decode changes nothing in the engine (counters aside); every frame the consoles send still
    decodes; the idle console never puts an arm in a servo_cp's mask (garbage cannot start motion)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.t = 0
        self.idle = ConsoleEngine(cfg, TeleopController(cfg.teleop, 0), 0)
        self.translator = Translator("console", 0)
        self.outcomes: Counter[str] = Counter()
        self.seeds: list[bytes] = []
        kinds: set[object] = set()
        for out in self._start():
            msg = codec.decode(out)
            if (type(msg), getattr(msg, "status", None)) not in kinds:
                kinds.add((type(msg), getattr(msg, "status", None)))
                self.seeds.append(out)
        self.seeds.append(self.agent.counters_message(self.t))
        self.seeds.append(codec.encode(Event(40, 99, self.t, EventKind.STATE_CHANGE, Reason.LIMIT,
                                             OperatingState.ENABLED, OperatingState.PAUSED, "é" * 20)))
        self.seeds.append(codec.encode(Counters(40, 100, self.t, {"a": 1, "b": 2**64 - 1})))
        self.seeds.append(codec.encode(Ping(40, 101, self.t)))  # console-to-bedside kinds, the wrong way round
        self.seeds.append(codec.encode(EStop(40, 102, self.t, True)))

    def _start(self) -> list[bytes]:
        """A new console and bedside (the clock runs on), engaged until an arm follows; what the bedside sent."""
        t = self.t
        self.agent = BedsideAgent(self.cfg.bedside, t, first_epoch=40)
        self.engine = ConsoleEngine(self.cfg, TeleopController(self.cfg.teleop, t), t)
        self.master = ScriptedMaster("circle", t, engage_at_s=0.05)
        sent: list[bytes] = []
        while not self.following() and self.t < t + 2000 * MS:
            sent += self.tick()
        assert self.following(), "the console never reached FOLLOWING"
        self.started_ns = self.t
        return sent

    def following(self) -> bool:
        return any(a["state"] == "FOLLOWING" for a in self.engine.controller.snapshot()["arms"].values())

    def tick(self) -> list[bytes]:
        """One millisecond of the live session; returns what the bedside sent the console."""
        self.t += MS
        t = self.t
        self.agent.tick(t)
        got: list[bytes] = []
        for frame in self.engine.step(t, self.master.read(t)):
            sent = codec.decode(frame)  # what the console sends must always be a valid message
            assert not isinstance(sent, ServoCp) or all(_finite(sp) for sp in sent.arms)
            got += [o.data for o in self.agent.on_message(t, b"console", frame, "surgeon:fuzz")]
        if t % (5 * MS) == 0:
            got.append(self.agent.telemetry(t))
        got += [codec.encode(ev) for ev in self.agent.drain_events()]
        for data in got:
            self.engine.on_bytes(t, data)
        return got

    def feed(self, data: bytes) -> None:
        t = self.t
        before = _fingerprint(self.engine)
        self.engine.on_bytes(t, data)
        try:
            self.outcomes[type(codec.decode(data)).__name__] += 1
        except codec.ProtocolError as exc:
            self.outcomes[f"refused: {type(exc).__name__}"] += 1
            assert _fingerprint(self.engine) == before, "a frame that does not decode changed the console"
        records = self.translator.translate(Item(K_BEDSIDE, t, b"", data))
        json.dumps(records, allow_nan=False)  # what the recorder writes
        self.idle.on_bytes(t, data)
        for frame in self.idle.step(t, MasterSample(t, (MasterHand(), MasterHand()), MasterButtons())):
            sent = codec.decode(frame)
            assert not isinstance(sent, ServoCp) or sent.arm_mask == 0, "garbage made an idle console move an arm"
        self.tick()
        if not self.following() or self.t > self.started_ns + 5000 * MS:
            self.outcomes["session restarted"] += 1
            self._start()


def _finite(sp: CartesianSetpoint) -> bool:
    return math.isfinite(sum(sp.position) + sum(sp.orientation) + sp.jaw)


# ----------------------------------------------------------------------------------------------- video


class _FakeDealer:
    """The receiver's DEALER socket as `VideoReceiver._step` uses it: one message waiting, reports kept."""

    def __init__(self) -> None:
        self.inbox: bytes | None = None
        self.sent: list[bytes] = []

    def poll(self, timeout_ms: int) -> bool:
        return self.inbox is not None

    def recv(self, flags: int, copy: bool = True):
        data, self.inbox = self.inbox, None
        return _Frame(memoryview(data or b""))

    def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(data)


class _Frame:
    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer


def video_seeds(n_h264: int = 4) -> list[bytes]:
    """Valid FRAME messages from the real encoders (H.264 IDR then P frames, JPEG, a second stream, a mono
    layout) of a small synthetic stereo picture, and one REPORT."""
    src = SyntheticStereo(160, 96, paced=False)
    w, h = 2 * src.w, src.h
    h264, jpeg = H264Encoder(w, h, 30, 300, refresh_frames=4), JpegEncoder(w, h, 60)
    out = []
    for i in range(n_h264):
        pkt = h264.encode(src.render(i, i * 33 * MS))
        out.append(wire.encode_frame(wire.FrameHeader(wire.Codec.H264, pkt.keyframe, wire.Layout.SIDE_BY_SIDE, 7,
                                                      i + 1, i * 33 * MS, i * 33 * MS + MS, i, i, w, h, 300),
                                     pkt.data))
    for sid, layout in ((7, wire.Layout.SIDE_BY_SIDE), (9, wire.Layout.MONO)):
        pkt = jpeg.encode(src.render(9, 0))
        out.append(wire.encode_frame(wire.FrameHeader(wire.Codec.JPEG, True, layout, sid, 20, 0, MS, 9, 9, w, h, 0),
                                     pkt.data))
    out.append(wire.encode_report(wire.Report(wire.ReportFlags.HELLO, 7, 3, 0, 0, 0, 0, 0)))
    return out


class VideoRig:
    """The console's video receive path: `VideoReceiver._step` (wire decode, admission, decoder, stale guard,
    reports) on one message from a fake socket, and the recorder's translation of the frame as received.

    Invariants: nothing escapes `_step` (its worker's catch-all would hide it), every message is counted
    as decoded, a bad message or a decode error; a decoded picture has exactly the size its header gave;
    every report sent back decodes; the guard's verdict can always be read."""

    def __init__(self, cfg: Config) -> None:
        self.rx = VideoReceiver(cfg, endpoint="tcp://127.0.0.1:9")
        self.rx.close()  # the worker thread ends; `feed` drives `_step` itself, on this thread
        self.sock = _FakeDealer()
        self.translator = Translator("console", 0)
        self.seeds = video_seeds()
        self.outcomes = self.rx.counters

    def from_fuzzer(self, data: bytes) -> bytes:
        """atheris' bytes as one message: data[0] bit 1 clear, `from_fuzzer` over the whole messages; set, a
        valid header around the payload of frame seed data[1] mutated by the rest of the recipe (so every
        such input reaches a decoder)."""
        if len(data) < 2 or not data[0] & 2:
            return from_fuzzer(self.seeds, data)
        frame = wire.decode(self.seeds[data[1] % (len(self.seeds) - 1)])  # the last seed is a report
        assert isinstance(frame, wire.Frame)
        payload = from_fuzzer([frame.payload], b"\x01\x00" + data[2:]) or b"\0"
        return wire.encode_frame(frame.header, payload)

    def feed(self, data: bytes) -> None:
        c = dict(self.rx.counters)
        self.sock.inbox = data
        self.sock.sent.clear()
        self.rx._step(self.sock)
        n = self.rx.counters
        assert n["received"] == c["received"] + 1
        outcomes = (n["decoded"] - c["decoded"], n["bad_messages"] - c["bad_messages"],
                    n["decode_errors"] - c["decode_errors"])
        assert sorted(outcomes) == [0, 0, 1], f"one message, outcomes {outcomes}"
        if outcomes[0]:
            view = self.rx.latest()
            assert view is not None
            head = wire.decode(data).header  # type: ignore[union-attr]
            assert view.image.shape == (head.height, head.width, 3)
            view.left, view.right  # noqa: B018  (the pane's eye views)
        for report in self.sock.sent:
            assert isinstance(wire.decode(report), wire.Report)
        self.rx.status()
        self.rx.stats()
        records = self.translator.translate(Item(K_VIDEO, 0, VIDEO_RX.pack(0, -1, 0, False, True), data))
        json.dumps(records, allow_nan=False)


# ----------------------------------------------------------------------------------------------- masters


def _live_view(cfg: Config) -> BedsideView:
    """A bedside that granted a session, its tools at home: what lets a controller follow."""
    tools = tuple(a.measured for a in BedsideAgent(cfg.bedside, 0).arms)
    assert len(tools) == N_ARMS
    return BedsideView(True, True, 1.0, tools, OperatingState.ENABLED, Reason.NONE, False)


class MasterRig:
    """The master bridge (console/masters/network.py): a bridge streams a scripted surgeon's hands every
    millisecond (`NetworkMasterState.feed`), the controller follows them against a bedside that granted a
    session, and one hostile message arrives between two genuine ones.

    Invariants: bytes the decoder refuses leave the sample unchanged; an accepted sample has finite positions,
    unit quaternions and grippers in [0, 1]; an invalid or stale sample commands no arm; whatever the
    controller outputs still encodes as a servo_cp that decodes (finite values, unit quaternions)."""

    def __init__(self, cfg: Config) -> None:
        self.t = 0
        self.seq = 0
        self.state = NetworkMasterState(cfg.console.master_timeout_ms)
        self.controller = TeleopController(cfg.teleop, 0)
        self.script = ScriptedMaster("circle", 0, engage_at_s=0.3)
        self.view = _live_view(cfg)
        self.outcomes: Counter[str] = Counter()
        self.seeds: list[bytes] = []
        for _ in range(400):
            self.seeds.append(self._bridge())
            self._step(self.state.sample(self.t))
        assert self._following(), "the controller never followed"
        self.seeds = self.seeds[::40] + [
            encode_master_message(self.seq + 1, self.t, self.script.read(self.t).hands, b)
            for b in (MasterButtons(True, clutch=True), MasterButtons(True, camera=True),
                      MasterButtons(True, disengage=True), MasterButtons(True, estop=True))]
        self.seeds.append(encode_master_message(self.seq + 1, self.t, self.script.read(self.t).hands,
                                                MasterButtons(True), valid=False))
        self._pristine = copy.deepcopy((self.t, self.seq, self.state, self.controller, self.script))

    def _following(self) -> bool:
        return any(a["state"] == "FOLLOWING" for a in self.controller.snapshot()["arms"].values())

    def _bridge(self) -> bytes:
        """One millisecond of the genuine bridge: its next message, fed to the master."""
        self.t += MS
        self.seq += 1
        s = self.script.read(self.t)
        data = encode_master_message(self.seq, self.t, s.hands, s.buttons, s.valid)
        self.state.feed(self.t, data)
        return data

    def _step(self, sample: MasterSample) -> None:
        out = self.controller.step(self.t, sample, self.view)
        if not sample.valid:
            assert out.arm_mask == 0, "an invalid or stale master sample commanded an arm"
        codec.decode(codec.encode(ServoCp(1, self.t, self.t, out.flags, out.arm_mask, out.setpoints)))

    def feed(self, data: bytes) -> None:
        self._bridge()
        t = self.t
        before = self.state.sample(t)
        accepted = self.state.feed(t, data)
        sample = self.state.sample(t)
        try:
            decode_master_message(data)
            self.outcomes["accepted" if accepted else "well-formed, dropped (older)"] += 1
        except MessageError:
            self.outcomes["refused"] += 1
            assert not accepted and sample == before, "refused bytes changed the master sample"
        for hand in sample.hands:
            assert math.isfinite(sum(hand.pose.position)) and 0.0 <= hand.gripper <= 1.0
            assert abs(math.fsum(c * c for c in hand.pose.orientation) - 1.0) < 1e-9
        self._step(sample)
        if not self._following() or t > self._pristine[0] + 5000 * MS:
            self.t, self.seq, self.state, self.controller, self.script = copy.deepcopy(self._pristine)


class UiRig:
    """The window link (console/uilink.py): `UiSupervisor.on_bytes` and `tick` between a window that keeps
    its heartbeat and painted-frame reports coming, and a controller following a scripted surgeon.

    Invariants: `decode_ui_message` raises nothing but UiMessageError and `on_bytes` nothing at all; the
    motion scale stays in [scale_min, scale_max]; an arm the window link held is never resumed by it (only
    the surgeon's engage does that, and this surgeon pressed it once)."""

    def __init__(self, cfg: Config) -> None:
        self.t = 0
        self.cfg = cfg
        self.controller = TeleopController(cfg.teleop, 0)
        self.sup = UiSupervisor(self.controller, cfg.console.gui_timeout_ms, cfg.video.stale_ms, cfg.video.stuck_ms)
        self.master = ScriptedMaster("circle", 0, engage_at_s=0.3)  # after presence is confirmed
        self.view = _live_view(cfg)
        self.outcomes: Counter[str] = Counter()
        self.frame = 0
        for _ in range(400):
            self._window()
            self._step()
        assert self._following(), "the controller never followed"
        self.seeds = [b'{"type":"heartbeat","seq":7}', b'{"type":"intent","name":"set_scale","value":0.3}',
                      b'{"type":"intent","name":"reset_estop"}',
                      b'{"type":"video","frame_id":12,"capture_ns":1000000,"signature":5,"source_seq":null}']
        self._pristine = copy.deepcopy((self.t, self.frame, self.controller, self.sup, self.master))

    def _following(self) -> bool:
        return any(a["state"] == "FOLLOWING" for a in self.controller.snapshot()["arms"].values())

    def _window(self) -> None:
        """One millisecond of a healthy window: a heartbeat every 20 ms, a new painted frame every 10 ms."""
        self.t += MS
        t = self.t
        if t % (20 * MS) == 0:
            self.sup.on_bytes(t, b'{"type":"heartbeat","seq":1}', 0)
        if t % (10 * MS) == 0:
            self.frame += 1
            self.sup.on_bytes(t, json.dumps({"type": "video", "frame_id": self.frame, "capture_ns": t - 5 * MS,
                                             "signature": self.frame, "source_seq": self.frame}).encode(), 0)

    def _step(self) -> int:
        self.sup.tick(self.t)
        return self.controller.step(self.t, self.master.read(self.t), self.view).arm_mask

    def feed(self, data: bytes) -> None:
        self._window()
        held = {name for name, a in self.controller.snapshot()["arms"].items() if a["state"] == "HELD"}
        try:
            self.outcomes[str(decode_ui_message(data)["type"])] += 1
        except UiMessageError:
            self.outcomes["refused"] += 1
        self.sup.on_bytes(self.t, data, 0)
        self._step()
        arms = self.controller.snapshot()["arms"]
        assert all(arms[name]["state"] == "HELD" for name in held), "the window link resumed a held arm"
        assert self.cfg.teleop.scale_min <= self.controller.scale <= self.cfg.teleop.scale_max
        json.dumps(self.sup.video_state(), allow_nan=False)
        if not self._following() or self.t > self._pristine[0] + 5000 * MS:
            self.outcomes["session restarted"] += 1
            self.t, self.frame, self.controller, self.sup, self.master = copy.deepcopy(self._pristine)


# ----------------------------------------------------------------------------------------------- recordings


def _records(path: Path) -> tuple[dict[str, str], list[tuple[str, str, int, int, bytes]]]:
    """A recording's session metadata and its messages as (topic, schema name, log_time, publish_time, data)."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        meta = next((dict(m.metadata) for m in reader.iter_metadata() if m.name == "teleop.session"), {})
        return meta, [(ch.topic, sc.name if sc else "", m.log_time, m.publish_time, m.data)
                      for sc, ch, m in reader.iter_messages(log_time_order=False)]


def write_recording(meta: dict[str, str], messages: Sequence[tuple[str, str, int, int, bytes]],
                    compression: str = "none", chunked: bool = True) -> bytes:
    """An MCAP file as the recorder lays it out (teleop.session metadata, JSON channels), in memory."""
    out = io.BytesIO()
    w = Writer(out, chunk_size=16 * 1024, compression=CompressionType[compression.upper()], use_chunking=chunked)
    w.start(profile="", library="tests/receivers.py")
    w.add_metadata("teleop.session", meta)
    channels: dict[str, int] = {}
    for topic, schema, log_t, pub_t, data in messages:
        if topic not in channels:
            sid = w.register_schema(schema, "jsonschema", b'{"type":"object"}')
            channels[topic] = w.register_channel(topic, "json", sid)
        w.add_message(channels[topic], log_time=log_t, data=data, publish_time=pub_t)
    w.finish()
    return out.getvalue()


class RecordingRig:
    """What `teleop report` and `teleop replay` do with a file: qa/session.py loads it (paired with an intact
    recording of the other role) and every table, event list, video frame and re-drive plan the report, the
    window and the re-drive read is built from it.

    A small recording from the project's synthesiser (qa/synth.py), cut to a few messages per topic, is the
    seed, written zstd-, lz4- and un-compressed, and unchunked. Invariant: either everything loads (at
    least one message from each file: never an empty window or report) or a RecordingError (a UserError)
    says, on one line, which file is wrong."""

    def __init__(self, directory: Path, per_topic: int = 3) -> None:
        self.dir = Path(directory)
        res = synthesize(self.dir / "synth", seconds=0.25, video="h264", eye_w=160, eye_h=96, fps=12)
        self.meta: dict[str, dict[str, str]] = {}
        self.messages: dict[str, list[tuple[str, str, int, int, bytes]]] = {}
        for role, path in (("console", res.console), ("bedside", res.bedside)):
            meta, msgs = _records(path)
            meta["config"] = ""  # the full configuration text is most of a small file's bytes
            kept: dict[str, int] = {}
            self.messages[role] = [m for m in msgs if kept.setdefault(m[0], 0) < per_topic
                                   and not kept.__setitem__(m[0], kept[m[0]] + 1)]
            self.meta[role] = meta
        con, bed = self.messages["console"], self.messages["bedside"]
        self.seeds = [write_recording(self.meta["console"], con, "zstd"), write_recording(self.meta["console"], con),
                      write_recording(self.meta["console"], con, "lz4"),
                      write_recording(self.meta["console"], con, chunked=False),
                      write_recording(self.meta["bedside"], bed, "zstd")]
        self.partner = {"console": self.dir / "bedside-intact.mcap", "bedside": self.dir / "console-intact.mcap"}
        self.partner["console"].write_bytes(write_recording(self.meta["bedside"], bed, "zstd"))
        self.partner["bedside"].write_bytes(write_recording(self.meta["console"], con, "zstd"))
        self.topics = sorted({m[0] for m in con + bed})
        self.outcomes: Counter[str] = Counter()

    def with_message(self, topic_index: int, message_index: int, data: bytes) -> bytes:
        """The intact recording holding the chosen topic, with one of its messages' bytes replaced."""
        topic = self.topics[topic_index % len(self.topics)]
        role = "console" if topic.startswith("/console/") else "bedside"
        msgs = list(self.messages[role])
        where = [i for i, m in enumerate(msgs) if m[0] == topic]
        i = where[message_index % len(where)]
        msgs[i] = (*msgs[i][:4], data)
        return write_recording(self.meta[role], msgs)

    def message(self, topic_index: int, message_index: int) -> bytes:
        """The bytes of one message of the intact recordings (as `with_message` counts them)."""
        topic = self.topics[topic_index % len(self.topics)]
        msgs = [m for m in self.messages["console"] + self.messages["bedside"] if m[0] == topic]
        return msgs[message_index % len(msgs)][4]

    def from_fuzzer(self, data: bytes) -> bytes:
        """atheris' bytes as one file: data[0] bit 1 clear, a seed file mutated (`from_fuzzer`); set, the
        intact recording with message data[2] of topic data[1] mutated by the rest of the recipe."""
        if len(data) < 3 or not data[0] & 2:
            return from_fuzzer(self.seeds, data)
        seed = self.message(data[1], data[2])
        return self.with_message(data[1], data[2], from_fuzzer([seed], b"\x01\x00" + data[3:]))

    def feed(self, data: bytes) -> None:
        role = "bedside" if data.find(b"bedside", 0, 400) >= 0 else "console"
        path = self.dir / f"{role}-fuzzed.mcap"
        path.write_bytes(data)
        try:
            session = Session([path, self.partner[role]])
            use_session(session)
        except RecordingError as exc:
            text = str(exc)
            assert "\n" not in text and path.name in text, f"not one line naming the file: {text!r}"
            self.outcomes["refused: " + _why(text)] += 1
            return
        assert all(f.messages > 0 for f in session.files), "a file with no message loaded as if it were fine"
        self.outcomes["loaded, torn" if session.files[0].truncated else "loaded"] += 1


def _why(text: str) -> str:
    """The kind of a RecordingError, for the fuzzing statistics."""
    for kind in ("no message could be read", "none of its topics", "beyond 2^63", "span", "is not JSON",
                 "not a JSON object", "recorded shape", "clock_offset_ns", "nothing to re-drive", "no /"):
        if kind in text:
            return kind
    return text[:60]


def use_session(session) -> None:
    """Everything the report, the replay window and the re-drive read from a loaded session."""
    session.summary()
    for e in session.events():
        assert isinstance(e.name, str) and isinstance(e.text, str) and isinstance(e.reason, str)
        assert e.latency_ms is None or isinstance(e.latency_ms, float)
    session.offsets()
    float(session.seconds(session.t1_ns))
    for role in ("console", "bedside"):
        for table in (session.commands(role), session.acks(role), session.telemetry(role),
                      session.video_frames(role)):
            for k, col in table.items():
                assert isinstance(col, np.ndarray) and col.shape[:1] == (len(table),), k
        for topic in (Topics(role).recording, Topics(role).config):
            assert all(isinstance(body, dict) for _t, body in session.json_rows(role, topic))
        if len(session.video_frames(role)):
            track = VideoTrack(session, role)
            for i in range(len(track)):
                track.frame(i)
                track.layout(i)
    session.link()
    session.freezes()
    with contextlib.suppress(RecordingError):
        plan(session)


# ----------------------------------------------------------------------------------------------- atheris


def with_seed_corpus(argv: list[str], seeds: Sequence[bytes]) -> list[str]:
    """libFuzzer's arguments, plus a corpus directory holding the seeds as raw inputs (b"\\0" + seed) when
    none was given: coverage-guided mutation then starts from valid messages instead of the empty input."""
    import tempfile

    if any(not a.startswith("-") for a in argv[1:]):
        return argv
    corpus = Path(tempfile.mkdtemp(prefix="fuzz-corpus-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(b"\0" + seed)
    return [*argv, str(corpus)]
