"""Producer items and their translation into catalogue messages: pure, no sockets, no clocks (sans-IO).

Producers (tap.py) hand the recorder raw bytes with a small header, so the 1 kHz loops never build JSON:

    item   = [head, payload]          one ZeroMQ multipart message carries one or more items
    head   = kind (u8) | t_ns (i64 LE, producer CLOCK_MONOTONIC) | extra (kind-specific bytes)

The recorder's Translator turns each item into zero or more (topic, t_ns, JSON dict) records, decoding the
payload with our own wire codecs (transport/codec.py, transport/video_wire.py). Everything here is unit tested with
made-up times.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from recording.catalog import (
    POSE_HZ,
    TF_HZ,
    VIDEO_FRAME_ID,
    WORLD_FRAME,
    Topics,
    base_frame,
    tool_frame,
    video_schema,
)
from transport import codec
from transport import video_wire as wire
from transport.messages import (
    ARM_NAMES,
    Ack,
    ArmFlags,
    CartesianSetpoint,
    ConsoleFlags,
    Counters,
    Disable,
    Enable,
    EStop,
    Event,
    Message,
    Ping,
    Reason,
    ServoCp,
    Telemetry,
)

# ------------------------------------------------------------------------------------------ items

HEAD = struct.Struct("<Bq")

K_COMMAND = 1  # codec bytes of a control command: received (bedside, extra = peer user) or sent (console)
K_BEDSIDE = 2  # codec bytes of a bedside output (ack, telemetry, event, counters): sent (bedside) or received
K_JSON = 3  # a JSON object the producer built; extra = topic suffix (e.g. b"freeze", b"link")
K_VIDEO = 4  # transport/video_wire.py FRAME bytes; extra = VIDEO_RX (console) or empty (bedside, as sent)
K_DROPS = 5  # producer's cumulative drops: payload DROPS; extra = producer id (text)

DROPS = struct.Struct("<qq")  # control items dropped, video items dropped (cumulative, per producer)
VIDEO_RX = struct.Struct("<qqq??")  # received_ns, decoded_ns (-1: decode failed), offset_ns, degraded, stale

JSON_TOPICS = {"bedside": frozenset({"freeze", "stall"}), "console": frozenset({"event", "link", "stall", "state"})}


def head(kind: int, t_ns: int, extra: bytes = b"") -> bytes:
    return HEAD.pack(kind, t_ns) + extra


@dataclass(frozen=True, slots=True)
class Item:
    kind: int
    t_ns: int
    extra: bytes
    payload: bytes


class ItemError(ValueError):
    """A producer message the recorder cannot read; counted as invalid, never fatal."""


def split_items(frames: list[bytes]) -> Iterator[Item]:
    """One multipart message → its items; an odd frame count or a short head is an ItemError."""
    if len(frames) % 2:
        raise ItemError(f"{len(frames)} frames: items come in (head, payload) pairs")
    for i in range(0, len(frames), 2):
        h = frames[i]
        if len(h) < HEAD.size:
            raise ItemError(f"item head of {len(h)} bytes")
        kind, t_ns = HEAD.unpack_from(h)
        yield Item(kind, t_ns, bytes(h[HEAD.size:]), frames[i + 1])


# ------------------------------------------------------------------------------------------ converters


def wall_time(wall_ns: int) -> dict[str, int]:
    """Foxglove `time` {sec, nsec} from wall-clock ns (negative clamps to 0: the schema has no sign)."""
    wall_ns = max(0, wall_ns)
    return {"sec": wall_ns // 1_000_000_000, "nsec": wall_ns % 1_000_000_000}


def _quat(q: tuple[float, float, float, float]) -> dict[str, float]:
    return {"x": q[0], "y": q[1], "z": q[2], "w": q[3]}


def _pose(sp: CartesianSetpoint) -> dict[str, Any]:
    return {"position": list(sp.position), "orientation": _quat(sp.orientation)}


def pose_in_frame(sp: CartesianSetpoint, wall_ns: int, frame_id: str) -> dict[str, Any]:
    """foxglove.PoseInFrame of one arm pose."""
    p = sp.position
    return {"timestamp": wall_time(wall_ns), "frame_id": frame_id,
            "pose": {"position": {"x": p[0], "y": p[1], "z": p[2]}, "orientation": _quat(sp.orientation)}}


_IDENTITY = {"translation": {"x": 0.0, "y": 0.0, "z": 0.0}, "rotation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}


def frame_transform(parent: str, child: str, wall_ns: int, sp: CartesianSetpoint | None = None) -> dict[str, Any]:
    """foxglove.FrameTransform of `child` in `parent` (identity without a pose)."""
    d: dict[str, Any] = {"timestamp": wall_time(wall_ns), "parent_frame_id": parent, "child_frame_id": child}
    if sp is None:
        return {**d, **_IDENTITY}
    p = sp.position
    return {**d, "translation": {"x": p[0], "y": p[1], "z": p[2]}, "rotation": _quat(sp.orientation)}


def arm_transforms(tools: dict[str, CartesianSetpoint], wall_ns: int, static: bool) -> list[dict[str, Any]]:
    """The transform tree of one telemetry instant: <arm>_base → <arm>_tool (measured_cp) for every arm, and
    with `static` world → <arm>_base (identity: every pose is in the patient frame) and ECM_tool → the
    endoscope's camera frame (the video's frame_id), so Foxglove's 3D panel shows the arms beside the video."""
    out = []
    if static:
        out += [frame_transform(WORLD_FRAME, base_frame(a), wall_ns) for a in tools]
        if "ECM" in tools:
            out.append(frame_transform(tool_frame("ECM"), VIDEO_FRAME_ID, wall_ns))
    out += [frame_transform(base_frame(a), tool_frame(a), wall_ns, sp) for a, sp in tools.items()]
    return out


_COMMAND_TYPES: dict[type, str] = {ServoCp: "servo_cp", Enable: "enable", Disable: "disable", Ping: "ping",
                                   EStop: "estop"}


def command_json(msg: Message, t_ns: int, peer: str = "") -> dict[str, Any]:
    """teleop.Command. `t_ns`: receive time (bedside) or send time (console)."""
    d: dict[str, Any] = {"t_ns": t_ns, "type": _COMMAND_TYPES[type(msg)], "epoch": msg.epoch, "seq": msg.seq,
                         "send_ns": msg.send_ns, "peer": peer}
    if isinstance(msg, ServoCp):
        f = msg.flags
        d["flags"] = {"operator_present": bool(f & ConsoleFlags.OPERATOR_PRESENT),
                      "clutch": bool(f & ConsoleFlags.CLUTCH), "camera": bool(f & ConsoleFlags.CAMERA)}
        d["arm_mask"] = msg.arm_mask
        d["arms"] = [{"name": name, "position": list(sp.position), "orientation": _quat(sp.orientation),
                      "jaw": sp.jaw} for name, sp in zip(ARM_NAMES, msg.arms, strict=True)]
    elif isinstance(msg, EStop):
        d["engage"] = msg.engage
    return d


def malformed_command_json(t_ns: int, peer: str, size: int, error: str) -> dict[str, Any]:
    """teleop.Command for bytes that were not a command: the black box keeps what the bedside refused."""
    return {"t_ns": t_ns, "type": "malformed", "peer": peer, "size": size, "error": error}


def ack_json(ack: Ack, t_ns: int, rtt_us: float | None = None) -> dict[str, Any]:
    """teleop.Ack. At the console `t_ns` is the arrival time and rtt_us = t_ns − echo_send_ns."""
    d: dict[str, Any] = {"t_ns": t_ns, "epoch": ack.epoch, "seq": ack.seq, "echo_seq": ack.echo_seq,
                         "echo_send_ns": ack.echo_send_ns, "rx_ns": ack.rx_ns, "status": ack.status.name,
                         "rejected": ack.status.rejected, "operating_state": ack.operating_state.name,
                         "reason": ack.reason.name}
    if rtt_us is not None:
        d["rtt_us"] = rtt_us
    return d


def _flag_names(flags: ArmFlags) -> list[str]:
    return [f.name for f in (ArmFlags.HOMED, ArmFlags.BUSY, ArmFlags.LIMIT) if flags & f and f.name]


def telemetry_json(t: Telemetry, t_ns: int) -> dict[str, Any]:
    """teleop.Telemetry (CRTK names). `jaw` is the measured jaw, `setpoint_jaw` the commanded one."""
    arms = []
    for name, a in zip(ARM_NAMES, t.arms, strict=True):
        arms.append({"name": name, "mode": a.mode.name, "flags": _flag_names(a.flags),
                     "measured_cp": _pose(a.measured_cp), "setpoint_cp": _pose(a.setpoint_cp),
                     "jaw": a.measured_cp.jaw, "setpoint_jaw": a.setpoint_cp.jaw, "measured_js": list(a.measured_js),
                     "measured_cf": list(a.measured_cf)})
    return {"t_ns": t_ns, "epoch": t.epoch, "seq": t.seq, "operating_state": t.operating_state.name,
            "reason": t.reason.name, "estop": t.estop, "last_applied_seq": t.last_applied_seq, "arms": arms}


def event_json(ev: Event, t_ns: int) -> dict[str, Any]:
    """teleop.Event (bedside): the recording's `/bedside/event` and the bedside's event log."""
    return {"t_ns": t_ns, "epoch": ev.epoch, "kind": ev.kind.name, "reason": ev.reason.name,
            "from": ev.from_state.name, "to": ev.to_state.name, "text": ev.text}


class ConsoleEvent(Protocol):
    """What console/engine.py's EngineEvent carries (this floor cannot import the console)."""

    @property
    def t_ns(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def reason(self) -> Reason: ...
    @property
    def text(self) -> str: ...


def console_event_json(ev: ConsoleEvent) -> dict[str, Any]:
    """teleop.ConsoleEvent: the recording's `/console/event`, the window's event list, the console summary."""
    return {"t_ns": ev.t_ns, "source": ev.source, "name": ev.name, "reason": ev.reason.name, "text": ev.text}


def counters_json(c: Counters, t_ns: int) -> dict[str, Any]:
    return {"t_ns": t_ns, "values": dict(c.values)}


def video_foxglove(frame: wire.Frame, wall_ns: int) -> dict[str, Any]:
    """foxglove.CompressedVideo (H.264 Annex B, SPS/PPS repeated by our encoder) or CompressedImage (JPEG)."""
    fmt = "h264" if frame.header.codec is wire.Codec.H264 else "jpeg"
    return {"timestamp": wall_time(wall_ns), "frame_id": VIDEO_FRAME_ID,
            "data": base64.b64encode(frame.payload).decode("ascii"), "format": fmt}


def video_frame_json(frame: wire.Frame, t_ns: int, rx: tuple[int, int, int, bool, bool] | None = None
                     ) -> dict[str, Any]:
    """teleop.VideoFrame; `rx` = VIDEO_RX fields at the console (age_ms: capture → ready to paint)."""
    h = frame.header
    d: dict[str, Any] = {"t_ns": t_ns, "stream_id": h.stream_id, "frame_id": h.frame_id, "capture_ns": h.capture_ns,
                         "send_ns": h.send_ns, "source_seq": h.source_seq, "keyframe": h.keyframe,
                         "codec": h.codec.name.lower(), "layout": h.layout.name, "width": h.width,
                         "height": h.height, "size_bytes": len(frame.payload), "bitrate_kbps": h.bitrate_kbps,
                         "drawn_from": None if h.stamp.state_seq == 0 else asdict(h.stamp)}
    if rx is not None:
        received, decoded, offset, degraded, stale = rx
        d["received_ns"] = received
        d["decoded_ns"] = decoded if decoded >= 0 else None
        d["age_ms"] = (decoded - (h.capture_ns - offset)) / 1e6 if decoded >= 0 else None
        d["stale"] = stale
        d["degraded"] = degraded
    return d


# ------------------------------------------------------------------------------------------ translator

Record = tuple[str, int, dict[str, Any]]  # topic, producer t_ns (monotonic), message


class Translator:
    """Items of one role → catalogue records. Stateful only for decimation and drop totals.

    `mono_to_wall_ns` maps the host's CLOCK_MONOTONIC to wall-clock ns (Foxglove timestamps)."""

    def __init__(self, role: str, mono_to_wall_ns: int, pose_hz: int = POSE_HZ) -> None:
        self.role = role
        self.topics = Topics(role)
        self.mono_to_wall_ns = mono_to_wall_ns
        self.pose_period_ns = 1_000_000_000 // pose_hz
        self._next_pose_ns = -(2**63)
        self.tf_period_ns = 1_000_000_000 // TF_HZ
        self._next_tf_ns = -(2**63)
        self._next_static_ns = -(2**63)
        self.drops: dict[str, tuple[int, int]] = {}
        self.invalid = 0
        self.last_error = ""

    @property
    def dropped(self) -> dict[str, int]:
        """Producer drops so far, summed over producers."""
        return {"control": sum(c for c, _ in self.drops.values()), "video": sum(v for _, v in self.drops.values())}

    def _bad(self, text: str) -> list[Record]:
        self.invalid += 1
        self.last_error = text
        return []

    def translate(self, item: Item) -> list[Record]:
        """Records for one item; an item that cannot be read is counted in `invalid` and yields none."""
        try:
            if item.kind == K_COMMAND:
                return self._command(item)
            if item.kind == K_BEDSIDE:
                return self._bedside(item)
            if item.kind == K_JSON:
                return self._json(item)
            if item.kind == K_VIDEO:
                return self._video(item)
            if item.kind == K_DROPS:
                self.drops[item.extra.decode("utf-8", "replace")] = DROPS.unpack(item.payload)
                return []
        except (codec.ProtocolError, wire.VideoWireError, struct.error, ValueError, KeyError) as exc:
            return self._bad(f"kind {item.kind}: {type(exc).__name__}: {exc}")
        return self._bad(f"unknown item kind {item.kind}")

    def _command(self, item: Item) -> list[Record]:
        peer = item.extra.decode("utf-8", "replace")
        t = self.topics
        try:
            msg = codec.decode(item.payload)
        except codec.ProtocolError as exc:
            return [(t.command, item.t_ns, malformed_command_json(item.t_ns, peer, len(item.payload), str(exc)))]
        if type(msg) not in _COMMAND_TYPES:
            return [(t.command, item.t_ns, malformed_command_json(
                item.t_ns, peer, len(item.payload), f"{type(msg).__name__} is not a command"))]
        out: list[Record] = [(t.command, item.t_ns, command_json(msg, item.t_ns, peer))]
        if self.role == "console" and isinstance(msg, ServoCp) and item.t_ns >= self._next_pose_ns:
            self._next_pose_ns = item.t_ns + self.pose_period_ns
            wall = item.t_ns + self.mono_to_wall_ns
            for i, (name, sp) in enumerate(zip(ARM_NAMES, msg.arms, strict=True)):
                if msg.arm_mask & (1 << i):
                    out.append((t.pose(name), item.t_ns, pose_in_frame(sp, wall, f"{name}_base")))
        return out

    def _bedside(self, item: Item) -> list[Record]:
        msg = codec.decode(item.payload)
        tp, t = self.topics, item.t_ns
        if isinstance(msg, Ack):
            rtt = (t - msg.echo_send_ns) / 1e3 if self.role == "console" else None
            return [(tp.ack, t, ack_json(msg, t, rtt))]
        if isinstance(msg, Telemetry):
            out: list[Record] = [(tp.telemetry, t, telemetry_json(msg, t))]
            wall = t + self.mono_to_wall_ns
            if self.role == "bedside":
                out += [(tp.pose(name), t, pose_in_frame(a.measured_cp, wall, f"{name}_base"))
                        for name, a in zip(ARM_NAMES, msg.arms, strict=True)]
            if t >= self._next_tf_ns:
                self._next_tf_ns = t + self.tf_period_ns
                static = t >= self._next_static_ns
                if static:
                    self._next_static_ns = t + 1_000_000_000
                tools = {name: a.measured_cp for name, a in zip(ARM_NAMES, msg.arms, strict=True)}
                out += [(tp.tf, t, tf) for tf in arm_transforms(tools, wall, static)]
            return out
        if isinstance(msg, Event):
            if self.role == "bedside":
                return [(tp.event, t, event_json(msg, t))]
            return []  # the console records bedside events as engine events (source "bedside")
        if isinstance(msg, Counters):
            return [(tp.counters, t, counters_json(msg, t))] if self.role == "bedside" else []
        return self._bad(f"{type(msg).__name__} is not a bedside output")

    def _json(self, item: Item) -> list[Record]:
        suffix = item.extra.decode("utf-8", "replace")
        if suffix not in JSON_TOPICS.get(self.role, ()):
            return self._bad(f"no JSON topic {suffix!r} for {self.role}")
        d = json.loads(item.payload)
        if not isinstance(d, dict):
            return self._bad(f"JSON item for {suffix} is not an object")
        d.setdefault("t_ns", item.t_ns)
        return [(f"{self.topics.prefix}/{suffix}", item.t_ns, d)]

    def _video(self, item: Item) -> list[Record]:
        frame = wire.decode(item.payload)
        if not isinstance(frame, wire.Frame):
            return self._bad("video item is not a frame")
        rx = VIDEO_RX.unpack(item.extra) if item.extra else None
        # Foxglove timestamp: the capture instant (sender's clock; same host at the bedside, offset at the console).
        capture_local = frame.header.capture_ns - (rx[2] if rx is not None else 0)
        t = self.topics
        return [(t.video, item.t_ns, video_foxglove(frame, capture_local + self.mono_to_wall_ns)),
                (t.video_frame, item.t_ns, video_frame_json(frame, item.t_ns, rx))]

    @staticmethod
    def video_schema_of(record: Record) -> str:
        return video_schema(record[2]["format"])
